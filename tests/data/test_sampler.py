import itertools

import pytest
import torch

from psal.data import StreamSampler


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_ranks_are_disjoint_and_cover_each_epoch():
    n = 10
    r0 = take(StreamSampler(n, seed=1, rank=0, world_size=2), 5)
    r1 = take(StreamSampler(n, seed=1, rank=1, world_size=2), 5)
    idx0, idx1 = {k[0] for k in r0}, {k[0] for k in r1}
    assert idx0.isdisjoint(idx1) and idx0 | idx1 == set(range(n))
    seeds = [k[1] for k in r0 + r1]
    assert len(set(seeds)) == len(seeds)


def test_epochs_reshuffle_and_repeat_by_seed():
    s = take(StreamSampler(6, seed=0), 12)
    assert sorted(k[0] for k in s[:6]) == list(range(6))
    assert [k[0] for k in s[:6]] != [k[0] for k in s[6:]]
    assert take(StreamSampler(6, seed=0), 12) == s
    assert take(StreamSampler(6, seed=1), 12) != s


def test_start_resumes_the_stream():
    full = take(StreamSampler(7, seed=2, rank=1, world_size=3), 20)
    assert take(StreamSampler(7, seed=2, rank=1, world_size=3, start=9), 11) == full[9:]


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        StreamSampler(5, rank=2, world_size=2)
    with pytest.raises(ValueError, match="num_samples"):
        StreamSampler(0)


def test_loader_workers_give_the_same_batches_as_none(tmp_path):
    """Every sample is a function of its key: 2 workers give what 0 give, for the three
    datasets (random crops, masks, flips, warped references)."""
    from PIL import Image
    from skimage import data
    from torch.utils.data import DataLoader

    from psal.data import (
        ColorizationPairs,
        InpaintingFolder,
        MaskGenerator,
        SuperResolutionFolder,
        find_pair_sources,
        list_images,
    )

    for i, im in enumerate([data.astronaut(), data.coffee(), data.chelsea()]):
        Image.fromarray(im).resize((90 + 7 * i, 80 + 5 * i)).save(tmp_path / f"{i}.png")
    files = list_images(tmp_path)
    datasets = [
        InpaintingFolder(files, 48, MaskGenerator("mixed", 48)),
        SuperResolutionFolder(files, 3, 12),
        ColorizationPairs(find_pair_sources(tmp_path, "photos"), 40),
    ]

    def batches(ds, workers):
        sampler = StreamSampler(len(ds), seed=7, rank=1, world_size=2)
        loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=workers)
        return [b for b, _ in zip(loader, range(3))]

    for ds in datasets:
        for a, b in zip(batches(ds, 0), batches(ds, 2), strict=True):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

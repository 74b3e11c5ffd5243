from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from psal.data import ColorizationPairs, find_pair_sources, split_sources


def _frames(root, n_seq=2, n_frames=4, size=(40, 48)):
    rng = np.random.default_rng(0)
    for s in range(n_seq):
        d = root / "videos" / f"seq{s}"
        d.mkdir(parents=True)
        base = rng.integers(0, 255, (size[0], size[1] + 20, 3), dtype=np.uint8)
        for t in range(n_frames):  # a camera panning: the window moves 4 pixels a frame
            Image.fromarray(base[:, 4 * t : 4 * t + size[1]]).save(d / f"{t:04d}.jpg", quality=95)
    return root


def test_video_pairs_are_two_frames_of_one_sequence(tmp_path):
    _frames(tmp_path)
    with pytest.warns(UserWarning, match="read as video sequences"):
        sources = find_pair_sources(tmp_path)  # auto: every image lies in a frame folder
    assert len(sources) == 2 and all(len(s.frames) == 4 for s in sources)
    ds = ColorizationPairs(sources, 32, max_gap=2)
    assert len(ds) == 8
    s = ds[(3, 123)]
    assert s["y"].shape == (1, 32, 32) and s["chroma"].shape == (2, 32, 32)
    assert s["reference"].shape == (3, 32, 32)
    target, ref = ds.pair((3, 123))
    assert not np.array_equal(np.asarray(target), np.asarray(ref))  # another frame
    again = ds[(3, 123)]
    assert all(torch.equal(s[k], again[k]) for k in s)  # a key is a sample


def test_photo_pairs_warp_the_same_photo(tmp_path):
    from skimage import data

    (tmp_path / "a" / "b").mkdir(parents=True)
    bright = np.clip(data.astronaut(), 30, 255)  # no black pixel of its own
    Image.fromarray(bright).resize((64, 64)).save(tmp_path / "a" / "b" / "x.png")
    Image.fromarray(data.coffee()).resize((80, 60)).save(tmp_path / "y.png")
    sources = find_pair_sources(tmp_path)  # recursive; a photo in the root: photos
    assert sources[0].frames[0].name == "x.png"
    assert len(sources) == 2 and all(len(s.frames) == 1 for s in sources)
    ds = ColorizationPairs(sources, 48)
    target, ref = ds.pair((0, 5))
    t, r = np.asarray(target), np.asarray(ref)
    assert t.shape == r.shape == (48, 48, 3)
    assert not np.array_equal(t, r)
    # the reference's colours are the photo's: close colour histograms
    assert np.abs(t.reshape(-1, 3).mean(0) - r.reshape(-1, 3).mean(0)).max() < 40
    assert (r.reshape(-1, 3).sum(1) == 0).mean() < 0.01  # no black borders
    fixed = ColorizationPairs(sources, 48, fixed=True, pair_seed=3)
    assert all(torch.equal(fixed[1][k], fixed[1][k]) for k in ("y", "reference"))
    with pytest.raises(TypeError, match="seed"):
        ds[0]


def test_no_pairs_is_a_clear_error(tmp_path):
    (tmp_path / "one").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "one" / "a.png")
    Image.new("RGB", (20, 20)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match="no pairs"):
        find_pair_sources(tmp_path, "video")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image"):
        find_pair_sources(empty)


def test_split_keeps_sequences_whole(tmp_path):
    _frames(tmp_path, n_seq=5)
    sources = find_pair_sources(tmp_path, "video")
    train, val = split_sources(sources, 0.2, 10, root=tmp_path)
    assert val and len(train) + len(val) == 5
    assert not {f for s in train for f in s.frames} & {f for s in val for f in s.frames}
    assert split_sources(sources, 0.2, 10, root=tmp_path) == (train, val)


@pytest.mark.parametrize("kind", ["photos", "video"])
def test_limit_reads_only_the_files_its_samples_need(tmp_path, kind, monkeypatch):
    """``limit`` gives the first samples of the unlimited list without opening the rest."""
    import warnings

    from psal.data import folder

    if kind == "video":
        _frames(tmp_path, n_seq=4, n_frames=3)
        (tmp_path / "videos" / "seq0" / "0001.jpg").write_bytes(b"not a jpeg")  # 2 frames left
        broken_later = tmp_path / "videos" / "seq3" / "0000.jpg"
    else:
        for i in range(6):
            Image.new("RGB", (20, 20), (40 * i, 0, 0)).save(tmp_path / f"p{i}.png")
        (tmp_path / "p1.png").write_bytes(b"not a png")
        broken_later = tmp_path / "p5.png"
    with pytest.warns(UserWarning, match="1 unreadable"):
        whole = find_pair_sources(tmp_path, kind)
    broken_later.write_bytes(b"")  # after the limit: must not be opened, nor named
    opened = []
    real_open = folder.Image.open
    monkeypatch.setattr(folder.Image, "open", lambda f, *a: opened.append(f) or real_open(f, *a))
    with pytest.warns(UserWarning, match="1 unreadable") as caught:
        warnings.simplefilter("always")
        limited = find_pair_sources(tmp_path, kind, decode=True, limit=4)
    assert len(caught) == 1 and "p5" not in str(caught[0].message)
    samples = [f for s in limited for f in s.frames]
    assert len(samples) >= 4 and limited == whole[: len(limited)]
    assert broken_later not in map(type(broken_later), opened)
    n = 4 if kind == "photos" else 5  # photos: the first 4; video: seq0 (2) and seq1 (3)
    assert len(samples) == n
    with pytest.raises(ValueError, match="limit"):
        find_pair_sources(tmp_path, kind, limit=0)


def test_split_keeps_each_source_where_it_was_when_sources_come_and_go():
    from pathlib import Path

    from psal.data import PairSource

    def seq(i, n=3):
        return PairSource(tuple(Path(f"v/seq{i:03d}/{t}.jpg") for t in range(n)))

    sources = [seq(i) for i in range(60)]
    train, val = split_sources(sources, 0.1, 100)
    side = {s.frames[0].parent: "val" for s in val} | {s.frames[0].parent: "train" for s in train}
    for changed in ([*sources, seq(60)], sources[1:], [seq(0, 5), *sources[1:]]):
        t2, v2 = split_sources(changed, 0.1, 100)
        assert all(side.get(s.frames[0].parent, "val") == "val" for s in v2)
        assert all(side.get(s.frames[0].parent, "train") == "train" for s in t2)
    assert val and len(split_sources([seq(i) for i in range(1, 60)], 0.1, 100)[1]) >= len(val) - 1


def test_auto_says_when_it_reads_folders_as_sequences(tmp_path):
    for animal in ("cats", "dogs"):
        (tmp_path / animal).mkdir()
        for i in range(3):
            Image.new("RGB", (20, 20), (80 * i, 0, 0)).save(tmp_path / animal / f"{i}.jpg")
    with pytest.warns(UserWarning, match=r"2 folders of frames.*video sequences.*photos"):
        assert len(find_pair_sources(tmp_path)) == 2
    Image.new("RGB", (20, 20)).save(tmp_path / "lone.jpg")
    with pytest.warns(UserWarning, match=r"single photos.*video"):
        assert len(find_pair_sources(tmp_path)) == 7


@pytest.mark.parametrize("photo", [(48, 48), (72, 48), (160, 120)])
def test_photo_references_show_mostly_the_photo_not_its_mirror(photo):
    """Near the border a warped window lay mostly outside the photo: for a photo the
    size of the crop, 19% of the references were more than half mirrored padding (up to
    62%). Now at least two thirds of every reference show the photo itself."""
    from psal.data.colorize import MIN_INSIDE, _crop, _reference_quad, _warped_window

    w, h = photo
    size, pad = 48, 200
    pixels = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    mirrored = Image.fromarray(np.pad(pixels, ((pad, pad), (pad, pad), (0, 0)), "symmetric"))
    inside = Image.fromarray(np.pad(np.full((h, w), 255, np.uint8), pad))  # the photo: 255
    shares = []
    for seed in range(200):
        r = np.random.default_rng(seed)
        box = _crop(Image.new("L", photo), size, r)
        got = _warped_window(Image.fromarray(pixels), box, size, r)
        r = np.random.default_rng(seed)  # the same draws again, for the window alone
        _crop(Image.new("L", photo), size, r)
        quad = [c + pad for c in _reference_quad(box, size, photo, r)]
        flip = r.random() < 0.5
        # the share of the window in the photo, measured by Pillow's own transform
        seen = inside.transform((size, size), Image.Transform.QUAD, quad, Image.Resampling.NEAREST)
        shares.append((np.asarray(seen) > 0).mean())
        # the reference is that window of the mirror-extended photo, flipped or not
        want = mirrored.transform(
            (size, size), Image.Transform.QUAD, quad, Image.Resampling.BILINEAR
        )
        if flip:
            want = want.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        assert np.abs(np.asarray(got, int) - np.asarray(want, int)).max() <= 1
    assert MIN_INSIDE >= 2 / 3 and min(shares) >= MIN_INSIDE - 0.01
    assert np.mean(shares) < 0.99  # the warps still reach beyond the border


def test_pairs_refuse_an_index_out_of_range_negative_ones_too(tmp_path):
    # a negative index gave the sample counted from the end, as a list would
    from skimage import data

    for i in range(3):
        Image.fromarray(data.astronaut()[::8, ::8]).save(tmp_path / f"{i}.png")
    sources = find_pair_sources(tmp_path, "photos")
    ds = ColorizationPairs(sources, 32)
    fixed = ColorizationPairs(sources, 32, fixed=True)
    for key in [(-1, 5), (3, 5)]:
        with pytest.raises(IndexError, match=f"index {key[0]} out of range for 3 samples"):
            ds[key]
    with pytest.raises(IndexError, match="index -3 out of range"):
        fixed[-3]
    assert torch.equal(ds[[2, 5]]["y"], ds[(2, 5)]["y"])  # a key as a list, as the others

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from psal.data import InpaintingFolder, MaskGenerator, StreamSampler, list_images, split_files


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "a" / "b").mkdir(parents=True)
    names = ["x.png", "a/y.JPG", "a/b/z.webp", "a/w.jpeg", "small.png"]
    for name in names:
        size = (20, 24) if name == "small.png" else (80, 64)
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_list_images_recursive(folder):
    files = list_images(folder)
    assert [p.relative_to(folder).as_posix() for p in files] == sorted(
        ["x.png", "a/y.JPG", "a/b/z.webp", "a/w.jpeg", "small.png"]
    )


def test_list_images_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "nope")
    with pytest.raises(ValueError, match="no image"):
        list_images(tmp_path)


def test_split_is_seeded_and_disjoint(folder):
    files = list_images(folder)
    train, val = split_files(files, val_fraction=0.4, seed=3)
    assert len(val) == 2 and len(train) == 3
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(files)
    assert split_files(files, 0.4, seed=3) == (train, val)
    assert split_files(files[:1], 0.5) == (files[:1], [])
    assert len(split_files(files, 0.9, val_max=1)[1]) == 1


def test_items_shapes_and_determinism(folder):
    files = list_images(folder)
    ds = InpaintingFolder(files, 32, MaskGenerator("rect", 32))
    item = ds[(0, 7)]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert 0 <= float(item["image"].min()) and float(item["image"].max()) <= 1
    assert item["mask"].shape == (1, 32, 32) and item["mask"].dtype == torch.bool
    assert item["box"].tolist()[2:] == [16, 16]
    again = ds[(0, 7)]
    assert torch.equal(item["image"], again["image"]) and torch.equal(item["mask"], again["mask"])
    other = ds[(0, 8)]
    assert not torch.equal(item["mask"], other["mask"]) or not torch.equal(
        item["image"], other["image"]
    )
    with pytest.raises(TypeError, match="StreamSampler"):
        ds[0]


def test_small_images_upscaled_and_resize_mode(folder):
    files = list_images(folder)
    small = [f for f in files if f.name == "small.png"]
    ds = InpaintingFolder(small, 32, MaskGenerator("rect", 32))
    assert ds[(0, 1)]["image"].shape == (3, 32, 32)
    ds = InpaintingFolder(files, 48, MaskGenerator("free-form", 48), resize="resize")
    assert ds[(2, 0)]["image"].shape == (3, 48, 48)
    with pytest.raises(ValueError, match="masks draw"):
        InpaintingFolder(files, 48, MaskGenerator("rect", 32))


def test_fixed_mode_is_reproducible(folder):
    files = list_images(folder)
    a = InpaintingFolder(files, 32, MaskGenerator("rect", 32), fixed=True, mask_seed=5)
    b = InpaintingFolder(files, 32, MaskGenerator("rect", 32), fixed=True, mask_seed=5)
    for i in range(len(files)):
        assert torch.equal(a[i]["mask"], b[i]["mask"]) and torch.equal(a[i]["image"], b[i]["image"])
    assert not all(torch.equal(a[0]["mask"], a[i]["mask"]) for i in range(1, len(files)))


def test_batches_have_one_mask_per_sample(folder):
    files = list_images(folder)
    ds = InpaintingFolder(files, 32, MaskGenerator("rect", 32))
    loader = DataLoader(ds, batch_size=4, sampler=StreamSampler(len(ds), seed=0))
    batch = next(iter(loader))
    masks = batch["mask"].flatten(1)
    assert len({tuple(m.tolist()) for m in masks}) == 4

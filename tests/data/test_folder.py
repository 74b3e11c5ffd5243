import os
import warnings
from pathlib import Path

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


def test_split_is_fixed_and_disjoint(folder):
    files = list_images(folder)
    train, val = split_files(files, val_fraction=0.4, root=folder)
    assert 1 <= len(val) <= 4 and len(train) + len(val) == 5
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(files)
    assert split_files(files, 0.4, root=folder) == (train, val)
    assert split_files(files, 0.4, root=folder, salt="other") != (train, val)
    assert split_files(files, 0.99, root=folder)[0]  # training is never empty
    assert split_files(files, 0.0) == (files, [])
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


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32)
    Image.fromarray(ramp.astype(np.uint16)).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")  # a 16-bit PNG
    item = InpaintingFolder([tmp_path / "g16.png"], 32, fixed=True)[0]
    image = item["image"]
    assert image.shape == (3, 32, 32)
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
    expected = torch.from_numpy(ramp / 65535).float()
    assert (image[0] - expected).abs().max() <= 0.5 / 255 + 2 / 65535  # rounded to 8 bits
    assert (image == 1).float().mean() < 0.01  # not clipped to white


def test_integer_and_float_images_are_scaled():
    from psal.data.folder import _to_rgb

    # "I": 16-bit values in a 32-bit integer image (how older PIL opens 16-bit PNGs)
    values = np.array([[0, 257 * 64], [257 * 128, 65535]], dtype=np.int32)
    out = np.asarray(_to_rgb(Image.fromarray(values).convert("I")))
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[..., 0].tolist() == [[0, 64], [128, 255]]
    # "F": floats in [0, 1]
    values = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)
    out = np.asarray(_to_rgb(Image.fromarray(values)))
    assert out[..., 2].tolist() == [[0, 64], [128, 255]]


def test_an_image_that_cannot_be_decoded_is_replaced_by_the_next(folder):
    data = (folder / "x.png").read_bytes()
    (folder / "x.png").write_bytes(data[: len(data) // 2])
    files = list_images(folder)
    ds = InpaintingFolder(files, 32, fixed=True)
    index = ds.files.index(folder / "x.png")
    nxt = InpaintingFolder(files, 32, fixed=True)._item((index + 1) % len(files))
    with pytest.warns(UserWarning, match=r"cannot read image .*x\.png.*another image"):
        item = ds[index]
    assert torch.equal(item["image"], nxt["image"])  # the next file's pixels
    train = InpaintingFolder(files, 32)
    with pytest.raises(IndexError):
        train[(len(files), 0)]
    # every file truncated: the first error
    for f in files:
        f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(OSError, match=r"cannot read image"):
        InpaintingFolder(files, 32, fixed=True)[0]


def test_readable_images_skips_files_without_a_header(folder):
    from psal.data import readable_images

    files = list_images(folder)
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.webp").write_text("hello")
    with pytest.warns(UserWarning, match=r"--data: 2 unreadable image file\(s\) skipped"):
        kept = readable_images(list_images(folder), "--data")
    assert kept == files
    with pytest.raises(ValueError, match=r"--data: none of the 2 image files can be read"):
        readable_images([folder / "empty.png", folder / "text.webp"], "--data")


def test_a_system_error_is_not_skipped_as_an_unreadable_image(folder):
    files = list_images(folder)
    ds = InpaintingFolder(files, 32, fixed=True)
    files[0].unlink()  # gone after the scan: an error of the system, not of the file
    with pytest.raises(FileNotFoundError, match=r"cannot read image"):
        ds[0]


def test_readable_images_of_nothing_is_a_value_error():
    from psal.data import readable_images

    with pytest.raises(ValueError, match=r"--data: no image files given"):
        readable_images([], "--data")


def test_an_unreadable_frame_keeps_a_video_folder_a_video(tmp_path):
    from psal.data import find_pair_sources

    for seq in ("s1", "s2", "s3"):
        (tmp_path / seq).mkdir()
        for i in range(2):
            Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / seq / f"{i}.png")
    (tmp_path / "s2" / "1.png").write_bytes(b"")
    with pytest.warns(UserWarning) as record:
        sources = find_pair_sources(tmp_path)
    messages = " | ".join(str(r.message) for r in record)
    assert "1 unreadable image file(s) skipped" in messages
    assert "fewer than two readable frames" in messages
    assert [len(s.frames) for s in sources] == [2, 2]  # still frame pairs, s2 left out


def test_readable_images_decodes_when_asked_and_stops_at_the_limit(folder):
    from psal.data import readable_images

    files = list_images(folder)
    data = (folder / "x.png").read_bytes()
    (folder / "x.png").write_bytes(data[: len(data) // 2])  # the header reads, the data not
    rest = [f for f in files if f.name != "x.png"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: the header is sound
        assert readable_images(files, "--data") == files
    with pytest.warns(UserWarning, match=r"1 unreadable image file\(s\) skipped: .*x\.png"):
        assert readable_images(files, "--data", decode=True) == rest
    first = files.index(folder / "x.png")
    with pytest.warns(UserWarning, match=r"1 unreadable"):
        kept = readable_images(files, "--data", decode=True, limit=first + 1)
    assert kept == files[:first] + files[first + 1 : first + 2]


def test_readable_images_min_side_leaves_small_files_out_before_the_limit(tmp_path):
    from psal.data import readable_images

    sizes = [(4, 30), (30, 30), (30, 5), (12, 12)]
    files = []
    for i, (w, h) in enumerate(sizes):
        files.append(tmp_path / f"{i}.png")
        Image.new("RGB", (w, h)).save(files[-1])
    with pytest.warns(UserWarning, match=r"1 image\(s\) smaller than 10 pixels a side"):
        assert readable_images(files, "--data", limit=1, min_side=10) == [files[1]]
    with pytest.warns(UserWarning, match=r"2 image\(s\) smaller"):
        assert readable_images(files, "--data", min_side=10) == [files[1], files[3]]
    with pytest.raises(ValueError, match="--data: all 2 readable images are smaller than 6"):
        readable_images([files[0], files[2]], "--data", min_side=6)
    with pytest.raises(ValueError, match="min_side"):
        readable_images(files, "--data", min_side=0)


def test_list_images_leaves_hidden_files_and_folders_out(tmp_path):
    for rel in ["a.png", "._a.png", ".hidden/b.png", "sub/c.png", "sub/.ipynb_checkpoints/c.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / rel, format="PNG")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "a.png", "sub/c.png"]  # fmt: skip


def _names(files, root):
    return [p.relative_to(root).as_posix() for p in files]


def _membership(train, val):
    return {**{f: "train" for f in train}, **{f: "val" for f in val}}


def test_split_keeps_every_file_where_it_was_when_files_come_and_go():
    files = [Path(f"img{i:03d}.png") for i in range(100)]
    before = _membership(*split_files(files, 0.05, 200))
    assert 1 <= list(before.values()).count("val") <= 15
    for changed in ([*files, Path("img100.png")], files[1:], files[:40] + files[41:]):
        after = _membership(*split_files(changed, 0.05, 200))
        assert all(after[f] == before[f] for f in changed if f in before)


def test_split_is_by_path_relative_to_root_in_any_process(tmp_path):
    import json
    import subprocess
    import sys

    import psal

    rel = [Path(f"s{i % 3}/img{i:03d}.png") for i in range(60)]
    a, b = tmp_path / "a", tmp_path / "elsewhere" / "b"
    train, val = split_files([a / r for r in rel], 0.2, 200, root=a)
    code = (
        "import sys, json; from pathlib import Path; from psal.data import split_files\n"
        "rel = json.loads(sys.argv[2]); root = Path(sys.argv[1])\n"
        "tr, va = split_files([root / r for r in rel], 0.2, 200, root=root)\n"
        "print(json.dumps([p.relative_to(root).as_posix() for p in va]))"
    )
    src = str(Path(psal.__file__).parents[1])  # the psal under test, not an installed one
    for hashseed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code, str(b), json.dumps([r.as_posix() for r in rel])],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": hashseed, "PYTHONPATH": src},
        )  # fmt: skip
        assert json.loads(out.stdout) == _names(val, a)
    assert val and set(train).isdisjoint(val)


def test_split_counts_the_listed_files_so_filters_only_drop(tmp_path):
    listed = [tmp_path / f"img{i:03d}.png" for i in range(50)]
    train, val = split_files(listed, 0.5, 4, root=tmp_path)  # the cap binds
    assert len(val) == 4
    kept = listed[::2]  # e.g. the images large enough for x4
    t2, v2 = split_files(kept, 0.5, 4, root=tmp_path, listed=listed)
    assert set(v2) == set(val) & set(kept) and set(t2) == set(train) & set(kept)
    with pytest.raises(ValueError, match="listed"):
        split_files(listed, 0.5, 4, root=tmp_path, listed=kept)


def test_list_images_follows_linked_folders_once(tmp_path):
    ext = tmp_path / "ext"
    (ext / "deep").mkdir(parents=True)
    for rel in ("a.png", "deep/b.png"):
        Image.new("RGB", (4, 4)).save(ext / rel)
    links = tmp_path / "links"
    links.mkdir()
    (links / "set1").symlink_to(ext, target_is_directory=True)
    (ext / "deep" / "loop").symlink_to(ext, target_is_directory=True)  # a cycle
    assert _names(list_images(links), links) == ["set1/a.png", "set1/deep/b.png"]


def test_list_images_names_folders_it_cannot_read(tmp_path, monkeypatch):
    for rel in ("a.png", "locked/b.png", "open/c.png"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / rel)
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.warns(UserWarning, match=r"1 folder\(s\) could not be read.*locked"):
        assert _names(list_images(tmp_path), tmp_path) == ["a.png", "open/c.png"]


def test_list_images_lists_a_linked_file_once(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.png").symlink_to(tmp_path / "a.png")
    assert _names(list_images(tmp_path), tmp_path) == ["a.png"]

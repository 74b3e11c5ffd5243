from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from psal.utils.image import (
    check_savable,
    from_tensor,
    load_image,
    load_mask,
    result_mode,
    save_image,
    to_mask,
    to_tensor,
)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "arr",
    [
        RNG.integers(0, 256, (5, 7), dtype=np.uint8),
        RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
        RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8),
        RNG.integers(0, 65536, (5, 7), dtype=np.uint16),
        RNG.random((5, 7, 3)).astype(np.float32),
        RNG.random((5, 7, 2)),
        RNG.random((5, 7)) > 0.5,
    ],
    ids=["u8-gray", "u8-rgb", "u8-rgba", "u16", "f32-rgb", "f64-la", "bool"],
)
def test_numpy_round_trip_is_exact(arr):
    x, spec = to_tensor(arr)
    assert x.dim() == 4 and x.shape[0] == 1 and x.is_floating_point()
    back = from_tensor(x, spec)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert np.array_equal(back, arr)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "RGB", "RGBA", "I;16", "I", "F"])
def test_pil_round_trip_keeps_mode(mode):
    base = Image.fromarray(RNG.integers(0, 256, (6, 9, 4), dtype=np.uint8))
    if mode == "I;16":
        im = Image.fromarray(RNG.integers(0, 65536, (6, 9), dtype=np.uint16))
    else:
        im = base.convert(mode)
    x, spec = to_tensor(im)
    back = from_tensor(x, spec)
    # Pillow before 10.3 opens a 16-bit gray PNG as I (int32, the same values)
    assert (back.mode == mode or (mode, back.mode) == ("I;16", "I")) and back.size == im.size
    assert np.array_equal(np.asarray(back), np.asarray(im))


def test_palette_comes_back_rgb_and_tensors_keep_layout():
    p = Image.fromarray(RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8)).convert("P")
    x, spec = to_tensor(p)
    assert from_tensor(x, spec).mode == "RGB"
    for shape in [(6, 9), (3, 6, 9), (2, 3, 6, 9)]:
        t = torch.rand(shape, dtype=torch.float64)
        x, spec = to_tensor(t)
        back = from_tensor(x, spec)
        assert back.shape == t.shape and back.dtype == t.dtype and torch.equal(back, t)
    u8 = torch.randint(0, 256, (3, 4, 5), dtype=torch.uint8)
    assert torch.equal(from_tensor(*to_tensor(u8)), u8)


def test_bad_images():
    with pytest.raises(TypeError, match="image"):
        to_tensor([1, 2, 3])
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        to_tensor(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(TypeError, match="dtype"):
        to_tensor(np.zeros((2, 3), np.int64))


def test_mask_threshold_rule():
    m = np.array([[0, 127, 128, 255]], np.uint8)
    assert to_mask(m, 1, 4)[0, 0, 0].tolist() == [False, False, True, True]
    assert to_mask(m, 1, 4, threshold=0.25)[0, 0, 0].tolist() == [False, True, True, True]
    assert to_mask(np.array([[0.2, 0.5, 0.51]]), 1, 3)[0, 0, 0].tolist() == [False, False, True]
    assert to_mask(np.array([[0, 1]], np.uint8), 1, 2)[0, 0, 0].tolist() == [False, True]
    rgba = np.zeros((1, 4, 4), np.uint8)
    rgba[..., 3] = [0, 127, 255, 255]  # transparent = hole (when it is at most half)
    assert to_mask(Image.fromarray(rgba), 1, 4)[0, 0, 0].tolist() == [True, True, False, False]
    t = torch.tensor([[[0.0, 0.7]]])
    assert to_mask(t, 1, 2, batch=3).shape == (3, 1, 1, 2)
    with pytest.raises(ValueError, match="3x1"):
        to_mask(np.zeros((1, 3)), 2, 3)
    # integer masks without a usual full range are label masks: non-zero = hole
    assert to_mask(np.array([[0, 5]]), 1, 2)[0, 0, 0].tolist() == [False, True]
    with pytest.raises(ValueError, match="negative"):
        to_mask(np.array([[0, -5]]), 1, 2)


def _both(arr, **kw):
    """The mask read from a numpy array and from the PIL image of the same array."""
    h, w = arr.shape[:2]
    a = to_mask(arr, h, w, **kw)[0, 0].tolist()
    b = to_mask(Image.fromarray(arr), h, w, **kw)[0, 0].tolist()
    assert a == b, (a, b)
    return a[0]


def test_numpy_and_pil_masks_follow_one_rule():
    assert _both(np.array([[0, 1, 1]], np.uint8)) == [False, True, True]  # 0/1 PNG
    red = np.zeros((1, 3, 3), np.uint8)
    red[0, 1, 0] = 255  # a pure red (or blue) scribble counts: brightest channel
    red[0, 2, 2] = 200
    assert _both(red) == [False, True, True]
    opaque = np.concatenate([red, np.full((1, 3, 1), 255, np.uint8)], 2)
    assert _both(opaque) == [False, True, True]  # an opaque alpha is ignored
    see_through = opaque.copy()
    see_through[..., 3] = [0, 255, 255]  # otherwise alpha is the mask
    assert _both(see_through) == [True, False, False]
    la = np.stack([np.array([[0, 200, 255]], np.uint8), np.full((1, 3), 255, np.uint8)], 2)
    assert _both(la) == [False, True, True]
    assert to_mask(Image.fromarray(red).convert("P"), 1, 3)[0, 0, 0].tolist() == [
        False, True, True,
    ]  # fmt: skip


def test_lab_images_are_not_taken_for_alpha():
    lab = Image.new("RGB", (4, 3), (200, 30, 60)).convert("LAB")
    x, spec = to_tensor(lab)
    assert spec.mode == "RGB" and x.shape == (1, 3, 3, 4)
    assert result_mode(lab) == "RGB" and result_mode(lab.convert("RGBA").convert("P")) == "RGB"
    assert result_mode(Image.new("I;16", (2, 2))) == "I;16"
    with pytest.raises(TypeError, match="image must be a PIL image, got ndarray"):
        result_mode(np.zeros((2, 2)))


def test_load_applies_exif_orientation_and_masks(tmp_path):
    arr = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    loaded = load_image(tmp_path / "r.jpg")
    assert loaded.size == (4, 6)  # width and height swapped
    Image.fromarray(np.array([[0, 200], [100, 255]], np.uint8)).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png").tolist() == [[False, True], [False, True]]
    with pytest.raises(ValueError, match="same size"):
        load_mask(tmp_path / "m.png", size=(3, 2))
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        load_image(tmp_path / "bad.png")


@pytest.mark.parametrize(
    ("suffix", "mode"),
    [(".png", "L"), (".png", "LA"), (".png", "RGBA"), (".png", "I;16"), (".jpg", "RGB"),
     (".jpg", "L"), (".webp", "RGB"), (".webp", "RGBA")],
)  # fmt: skip
def test_save_round_trip(tmp_path, suffix, mode):
    if mode == "I;16":
        im = Image.fromarray(RNG.integers(0, 65536, (8, 10), dtype=np.uint16))
    else:
        im = Image.fromarray(RNG.integers(0, 256, (8, 10, 4), dtype=np.uint8)).convert(mode)
    path = tmp_path / f"out{suffix}"
    save_image(im, path)
    back = load_image(path)
    # Pillow before 10.3 opens a 16-bit gray PNG as I (int32, the same values)
    assert (back.mode == mode or (mode, back.mode) == ("I;16", "I")) and back.size == im.size
    if suffix != ".jpg":  # PNG and WebP are written losslessly
        assert np.array_equal(np.asarray(back), np.asarray(im))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_save_refuses_lossy_modes_and_leaves_nothing(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="alpha"):
        check_savable("RGBA", tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="unsupported"):
        check_savable("RGB", tmp_path / "x.gif")
    im = Image.new("RGB", (4, 4))

    def broken_save(self, fp, *args, **kwargs):
        with open(fp, "wb") as fh:
            fh.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(im, tmp_path / "y.png")
    assert list(tmp_path.iterdir()) == []


def test_saved_file_permissions_follow_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        save_image(Image.new("L", (3, 3)), tmp_path / "p.png")
    finally:
        os.umask(old)
    assert (tmp_path / "p.png").stat().st_mode & 0o777 == 0o644


def test_a_colour_key_transparency_is_read_as_the_alpha_it_stands_for(tmp_path):
    # L or RGB with a PNG tRNS chunk: what PNG optimisers make of LA/RGBA images whose
    # transparent pixels share one colour; it used to be dropped (photo) or ignored (mask)
    g = np.full((6, 8), 100, np.uint8)
    g[:2] = 0
    Image.fromarray(g).save(tmp_path / "l.png", transparency=0)
    im = load_image(tmp_path / "l.png")  # the file's key read as the alpha it stands for
    assert im.mode == "LA" and result_mode(im) == "LA"
    x, spec = to_tensor(im)
    back = from_tensor(x, spec)
    assert back.mode == "LA"
    assert (np.asarray(back)[..., 1] == np.where(g == 0, 0, 255)).all()
    # a PIL image converted in Python keeps a stale key in info (P -> RGB): not applied
    pal = Image.fromarray(np.stack([g] * 3, -1)).convert("P")
    pal.info["transparency"] = 0
    rgb_in_python = pal.convert("RGB")
    assert rgb_in_python.info.get("transparency") is not None
    assert result_mode(rgb_in_python) == "RGB"
    rgb = np.full((6, 8, 3), 100, np.uint8)
    rgb[2:4, 3:6] = (1, 2, 3)  # the erased hole, keyed
    Image.fromarray(rgb).save(tmp_path / "rgb.png", transparency=(1, 2, 3))
    keyed = load_image(tmp_path / "rgb.png")
    assert keyed.mode == result_mode(keyed) == "RGBA"
    hole = load_mask(tmp_path / "rgb.png", (8, 6))  # the painted rule: transparent = hole
    want = np.zeros((6, 8), bool)
    want[2:4, 3:6] = True
    assert np.array_equal(hole, want)


def test_a_bad_threshold_names_the_callers_argument():
    m = np.zeros((2, 3), np.uint8)
    with pytest.raises(ValueError, match=r"^threshold must be in \(0, 1\), got 2"):
        to_mask(m, 2, 3, threshold=2)
    for mask in (m, torch.from_numpy(m)):  # psal.inpaint's keyword is mask_threshold
        with pytest.raises(ValueError, match=r"^mask_threshold must be in \(0, 1\), got 0"):
            to_mask(mask, 2, 3, threshold=0, threshold_name="mask_threshold")
    with pytest.raises(TypeError, match=r"^mask_threshold must be a number in \(0, 1\), got '0.5'"):
        to_mask(m, 2, 3, threshold="0.5", threshold_name="mask_threshold")


def test_save_writes_the_dpi_where_the_format_holds_it(tmp_path):
    from psal.utils.image import save_image

    im = Image.new("RGB", (6, 4))
    for suffix in (".png", ".jpg", ".tif", ".webp"):
        save_image(im, tmp_path / f"a{suffix}", dpi=(600, 400))
        with Image.open(tmp_path / f"a{suffix}") as got:
            want = None if suffix == ".webp" else pytest.approx((600, 400), rel=1e-4)
            assert got.info.get("dpi") == want, suffix  # (Pillow writes none in WebP)
    deep = np.zeros((4, 6, 3), np.uint16)  # written by psal itself (pHYs)
    save_image(deep, tmp_path / "deep.png", dpi=(600, 400))
    with Image.open(tmp_path / "deep.png") as got:
        assert got.info.get("dpi") == pytest.approx((600, 400), rel=1e-4)
    # a JFIF density holds 16 bits: Pillow wrote 70000 dpi as 4464; none is written
    save_image(im, tmp_path / "b.jpg", dpi=(70000, 70000))
    with Image.open(tmp_path / "b.jpg") as got:
        assert got.info.get("dpi") is None

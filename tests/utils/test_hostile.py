"""Regression tests for the hostile-input findings of issue 15 (one test or more each).

Every CLI call runs in-process (``psal.cli.main``); a failure must be one line
``psal: error: ...`` with exit status 1 and leave no file in the output folder.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import psal
from psal.cli import main
from psal.utils.image import load_image, load_mask, pixel_limit, save_image, to_mask, to_tensor
from psal.utils.io import full_depth


def png_bytes(arr: np.ndarray, bit_depth: int, color_type: int, size=None) -> bytes:
    """A PNG written by hand (filter 0), so any bit depth or claimed size can be made."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    h, w = arr.shape[:2]
    if size is not None:
        w, h = size
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = arr.astype(dtype).reshape(arr.shape[0], -1)
    raw = b"".join(b"\0" + r.tobytes() for r in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def tiff_claiming(width: int, height: int) -> bytes:
    """A little-endian 8-bit gray TIFF whose header claims ``width x height`` (8 bytes of data)."""
    tags = [
        (256, 4, 1, width),  # ImageWidth
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: black is zero
        (273, 4, 1, 8 + 2 + 12 * 8 + 4),  # StripOffsets: right after the IFD
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, width * height),  # StripByteCounts
    ]
    ifd = struct.pack("<H", len(tags))
    for tag, typ, count, value in tags:
        packed = struct.pack("<HHI", tag, typ, count)
        packed += struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        ifd += packed
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\x80" * 8


def _cli(capsys, *argv):
    argv = [str(a) for a in argv]
    if argv[0] == "inpaint" and "--dilate" not in argv:
        argv += ["--dilate", "0"]  # these tests check that pixels outside the mask are kept
    code = main(argv)
    return code, capsys.readouterr().err


def _one_error(code: int, err: str, *needles: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1, err
    assert lines and lines[-1].startswith("psal: error: "), err
    assert all(ln.startswith("psal: warning: ") for ln in lines[:-1]), err
    for n in needles:
        assert n in lines[-1], err
    return lines[-1]


def _left(folder: Path, keep: set[str]) -> set[str]:
    return {p.name for p in folder.iterdir()} - keep


@pytest.fixture
def work(tmp_path):
    """A 24x32 RGB photo, a mask with a 6x6 hole, and the folder's starting files."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "img.png")
    m = np.zeros((24, 32), np.uint8)
    m[8:14, 10:16] = 255
    Image.fromarray(m).save(tmp_path / "mask.png")
    (tmp_path / "bomb.png").write_bytes(png_bytes(np.zeros((1, 3)), 8, 2, (100000, 100000)))
    return tmp_path


# -- 1 and 2: decompression bombs and the pixel limit ---------------------------------


@pytest.mark.parametrize(
    "argv, who",
    [
        (["inpaint", "bomb.png", "--mask", "mask.png"], "IMAGE"),
        (["inpaint", "img.png", "--mask", "bomb.png"], "mask"),
        (["colorize", "img.png", "--reference", "bomb.png"], "--reference"),
        (["colorize", "bomb.png", "--reference", "img.png"], "TARGET"),
        (["upscale", "bomb.png"], "IMAGE"),
    ],
)
def test_bomb_headers_are_one_line_errors(work, capsys, argv, who):
    keep = {p.name for p in work.iterdir()}
    argv = [str(work / a) if a.endswith(".png") else a for a in argv]
    code, err = _cli(capsys, *argv, "-o", work / "out.png", "-q")
    _one_error(code, err, who, "100000x100000", "--max-pixels")
    assert _left(work, keep) == set()


def test_pixel_limit_is_checked_from_the_header(tmp_path, monkeypatch):
    tif = tmp_path / "tall.tif"
    tif.write_bytes(tiff_claiming(32, 4456472))  # a 2 KB file claiming 142.6 Mpx
    with pytest.raises(ValueError, match=r"32x4456472 = 142,607,104 pixels, above the limit"):
        load_image(tif)
    small = tmp_path / "small.png"
    Image.new("L", (10, 10)).save(small)
    monkeypatch.setenv("PSAL_MAX_PIXELS", "99")
    assert pixel_limit() == 99
    with pytest.raises(ValueError, match="above the limit of 99"):
        load_image(small)
    assert load_image(small, max_pixels=100).size == (10, 10)  # the argument wins
    with pytest.raises(ValueError, match="above the limit of 99"):
        load_mask(small)
    monkeypatch.setenv("PSAL_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="PSAL_MAX_PIXELS must be a positive integer"):
        load_image(small)
    with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
        load_image(small, max_pixels=0)


def test_limit_above_pillows_replaces_it(work, capsys):
    # past psal's limit the bomb is decoded: its 10 bytes of data end the file early,
    # which is an ordinary one-line error, not Pillow's DecompressionBombError
    keep = {p.name for p in work.iterdir()}
    code, err = _cli(capsys, "upscale", work / "bomb.png", "--max-pixels", 10**11,
                     "-o", work / "out.png", "-q")  # fmt: skip
    line = _one_error(code, err, "cannot read")
    assert "above the limit" not in line
    assert _left(work, keep) == set()
    code, err = _cli(capsys, "upscale", work / "img.png", "--max-pixels", 100,
                     "-o", work / "out.png", "-q")  # fmt: skip
    _one_error(code, err, "above the limit of 100")


# -- 4: 32-bit integer and float images ------------------------------------------------


def _mode_i(values: np.ndarray) -> Image.Image:
    return Image.fromarray(values.astype(np.int32), "I")


def test_mode_i_beyond_16_bits_is_refused_before_work(work, capsys):
    big = _mode_i(np.arange(24 * 32).reshape(24, 32) * 1000)  # up to 767000
    mask = np.zeros((24, 32), bool)
    mask[4:8, 4:8] = True
    with Image.open(work / "img.png") as im:
        ref = im.copy()
    for call in (
        lambda: psal.inpaint(big, mask),
        lambda: psal.colorize(big, ref),
        lambda: psal.upscale(big, 2),
    ):
        with pytest.raises(ValueError, match=r"mode I\) with values in \[0, 767000\]"):
            call()
    big.save(work / "big.tif")
    keep = {p.name for p in work.iterdir()}
    for argv in (
        ["inpaint", work / "big.tif", "--mask", work / "mask.png"],
        ["colorize", work / "big.tif", "--reference", work / "img.png"],
        ["upscale", work / "big.tif"],
    ):
        code, err = _cli(capsys, *argv, "-o", work / "out.png", "-q")
        _one_error(code, err, "big.tif", "32-bit integer")
        assert _left(work, keep) == set()


def test_mode_i_within_16_bits_keeps_known_pixels(work, capsys):
    vals = np.random.default_rng(1).integers(0, 65536, (24, 32))
    _mode_i(vals).save(work / "i16.tif")
    code, err = _cli(capsys, "inpaint", work / "i16.tif", "--mask", work / "mask.png",
                     "-o", work / "out.png", "-q")  # fmt: skip
    assert code == 0, err
    back = np.asarray(Image.open(work / "out.png")).astype(np.int64)
    known = np.asarray(Image.open(work / "mask.png")) == 0
    assert np.array_equal(back[known], vals[known])


def test_mode_f_keeps_values_or_is_refused(work, capsys):
    vals = np.random.default_rng(2).random((24, 32)).astype(np.float32) * 200 - 50
    Image.fromarray(vals, "F").save(work / "f.tif")
    code, err = _cli(capsys, "inpaint", work / "f.tif", "--mask", work / "mask.png",
                     "-o", work / "out.tif", "-q")  # fmt: skip
    assert code == 0, err
    back = Image.open(work / "out.tif")
    known = np.asarray(Image.open(work / "mask.png")) == 0
    assert back.mode == "F" and np.array_equal(np.asarray(back)[known], vals[known])
    keep = {p.name for p in work.iterdir()}
    code, err = _cli(capsys, "upscale", work / "f.tif", "-o", work / "up.png", "-q")
    _one_error(code, err, "cannot store a F image", ".tif")
    code, err = _cli(capsys, "colorize", work / "f.tif", "--reference", work / "img.png",
                     "-o", work / "c.png", "-q")  # fmt: skip
    _one_error(code, err, "f.tif", "[0, 1]")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        psal.colorize(Image.fromarray(vals, "F"), Image.open(work / "img.png"))
    assert _left(work, keep) == set()


def test_big_endian_16_bit_is_not_cut_to_8_bits():
    im = Image.fromarray(np.array([[0, 300, 65535]], np.uint16)).convert("I").convert("I;16B")
    if im.mode != "I;16B":  # pragma: no cover - Pillow without the conversion
        pytest.skip("Pillow cannot make I;16B here")
    x, spec = to_tensor(im)
    assert spec.mode == "I;16" and x[0, 0, 0].tolist() == pytest.approx([0, 300 / 65535, 1])


# -- 7: 16-bit colour PNGs ------------------------------------------------------------


def _with_orientation(png: bytes, orientation: int) -> bytes:
    """``png`` with an eXIf chunk holding an EXIF orientation tag, before IDAT."""
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    crc = zlib.crc32(b"eXIf" + tiff) & 0xFFFFFFFF
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", crc)
    at = png.index(b"IDAT") - 4
    return png[:at] + chunk + png[at:]


def test_16_bit_colour_png_leaves_no_file_open(tmp_path):
    # the low bytes are read by a second Image.open; an animated PNG (acTL chunk) keeps
    # its file open after load(), and that second file was left for the collector
    import gc

    rgb16 = np.random.default_rng(4).integers(0, 65536, (6, 8, 3))
    png = png_bytes(rgb16, 16, 2)
    actl = b"acTL" + struct.pack(">II", 1, 0)  # one frame, played forever
    at = png.index(b"IDAT") - 4
    png = png[:at] + struct.pack(">I", 8) + actl + struct.pack(">I", zlib.crc32(actl)) + png[at:]
    (tmp_path / "anim16.png").write_bytes(png)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deep = full_depth(load_image(tmp_path / "anim16.png"))
        gc.collect()
    assert np.array_equal(deep, rgb16)
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


def test_16_bit_colour_png_round_trip_keeps_16_bits(work, capsys):
    rgb16 = np.random.default_rng(3).integers(0, 65536, (24, 32, 3))
    (work / "rgb16.png").write_bytes(png_bytes(rgb16, 16, 2))
    code, err = _cli(capsys, "inpaint", work / "rgb16.png", "--mask", work / "mask.png",
                     "-o", work / "out.png", "-q")  # fmt: skip
    assert code == 0 and err == "", err
    with Image.open(work / "out.png") as out:
        assert out.tile[0][3] == "RGB;16B"  # written at 16 bits (the tile's raw mode)
    deep = full_depth(load_image(work / "out.png"))
    known = np.asarray(Image.open(work / "mask.png")) == 0
    assert deep.dtype == np.uint16 and np.array_equal(deep[known], rgb16[known])
    # EXIF orientation turns the high and the low bytes alike
    (work / "turned.png").write_bytes(_with_orientation(png_bytes(rgb16, 16, 2), 6))
    turned = load_image(work / "turned.png")
    assert turned.size == (24, 32)
    assert np.array_equal(full_depth(turned), np.rot90(rgb16, -1))
    # RGBA through upscale; JPEG cannot hold 16 bits: refused before the work
    rgba16 = np.random.default_rng(5).integers(0, 65536, (10, 12, 4))
    (work / "rgba16.png").write_bytes(png_bytes(rgba16, 16, 6))
    code, err = _cli(capsys, "upscale", work / "rgba16.png", "-o", work / "up.png", "-q")
    assert code == 0, err
    up = full_depth(load_image(work / "up.png"))
    assert up.shape == (20, 24, 4) and up.dtype == np.uint16
    keep = {p.name for p in work.iterdir()}
    code, err = _cli(capsys, "inpaint", work / "rgb16.png", "--mask", work / "mask.png",
                     "-o", work / "out.jpg", "-q")  # fmt: skip
    _one_error(code, err, "RGB;16", "bit depth", ".png")
    assert _left(work, keep) == set()


def test_16_bit_gray_alpha_png_says_it_is_read_at_8_bits(work, capsys):
    la16 = np.random.default_rng(6).integers(0, 65536, (24, 32, 2))
    la16[..., 1] = 65535
    (work / "la16.png").write_bytes(png_bytes(la16, 16, 4))
    code, err = _cli(capsys, "inpaint", work / "la16.png", "--mask", work / "mask.png",
                     "-o", work / "out.png", "-q")  # fmt: skip
    assert code == 0, err
    assert err.count("psal: warning: IMAGE:") == 1 and "16-bit gray+alpha PNG" in err, err
    out = Image.open(work / "out.png")  # gray stays gray (it came back RGBA)
    assert out.mode == "LA"
    known = ~np.asarray(Image.open(work / "mask.png")).astype(bool)
    assert np.array_equal(np.asarray(out)[..., 0][known], (la16[..., 0] >> 8)[known])
    gray16 = la16[..., 0]
    (work / "g16.png").write_bytes(png_bytes(gray16, 16, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gray keeps its 16 bits: no warning
        assert np.array_equal(np.asarray(load_image(work / "g16.png")), gray16)


# -- 9: masks -----------------------------------------------------------------------


def test_mask_rule_reads_labels_strokes_and_32_bit_masks(work, capsys):
    hole = np.zeros((24, 32), bool)
    hole[8:14, 10:16] = True
    labels = hole.astype(np.uint8)
    labels[0, 0] = 2  # a stray label value
    expect = hole.copy()
    expect[0, 0] = True
    assert np.array_equal(to_mask(labels, 24, 32)[0, 0].numpy(), expect)
    Image.fromarray(labels).save(work / "labels.png")
    assert np.array_equal(load_mask(work / "labels.png"), expect)
    strokes = np.zeros((24, 32, 4), np.uint8)
    strokes[hole] = 255  # white strokes on a transparent layer
    Image.fromarray(strokes, "RGBA").save(work / "strokes.png")
    assert np.array_equal(load_mask(work / "strokes.png"), hole)
    erased = np.full((24, 32, 4), 90, np.uint8)
    erased[..., 3] = np.where(hole, 0, 255)  # a photo with the hole erased
    assert np.array_equal(to_mask(erased, 24, 32)[0, 0].numpy(), hole)
    for scale in (1, 255, 65535):
        _mode_i(hole * scale).save(work / f"m{scale}.tif")
        assert np.array_equal(load_mask(work / f"m{scale}.tif"), hole), scale
    assert np.array_equal(to_mask(torch.from_numpy(labels), 24, 32)[0, 0].numpy(), expect)
    code, err = _cli(capsys, "inpaint", work / "img.png", "--mask", work / "strokes.png",
                     "-o", work / "out.png", "-q")  # fmt: skip
    assert code == 0 and "warning" not in err, err
    src = np.asarray(Image.open(work / "img.png"))
    assert np.array_equal(np.asarray(Image.open(work / "out.png"))[~hole], src[~hole])


def test_mostly_hole_mask_warns(work, capsys):
    big = np.ones((24, 32), np.uint8) * 255
    big[:4] = 0
    with pytest.warns(UserWarning, match="covers 83% of the image"):
        to_mask(big, 24, 32)
    Image.fromarray(big).save(work / "big.png")
    code, err = _cli(capsys, "inpaint", work / "img.png", "--mask", work / "big.png",
                     "-o", work / "out.png", "-q", "--patch-size", 3)  # fmt: skip
    assert code == 0, err
    assert [ln.startswith("psal: warning: mask: the hole covers 83%") for ln in
            err.splitlines()] == [True], err  # fmt: skip


def test_complex_masks_and_bad_devices_are_value_or_type_errors():
    with pytest.raises(TypeError, match="mask must be bool, integer or float, got dtype complex"):
        to_mask(np.zeros((2, 2), np.complex64), 2, 2)
    with pytest.raises(TypeError, match="mask must be bool, integer or float"):
        to_mask(torch.zeros(2, 2, dtype=torch.complex64), 2, 2)
    with pytest.raises(TypeError, match="mask must be bool, integer or float"):
        psal.inpaint(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.complex128))
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda', 'cuda:N' or 'mps'"):
        psal.inpaint(np.zeros((8, 8), np.uint8), np.zeros((8, 8), bool), device="meta")
    with pytest.raises(ValueError, match="device must be"):
        to_tensor(np.zeros((2, 2), np.uint8), device="potato")
    with pytest.raises(TypeError, match=r"device must be a str or torch\.device"):
        to_tensor(np.zeros((2, 2), np.uint8), device=3.5)
    from psal.models import Inpainter

    with pytest.raises(ValueError, match="device must be"):
        Inpainter.from_checkpoint("never-read.safetensors", device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda': CUDA is not available"):
            psal.upscale(np.zeros((8, 8), np.uint8), 2, device="cuda")
        with pytest.raises(ValueError, match="device='cuda': CUDA is not available"):
            Inpainter.from_checkpoint("never-read.safetensors", device="cuda")


# -- 11: errors that used to come after the work ----------------------------------------


def test_output_name_lengths(work, capsys):
    fits = work / ("n" * 250 + ".png")  # fits the 255-byte limit; its temp name must too
    code, err = _cli(capsys, "inpaint", work / "img.png", "--mask", work / "mask.png",
                     "-o", fits, "-q")  # fmt: skip
    assert code == 0 and fits.exists(), err
    keep = {p.name for p in work.iterdir()}
    code, err = _cli(capsys, "inpaint", work / "img.png", "--mask", work / "mask.png",
                     "-o", work / ("n" * 300 + ".png"), "-q")  # fmt: skip
    _one_error(code, err, "is 304 bytes long")
    assert _left(work, keep) == set()


def test_unwritable_output_folder_is_refused_before_work(work, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr("psal.editing.inpaint", lambda *a, **k: calls.append(1))
    target = Path("/proc/psal-out.png")  # no one can create files there, root included
    if not Path("/proc").is_dir():  # pragma: no cover - not Linux
        pytest.skip("needs /proc")
    code, err = _cli(capsys, "inpaint", work / "img.png", "--mask", work / "mask.png",
                     "-o", target, "-q")  # fmt: skip
    _one_error(code, err, "cannot create files in /proc")
    assert calls == []
    if os.geteuid() != 0:
        ro = work / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            code, err = _cli(capsys, "inpaint", work / "img.png", "--mask",
                             work / "mask.png", "-o", ro / "o.png", "-q")  # fmt: skip
            _one_error(code, err, "cannot create files")
        finally:
            ro.chmod(0o755)


def test_webp_too_wide_is_refused_before_work(work, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr("psal.editing.upscale", lambda *a, **k: calls.append(1))
    Image.new("RGB", (4100, 2)).save(work / "wide.png")
    keep = {p.name for p in work.iterdir()}
    code, err = _cli(capsys, "upscale", work / "wide.png", "-s", "4",
                     "-o", work / "out.webp", "-q")  # fmt: skip
    _one_error(code, err, "16383 pixels a side", "16400x8")
    assert calls == [] and _left(work, keep) == set()


def test_eval_json_folder_is_refused_before_work(work, capsys):
    code, err = _cli(capsys, "eval", "inpaint", "--checkpoint", work / "missing.safetensors",
                     "--data", work, "--json", work)  # fmt: skip
    _one_error(code, err, "--json", "is a directory")


def test_webp_keeps_the_colour_of_transparent_known_pixels(work, capsys):
    # found by the fuzz suite: lossless WebP drops the colour under alpha 0 unless exact
    rgba = np.random.default_rng(4).integers(0, 256, (24, 32, 4)).astype(np.uint8)
    rgba[..., 3] = np.where(rgba[..., 3] < 80, 0, 255)
    Image.fromarray(rgba).save(work / "rgba.png")
    code, err = _cli(capsys, "inpaint", work / "rgba.png", "--mask", work / "mask.png",
                     "-o", work / "out.webp", "-q")  # fmt: skip
    assert code == 0, err
    known = np.asarray(Image.open(work / "mask.png")) == 0
    assert np.array_equal(np.asarray(Image.open(work / "out.webp"))[known], rgba[known])


def test_16_bit_colour_tiff_says_it_is_read_at_8_bits(work, capsys):
    tifffile = pytest.importorskip("tifffile")
    rgb16 = np.random.default_rng(7).integers(0, 65536, (24, 32, 3)).astype(np.uint16)
    tifffile.imwrite(work / "rgb16.tif", rgb16)
    code, err = _cli(capsys, "upscale", work / "rgb16.tif", "-o", work / "up.tif", "-q")
    assert code == 0, err
    assert err.count("psal: warning: IMAGE:") == 1 and "16-bit colour TIFF" in err, err


def test_animations_say_only_the_first_frame_is_edited_and_are_not_overwritten(work, capsys):
    rng = np.random.default_rng(8)
    frames = [Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(work / "anim.webp", save_all=True, append_images=frames[1:], lossless=True)
    code, err = _cli(capsys, "upscale", work / "anim.webp", "-o", work / "up.webp", "-q")
    assert code == 0, err
    assert "holds 3 frames" in err and "only the first is read" in err, err
    before = (work / "anim.webp").read_bytes()
    code, err = _cli(capsys, "inpaint", work / "anim.webp", "--mask", work / "mask.png",
                     "-o", work / "anim.webp", "-q")  # fmt: skip
    assert code == 1 and "would lose the others" in err, err
    assert (work / "anim.webp").read_bytes() == before


def test_a_16_bit_gray_target_is_coloured_into_a_16_bit_png(work, capsys):
    rng = np.random.default_rng(9)
    gray16 = np.add.outer(np.arange(24), np.arange(32)) * 1000 + rng.integers(0, 900, (24, 32))
    Image.fromarray(gray16.astype(np.uint16)).save(work / "g16.png")
    code, err = _cli(capsys, "colorize", work / "g16.png", "--reference", work / "img.png",
                     "-o", work / "c.png", "-q")  # fmt: skip
    assert code == 0, err
    out = full_depth(load_image(work / "c.png"))
    assert isinstance(out, np.ndarray) and out.dtype == np.uint16 and out.shape == (24, 32, 3)
    luma = out.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(luma - gray16).max() <= 1.0  # the 16-bit luma kept (16-bit rounding)
    code, err = _cli(capsys, "colorize", work / "g16.png", "--reference", work / "img.png",
                     "-o", work / "c.jpg", "-q")  # fmt: skip
    assert code == 0, err  # an 8-bit format: 8 bits, as before
    with Image.open(work / "c.jpg") as im:
        assert im.mode == "RGB"


def test_multi_page_files_with_a_damaged_later_page_read_their_first(work, capsys):
    import io

    rng = np.random.default_rng(10)
    frames = [Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    (work / "trunc.gif").write_bytes(buf.getvalue()[: int(len(buf.getvalue()) * 0.55)])
    with pytest.warns(UserWarning, match="several frames, not all readable"):
        im = load_image(work / "trunc.gif", "IMAGE")
    assert im.size == (16, 16)


def test_exif_layout_tags_of_the_input_do_not_shape_a_tiff_output(work, capsys):
    # some phones copy ImageWidth/ImageLength into EXIF; Pillow's TIFF writer let them
    # replace the output's own: a scrambled TIFF, or "codec configuration error"
    rng = np.random.default_rng(11)
    photo = Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8))
    exif = photo.getexif()
    exif[0x0100], exif[0x0101], exif[0x010F] = 40, 24, "PhoneMaker"
    exif[0x0112] = 6  # displayed upright: 24 wide, 40 high
    photo.save(work / "phone.jpg", exif=exif.tobytes(), quality=95)
    mask = np.zeros((40, 24), np.uint8)
    mask[10:20, 6:14] = 255
    Image.fromarray(mask).save(work / "pmask.png")
    code, err = _cli(capsys, "inpaint", work / "phone.jpg", "-m", work / "pmask.png",
                     "-o", work / "out.tif", "-q")  # fmt: skip
    assert code == 0, err
    code, err = _cli(capsys, "inpaint", work / "phone.jpg", "-m", work / "pmask.png",
                     "-o", work / "out.png", "-q")  # fmt: skip
    assert code == 0, err
    tif, png = Image.open(work / "out.tif"), Image.open(work / "out.png")
    assert tif.size == png.size == (24, 40)
    assert np.array_equal(np.asarray(tif), np.asarray(png))
    assert tif.getexif().get(0x010F) == "PhoneMaker"
    code, err = _cli(capsys, "upscale", work / "phone.jpg", "-o", work / "up.tif", "-q")
    assert code == 0, err
    with Image.open(work / "up.tif") as im:
        assert im.size == (48, 80)


def test_save_image_names_a_bad_array():
    with pytest.raises(ValueError, match="shape"):
        save_image(np.zeros(5, np.uint8), "never_written.png")

"""A PIL image edited in Python keeps its ICC profile, EXIF and DPI where they still hold.

As the ``psal`` commands keep them in files (``psal.utils.io``): the profile where it
describes the result's colours, the EXIF without its thumbnail and with the result's
pixel dimensions, the DPI scaled by an upscale (the printed size stays the same).
"""

from __future__ import annotations

import importlib
import io
import warnings

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, ImageOps

import psal
from psal.utils.convert import CARRIED_INFO
from psal.utils.io import load_image

MAKE, ORIENTATION, X_RES = 0x010F, 0x0112, 0x011A
DATE, PIXEL_X, PIXEL_Y = 0x9003, 0xA002, 0xA003
EXIF_IFD = ExifTags.IFD.Exif
SIZE = (32, 24)  # (W, H): not square, so that a turn would show
PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
# another RGB profile (its creation date zeroed): what a reference from elsewhere has
OTHER_PROFILE = PROFILE[:24] + bytes(12) + PROFILE[36:]


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[MAKE] = "PhoneCo"
    exif[ORIENTATION] = 6  # shown turned 90 degrees clockwise
    exif[X_RES], exif[X_RES + 1], exif[0x0128] = 300, 300, 2  # 300 dots per inch
    sub = exif.get_ifd(EXIF_IFD)
    sub[DATE] = "2024:05:06 07:08:09"
    sub[PIXEL_X], sub[PIXEL_Y] = SIZE
    return exif


def _photo(fmt: str = "PNG", profile: bytes = PROFILE) -> Image.Image:
    """A small RGB photo file with a profile, EXIF and 300 DPI, opened by Pillow."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, icc_profile=profile, exif=_exif(), dpi=(300, 300))
    buf.seek(0)
    return Image.open(buf)


def _mask() -> np.ndarray:
    m = np.zeros(SIZE[::-1], bool)
    m[8:14, 10:17] = True
    return m


TOOLS = {
    "inpaint": lambda im: psal.inpaint(im, _mask(), patch_size=5, seed=0),
    "colorize": lambda im: psal.colorize(
        im, _photo(profile=OTHER_PROFILE), patch_size=5, pm_iters=1, seed=0
    ),
    "upscale": lambda im: psal.upscale(im, 2, patch_size=5, pm_iters=1, seed=0),
}
FACTOR = {"inpaint": 1, "colorize": 1, "upscale": 2}


def _networks() -> dict:
    """The networks' own entry points (tiny untrained networks: metadata only)."""
    from psal.models import EDSRPSAL, Colorizer, DeepFillV1, GuidedColorizer, Inpainter, Upscaler

    torch = importlib.import_module("torch")
    torch.manual_seed(0)
    inpainter = Inpainter(DeepFillV1(width=4, attention="none"), training_size=32)
    colorizer = Colorizer(GuidedColorizer(width=4, value_width=2, attention="none"))
    upscaler = Upscaler(EDSRPSAL(scale=2, width=4, blocks=1, attention="none"))
    return {
        "Inpainter.inpaint": lambda im: inpainter.inpaint(im, _mask(), seed=0),
        "Colorizer.colorize": lambda im: colorizer.colorize(
            im, _photo(profile=OTHER_PROFILE), seed=0
        ),
        "Upscaler.upscale": lambda im: upscaler.upscale(im, seed=0),
    }


@pytest.mark.parametrize("name", ["Inpainter.inpaint", "Colorizer.colorize", "Upscaler.upscale"])
def test_the_networks_pil_results_keep_profile_exif_and_dpi(name):
    """As psal.inpaint & co: a trained network called directly on a PIL photo."""
    with warnings.catch_warnings():  # colorize: "target is a colour image"
        warnings.simplefilter("ignore", UserWarning)
        out = _networks()[name](_photo())
    assert set(out.info) == set(CARRIED_INFO)
    _check(out, 2 if name.startswith("Upscaler") else 1)


def _run(name: str, image: Image.Image) -> Image.Image:
    with warnings.catch_warnings():  # colorize: "target is a colour image"
        warnings.simplefilter("ignore", UserWarning)
        return TOOLS[name](image)


def _check(image: Image.Image, factor: int, *, profile: bool = True) -> None:
    """The profile, EXIF (no thumbnail) and DPI of an edited photo (in memory or read)."""
    assert image.size == (SIZE[0] * factor, SIZE[1] * factor)
    assert image.info.get("icc_profile") == (PROFILE if profile else None)
    exif = image.getexif()
    assert exif.get(MAKE) == "PhoneCo"
    assert exif.get(ORIENTATION) == 6  # the pixels are as stored: shown turned as before
    assert float(exif.get(X_RES)) == pytest.approx(300 * factor)
    sub = exif.get_ifd(EXIF_IFD)
    assert sub.get(DATE) == "2024:05:06 07:08:09"
    assert (sub.get(PIXEL_X), sub.get(PIXEL_Y)) == image.size
    assert not dict(exif.get_ifd(ExifTags.IFD.IFD1))
    assert image.info.get("dpi") == pytest.approx((300 * factor, 300 * factor), rel=1e-3)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("name", sorted(TOOLS))
def test_pil_result_keeps_profile_exif_and_dpi(name, fmt, tmp_path):
    out = _run(name, _photo(fmt))
    assert set(out.info) == set(CARRIED_INFO)
    _check(out, FACTOR[name])
    for suffix in (".png", ".jpg"):  # Pillow writes what info holds when given it
        path = tmp_path / f"out{suffix}"
        out.save(path, **out.info)
        with Image.open(path) as saved:
            _check(saved, FACTOR[name])


def test_colorize_of_a_gray_target_drops_a_profile_that_is_not_the_results():
    # convert("L") leaves the RGB profile in info: it describes neither the gray target
    # nor the coloured result (whose colours are the reference's values, not converted)
    out = _run("colorize", _photo().convert("L"))
    assert out.mode == "RGB"
    _check(out, 1, profile=False)


@pytest.mark.parametrize("read", [False, True], ids=["as-is", "thumbnail-read"])
def test_the_thumbnail_and_other_keys_are_not_carried(read, monkeypatch, exif_with_thumbnail):
    # a phone's EXIF with a thumbnail (IFD1): it would still show what was removed
    block, thumb = exif_with_thumbnail
    probe = Image.new("RGB", (1, 1))
    probe.info["exif"] = block
    assert dict(probe.getexif().get_ifd(ExifTags.IFD.IFD1))  # the input has its thumbnail
    photo = _photo()
    photo.info.update(exif=probe.info["exif"], comment=b"not kept")
    if read:  # (Pillow cannot write back an EXIF block whose thumbnail was read)
        assert dict(photo.getexif().get_ifd(ExifTags.IFD.IFD1))
    # the fill of a small hole in a large image works on a crop and pastes it back into
    # a copy of the input: made to here, on this small one
    monkeypatch.setattr(importlib.import_module("psal.editing.inpaint"), "CONTEXT_MIN", 2)
    out = psal.inpaint(photo, _mask(), patch_size=5, seed=0)
    assert set(out.info) == set(CARRIED_INFO)
    exif = out.getexif()
    assert exif.get(0x013B) == "someone"
    assert not dict(exif.get_ifd(ExifTags.IFD.IFD1))
    assert thumb[100:140] not in out.info["exif"]


def test_orientation_is_applied_once(tmp_path):
    # the API edits the pixels as stored and keeps the tag; load_image turns the pixels
    # upright and drops the tag: either way the result is shown as the input was
    photo = _photo()
    shown = ImageOps.exif_transpose(photo).size
    out = _run("upscale", photo)
    assert out.size == (2 * SIZE[0], 2 * SIZE[1])
    assert ImageOps.exif_transpose(out).size == (2 * shown[0], 2 * shown[1])
    photo.save(tmp_path / "in.png", exif=photo.getexif(), icc_profile=PROFILE)
    upright = load_image(tmp_path / "in.png")
    assert upright.size == shown and ORIENTATION not in upright.getexif()
    out = _run("upscale", upright)
    assert out.size == (2 * shown[0], 2 * shown[1])
    assert ORIENTATION not in out.getexif() and out.getexif().get(MAKE) == "PhoneCo"
    assert out.info["icc_profile"] == PROFILE


def test_palette_transparency_is_not_carried():
    photo = _photo().convert("P")
    photo.info.update(transparency=0, icc_profile=PROFILE)
    out = psal.inpaint(photo, _mask(), patch_size=5, seed=0)
    assert out.mode == "RGBA" and "transparency" not in out.info
    assert out.info["icc_profile"] == PROFILE  # the palette's colours, looked up


def test_a_profile_of_converted_colours_is_dropped():
    cmyk = _photo().convert("CMYK")  # converted to RGB by psal: the profile no longer holds
    out = psal.inpaint(cmyk, _mask(), patch_size=5, seed=0)
    assert out.mode == "RGB" and "icc_profile" not in out.info


def test_other_kinds_carry_nothing():
    pixels = np.asarray(_photo())
    out = psal.upscale(pixels, 2, patch_size=5, pm_iters=1, seed=0)
    assert isinstance(out, np.ndarray)


@pytest.mark.parametrize(("written", "meant"), [(300, 300.0), (72, 72.0), (96, 96.0),
                                                 (25.4, 25.4), ((300, 150), (300.0, 150.0))])  # fmt: skip
def test_a_pngs_dpi_is_the_whole_number_it_was_written_from(tmp_path, written, meant):
    """A PNG holds whole dots per metre: 300 dpi is read back as 299.9994. The carried
    DPI is the whole number that gives the same count (a TIFF of the result says 300),
    and a DPI with no such whole number (1000 dots per metre) stays as read."""
    pair = written if isinstance(written, tuple) else (written, written)
    want = meant if isinstance(meant, tuple) else (meant, meant)
    path = tmp_path / "in.png"
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(path, dpi=pair)
    with Image.open(path) as im:
        out = psal.upscale(im, scale=2)
        assert out.info["dpi"] == (2 * want[0], 2 * want[1])
        out.save(tmp_path / "out.tif", dpi=out.info["dpi"])
    with Image.open(tmp_path / "out.tif") as tif:
        assert tif.info["dpi"] == (2 * want[0], 2 * want[1])


def test_the_metadata_helpers_name_a_wrong_argument():
    from psal.utils.convert import carried_info, stated_dpi

    im = Image.new("RGB", (8, 6))
    with pytest.raises(TypeError, match="image must be a PIL image, got ndarray"):
        stated_dpi(np.zeros((6, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="image must be a PIL image, got ndarray"):
        carried_info(np.zeros((6, 8, 3), np.uint8), "RGB", (8, 6))
    with pytest.raises(TypeError, match=r"size must be the result's \(width, height\), got 8"):
        carried_info(im, "RGB", 8)
    assert carried_info(im, "RGB", (16, 12)) == {}  # nothing stated, nothing made up


def test_dots_per_metre_rounds_as_pillow_and_names_a_wrong_dpi():
    from psal.utils.convert import dots_per_metre

    assert dots_per_metre(300) == 11811 and dots_per_metre(72.0) == 2835
    with pytest.raises(TypeError, match="dpi must be a number, got '300'"):
        dots_per_metre("300")
    for bad in (0, -72.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="dpi must be a finite number > 0"):
            dots_per_metre(bad)

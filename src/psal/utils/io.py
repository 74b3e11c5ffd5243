"""Image files: reading (EXIF orientation applied) and atomic writing.

Files (:func:`load_image`, :func:`save_image`): PNG, JPEG and WebP (and whatever else
Pillow reads); EXIF orientation is applied on loading; every write goes through
:func:`psal.utils.atomic.atomic_path`, so a failure never leaves a half-written file.
Masks are read with :func:`load_mask` by the rule of :mod:`psal.utils.masks`.
"""

from __future__ import annotations

import contextlib
import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .._checks import user_stacklevel
from .atomic import atomic_path, check_writable
from .convert import dots_per_metre, dpi_pair, exif_resolution, result_mode, stated_dpi
from .masks import to_mask_array

__all__ = [
    "SAVE_FORMATS",
    "array_to_pil",
    "check_savable",
    "edited_exif",
    "file_format",
    "full_depth",
    "load_image",
    "load_mask",
    "output_mode",
    "pixel_limit",
    "png16_bytes",
    "save_format",
    "save_image",
]

#: File suffix -> Pillow format name, for the formats psal writes.
SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
#: Modes each written format can hold (others are refused with a clear error). Mode
#: ``I`` (16-bit data in 32-bit integers) is written to PNG as ``I;16``.
_FORMAT_MODES = {
    "PNG": {"1", "L", "LA", "RGB", "RGBA", "I;16", "I", "RGB;16", "RGBA;16"},
    "JPEG": {"L", "RGB"},
    "WEBP": {"RGB", "RGBA", "L", "LA"},
    "TIFF": {"1", "L", "LA", "RGB", "RGBA", "I;16", "I", "F"},
}
#: Largest side of an image each format can hold.
_FORMAT_MAX_SIDE = {"JPEG": 65535, "WEBP": 16383}

#: Environment variable that sets the pixel limit of :func:`load_image`.
MAX_PIXELS_ENV = "PSAL_MAX_PIXELS"
#: Default pixel limit of :func:`load_image`: 8192 x 8192 = 67,108,864 pixels (a 61 MP
#: camera photo fits), below Pillow's own decompression-bomb limit (178,956,970).
DEFAULT_MAX_PIXELS = 8192 * 8192


def pixel_limit(value: int | None = None) -> int:
    """The pixel limit in force: ``value`` if given, else ``$PSAL_MAX_PIXELS``, else 8192².

    Raises:
        ValueError: a limit that is not a positive integer (naming where it came from).
    """
    source = "max_pixels"
    if value is None:
        env = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not env:
            return DEFAULT_MAX_PIXELS
        source = MAX_PIXELS_ENV
        try:
            value = int(env.replace("_", ""))
        except ValueError:
            raise ValueError(f"{source} must be a positive integer, got {env!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{source} must be a positive integer, got {value!r}")
    return int(value)


def _check_pixels(size: tuple[int, int], limit: int, name: str, path: Path) -> None:
    w, h = size
    if w * h > limit:
        raise ValueError(
            f"{name}: {path} is {w}x{h} = {w * h:,} pixels, above the limit of {limit:,} "
            f"(raise it with --max-pixels or {MAX_PIXELS_ENV} if the memory is there)"
        )


def _png_rawmode(im: Image.Image) -> str | None:
    """The raw mode of a PNG's pixel data as Pillow decodes it (None if not a PNG)."""
    if im.format != "PNG" or not im.tile:
        return None
    tile = im.tile[0]
    rawmode = tile.args if hasattr(tile, "args") else tile[3]
    return rawmode if isinstance(rawmode, str) else None


#: 16-bit colour PNG raw modes that psal reads at full depth, and the raw mode that
#: makes Pillow's own decoder return the low bytes (it returns the high ones).
_DEEP_LOW = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}

#: Key of ``Image.info`` under which :func:`load_image` keeps the full-depth pixels of a
#: 16-bit colour PNG (a uint16 (H, W, 3 or 4) array); see :func:`full_depth`.
DEEP_KEY = "psal.full_depth"


#: Key of ``Image.info`` under which :func:`load_image` records the number of frames of
#: an animation or multi-page file (only the first is read), so that a command can
#: refuse to overwrite such a file in place.
FRAMES_KEY = "psal.frames"


def _colour_key(image: Image.Image) -> Image.Image | None:
    """An ``L`` / ``RGB`` file image with a colour-key transparency, as ``LA`` / ``RGBA``.

    A PNG ``tRNS`` chunk on a gray or colour image (what PNG optimisers make of an
    ``LA``/``RGBA`` photo whose transparent pixels share one colour) marks the pixels of
    one value transparent; Pillow keeps the mode and puts the key in ``info``. Read as
    the alpha band it stands for, so that it is neither lost in the result nor ignored
    in a mask. Only files: a PIL image converted in Python (``P`` to ``RGB``) keeps a
    stale key in ``info`` that its user did not mean.
    """
    key = image.info.get("transparency")
    if key is None:
        return None
    out = image.convert("LA" if image.mode == "L" else "RGBA")
    out.info.update({k: v for k, v in image.info.items() if k != "transparency"})
    return out


def _deep_tiff(im: Image.Image) -> bool:
    """Whether ``im`` is a TIFF of 16-bit colour samples (Pillow reads them at 8 bits)."""
    if im.format != "TIFF" or im.mode not in ("RGB", "RGBA"):
        return False
    bits = getattr(im, "tag_v2", {}).get(258)  # BitsPerSample
    bits = bits if isinstance(bits, tuple) else (bits,)
    return any(isinstance(b, int) and b > 8 for b in bits)


def _open(path: Path) -> Image.Image:
    """``Image.open`` without Pillow's bomb limit (psal's own limit is checked instead)."""
    pillow_limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = pillow_limit


def _low_bytes(path: Path, tile: Any) -> Image.Image:
    """The low bytes of a 16-bit colour PNG's samples, by Pillow's own PNG decoder.

    Pillow decodes ``RGB;16B`` data to 8-bit ``RGB`` by keeping each sample's high
    byte. Decoding the same data as ``RGB;16L`` (little-endian) keeps the other byte of
    each pair, which for big-endian PNG data is the low byte. The unfiltering and the
    interlacing are Pillow's, so every PNG Pillow reads is read alike.
    """
    args = _DEEP_LOW[tile.args if hasattr(tile, "args") else tile[3]]
    # closed here: load() leaves an animated PNG's file open, and a failed load any file
    with _open(path) as low:
        low.tile = [tile._replace(args=args) if hasattr(tile, "_replace") else (*tile[:3], args)]
        low.load()
        return low.copy()


def full_depth(image: Image.Image | np.ndarray) -> Image.Image | np.ndarray:
    """The pixels to edit: the uint16 array of a 16-bit colour PNG, else ``image``.

    :func:`load_image` returns such a PNG as an 8-bit PIL image (what Pillow can hold)
    with the full-depth uint16 (H, W, 3 or 4) array in ``image.info``; editing that
    array (the editing functions take uint16 arrays) and saving the result to ``.png``
    with :func:`save_image` keeps all 16 bits.
    """
    if isinstance(image, Image.Image) and isinstance(image.info.get(DEEP_KEY), np.ndarray):
        return image.info[DEEP_KEY]
    return image


def output_mode(image: Image.Image | np.ndarray) -> str:
    """The mode of the result of editing ``image``.

    :func:`result_mode`, or ``RGB;16`` / ``RGBA;16`` for a 16-bit colour image (see
    :func:`full_depth`).
    """
    deep = full_depth(image)
    if isinstance(deep, np.ndarray):
        return "RGBA;16" if deep.ndim == 3 and deep.shape[2] == 4 else "RGB;16"
    return result_mode(image)


def _orientation(im: Image.Image) -> int | None:
    """The EXIF orientation of an opened file (1..8), or None (none, or unreadable)."""
    try:
        value = im.getexif().get(0x0112)
        return int(value) if value is not None else None
    except Exception:  # a damaged block: loading it gives the message
        return None


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def load_image(
    path: str | os.PathLike[str], name: str = "image", *, max_pixels: int | None = None
) -> Image.Image:
    """Open an image file (PNG, JPEG, WebP, TIFF, ...), apply its EXIF orientation, load it.

    The size in the file's header is checked against a pixel limit **before** decoding
    (so a 467-byte PNG that claims 100000 x 100000 pixels costs nothing): ``max_pixels``
    if given, else the environment variable ``PSAL_MAX_PIXELS``, else
    :data:`DEFAULT_MAX_PIXELS` (8192 x 8192). psal's limit replaces Pillow's
    decompression-bomb limit, so it can be raised above it.

    16-bit colour PNGs (RGB, RGBA) come back as the 8-bit image Pillow can hold, with
    the full 16 bits in ``info``: use :func:`full_depth` to edit them (the ``psal``
    commands do) and :func:`save_image` to write them to PNG. 16-bit gray+alpha PNGs
    are read at 8 bits, with a ``UserWarning`` that says so; 16-bit gray PNGs keep their
    16 bits as ``I;16``.

    ``info["dpi"]`` is the DPI the file states (:func:`psal.utils.convert.stated_dpi`,
    none if it states none) and ``info["exif"]`` the EXIF block without the orientation
    tag; a 90-degree turn exchanges the x and y of both (DPI and EXIF resolution).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an image Pillow can read, or is above the limit.
    """
    limit = pixel_limit(max_pixels)
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{name}: no such file: {p}")
    if p.is_dir():
        raise ValueError(f"{name}: {p} is a directory, not an image file")
    try:
        im = _open(p)
    except UnidentifiedImageError:
        raise ValueError(
            f"{name}: cannot read {p} as an image (unknown or corrupt format)"
        ) from None
    except Exception as err:  # a corrupt header: Pillow raises many kinds
        raise ValueError(f"{name}: cannot read {p}: {_reason(err)}") from None
    with im:
        _check_pixels(im.size, limit, name, p)
        rawmode = _png_rawmode(im)
        if rawmode in ("LA;16B",):  # opened as 8-bit RGBA; the depth is not kept
            warnings.warn(
                f"{name}: {p} is a 16-bit gray+alpha PNG; it is read and edited at 8 bits "
                "per channel (known pixels keep their 8 most significant bits)",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        elif _deep_tiff(im):  # Pillow opens 16-bit colour TIFFs as 8-bit RGB(A)
            warnings.warn(
                f"{name}: {p} is a 16-bit colour TIFF; it is read and edited at 8 bits per "
                "channel (save it as a 16-bit PNG to edit it at full depth)",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        try:  # counting frames reads every frame's header: a damaged later one fails
            frames = int(getattr(im, "n_frames", 1) or 1)
        except Exception:  # Pillow raises many kinds
            frames = -1  # more than one (a later one is damaged): the first is read
        with contextlib.suppress(Exception):
            im.seek(0)
        if frames != 1 and im.format != "MPO":  # MPO: a camera JPEG and its previews
            count = f"{frames} frames" if frames > 1 else "several frames, not all readable,"
            warnings.warn(
                f"{name}: {p} holds {count} (an animation or a multi-page file); "
                "only the first is read, and the result holds that frame only",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        try:
            tile = im.tile[0] if im.tile else None
            # (Pillow turns a TIFF as it loads it, removing the tag; a PNG's getexif()
            # loads it, so it is read after: the tile is needed above)
            tiff = im.format == "TIFF"
            orientation = _orientation(im) if tiff else None
            im.load()
            if not tiff:
                orientation = _orientation(im)
            turned = orientation in (5, 6, 7, 8)  # 90 degrees: x and y exchange
            dpi = stated_dpi(im)
            out = ImageOps.exif_transpose(im)
            if out is im:
                out = im.copy()
            if rawmode in _DEEP_LOW:
                low = _low_bytes(p, tile)
                low = ImageOps.exif_transpose(low) or low  # the same turn as the high bytes
                deep = (np.asarray(out).astype(np.uint16) << 8) | np.asarray(low)
                out.info[DEEP_KEY] = deep
        except Exception as err:  # corrupt data or EXIF: Pillow raises many kinds
            raise ValueError(f"{name}: cannot read {p}: {_reason(err)}") from None
        out.info.update({k: v for k, v in im.info.items() if k == "icc_profile"})
        # the DPI the file states (not one Pillow made up), and the EXIF resolution, of
        # the pixels as they come back: a 90-degree turn exchanges x and y
        out.info.pop("dpi", None)
        if dpi is not None:
            out.info["dpi"] = dpi[::-1] if turned else dpi
        if turned and out.info.get("exif"):
            try:
                # (getexif: what exif_transpose left, which getexif() gives back after)
                out.info["exif"] = exif_resolution(out.getexif(), swap=True)
            except Exception:  # a block Pillow cannot write back: kept as it was
                pass
        if out.mode in ("L", "RGB") and rawmode not in _DEEP_LOW:
            keyed = _colour_key(out)
            if keyed is not None:
                out = keyed
        if frames != 1 and im.format != "MPO":
            out.info[FRAMES_KEY] = frames if frames > 1 else "several"
    if rawmode == "LA;16B" and out.mode == "RGBA":  # gray stays gray (R = G = B here)
        la = out.convert("LA")
        la.info.update(out.info)
        out = la
    return out


def load_mask(
    path: str | os.PathLike[str],
    size: tuple[int, int] | None = None,
    threshold: float = 0.5,
    *,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Read a mask file into a bool (H, W) array (True = hole), by the mask rule.

    The rule (transparency, colour, threshold, labels) is in :mod:`psal.utils.masks`.

    Args:
        path: image file: grayscale or colour (white = hole), a 0/1 label image, or with
            transparency (the smaller of the transparent and the painted parts).
        size: expected ``(width, height)`` (PIL order); a mismatch raises ValueError.
        threshold: fraction of the full range above which a pixel is a hole.
        max_pixels: pixel limit (see :func:`load_image`).

    Unlike :func:`psal.utils.masks.to_mask` it does not warn about a mask that covers
    most of the image: the editing functions do, about the mask they are given.
    """
    image = load_image(path, name="mask", max_pixels=max_pixels)
    if size is not None and image.size != tuple(size):
        raise ValueError(
            f"mask {path} is {image.size[0]}x{image.size[1]} but the image is "
            f"{size[0]}x{size[1]}; they must have the same size"
        )
    with warnings.catch_warnings():  # the editing functions warn about the mask they use
        warnings.simplefilter("ignore", UserWarning)
        m = to_mask_array(image, image.size[1], image.size[0], threshold=threshold)
    return m[0, 0]


def array_to_pil(arr: np.ndarray) -> Image.Image:
    """A numpy image as a PIL image.

    uint8 (H, W[, 2|3|4]) gives L, LA, RGB or RGBA; uint16 (H, W) gives I;16; bool
    (H, W) gives 1.
    """
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    ok = (
        arr.dtype == np.uint8 and (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (2, 3, 4)))
    ) or (arr.dtype in (np.uint16, np.bool_) and arr.ndim == 2)
    if not ok:
        raise ValueError(
            f"cannot save a numpy array of shape {arr.shape} and dtype {arr.dtype} as an "
            "image; use uint8 (H, W[, C]) or uint16 (H, W)"
        )
    return Image.fromarray(np.ascontiguousarray(arr))


def save_format(path: str | os.PathLike[str]) -> str:
    """Pillow format name for an output path, from its suffix (PNG, JPEG, WEBP, TIFF)."""
    suffix = Path(path).suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise ValueError(
            f"output {path}: unsupported file type {suffix or '(none)'!r}; use one of "
            f"{', '.join(sorted(SAVE_FORMATS))}"
        )
    return SAVE_FORMATS[suffix]


def check_savable(
    mode: str, path: str | os.PathLike[str], size: tuple[int, int] | None = None
) -> str:
    """Check, before any work, that an image can be written to ``path``; return the format.

    Args:
        mode: PIL mode of the image to write.
        path: the output file; its suffix picks the format.
        size: ``(width, height)`` of the image to write, if known (WebP holds at most
            16383 pixels a side, JPEG 65535).

    Raises:
        ValueError: unknown suffix, a mode the format cannot hold (alpha or 16 bits in
            JPEG, 16 bits in WebP, float outside TIFF), a size it cannot hold, or a
            path where no file can be created (a folder, a name too long, a read-only
            or missing folder).
    """
    fmt = save_format(path)
    if mode not in _FORMAT_MODES[fmt]:
        deep = mode in ("I;16", "I", "F", "RGB;16", "RGBA;16")
        lost = "bit depth" if deep else "alpha" if "A" in mode else "mode"
        if mode == "F":
            hint = ".tif"
        elif mode in _FORMAT_MODES["WEBP"]:
            hint = ".png or .webp"
        else:
            hint = ".png"
        raise ValueError(
            f"output {path}: {fmt} cannot store a {mode} image without losing its {lost}; "
            f"use {hint}"
        )
    side = _FORMAT_MAX_SIDE.get(fmt)
    if size is not None and side is not None and max(size) > side:
        raise ValueError(
            f"output {path}: {fmt} holds at most {side} pixels a side, the image is "
            f"{size[0]}x{size[1]}; use .png"
        )
    check_writable(path, "output")
    return fmt


def file_format(path: str | os.PathLike[str]) -> str | None:
    """Pillow's name for the format of an existing image file (None if unreadable)."""
    try:
        with Image.open(path) as im:
            return im.format
    except (OSError, UnidentifiedImageError):
        return None


#: Tags of the main IFD that describe a file's pixel layout (size, samples, strips,
#: tiles, compression...), which some cameras copy into EXIF. They are the input
#: file's, not the output's, and Pillow's TIFF writer lets EXIF tags replace its own:
#: kept, they wrote a TIFF of the input's geometry (scrambled pixels, or an error).
_LAYOUT_TAGS = (256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 322, 323, 324, 325,
                338, 339, 530, 531, 532)  # fmt: skip


def edited_exif(exif: bytes | None, size: tuple[int, int] | None = None) -> bytes | None:
    """The EXIF block to keep in an edited image: the input's, without its previews.

    Cameras and phones embed a small copy of the photo in the EXIF block (the
    thumbnail of IFD1, and often a preview inside the maker's note); kept as they are,
    they would still show what an inpainting removed. Pillow re-writes the block
    without IFD1 (the main IFD, the Exif and GPS IFDs stay: camera, date, place) and the
    maker's note (tag 0x927C) is dropped, and so are the main IFD's layout tags
    (``_LAYOUT_TAGS``: image width and length, samples, strips...), which describe the
    input file. A block Pillow cannot parse is dropped whole.
    ``size``: the edited image's ``(width, height)``; the pixel dimensions the block
    records (tags 0xA002, 0xA003), if any, are set to it (an upscale changes them).
    """
    if not exif:
        return None
    try:
        block = Image.Exif()
        block.load(exif)
        sub = block.get_ifd(0x8769)  # the Exif IFD
        sub.pop(0x927C, None)  # the maker's note
        for tag in _LAYOUT_TAGS:  # the input file's layout (a TIFF writer would use it)
            block.pop(tag, None)
        if size is not None:
            for tag, value in ((0xA002, size[0]), (0xA003, size[1])):
                if tag in sub:
                    sub[tag] = int(value)
        out = block.tobytes()
    except Exception:  # any damaged block: nothing is better than a wrong one
        return None
    return out if len(out) > 8 else None


def png16_bytes(
    arr: np.ndarray,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    dpi: tuple[float, float] | None = None,
) -> bytes:
    """A 16-bit RGB or RGBA PNG of a uint16 (H, W, 3 or 4) array (filter "up", zlib).

    ``exif``: an EXIF block (with or without the 6-byte ``Exif`` header of JPEG
    files), written as the PNG's ``eXIf`` chunk. ``dpi``: (x, y), written as the
    ``pHYs`` chunk (pixels per metre, rounded as Pillow rounds them).
    """
    h, w, c = arr.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    rows = np.ascontiguousarray(arr.astype(">u2")).view(np.uint8).reshape(h, w * c * 2)
    up = rows.copy()
    up[1:] -= rows[:-1]  # PNG filter 2 ("up"), modulo 256
    raw = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 6, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    if icc_profile:
        out += chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc_profile))
    if exif:
        out += chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    ppm = _png_ppm(dpi)
    if ppm is not None:
        out += chunk(b"pHYs", struct.pack(">IIB", *ppm, 1))
    return out + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b"")


def _png_ppm(dpi: Any) -> tuple[int, int] | None:
    """A PNG's pixels per metre for ``dpi`` (as Pillow rounds), or None if it holds none."""
    dpi = dpi_pair(dpi)
    if dpi is None:
        return None
    ppm = tuple(dots_per_metre(v) for v in dpi)
    return ppm if all(0 < v < 2**31 for v in ppm) else None


#: zlib compression level of the PNG files psal writes.
PNG_LEVEL = 4


def save_image(
    image: Image.Image | np.ndarray,
    path: str | os.PathLike[str],
    *,
    quality: int = 95,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    dpi: tuple[float, float] | None = None,
) -> None:
    """Write an image atomically; the format comes from the suffix (.png, .jpg, .webp, .tif).

    JPEG is written at ``quality``; WebP losslessly. Modes a format cannot hold (alpha
    or 16 bits in JPEG) are refused with a clear error rather than silently converted.

    ``icc_profile``, ``exif`` and ``dpi`` (x, y) are written where the format holds them
    (the keys of :func:`psal.utils.convert.carried_info`, which gives them for an edited
    image): the EXIF block through :func:`edited_exif`; the DPI as a JPEG's JFIF density
    (whole numbers, 1..65535), a PNG's ``pHYs`` chunk or a TIFF's resolution tags (Pillow
    writes none in a WebP file: its EXIF resolution tags, if any, are what remains).

    Raises:
        ValueError: unsupported suffix or a mode the format cannot hold.
        OSError: the file cannot be written (nothing is left behind).
    """
    shape = image.shape if isinstance(image, np.ndarray) else image.size[::-1]
    exif = edited_exif(exif, (shape[1], shape[0]) if len(shape) >= 2 else None)
    if isinstance(image, np.ndarray) and image.dtype == np.uint16 and image.ndim == 3:
        if image.shape[2] in (3, 4):  # 16-bit colour: Pillow cannot write it
            mode = "RGB;16" if image.shape[2] == 3 else "RGBA;16"
            check_savable(mode, path, (image.shape[1], image.shape[0]))
            with atomic_path(path) as tmp:
                tmp.write_bytes(png16_bytes(image, icc_profile, exif, dpi))
            return
    if isinstance(image, np.ndarray):
        image = array_to_pil(image)
    fmt = check_savable(image.mode, path, image.size)
    if image.mode == "I" and fmt == "PNG":  # 16-bit data; Pillow 13 drops I in PNG
        arr = np.asarray(image)
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
            raise ValueError(
                f"output {path}: a PNG holds 16 bits, the image has values in "
                f"[{int(arr.min())}, {int(arr.max())}]; use .tif"
            )
        image = Image.fromarray(arr.astype(np.uint16))
    kwargs: dict[str, Any] = {}
    if fmt == "PNG":
        # zlib level 4: on photos the size of Pillow's default 6 (492 KiB for a 512x680
        # fill) in 0.6 of its time (78 against 123 ms)
        kwargs = {"compress_level": PNG_LEVEL}
    elif fmt == "JPEG":
        kwargs = {"quality": int(quality), "subsampling": 0 if quality >= 90 else 2}
    elif fmt == "WEBP":
        # exact: keep the colour of fully transparent pixels (libwebp drops it otherwise)
        kwargs = {"lossless": True, "quality": 100, "exact": True}
    if icc_profile and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kwargs["icc_profile"] = icc_profile
    if exif and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        # the input's EXIF (orientation already applied and reset; previews dropped)
        kwargs["exif"] = exif
    dpi = dpi_pair(dpi)
    if dpi is not None:
        if fmt == "JPEG":  # whole numbers in 16 bits (Pillow rounds; 0 would mean none)
            holds = all(0.5 <= v < 65535.5 for v in dpi)
        else:  # WebP: Pillow writes no DPI
            holds = _png_ppm(dpi) is not None if fmt == "PNG" else fmt == "TIFF"
        if holds:
            kwargs["dpi"] = dpi
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **kwargs)

"""Image files: reading (EXIF orientation applied) and atomic writing.

Files (:func:`load_image`, :func:`save_image`): PNG, JPEG and WebP (and whatever else
Pillow reads); EXIF orientation is applied on loading; every write goes through
:func:`psal.utils.atomic.atomic_path`, so a failure never leaves a half-written file.
Masks are read with :func:`load_mask` by the rule of :mod:`psal.utils.masks`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .atomic import atomic_path
from .masks import to_mask

__all__ = [
    "SAVE_FORMATS",
    "array_to_pil",
    "check_savable",
    "file_format",
    "load_image",
    "load_mask",
    "save_format",
    "save_image",
]

#: File suffix -> Pillow format name, for the formats psal writes.
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
#: Modes each written format can hold (others are refused with a clear error).
_FORMAT_MODES = {
    "PNG": {"1", "L", "LA", "RGB", "RGBA", "I;16", "I"},
    "JPEG": {"L", "RGB"},
    "WEBP": {"RGB", "RGBA", "L", "LA"},
}


def load_image(path: str | os.PathLike[str], name: str = "image") -> Image.Image:
    """Open an image file (PNG, JPEG, WebP, ...), apply its EXIF orientation, load it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an image Pillow can read.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{name}: no such file: {p}")
    if p.is_dir():
        raise ValueError(f"{name}: {p} is a directory, not an image file")
    try:
        with Image.open(p) as im:
            im.load()
            out = ImageOps.exif_transpose(im)
            if out is im:
                out = im.copy()
            out.info.update({k: v for k, v in im.info.items() if k == "icc_profile"})
    except UnidentifiedImageError:
        raise ValueError(
            f"{name}: cannot read {p} as an image (unknown or corrupt format)"
        ) from None
    except OSError as err:
        raise ValueError(f"{name}: cannot read {p}: {err}") from None
    return out


def load_mask(
    path: str | os.PathLike[str], size: tuple[int, int] | None = None, threshold: float = 0.5
) -> np.ndarray:
    """Read a mask file into a bool (H, W) array (True = hole), by the threshold rule.

    Args:
        path: image file: grayscale (white = hole), or with transparency
            (transparent = hole).
        size: expected ``(width, height)`` (PIL order); a mismatch raises ValueError.
        threshold: fraction of the full range above which a pixel is a hole.
    """
    image = load_image(path, name="mask")
    if size is not None and image.size != tuple(size):
        raise ValueError(
            f"mask {path} is {image.size[0]}x{image.size[1]} but the image is "
            f"{size[0]}x{size[1]}; they must have the same size"
        )
    return to_mask(image, image.size[1], image.size[0], threshold=threshold)[0, 0].numpy()


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
    """Pillow format name for an output path, from its suffix (PNG, JPEG or WEBP)."""
    suffix = Path(path).suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise ValueError(
            f"output {path}: unsupported file type {suffix or '(none)'!r}; use one of "
            f"{', '.join(sorted(SAVE_FORMATS))}"
        )
    return SAVE_FORMATS[suffix]


def check_savable(mode: str, path: str | os.PathLike[str]) -> str:
    """Check that an image of PIL ``mode`` can be written to ``path``; return the format.

    Raises:
        ValueError: unknown suffix, or a mode the format cannot hold (alpha or 16 bits
            in JPEG, 16 bits in WebP).
    """
    fmt = save_format(path)
    dest = Path(path)
    if dest.is_dir():
        raise ValueError(f"output {path}: is a directory; give a file name")
    parent = dest.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"output {path}: {parent} is a file, not a directory")
    if mode not in _FORMAT_MODES[fmt]:
        lost = "alpha" if "A" in mode else "bit depth" if mode in ("I;16", "I", "F") else "mode"
        hint = ".png or .webp" if mode in _FORMAT_MODES["WEBP"] else ".png"
        raise ValueError(
            f"output {path}: {fmt} cannot store a {mode} image without losing its {lost}; "
            f"use {hint}"
        )
    return fmt


def file_format(path: str | os.PathLike[str]) -> str | None:
    """Pillow's name for the format of an existing image file (None if unreadable)."""
    try:
        with Image.open(path) as im:
            return im.format
    except (OSError, UnidentifiedImageError):
        return None


def save_image(
    image: Image.Image | np.ndarray,
    path: str | os.PathLike[str],
    *,
    quality: int = 95,
    icc_profile: bytes | None = None,
) -> None:
    """Write an image atomically; the format comes from the suffix (.png, .jpg, .webp).

    JPEG is written at ``quality``; WebP losslessly. Modes a format cannot hold (alpha
    or 16 bits in JPEG) are refused with a clear error rather than silently converted.

    Raises:
        ValueError: unsupported suffix or a mode the format cannot hold.
        OSError: the file cannot be written (nothing is left behind).
    """
    if isinstance(image, np.ndarray):
        image = array_to_pil(image)
    fmt = check_savable(image.mode, path)
    kwargs: dict[str, Any] = {}
    if fmt == "JPEG":
        kwargs = {"quality": int(quality), "subsampling": 0 if quality >= 90 else 2}
    elif fmt == "WEBP":
        kwargs = {"lossless": True, "quality": 100}
    if icc_profile and fmt in ("PNG", "JPEG", "WEBP"):
        kwargs["icc_profile"] = icc_profile
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **kwargs)

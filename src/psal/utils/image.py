"""Compatibility module: images in and out, re-exported from where they now live.

psal's image helpers are split by idea: :mod:`psal.utils.convert` (numpy / PIL / torch
conversions that round-trip), :mod:`psal.utils.masks` (the mask rule) and
:mod:`psal.utils.io` (files). ``psal.utils.image`` keeps every name it had, so
existing imports keep working.
"""

from __future__ import annotations

from .convert import ImageLike, ImageSpec, from_tensor, result_mode, to_tensor
from .io import (
    SAVE_FORMATS,
    array_to_pil,
    check_savable,
    file_format,
    load_image,
    load_mask,
    pixel_limit,
    save_format,
    save_image,
)
from .masks import to_mask

__all__ = [
    "SAVE_FORMATS",
    "ImageLike",
    "ImageSpec",
    "array_to_pil",
    "check_savable",
    "file_format",
    "from_tensor",
    "load_image",
    "load_mask",
    "pixel_limit",
    "result_mode",
    "save_format",
    "save_image",
    "to_mask",
    "to_tensor",
]

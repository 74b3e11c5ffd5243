"""Super-resolution training pairs from any folder of high-resolution images.

Each item is a random crop of a high-resolution (HR) image, flipped and rotated by a
multiple of 90 degrees at random, and its low-resolution (LR) version made by
antialiased bicubic downscaling (:func:`degrade`), the usual benchmark degradation.

How close :func:`degrade` is to MATLAB's ``imresize(hr, 1/s, 'bicubic')`` (the
convention of the SR literature): the same kernel (Keys' cubic with ``a = -0.5``,
stretched by ``s`` when shrinking, i.e. antialiased) and the same pixel-centre
alignment; the differences are at the borders (MATLAB pads by symmetric reflection,
PyTorch renormalises the kernel weights that fall inside the image: the outermost
``2 s`` pixels differ) and in rounding (MATLAB rounds its uint8 output; here the LR
stays float unless the caller quantises it). ``docs/upscale.md`` gives the measured
difference against Pillow's resize, which implements the same filter.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import check_int
from .folder import _load_rgb, _report_readable, _sort_readable, skip_unreadable

__all__ = ["SuperResolutionFolder", "degrade", "usable_images"]


def degrade(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic downscaling of a (B, C, H, W) float image by ``scale``.

    H and W must be multiples of ``scale`` (an integer >= 1); the result is (B, C,
    H/scale, W/scale), not clipped nor quantised. (Through
    :func:`psal.utils.resample.interpolate`: PyTorch's own antialiased resize is wrong
    for a one-pixel-wide result, e.g. a 6x2 image at x2.)
    """
    from ..utils.resample import interpolate

    scale = check_int(scale, "scale", 1)
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"hr sides must be multiples of scale {scale}, got {h}x{w}")
    return interpolate(hr, (h // scale, w // scale), mode="bicubic", antialias=True)


def usable_images(
    files: Sequence[str | os.PathLike[str]], min_side: int, name: str = "data.path"
) -> tuple[list[Path], int]:
    """The files whose both sides are at least ``min_side``, each header read once.

    Unreadable files are skipped and named in one ``UserWarning``, as
    :func:`psal.data.readable_images` does, in the same pass over the headers.

    Returns:
        ``(kept, skipped)``, ``skipped`` the number of readable images too small.

    Raises:
        ValueError: no file is readable, or none of them is large enough (the message
            names ``name`` and the sizes).
    """
    min_side = check_int(min_side, "min_side", 1)
    kept, bad, small = _sort_readable(files, decode=False, min_side=min_side)
    readable = _report_readable(kept + small, bad, name)  # unreadable: named, or the error
    if not kept:
        raise ValueError(
            f"{name}: all {len(readable)} images are smaller than the {min_side}x{min_side} "
            "HR crop (patch size x scale); use smaller crops or larger images"
        )
    return kept, len(small)


class SuperResolutionFolder(Dataset):
    """LR/HR crop pairs from image files.

    Args:
        files: image paths, each at least ``patch * scale`` on both sides (see
            :func:`usable_images`).
        scale: 2, 3 or 4.
        patch: side of the LR crops (the HR crops are ``patch * scale``).
        fixed: validation mode: centred crops, no flips or rotations, indexed by plain
            integers.

    Items (key ``(index, seed)``, or ``index`` in fixed mode): ``"lr"`` (3, p, p) and
    ``"hr"`` (3, p*s, p*s) float32 in [0, 1], ``"index"`` int64.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        scale: int,
        patch: int = 48,
        fixed: bool = False,
    ) -> None:
        self.files = [Path(f) for f in files]
        if not self.files:
            raise ValueError("files must hold at least one image path")
        self.scale = check_int(scale, "scale", 1)
        self.patch = check_int(patch, "patch", 1)
        self.fixed = bool(fixed)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        return skip_unreadable(self._item, key, len(self.files))

    def _item(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        if isinstance(key, tuple | list):
            index, seed = int(key[0]), int(key[1])
            rng = None if self.fixed else np.random.default_rng([seed])
        else:
            index, rng = int(key), None
            if not self.fixed:
                raise TypeError("a training SuperResolutionFolder is indexed by (index, seed)")
        if not 0 <= index < len(self.files):
            raise IndexError(f"index {index} out of range for {len(self.files)} images")
        im = _load_rgb(self.files[index])
        s = self.patch * self.scale
        w, h = im.size
        if min(w, h) < s:
            raise ValueError(f"{str(self.files[index])!r} is {w}x{h}, smaller than the {s} crop")
        if rng is None:
            top, left = (h - s) // 2, (w - s) // 2
        else:
            top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        hr = np.asarray(im.crop((left, top, left + s, top + s)), dtype=np.float32) / 255.0
        if rng is not None:
            if rng.integers(2):
                hr = hr[:, ::-1]
            hr = np.rot90(hr, int(rng.integers(4)))
        hr_t = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1).contiguous()
        lr = degrade(hr_t[None], self.scale)[0].clamp(0, 1)
        return {"lr": lr, "hr": hr_t, "index": torch.tensor(index, dtype=torch.int64)}

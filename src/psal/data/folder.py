"""A folder of images as an inpainting dataset: image, hole mask and local box per sample.

Any folder works: images are found recursively (PNG, JPEG, WebP; case-insensitive
extensions), sorted by path so the order does not depend on the file system. Each
image is brought to ``image_size`` either by a random crop (``resize="crop"``; images
whose short side is smaller are first upscaled to it) or by resizing the whole image
(``resize="resize"``).

Randomness is a function of the sample key, never of a global generator: the dataset
is indexed by ``(index, seed)`` pairs (see :class:`psal.data.StreamSampler`), and the
crop and the mask of that sample are drawn from ``numpy.random.default_rng(seed)``. A
training run therefore sees the same data stream whatever the number of loader workers,
and a resumed run continues it exactly. In ``fixed`` mode (validation and evaluation)
an integer index is enough: the crop is centred and the mask seed is derived from
``(mask_seed, index)``, so every evaluation uses the same masks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .._checks import check_choice, check_int
from .masks import MaskGenerator

__all__ = ["IMAGE_EXTENSIONS", "InpaintingFolder", "list_images", "split_files"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
RESIZE_MODES = ("crop", "resize")


def list_images(root: str | os.PathLike[str]) -> list[Path]:
    """All images under ``root`` (recursively), sorted by path.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no image in it.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist or is not a folder")
    files = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    if not files:
        raise ValueError(
            f"no image found under {str(root)!r} (searched recursively for "
            f"{', '.join(IMAGE_EXTENSIONS)})"
        )
    return files


def split_files(
    files: Sequence[Path], val_fraction: float = 0.05, val_max: int = 100, seed: int = 0
) -> tuple[list[Path], list[Path]]:
    """Split files into (train, validation) with a seeded shuffle.

    The validation part holds ``round(len(files) * val_fraction)`` files, at least 1
    when ``val_fraction > 0`` and there are two files or more, at most ``val_max``;
    the training part is never empty.
    """
    n = len(files)
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = 0
    if val_fraction > 0 and n >= 2:
        n_val = min(max(1, round(n * val_fraction)), check_int(val_max, "val_max", 0), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val = sorted(files[i] for i in order[:n_val])
    train = sorted(files[i] for i in order[n_val:])
    return train, val


def _to_rgb(im: Image.Image) -> Image.Image:
    """``im`` as 8-bit RGB, rescaling high-bit-depth grey images instead of clipping them.

    PIL's ``convert("RGB")`` clips the 16-bit modes (``I;16*``, and ``I``, which 16-bit
    PNGs open as) to 0..255 instead of scaling them: those are scaled from 0..65535, and
    float images (``F``) from [0, 1].
    """
    if im.mode.startswith("I") or im.mode == "F":
        values = np.asarray(im).astype(np.float64)
        scale = 255.0 if im.mode == "F" else 255.0 / 65535.0
        grey = np.clip(np.rint(np.nan_to_num(values * scale)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return im.convert("RGB")


def _load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return _to_rgb(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        # Truncated or corrupt files raise OSError, SyntaxError or ValueError in PIL.
        raise OSError(f"cannot read image {str(path)!r}: {err}") from err


class InpaintingFolder(Dataset):
    """Images of a folder with a hole mask each.

    Args:
        files: image paths (see :func:`list_images` and :func:`split_files`).
        image_size: side of the square samples.
        masks: the :class:`~psal.data.MaskGenerator` that draws the holes.
        resize: ``"crop"`` (random crop, centred in fixed mode) or ``"resize"``.
        fixed: validation mode: centred crops and masks fixed by ``mask_seed``.
        mask_seed: seed of the fixed masks.

    Items (for key ``(index, seed)``, or ``index`` in fixed mode) are dicts:

    - ``"image"``: (3, S, S) float32 in [0, 1];
    - ``"mask"``: (1, S, S) bool, True = hole;
    - ``"box"``: (4,) int64 ``(top, left, height, width)`` of the local-critic box;
    - ``"index"``: the file index (int64).
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        image_size: int = 256,
        masks: MaskGenerator | None = None,
        resize: str = "crop",
        fixed: bool = False,
        mask_seed: int = 0,
    ) -> None:
        self.files = [Path(f) for f in files]
        if not self.files:
            raise ValueError("files must hold at least one image path")
        self.image_size = check_int(image_size, "image_size", 1)
        self.masks = masks if masks is not None else MaskGenerator("rect", image_size)
        if self.masks.image_size != (self.image_size, self.image_size):
            raise ValueError(
                f"masks draw {self.masks.image_size} masks but image_size is {self.image_size}"
            )
        self.resize = check_choice(resize, "resize", RESIZE_MODES)
        self.fixed = bool(fixed)
        self.mask_seed = check_int(mask_seed, "mask_seed", 0)

    def __len__(self) -> int:
        return len(self.files)

    def _prepare(self, im: Image.Image, rng: np.random.Generator | None) -> np.ndarray:
        s = self.image_size
        if self.resize == "resize":
            im = im.resize((s, s), Image.Resampling.BICUBIC, reducing_gap=None)
        else:
            w, h = im.size
            if min(w, h) < s:
                f = s / min(w, h)
                w, h = max(s, round(w * f)), max(s, round(h * f))
                im = im.resize((w, h), Image.Resampling.BICUBIC)
            if rng is None:
                top, left = (h - s) // 2, (w - s) // 2
            else:
                top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            im = im.crop((left, top, left + s, top + s))
        return np.asarray(im, dtype=np.float32) / 255.0

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        if isinstance(key, tuple | list):
            index, seed = int(key[0]), int(key[1])
            rng = np.random.default_rng([seed])
            crop_rng = None if self.fixed else rng
        else:
            index = int(key)
            if not self.fixed:
                raise TypeError(
                    "a training InpaintingFolder is indexed by (index, seed) pairs (use "
                    "psal.data.StreamSampler); plain indices are for fixed=True"
                )
            rng = np.random.default_rng([self.mask_seed, index])
            crop_rng = None
        if not 0 <= index < len(self.files):
            raise IndexError(f"index {index} out of range for {len(self.files)} images")
        pixels = self._prepare(_load_rgb(self.files[index]), crop_rng)
        mask, box = self.masks(rng)
        return {
            "image": torch.from_numpy(pixels).permute(2, 0, 1).contiguous(),
            "mask": torch.from_numpy(mask)[None],
            "box": torch.tensor(box.as_tuple(), dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
        }

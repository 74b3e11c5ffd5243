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

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .._checks import check_choice, check_int
from .masks import MaskGenerator

__all__ = [
    "IMAGE_EXTENSIONS",
    "InpaintingFolder",
    "UnreadableImageError",
    "list_images",
    "readable_images",
    "skip_unreadable",
    "split_files",
    "split_key",
    "validation_keys",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
RESIZE_MODES = ("crop", "resize")
T = TypeVar("T")
#: Salt of the validation split's hash (see :func:`split_files`): another salt, another split.
SPLIT_SALT = "psal-validation-1"


def list_images(root: str | os.PathLike[str]) -> list[Path]:
    """All images under ``root`` (recursively), sorted by path.

    Hidden files and folders (a name starting with ``.``: macOS's ``._NAME`` resource
    forks, ``.ipynb_checkpoints`` copies, a killed run's temporary files) are left out.
    Linked folders are followed (each real folder once, so a link to a folder above
    it does not loop), and a file reached by several paths (a link to another file of
    the folder, two links to one folder) is listed once, under the first of its paths
    in sorted order: the same image never lands in both the training and the
    validation part. Folders that cannot be read are named in one ``UserWarning``.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no image in it.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist or is not a folder")
    unreadable: list[str] = []
    visited: set[str] = set()
    found: list[tuple[Path, str]] = []  # (path, real path)

    # top-down with sorted sub-folders: the walk meets paths in sorted order, so the
    # first path of a real folder is its smallest one
    def note(err: OSError) -> None:  # a folder os.walk cannot read
        unreadable.append(str(err.filename))

    for top, dirs, names in os.walk(root, followlinks=True, onerror=note):
        real = os.path.realpath(top)
        if real in visited:
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in names:
            if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS:
                p = os.path.join(top, n)  # resolved only if a link: one lstat, not one a part
                found.append(
                    (Path(p), os.path.realpath(p) if os.path.islink(p) else os.path.join(real, n))
                )
    if unreadable:
        shown = ", ".join(map(repr, unreadable[:3])) + (", ..." if len(unreadable) > 3 else "")
        warnings.warn(
            f"{len(unreadable)} folder(s) could not be read under {str(root)!r}, their images "
            f"left out: {shown}",
            UserWarning,
            stacklevel=2,
        )
    files: list[Path] = []
    seen: set[str] = set()
    for f, real in sorted(found):
        if real not in seen and f.is_file():  # not a broken link, nor a folder named x.png
            seen.add(real)
            files.append(f)
    if not files:
        raise ValueError(
            f"no image found under {str(root)!r} (searched recursively for "
            f"{', '.join(IMAGE_EXTENSIONS)})"
        )
    return files


def readable_images(
    files: Sequence[str | os.PathLike[str]],
    name: str = "data.path",
    *,
    decode: bool = False,
    limit: int | None = None,
    min_side: int = 1,
) -> list[Path]:
    """The files whose header Pillow reads (nothing is decoded); the others are skipped.

    An empty, corrupt or foreign file with an image extension would otherwise stop a
    training run when a loader first draws it. Skipped files are named (the first
    three) in one ``UserWarning``. A file whose header is sound but whose data is
    truncated still fails when it is decoded, with an error naming it, unless
    ``decode`` is set.

    Args:
        files: the candidate files, in order.
        name: the setting that gave them, for the messages.
        decode: decode each file whole as well, so that a truncated or damaged file is
            skipped here too (what an evaluation wants: it scores a fixed set, and
            would otherwise stop at such a file after part of the work).
        limit: stop once this many readable files are found (the first ones in order).
        min_side: leave out the files with a side below this many pixels too (from the
            header, before decoding), counted in a warning of their own.

    Raises:
        ValueError: no file is readable, or none of them has ``min_side`` pixels a side
            (the message names ``name`` and one reason).
    """
    min_side = check_int(min_side, "min_side", 1)
    kept, bad, small = _sort_readable(files, decode, limit, min_side)
    if small:
        if not kept:
            raise ValueError(
                f"{name}: all {len(small)} readable images are smaller than {min_side} "
                f"pixels a side (e.g. {str(small[0])!r})"
            )
        warnings.warn(
            f"{name}: {len(small)} image(s) smaller than {min_side} pixels a side skipped",
            UserWarning,
            stacklevel=2,
        )
    return _report_readable(kept, bad, name)


def _sort_readable(
    files: Sequence[str | os.PathLike[str]],
    decode: bool,
    limit: int | None = None,
    min_side: int = 1,
) -> tuple[list[Path], list[tuple[Path, Exception]], list[Path]]:
    """(readable, [(unreadable, why)], too small) of ``files``; see :func:`readable_images`."""
    kept: list[Path] = []
    bad: list[tuple[Path, Exception]] = []
    small: list[Path] = []
    for f in files:
        if limit is not None and len(kept) >= limit:
            break
        f = Path(f)
        try:
            with Image.open(f) as im:
                w, h = im.size
                if w < 1 or h < 1:
                    raise ValueError(f"{w}x{h} pixels")
                if min(w, h) < min_side:
                    small.append(f)
                    continue
                if decode:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                        im.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            bad.append((f, err))
            continue
        kept.append(f)
    return kept, bad, small


def _report_readable(
    kept: list[Path], bad: list[tuple[Path, Exception]], name: str, stacklevel: int = 3
) -> list[Path]:
    """``kept``, after one warning naming the ``bad`` files, or the error if none is kept."""
    if not bad and not kept:
        raise ValueError(f"{name}: no image files given")
    if not kept:
        f, err = bad[0]
        raise ValueError(
            f"{name}: none of the {len(bad)} image files can be read (e.g. {str(f)!r}: {err})"
        )
    if bad:
        shown = ", ".join(repr(str(f)) for f, _ in bad[:3]) + (", ..." if len(bad) > 3 else "")
        warnings.warn(
            f"{name}: {len(bad)} unreadable image file(s) skipped: {shown}",
            UserWarning,
            stacklevel=stacklevel,
        )
    return kept


def split_key(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> str:
    """The name a file is split by: its path relative to ``root``, in POSIX form.

    Without ``root``, the path as given. A path outside ``root`` is an error naming it.
    """
    path = Path(path)
    if root is not None:
        try:
            path = path.relative_to(root)
        except ValueError:
            raise ValueError(f"root: {str(path)!r} is not under {str(root)!r}") from None
    return path.as_posix()


def _split_hash(key: str, salt: str) -> int:
    """A 64-bit hash of ``key``, the same in every process (not Python's ``hash``)."""
    data = f"{salt}\0{key}".encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def validation_keys(
    keys: Sequence[str], val_fraction: float, val_max: int, salt: str = SPLIT_SALT
) -> set[str]:
    """The keys of ``keys`` held out for validation (the rule of :func:`split_files`)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    val_max = check_int(val_max, "val_max", 0)
    unique = set(keys)
    if val_fraction == 0 or len(unique) < 2:
        return set()
    hashed = sorted((_split_hash(k, salt), k) for k in unique)
    below = sum(h < val_fraction * 2.0**64 for h, _ in hashed)
    n_val = min(max(1, below), val_max, len(unique) - 1)
    return {k for _, k in hashed[:n_val]}


def split_files(
    files: Sequence[Path],
    val_fraction: float = 0.05,
    val_max: int = 100,
    *,
    root: str | os.PathLike[str] | None = None,
    listed: Sequence[Path] | None = None,
    salt: str = SPLIT_SALT,
) -> tuple[list[Path], list[Path]]:
    """Split files into (train, validation) by a hash of each file's path.

    A file is a validation file when the 64-bit BLAKE2b hash of ``salt`` and its path
    relative to ``root`` (:func:`split_key`), read as a fraction of 2**64, is below
    ``val_fraction``. The split therefore depends on no seed and on no other file:
    runs with different seeds or scales share it, and adding, removing or leaving out a
    file moves no other file between the parts. Two limits depend on the count: there
    is at least one validation file when ``val_fraction > 0`` and there are two files
    or more, at most ``val_max`` and never all of them; the files of smallest hash are
    the ones kept. Only when a limit binds (tiny folders, or more than ``val_max``
    files below the fraction) can an added or removed file move the one at the edge.

    Args:
        files: the files to split (each under ``root`` if given).
        val_fraction: fraction of the files held out, in [0, 1).
        val_max: at most this many validation files.
        root: the data folder: files are named by their path relative to it, so the
            split survives moving the folder.
        listed: every file of the folder before any filter (unreadable files, images
            too small for a crop); ``files`` must be among them. The limits count
            these, so the filters only drop files from either part: runs whose filters
            differ (x2 and x4 crops) never train on each other's validation files.
            Default: ``files``.
        salt: changes the split (a different hold-out for the same folder).

    If the filters leave validation files but no training file, every file trains and
    there is no validation (with a ``UserWarning``).
    """
    keys = [split_key(f, root) for f in files]
    pool = keys if listed is None else [split_key(f, root) for f in listed]
    if listed is not None and not set(keys) <= set(pool):
        extra = next(k for k in keys if k not in set(pool))
        raise ValueError(f"listed: must hold every file of files, not {extra!r}")
    held = validation_keys(pool, val_fraction, val_max, salt)
    train = sorted(f for f, k in zip(files, keys, strict=True) if k not in held)
    val = sorted(f for f, k in zip(files, keys, strict=True) if k in held)
    if val and not train:
        warnings.warn(
            f"no training file left once the {len(val)} validation file(s) are held out: "
            "training on every file, without validation",
            UserWarning,
            stacklevel=2,
        )
        return val, []
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


class UnreadableImageError(OSError):
    """An image file that cannot be decoded; ``path`` is the file."""

    def __init__(self, path: str | os.PathLike[str], reason: object) -> None:
        super().__init__(f"cannot read image {str(path)!r}: {reason}")
        self.path = Path(path)


def _load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return _to_rgb(im)
    except OSError as err:
        if err.errno is not None:  # the system's (missing, permission, I/O): not the file's
            raise OSError(err.errno, f"cannot read image {str(path)!r}: {err.strerror}") from err
        raise UnreadableImageError(path, err) from err  # Pillow: truncated, corrupt
    except (SyntaxError, ValueError, Image.DecompressionBombError) as err:
        # Corrupt files also raise SyntaxError or ValueError in PIL.
        raise UnreadableImageError(path, err) from err


#: Files already reported by :func:`skip_unreadable` (in this process).
_REPORTED: set[Path] = set()


def skip_unreadable(item: Callable[[Any], T], key: int | tuple[int, int], n: int) -> T:
    """``item(key)``, or, if its image cannot be decoded, the item of the next index.

    :func:`readable_images` reads headers only, so a file truncated after its header
    is found when a loader first decodes it, possibly hours into a run. Instead of
    stopping the run, the sample takes the next index's image (for an ``(index, seed)``
    key with the key's own seed; for a plain index, fixed mode, the next index's item:
    deterministic either way, so a resumed run repeats it) and the file is named in one
    ``UserWarning`` per process. If no image can be decoded, the first error is raised.
    Only decoding failures (:class:`UnreadableImageError`) are skipped: an error of the
    system (a missing file, a permission, an I/O error) stops the run as before. An
    index out of range still raises ``IndexError``.
    """
    try:
        return item(key)
    except UnreadableImageError as err:
        first = err
    pair = isinstance(key, tuple | list)
    index = int(key[0]) if pair else int(key)
    errors = [first]
    for step in range(1, n):
        j = (index + step) % n
        try:
            out = item((j, key[1]) if pair else j)
        except UnreadableImageError as err:
            errors.append(err)
            continue
        break
    else:
        raise first
    for err in errors:
        if err.path not in _REPORTED:
            _REPORTED.add(err.path)
            warnings.warn(f"{err}; another image takes its place", UserWarning, stacklevel=3)
    return out


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
        return skip_unreadable(self._item, key, len(self.files))

    def _item(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
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

"""Pairs for reference-guided colorization: (target in gray, reference in colour).

Two kinds of folder, both searched recursively (:func:`find_pair_sources`):

- ``"video"``: frame folders, ``DIR/sequence/*.jpg`` (any depth): every folder holding
  two frames or more is a sequence, its frames in name order. A sample is frame ``t``
  (the target; the network sees its luminance) and frame ``t + d`` in colour (the
  reference), ``d`` drawn from ``[-max_gap, max_gap]`` except 0 within the sequence; both
  are cropped at the same place (the reference's window jittered by up to a quarter of
  its side), so the scene is shared but not aligned.
- ``"photos"``: single photos; the reference is a strong random geometric transform of
  the same photo: a window of random scale (0.6-1.5x), rotation (up to 35°), offset (up
  to 30% of the side), perspective (corners moved by up to 12%) and a horizontal flip
  half of the time, the photo mirrored beyond its border. Near the border the window is
  drawn back towards the target's crop until at least two thirds of it show the photo
  itself (:data:`MIN_INSIDE`). Training needs no video.
- ``"auto"``: ``"video"`` if every image lies in a folder holding two images or more
  below ``DIR`` (not in ``DIR`` itself), else ``"photos"``. A folder of photos per
  class (``cats/``, ``dogs/``) looks like that too, so the choice is said in a
  ``UserWarning`` (for ``"photos"``, only when some folders could have been sequences).

The validation split (:func:`split_sources`) holds out whole sources, by a hash of
their path: see :func:`psal.data.split_files`.

Samples are drawn from the key ``(index, seed)`` (as :class:`psal.data.InpaintingFolder`),
so a resumed run continues the stream exactly; ``fixed=True`` (validation) derives the
seed from ``(pair_seed, index)``: the same pairs at every evaluation.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .._checks import check_choice, check_int
from .folder import (
    SPLIT_SALT,
    _load_rgb,
    _report_readable,
    _sort_readable,
    list_images,
    readable_images,
    skip_unreadable,
    split_key,
    validation_keys,
)

__all__ = ["PAIR_KINDS", "ColorizationPairs", "PairSource", "find_pair_sources", "split_sources"]

PAIR_KINDS = ("auto", "video", "photos")


@dataclass(frozen=True)
class PairSource:
    """One photo (``frames`` of length 1) or one video sequence (frames in order)."""

    frames: tuple[Path, ...]


def _by_folder(files: Sequence[Path]) -> dict[Path, list[Path]]:
    """``files`` grouped by the folder that holds them, in order."""
    groups: dict[Path, list[Path]] = {}
    for f in files:
        groups.setdefault(f.parent, []).append(f)
    return groups


def _auto_kind(listed: list[Path], root: Path) -> str:
    """The kind ``"auto"`` reads ``listed`` as, said in a ``UserWarning`` when it matters.

    Folders of photos (``cats/``, ``dogs/``) look like frame folders: reading them as
    sequences pairs unrelated photos, so the choice is named with the way out. Photos
    in ``root`` itself or alone in their folder are said only when some folders could
    have been sequences.
    """
    groups = _by_folder(listed)
    seqs = sum(parent != root and len(g) >= 2 for parent, g in groups.items())
    if seqs == len(groups):
        warnings.warn(
            f"pairs 'auto': {seqs} folders of frames under {str(root)!r} read as video "
            "sequences (every image shares a sub-folder with others; each pair is two "
            "images of one folder); use --pairs photos (kind='photos') if they are not",
            UserWarning,
            stacklevel=3,
        )
        return "video"
    if seqs:
        alone = sum(len(g) for parent, g in groups.items() if parent == root or len(g) < 2)
        warnings.warn(
            f"pairs 'auto': {len(listed)} images under {str(root)!r} read as single photos "
            f"({alone} of them lie alone in a folder or in the data folder itself); use "
            "--pairs video (kind='video') for frame folders",
            UserWarning,
            stacklevel=3,
        )
    return "photos"


def find_pair_sources(
    root: str | os.PathLike[str],
    kind: str = "auto",
    name: str = "data.path (--data)",
    *,
    decode: bool = False,
    limit: int | None = None,
) -> list[PairSource]:
    """The photos or sequences under ``root`` (see the module docstring).

    Files Pillow cannot open are skipped with a warning naming them (``name``: the
    setting that gave ``root``, for the messages); see :func:`readable_images`, which
    ``decode`` is passed to (True: truncated files are skipped too; evaluation).
    ``limit``: stop once the sources hold ``limit`` samples (one per frame, so the
    first ``limit`` samples of :class:`ColorizationPairs` are the same as without it);
    only the files needed are read, which matters with ``decode`` on a large folder.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no image, or (``"video"``) no folder with two frames: no pairs.
    """
    kind = check_choice(kind, "kind", PAIR_KINDS)
    root = Path(root)
    listed = list_images(root)
    if kind == "auto":  # from every file: an unreadable frame must not change the kind
        kind = _auto_kind(listed, root)
    if limit is not None:
        limit = check_int(limit, "limit", 1)
    if kind == "photos":
        files = readable_images(listed, name, decode=decode, limit=limit)
        return [PairSource((f,)) for f in files]
    if limit is None:
        files = readable_images(listed, name, decode=decode)  # unreadable ones skipped, named
    else:  # whole sequences, in the order of the samples, until they hold `limit` frames
        files, bad, held = [], [], 0
        for _, group in sorted(_by_folder(listed).items()):
            if held >= limit:
                break
            kept, skipped, _ = _sort_readable(group, decode)
            files += kept
            bad += skipped
            held += len(kept) if len(kept) >= 2 else 0
        files = _report_readable(files, bad, name)
        listed = files + [f for f, _ in bad]  # what was looked at, for the message below
    groups = _by_folder(files)
    short = [p for p, g in groups.items() if len(g) < 2]
    if short and len(short) < len(groups):
        warnings.warn(
            f"{name}: {len(short)} sequence folder(s) with fewer than two readable frames "
            f"skipped (e.g. {str(short[0])!r})",
            UserWarning,
            stacklevel=2,
        )
    seqs = [PairSource(tuple(sorted(g))) for _, g in sorted(groups.items()) if len(g) >= 2]
    if not seqs:
        skipped = len(listed) - len(files)
        why = "none sharing a folder" + (
            f" once {skipped} unreadable file(s) are left out" if skipped else ""
        )
        raise ValueError(
            f"no pairs under {str(root)!r}: video pairs need folders holding two readable "
            f"frames or more (found {len(files)} readable image(s), {why}); use photo pairs "
            "for single photos"
        )
    return seqs


def split_sources(
    sources: Sequence[PairSource],
    val_fraction: float,
    val_max: int,
    *,
    root: str | os.PathLike[str] | None = None,
    salt: str = SPLIT_SALT,
) -> tuple[list[PairSource], list[PairSource]]:
    """Split sources into (train, validation), each in its order in ``sources``.

    Whole sequences go to one part, never frames of one. The rule is
    :func:`psal.data.split_files`'s, each source named by its path relative to ``root``:
    a photo by its file, a sequence by its folder (so adding frames to a sequence does
    not move it). The limits (at least one, at most ``val_max``) count the sources
    given, after unreadable files are left out.
    """
    keys = [_source_key(s, root) for s in sources]
    held = validation_keys(keys, val_fraction, val_max, salt)
    train = [s for s, k in zip(sources, keys, strict=True) if k not in held]
    val = [s for s, k in zip(sources, keys, strict=True) if k in held]
    return train, val


def _source_key(source: PairSource, root: str | os.PathLike[str] | None) -> str:
    """A photo's file or a sequence's folder (ending in ``/``), relative to ``root``."""
    if len(source.frames) == 1:
        return split_key(source.frames[0], root)
    return split_key(source.frames[0].parent, root) + "/"


def _cover(im: Image.Image, size: int) -> Image.Image:
    """Upscale ``im`` so that its short side is at least ``size``."""
    s = size / min(im.size)
    if s <= 1:
        return im
    return im.resize((math.ceil(im.width * s), math.ceil(im.height * s)), Image.Resampling.BICUBIC)


def _crop(im: Image.Image, size: int, rng: np.random.Generator | None) -> tuple[int, int]:
    """Top-left corner of a ``size`` window: random, or centred without ``rng``."""
    if rng is None:
        return (im.width - size) // 2, (im.height - size) // 2
    return int(rng.integers(0, im.width - size + 1)), int(rng.integers(0, im.height - size + 1))


#: Least share of a photo pair's reference that shows the photo itself; the rest shows
#: its mirror image beyond the border (see :func:`_reference_quad`).
MIN_INSIDE = 2 / 3


def _window_points(corners: Sequence[float], n: int) -> np.ndarray:
    """(n, n, 2) photo coordinates of an ``n x n`` QUAD window's pixel centres.

    Pillow's QUAD transform maps an output pixel centre ``(u, v)`` (in [0, 1]) to the
    bilinear blend of the four corners (upper left, lower left, lower right, upper right).
    """
    c = np.asarray(corners, dtype=np.float64).reshape(4, 2)
    t = (np.arange(n) + 0.5) / n
    u, v = t[None, :, None], t[:, None, None]
    return (1 - u) * (1 - v) * c[0] + (1 - u) * v * c[1] + u * v * c[2] + u * (1 - v) * c[3]


def _reference_quad(
    box: tuple[int, int], size: int, photo: tuple[int, int], rng: np.random.Generator
) -> list[float]:
    """The window a photo's reference is cut from: 8 corner coordinates, in the photo.

    Random scale (0.6-1.5), rotation (up to 35 degrees), offset (up to 30% of the side)
    and perspective (corners moved by up to 12%) around the target's crop ``box`` (top
    left corner, side ``size``). Near the photo's border such a window can lie mostly
    outside it (a reference of mirrored padding, up to 62% of it for a photo the size of
    the crop); the window is then drawn back towards the crop, by the smallest step of
    a tenth that leaves :data:`MIN_INSIDE` of it in the photo (the crop itself lies
    inside). The random draws are the same either way.
    """
    x0, y0 = box
    cx = x0 + size / 2 + rng.uniform(-0.3, 0.3) * size
    cy = y0 + size / 2 + rng.uniform(-0.3, 0.3) * size
    half = size / 2 * rng.uniform(0.6, 1.5)
    a = math.radians(rng.uniform(-35, 35))
    ca, sa = math.cos(a), math.sin(a)
    corners = []  # QUAD order: upper left, lower left, lower right, upper right
    for ux, uy in ((-1, -1), (-1, 1), (1, 1), (1, -1)):
        jx, jy = rng.uniform(-0.12, 0.12, 2) * 2 * half
        px, py = ux * half + jx, uy * half + jy
        corners += [cx + ca * px - sa * py, cy + sa * px + ca * py]
    crop = [x0, y0, x0, y0 + size, x0 + size, y0 + size, x0 + size, y0]
    # the windows between the crop (t = 0) and the drawn one (t = 1) are blends of the
    # two, and so are their pixels: the share inside for every step at once
    width, height = photo

    def share(p: np.ndarray) -> np.ndarray:
        inside = (p[..., 0] >= 0) & (p[..., 0] < width) & (p[..., 1] >= 0) & (p[..., 1] < height)
        return inside.mean((-2, -1))

    drawn = _window_points(corners, size)
    if share(drawn) >= MIN_INSIDE:  # most windows
        return corners
    steps = np.arange(9, -1, -1)[:, None, None, None] / 10
    base = _window_points(crop, size)
    t = float(steps[int(np.argmax(share(base + steps * (drawn - base)) >= MIN_INSIDE)), 0, 0, 0])
    return [b + t * (c - b) for b, c in zip(crop, corners, strict=True)]  # t = 0: the crop


def _mirror_index(i: np.ndarray, n: int) -> np.ndarray:
    """Indices ``i`` (any integers) into ``0..n-1``, reflected at the borders (edge kept)."""
    i = np.mod(i, 2 * n)
    return np.where(i >= n, 2 * n - 1 - i, i)


def _warped_window(
    im: Image.Image, box: tuple[int, int], size: int, rng: np.random.Generator
) -> Image.Image:
    """The reference of a photo: a randomly scaled, rotated, offset, skewed window.

    The window is :func:`_reference_quad`'s, flipped left-right half of the time.
    Outside the photo the transform would give black: the photo is mirrored there (only
    the part of the mirror-extended photo under the window is made, so a large photo
    costs no more than a small one).
    """
    corners = _reference_quad(box, size, im.size, rng)
    xs, ys = corners[0::2], corners[1::2]
    left, top = math.floor(min(xs)) - 2, math.floor(min(ys)) - 2  # bilinear taps
    right, bottom = math.ceil(max(xs)) + 2, math.ceil(max(ys)) + 2
    arr = np.asarray(im)
    rows = _mirror_index(np.arange(top, bottom), im.height)
    cols = _mirror_index(np.arange(left, right), im.width)
    region = Image.fromarray(np.ascontiguousarray(arr[rows[:, None], cols[None, :]]))
    shifted = [c - o for c, o in zip(corners, [left, top] * 4, strict=True)]
    out = region.transform((size, size), Image.Transform.QUAD, shifted, Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return out


class ColorizationPairs(Dataset):
    """(gray target, colour reference, true chroma) samples from photos or sequences.

    Args:
        sources: from :func:`find_pair_sources` / :func:`split_sources`.
        image_size: side of the square target and reference crops (>= 8).
        max_gap: video pairs: largest frame distance ``d`` (>= 1).
        fixed: validation mode (integer keys, pairs fixed by ``pair_seed``).
        pair_seed: seed of the fixed pairs.

    Each sample is a dict of float32 tensors in [0, 1] (chroma centred on 0): ``"y"``
    (1, S, S) target luma, ``"chroma"`` (2, S, S) its true Cb, Cr, ``"reference"`` (3,
    S, S) reference RGB.
    """

    def __init__(
        self,
        sources: Sequence[PairSource],
        image_size: int,
        max_gap: int = 4,
        fixed: bool = False,
        pair_seed: int = 0,
    ) -> None:
        if not sources:
            raise ValueError("no pairs: the list of photos or sequences is empty")
        self.image_size = check_int(image_size, "image_size", 8)
        self.max_gap = check_int(max_gap, "max_gap", 1)
        self.fixed = bool(fixed)
        self.pair_seed = check_int(pair_seed, "pair_seed", 0)
        # one sample per frame of every source
        self.index = [(i, t) for i, s in enumerate(sources) for t in range(len(s.frames))]
        self.sources = list(sources)

    def __len__(self) -> int:
        return len(self.index)

    def pair(self, key: int | tuple[int, int]) -> tuple[Image.Image, Image.Image]:
        """The (target, reference) RGB crops of a sample key."""
        if isinstance(key, tuple | list):
            index, seed = key
        else:
            index, seed = key, None
        index = int(index)
        if not 0 <= index < len(self.index):  # not a negative index from the end
            raise IndexError(f"index {index} out of range for {len(self.index)} samples")
        if seed is None:
            if not self.fixed:
                raise TypeError("a training ColorizationPairs takes (index, seed) keys")
            seed = int(np.random.SeedSequence([self.pair_seed, index]).generate_state(1)[0])
        rng = np.random.default_rng(seed)
        src_i, t = self.index[index]
        frames = self.sources[src_i].frames
        size = self.image_size
        target = _cover(_load_rgb(frames[t]), size)
        x0, y0 = _crop(target, size, rng)
        if len(frames) == 1:
            reference = _warped_window(target, (x0, y0), size, rng)
        else:
            gaps = [d for d in range(-self.max_gap, self.max_gap + 1)
                    if d != 0 and 0 <= t + d < len(frames)]  # fmt: skip
            other = _cover(_load_rgb(frames[t + int(rng.choice(gaps))]), size)
            j = size // 4
            rx = int(np.clip(x0 + rng.integers(-j, j + 1), 0, other.width - size))
            ry = int(np.clip(y0 + rng.integers(-j, j + 1), 0, other.height - size))
            reference = other.crop((rx, ry, rx + size, ry + size))
        return target.crop((x0, y0, x0 + size, y0 + size)), reference

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """The pair of ``key`` as tensors.

        A frame that cannot be decoded: see :func:`~psal.data.folder.skip_unreadable`.
        """
        return skip_unreadable(self._item, key, len(self.index))

    def _item(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        from ..utils.color import rgb_to_luma_chroma

        target, reference = self.pair(key)
        t = torch.from_numpy(np.asarray(target, dtype=np.float32) / 255).permute(2, 0, 1)
        r = torch.from_numpy(np.asarray(reference, dtype=np.float32) / 255).permute(2, 0, 1)
        y, c = rgb_to_luma_chroma(t[None])
        return {"y": y[0], "chroma": c[0], "reference": r.contiguous()}

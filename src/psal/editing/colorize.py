"""Guided colorization: the chroma of a colour reference, matched by luminance patches.

PSAL in pixel space (Cherel et al. show it on this task): the query is the grayscale
target, the key the reference's luminance, the value the reference's chrominance.

1. Luminance of both in YCbCr (BT.601); the reference's is remapped linearly to the
   target's mean and standard deviation (Welsh et al. 2002), so that a darker or
   brighter reference still matches.
2. Features per pixel: luminance, local mean and local standard deviation over a
   ``window`` (simple texture statistics that tell sky from foliage of the same grey).
3. :func:`psal.patchmatch` finds, for every target patch of features, its k nearest
   reference patches.
4. Patch voting (PSAL's ``aggregation="patch"``) carries the reference's Cb, Cr to the
   target; the target's luminance is kept exactly (chroma that leaves the RGB gamut is
   desaturated, never clipped).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_int, check_patch_size, check_positive_float, resolve_seed
from .._deprecation import keyword_only
from ..layers.vote import vote
from ..patchmatch import patchmatch
from ..utils.convert import check_unit_float
from ..utils.image import ImageLike, from_tensor, to_tensor
from ..utils.progress import ProgressCallback
from ._color import luma, luma_chroma_to_rgb, rgb_to_luma_chroma
from ._temperature import wexler_temperature

__all__ = ["colorize"]


def _luma_of(x: torch.Tensor) -> torch.Tensor:
    """Luma of a (1, C, H, W) image: C = 1 or 2 (gray, gray + alpha) or 3, 4 (RGB[A])."""
    return x[:, :1] if x.shape[1] <= 2 else luma(x[:, :3])


def _local_stats(y: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    r = window // 2
    pad = min(r, y.shape[-2] - 1, y.shape[-1] - 1)
    yp = F.pad(y, (pad, pad, pad, pad), mode="reflect") if pad > 0 else y
    mean = F.avg_pool2d(yp, 2 * pad + 1, stride=1)
    sq = F.avg_pool2d(yp * yp, 2 * pad + 1, stride=1)
    return mean, (sq - mean * mean).clamp_min(0).sqrt()


def _features(y: torch.Tensor, window: int, stats_weight: float) -> torch.Tensor:
    mean, std = _local_stats(y, window)
    return torch.cat([y, stats_weight * mean, 2 * stats_weight * std], 1)


@keyword_only(2, (), {"iters": "pm_iters"})
def colorize(
    target: ImageLike,
    reference: ImageLike,
    *,
    patch_size: int = 9,
    k: int = 2,
    pm_iters: int = 4,
    window: int = 5,
    stats_weight: float = 1.0,
    temperature: float | None = None,
    seed: int | None = None,
    device: torch.device | str | None = None,
    backend: str = "auto",
    progress: ProgressCallback | None = None,
) -> ImageLike:
    """Colour a grayscale image with the colours of a reference image.

    Args:
        target: the grayscale image to colour: numpy ``(H, W)`` / ``(H, W, 1|2)``, PIL
            ``L`` / ``LA``, tensor ``(1, H, W)``; a colour image is used through its
            luminance. An alpha channel is kept.
        reference: a colour image (3 or 4 channels), any size (at least ``patch_size``).
        patch_size: odd side of the matched patches (and of the voting window: larger
            patches give smoother, more coherent colour; 9 scored best in
            ``benchmarks/colorize.py`` among 5, 7, 9, 11).
        k: reference patches per target patch whose colours are averaged.
        pm_iters: PatchMatch iterations (``iters=`` is the deprecated keyword).
        window: side of the window of the local mean and standard deviation features.
        stats_weight: weight of those features against the raw luminance patch.
        temperature: voting temperature T (weights ``exp(-d / T)``); None: twice the
            75th percentile of the nearest distances (Wexler et al.); ``float("inf")``:
            plain average.
        seed: makes the result reproducible (None: drawn from torch's generator).
        device: torch device for the work (default: the target's, or CPU).
        backend: PatchMatch backend.
        progress: called as ``progress(done, total)`` after each stage.

    Returns:
        The coloured image, same kind and dtype as ``target``, with 3 channels (4 with
        alpha): a PIL ``L`` image gives ``RGB``, ``LA`` gives ``RGBA``, a numpy
        ``(H, W)`` array gives ``(H, W, 3)``. Its luminance (BT.601 luma) equals the
        target's exactly in floating point, and to within rounding (half a level) for
        integer types.

    Raises:
        ValueError: a reference without colour channels, or smaller than a patch.
        TypeError: unsupported input types.

    Example:
        >>> import numpy as np, psal
        >>> rng = np.random.default_rng(0)
        >>> ref = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        >>> gray = ref.mean(2).astype(np.uint8)
        >>> psal.colorize(gray, ref, seed=0).shape
        (32, 32, 3)
    """
    patch_size = check_patch_size(patch_size)
    k = check_int(k, "k", minimum=1)
    pm_iters = check_int(pm_iters, "pm_iters", minimum=0)
    window = check_patch_size(window, "window")
    stats_weight = float(stats_weight)
    if stats_weight < 0:
        raise ValueError(f"stats_weight must be >= 0, got {stats_weight}")
    if temperature is not None and temperature != float("inf"):
        temperature = check_positive_float(temperature, "temperature")
    x, spec = to_tensor(target, "target", device=device)
    if spec.kind == "pil" and spec.mode == "F":  # the RGB result holds 8 bits of [0, 1]
        check_unit_float(np.asarray(target), "target")
    ref, _ = to_tensor(reference, "reference", device=x.device)
    ref = ref.to(x.dtype)
    if ref.shape[1] < 3:
        raise ValueError(
            f"reference must be a colour image (3 or 4 channels), got {ref.shape[1]} channel(s)"
        )
    if ref.shape[0] != 1:
        raise ValueError(f"reference must be a single image, got a batch of {ref.shape[0]}")
    hr, wr = ref.shape[-2:]
    if patch_size > min(hr, wr) or patch_size > min(x.shape[-2:]):
        raise ValueError(
            f"patch_size={patch_size} is larger than the target ({x.shape[-1]}x"
            f"{x.shape[-2]}) or the reference ({wr}x{hr})"
        )
    seed = resolve_seed(seed)

    y_ref, chroma_ref = rgb_to_luma_chroma(ref[:, :3])
    outs = []
    total = 2 * x.shape[0]
    with torch.no_grad():
        for i in range(x.shape[0]):
            xi = x[i : i + 1]
            y = _luma_of(xi)
            # Welsh et al.'s luminance remapping of the reference to the target's statistics
            std_r = y_ref.std().clamp_min(1e-6)
            y_map = (y_ref - y_ref.mean()) * (y.std() / std_r) + y.mean()
            q = _features(y, window, stats_weight)
            kf = _features(y_map, window, stats_weight)
            kk = min(k, hr * wr)
            field = patchmatch(q, kf, k=kk, patch_size=patch_size, iters=pm_iters,
                               seed=seed + i, backend=backend)  # fmt: skip
            if progress is not None:
                progress(2 * i + 1, total)
            t = temperature
            if t is None:
                t = wexler_temperature(field.distances)
            chroma, _ = vote(chroma_ref, field.indices, field.distances, patch_size, t)
            rgb = luma_chroma_to_rgb(y, chroma)
            if xi.shape[1] in (2, 4):  # keep alpha
                rgb = torch.cat([rgb, xi[:, -1:]], 1)
            outs.append(rgb)
            if progress is not None:
                progress(2 * i + 2, total)
    out = torch.cat(outs, 0)
    return from_tensor(out, spec.with_channels(out.shape[1]))

"""Guided colorization: the chroma of a colour reference, matched by luminance patches.

PSAL in pixel space (Cherel et al. show it on this task): the query is the grayscale
target, the key the reference's luminance, the value the reference's chrominance.
Then, so that colour is coherent per object and follows edges, only confident matches
are trusted and their colour is propagated over the target, edge-aware.

1. Luminance of both in YCbCr (BT.601); the reference's is remapped linearly to the
   target's mean and standard deviation (Welsh et al. 2002), so that a darker or
   brighter reference still matches.
2. Features per pixel: luminance, local mean and local standard deviation over a
   ``window`` (simple texture statistics that tell sky from foliage of the same grey).
3. :func:`psal.patchmatch` finds, for every target patch of features, its k nearest
   reference patches, in the reference resized by each of ``scales`` (objects seen at
   another distance in the reference still match).
4. Patch voting (PSAL's ``aggregation="patch"``) carries the reference's Cb, Cr to the
   target, per scale; the scales are blended per pixel by their match distances.
5. ``propagate=True``: the confidence of each pixel's colour. Forward-backward check:
   the reference is matched back into the target, and a pixel whose nearest match
   leads back to itself (within ``consistency`` pixels) is a true correspondence,
   trusted as voted (confidence ``trust``). The others (flat look-alikes, parts the
   reference does not show) get ``exp(-d / T)`` of their nearest distance ``d`` times
   ``exp(-v / spread²)`` of the variance ``v`` of the colours proposed to them,
   floored at ``floor`` (at most 1). The chroma is the weighted least-squares
   solution of colorization by optimisation (Levin et al. 2004, with the edge
   weights of Farbman et al. 2008): it stays near confident votes and spreads across
   flat regions of the target's luminance, stopping at its edges
   (:mod:`psal.editing._propagate`).

The target's luminance is kept exactly (chroma that leaves the RGB gamut is
desaturated, never clipped). ``scales=(1.0,), propagate=False`` is the method of
psal 0.1 (per-pixel votes only), kept for comparison in ``benchmarks/colorize.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_int, check_patch_size, check_positive_float, resolve_seed
from .._deprecation import keyword_only
from ..layers.vote import vote
from ..patchmatch import patchmatch
from ..utils.color import (
    check_reference,
    luma,
    luma_chroma_to_rgb,
    rgb_to_luma_chroma,
    warn_colour_target,
)
from ..utils.convert import check_unit_float
from ..utils.image import ImageLike, from_tensor, to_tensor
from ..utils.progress import ProgressCallback
from ._propagate import propagate as propagate_values
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


#: Largest ``k`` accepted: each target pixel averages k reference patches per scale;
#: beyond a few the colours only blur, and work and memory grow linearly with k.
MAX_K = 32


def _resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    if scale == 1.0:
        return x
    h, w = x.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)


def forward_backward_error(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """Distance, in target pixels, from each target pixel to the end of its round trip.

    Target pixel ``p`` is matched to reference pixel ``q = forward[p]``, whose own match
    in the target is ``backward[q]``; the error is ``|backward[q] - p|``. A true
    correspondence comes back to ``p`` (error about 0); a flat or unmatched region,
    whose match is one look-alike among many, lands anywhere (Sundaram et al. 2010;
    the left-right check of stereo).

    Args:
        forward: (1, 1, H, W) int64 flat indices into the reference (W' columns).
        backward: (1, 1, H', W') int64 flat indices into the target (W columns).

    Returns:
        (1, 1, H, W) float32 Euclidean error in pixels.
    """
    h, w = forward.shape[-2:]
    back = backward.reshape(-1)[forward.reshape(-1).clamp_min(0)].view(h, w)
    yy = torch.arange(h, device=forward.device).view(h, 1)
    xx = torch.arange(w, device=forward.device).view(1, w)
    err = ((back // w - yy) ** 2 + (back % w - xx) ** 2).float().sqrt()
    return err.view(1, 1, h, w)


def _match_scales(
    y: torch.Tensor,
    ref: torch.Tensor,
    scales: tuple[float, ...],
    *,
    patch_size: int,
    k: int,
    iters: int,
    window: int,
    stats_weight: float,
    temperature: float | None,
    seed: int,
    backend: str,
    consistency: bool = False,
    step: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, torch.Tensor | None]:
    """Votes of every scale, blended per pixel by their match distances.

    Returns voted chroma (1, 2, H, W); nearest distance and proposals' variance (1, 1,
    H, W); the temperature T; with ``consistency``, the forward-backward error (1, 1,
    H, W) of the nearest matches, blended over the scales like the votes (else None).
    ``step`` is called after each search.
    """
    q = _features(y, window, stats_weight)
    votes, dists, temps, errors = [], [], [], []
    for j, s in enumerate(scales):
        r = _resize(ref, s)
        if min(r.shape[-2:]) < patch_size:
            continue
        y_ref, chroma_ref = rgb_to_luma_chroma(r.clamp(0, 1))
        # Welsh et al.'s luminance remapping of the reference to the target's statistics
        std_r = y_ref.std().clamp_min(1e-6)
        y_map = (y_ref - y_ref.mean()) * (y.std() / std_r) + y.mean()
        kf = _features(y_map, window, stats_weight)
        kk = min(k, r.shape[-2] * r.shape[-1])
        field = patchmatch(q, kf, k=kk, patch_size=patch_size, iters=iters,
                           seed=seed + 7919 * j, backend=backend)  # fmt: skip
        if step is not None:
            step()
        t = temperature if temperature is not None else wexler_temperature(field.distances)
        both = torch.cat([chroma_ref, chroma_ref * chroma_ref], 1)
        voted, _ = vote(both, field.indices, field.distances, patch_size, t)
        votes.append(voted)
        dists.append(field.distances[:, :1].to(y.dtype))
        temps.append(t)
        if consistency:  # the reference's own nearest patches in the target
            back = patchmatch(kf, q, k=1, patch_size=patch_size, iters=iters,
                              seed=seed + 7919 * j + 17, backend=backend)  # fmt: skip
            errors.append(forward_backward_error(field.indices[:, :1], back.indices))
            if step is not None:
                step()
    t = min(temps)
    d = torch.cat(dists, 1)
    # per pixel, the scales whose patches match best dominate the blend
    tb = t / 4 if t != float("inf") else float("inf")
    w = torch.softmax(-d / tb, 1) if tb != float("inf") else torch.full_like(d, 1 / d.shape[1])
    voted = sum(w[:, i : i + 1] * v for i, v in enumerate(votes))
    chroma = voted[:, :2]
    # weighted variance of the proposed colours: high where look-alike patches disagree
    var = (voted[:, 2:] - chroma * chroma).clamp_min(0).sum(1, keepdim=True)
    err = sum(w[:, i : i + 1] * e.to(y.dtype) for i, e in enumerate(errors)) if errors else None
    return chroma, d.min(1, keepdim=True).values, var, t, err


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
    scales: Sequence[float] = (0.7, 1.0, 1.4),
    propagate: bool = True,
    smoothness: float = 50.0,
    edge: float = 0.03,
    floor: float = 0.05,
    spread: float = 0.05,
    consistency: float | None = 2.0,
    trust: float = 100.0,
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
        k: reference patches per target patch (and per scale) whose colours are
            averaged, 1 to :data:`MAX_K`.
        pm_iters: PatchMatch iterations (``iters=`` is the deprecated keyword).
        window: side of the window of the local mean and standard deviation features.
        stats_weight: weight of those features against the raw luminance patch.
        temperature: voting temperature T (weights ``exp(-d / T)``); None: twice the
            75th percentile of the nearest distances (Wexler et al.); ``float("inf")``:
            plain average.
        scales: the reference is searched at each of these sizes (factors in
            [0.25, 4]); ``(1.0,)`` searches it as given (faster).
        propagate: spread the colour of confident matches over the target, edge-aware
            (colorization by optimisation); False keeps the per-pixel votes.
        smoothness: weight of the smoothness term of the propagation (larger: flatter
            colour inside regions).
        edge: luminance step (0-1 scale) at which the propagation stops.
        floor: lowest confidence of a vote (0 to 1): the share of its own vote that
            even a badly matched pixel keeps.
        spread: chroma standard deviation (Cb, Cr on a 0-1 scale) among the colours
            proposed to a pixel at which its confidence falls by ``e``: look-alike
            patches of differently coloured objects disagree, and such pixels take
            their colour from their confident surroundings instead.
        consistency: forward-backward check of the propagation's data term, in
            target pixels: the reference is also matched back into the target, and
            a pixel whose nearest match leads back to within about ``consistency``
            pixels of itself (weight ``exp(-(e / consistency)²)`` of the round-trip
            error ``e``) is a true correspondence: its vote gets confidence
            ``trust`` and stays as voted, sharp details included, while the others
            (flat look-alikes, parts of the target the reference does not show)
            take their colour mostly from the propagation. None: no check (one
            PatchMatch per scale instead of two, about a third less time; the
            confidence is then distance and disagreement only).
        trust: confidence of a consistent vote (the others have at most 1).
        seed: makes the result reproducible (None: drawn from torch's generator).
        device: torch device for the work (default: the target's, or CPU).
        backend: PatchMatch backend.
        progress: called as ``progress(done, total)`` after each PatchMatch search
            and after each image's propagation.

    Returns:
        The coloured image, same kind and dtype as ``target``, with 3 channels (4 with
        alpha): a PIL ``L`` image gives ``RGB``, ``LA`` gives ``RGBA``, a numpy
        ``(H, W)`` array gives ``(H, W, 3)``. Its luminance (BT.601 luma) equals the
        target's exactly in floating point, and to within rounding (half a level) for
        integer types.

    Raises:
        ValueError: a reference without colour channels, or smaller than a patch; an
            option out of range (``k`` above :data:`MAX_K`, ...).
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
    if k > MAX_K:
        raise ValueError(f"k must be at most {MAX_K} (reference patches averaged), got {k}")
    pm_iters = check_int(pm_iters, "pm_iters", minimum=0)
    window = check_patch_size(window, "window")
    stats_weight = float(stats_weight)
    if stats_weight < 0:
        raise ValueError(f"stats_weight must be >= 0, got {stats_weight}")
    if temperature is not None and temperature != float("inf"):
        temperature = check_positive_float(temperature, "temperature")
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or not scales:
        raise TypeError(f"scales must be a non-empty sequence of numbers, got {scales!r}")
    scales = tuple(check_positive_float(s, "scales") for s in scales)
    if not all(0.25 <= s <= 4 for s in scales):
        raise ValueError(f"scales must lie in [0.25, 4], got {scales}")
    smoothness = check_positive_float(smoothness, "smoothness")
    if consistency is not None:
        consistency = check_positive_float(consistency, "consistency")
    trust = check_positive_float(trust, "trust")
    edge = check_positive_float(edge, "edge")
    spread = check_positive_float(spread, "spread")
    floor = float(floor)
    if not 0 <= floor <= 1:
        raise ValueError(f"floor must be in [0, 1], got {floor}")
    x, spec = to_tensor(target, "target", device=device)
    if spec.kind == "pil" and spec.mode == "F":  # the RGB result holds 8 bits of [0, 1]
        check_unit_float(np.asarray(target), "target")
    ref, _ = to_tensor(reference, "reference", device=x.device)
    ref = ref.to(x.dtype)
    check_reference(ref)
    hr, wr = ref.shape[-2:]
    if patch_size > min(hr, wr) or patch_size > min(x.shape[-2:]):
        raise ValueError(
            f"patch_size={patch_size} is larger than the target ({x.shape[-1]}x"
            f"{x.shape[-2]}) or the reference ({wr}x{hr})"
        )
    seed = resolve_seed(seed)
    warn_colour_target(x)

    outs = []
    check = propagate and consistency is not None
    # one step per search (per scale: forward, and backward for the check), one for
    # the propagation and the conversion back to RGB, per image of the batch
    per_image = len(scales) * (2 if check else 1) + 1
    total = per_image * x.shape[0]
    done = [0]

    def step() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    with torch.no_grad():
        for i in range(x.shape[0]):
            xi = x[i : i + 1]
            y = _luma_of(xi)
            start = done[0]
            chroma, d1, var, t, err = _match_scales(
                y, ref[:, :3], scales, patch_size=patch_size, k=k, iters=pm_iters,
                window=window, stats_weight=stats_weight, temperature=temperature,
                seed=seed + i, backend=backend, consistency=check, step=step,
            )  # fmt: skip
            done[0] = start + per_image - 1  # scales too small for a patch were skipped
            if propagate:
                conf = torch.exp(-d1 / t) if t != float("inf") else torch.ones_like(d1)
                conf = (conf * torch.exp(-var / (spread * spread))).clamp_min(floor)
                if err is not None:  # consistent matches: trusted as voted
                    ok = torch.exp(-((err / consistency) ** 2))
                    conf = conf * (1 - ok) + trust * ok
                chroma = propagate_values(chroma, conf, y, smoothness=smoothness, sigma=edge)
            rgb = luma_chroma_to_rgb(y, chroma)
            if xi.shape[1] in (2, 4):  # keep alpha
                rgb = torch.cat([rgb, xi[:, -1:]], 1)
            outs.append(rgb)
            step()
    out = torch.cat(outs, 0)
    return from_tensor(out, spec.with_channels(out.shape[1]))

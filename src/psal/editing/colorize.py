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

Numpy arrays and PIL images on the CPU (with the compiled search, the default) are
coloured on numpy arrays, without importing torch (``psal colorize`` starts ~0.8 s
sooner); tensors, and other devices, in torch. The two paths run the same steps; their
results agree to float rounding in the resampling (~1e-5), which can change a
PatchMatch choice where two reference patches are within it of each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .._checks import (
    check_int,
    check_patch_size,
    check_positive_float,
    check_progress,
    resolve_seed,
)
from .._deprecation import keyword_only
from ..patchmatch.backends import compiled_cpu
from ..utils.arrays import Array, arange, astype, concat, is_tensor, namespace
from ..utils.color import (
    check_reference,
    luma,
    luma_chroma_to_rgb,
    rgb_to_luma_chroma,
    warn_colour_target,
)
from ..utils.convert import ImageLike, carry_metadata, check_unit_float, from_array, to_array
from ..utils.filters import box_sum
from ..utils.progress import ProgressCallback
from ._alpha import has_transparency
from ._propagate import propagate as propagate_values
from ._temperature import wexler_temperature

if TYPE_CHECKING:
    import torch
else:
    from ..utils.arrays import lazy_torch as torch  # for annotations (imports torch if resolved)

__all__ = ["colorize"]


def _luma_of(x: Array) -> Array:
    """Luma of a (1, C, H, W) image: C = 1 or 2 (gray, gray + alpha) or 3, 4 (RGB[A])."""
    return x[:, :1] if x.shape[1] <= 2 else luma(x[:, :3])


def _box_mean(yp: Array, size: int) -> Array:
    """Means of the ``size x size`` windows lying inside ``yp`` (``avg_pool2d``, stride 1).

    From running sums in float64 (:func:`psal.utils.filters.box_sum`), in the dtype of
    ``yp``: :func:`_local_stats` passes float64, so that a local standard deviation
    ``sqrt(E[y²] - E[y]²)`` in flat regions is not float32 cancellation noise (up to
    4e-4 when the two means were rounded to float32 before the difference, as with
    ``avg_pool2d``), and both paths agree.
    """
    r = size // 2
    h, w = yp.shape[-2:]
    return box_sum(yp, size)[..., r : h - r, r : w - r] / (size * size)


def _local_stats(y: Array, window: int) -> tuple[Array, Array]:
    r = window // 2
    pad = min(r, y.shape[-2] - 1, y.shape[-1] - 1)
    if pad > 0 and isinstance(y, np.ndarray):
        yp = np.pad(y, [(0, 0), (0, 0), (pad, pad), (pad, pad)], mode="reflect")
    elif pad > 0:
        import torch.nn.functional as F

        yp = F.pad(y, (pad, pad, pad, pad), mode="reflect")
    else:
        yp = y
    # the difference of the two means in float64: in float32 it cancels to noise
    yp = astype(yp, "float64")
    mean = _box_mean(yp, 2 * pad + 1)
    sq = _box_mean(yp * yp, 2 * pad + 1)
    std = namespace(y).sqrt((sq - mean * mean).clip(0))
    return astype(mean, y), astype(std, y)


def _features(y: Array, window: int, stats_weight: float) -> Array:
    mean, std = _local_stats(y, window)
    return concat([y, stats_weight * mean, 2 * stats_weight * std], 1)


#: Largest ``k`` accepted: each target pixel averages k reference patches per scale;
#: beyond a few the colours only blur, and work and memory grow linearly with k.
MAX_K = 32


def _resize(x: Array, scale: float) -> Array:
    if scale == 1.0:
        return x
    h, w = x.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if isinstance(x, np.ndarray):
        from .upscale import resize_array

        return resize_array(x, size, mode="bilinear")
    from ..utils.resample import interpolate

    return interpolate(x, size, mode="bilinear", antialias=scale < 1)


def _std(x: Array, floor: float) -> Array:
    """The sample standard deviation (torch's default, ``ddof=1``), at least ``floor``."""
    if isinstance(x, np.ndarray):
        return np.maximum(x.std(ddof=1), x.dtype.type(floor))
    return x.std().clamp_min(floor) if floor > 0 else x.std()


def _search(q: Array, kf: Array, *, k: int, patch_size: int, iters: int, seed: int,
            backend: str, key_valid: Array | None = None) -> tuple[Array, Array]:  # fmt: skip
    """``(indices, distances)`` of the k nearest patches.

    :func:`psal.patchmatch` on tensors, its compiled numpy entry on arrays (the caller
    chose it). ``key_valid``: (1, 1, Hk, Wk) bool, a key patch touching a False pixel
    is never returned (None: every patch).
    """
    if isinstance(q, np.ndarray):
        from ..patchmatch.cpu_numba import search_arrays

        key_ok = None if key_valid is None else box_sum(~key_valid, patch_size) == 0
        return search_arrays(q, kf, k=k, patch_size=patch_size, iters=iters, query_valid=None,
                             key_ok=key_ok, seed=seed, init=None)  # fmt: skip
    from ..patchmatch import patchmatch

    field = patchmatch(q, kf, k=k, patch_size=patch_size, iters=iters, seed=seed,
                       backend=backend, key_valid=key_valid)  # fmt: skip
    return field.indices, field.distances


def _opaque_keys(alpha: Array, window: int) -> Array:
    """Reference pixels a key patch may cover.

    Those with ``alpha >= 0.5`` over their whole feature window (their local
    statistics read ``window // 2`` pixels around them), so that no colour or feature
    of a transparent part of the reference is matched.
    """
    return box_sum(~(alpha >= 0.5), 2 * (window // 2) + 1) == 0


def _no_opaque_patch(patch_size: int, window: int) -> ValueError:
    """The error for a reference whose opaque part holds no patch (names ``reference``)."""
    n = patch_size + 2 * (window // 2)
    return ValueError(
        f"reference: its opaque part (alpha >= 0.5) holds no {n}x{n} area to take "
        "colours from (a transparent reference pixel is not used); give a reference "
        "with more opaque pixels"
    )


def _check_opaque(alpha: Array | None, patch_size: int, window: int) -> None:
    """Refuse, before any work, a reference whose opaque part holds no patch."""
    if alpha is not None:
        ok = _opaque_keys(alpha, window)
        if not bool((box_sum(~ok, patch_size) == 0).any()):
            raise _no_opaque_patch(patch_size, window)


def _vote(value: Array, indices: Array, distances: Array, patch_size: int, t: float) -> Array:
    """Patch vote of ``value`` over the field (``psal.layers.vote``), (1, C, H, W)."""
    if isinstance(value, np.ndarray):
        from ..layers.vote import vote_arrays

        _, _, h, w = indices.shape
        ys, xs = (a.reshape(-1) for a in np.indices((h, w), dtype=np.int64))
        out, _ = vote_arrays(value, indices, distances, patch_size // 2, t,
                             np.zeros_like(ys), ys, xs)  # fmt: skip
        return out.reshape(1, -1, h, w)
    from ..layers.vote import vote

    return vote(value, indices, distances, patch_size, t)[0]


def _softmax1(z: Array) -> Array:
    """Softmax over dimension 1."""
    if not isinstance(z, np.ndarray):
        return z.softmax(1)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def forward_backward_error(forward: Array, backward: Array) -> Array:
    """Distance, in target pixels, from each target pixel to the end of its round trip.

    Target pixel ``p`` is matched to reference pixel ``q = forward[p]``, whose own match
    in the target is ``backward[q]``; the error is ``|backward[q] - p|``. A true
    correspondence comes back to ``p`` (error about 0); a flat or unmatched region,
    whose match is one look-alike among many, lands anywhere (Sundaram et al. 2010;
    the left-right check of stereo).

    Args:
        forward: (1, 1, H, W) int64 flat indices into the reference (W' columns).
        backward: (1, 1, H', W') int64 flat indices into the target (W columns).
            Tensors or numpy arrays (both of one kind).

    Returns:
        (1, 1, H, W) float32 Euclidean error in pixels.
    """
    h, w = forward.shape[-2:]
    back = backward.reshape(-1)[forward.reshape(-1).clip(0)].reshape(h, w)
    yy = arange(forward, h).reshape(h, 1)
    xx = arange(forward, w).reshape(1, w)
    err = namespace(forward).sqrt(astype((back // w - yy) ** 2 + (back % w - xx) ** 2, "float32"))
    return err.reshape(1, 1, h, w)


def _match_scales(
    y: Array,
    ref: Array,
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
    alpha: Array | None = None,
) -> tuple[Array, Array, Array, float, Array | None]:
    """Votes of every scale, blended per pixel by their match distances.

    ``alpha``: the reference's (1, 1, H, W) alpha if it is partly transparent; its
    transparent pixels are then neither matched nor counted in the luminance
    statistics (their colour, black in most files, is not seen).

    Returns voted chroma (1, 2, H, W); nearest distance and proposals' variance (1, 1,
    H, W); the temperature T; with ``consistency``, the forward-backward error (1, 1,
    H, W) of the nearest matches, blended over the scales like the votes (else None).
    ``step`` is called after each search.
    """
    q = _features(y, window, stats_weight)
    votes, dists, temps, errors = [], [], [], []
    for j, s in enumerate(scales):
        if alpha is None:
            r = _resize(ref, s)
        else:  # premultiplied: a visible pixel's colour takes nothing from hidden ones
            a = _resize(alpha, s)
            r = _resize(ref * alpha, s) / namespace(a).where(a > 1e-6, a, 1.0)
        if min(r.shape[-2:]) < patch_size:
            continue
        y_ref, chroma_ref = rgb_to_luma_chroma(r.clip(0, 1))
        valid, y_seen = None, y_ref
        if alpha is not None:
            valid = _opaque_keys(a, window)
            n_valid = int((box_sum(~valid, patch_size) == 0).sum())
            if n_valid == 0:
                continue
            seen = a >= 0.5
            y_seen = y_ref[seen]
            y_ref = namespace(y_ref).where(seen, y_ref, y_seen.mean())  # flat, unmatched
        # Welsh et al.'s luminance remapping of the reference to the target's statistics
        y_map = (y_ref - y_seen.mean()) * (_std(y, 0.0) / _std(y_seen, 1e-6)) + y.mean()
        kf = _features(y_map, window, stats_weight)
        kk = min(k, r.shape[-2] * r.shape[-1] if valid is None else n_valid)
        indices, distances = _search(q, kf, k=kk, patch_size=patch_size, iters=iters,
                                     seed=seed + 7919 * j, backend=backend,
                                     key_valid=valid)  # fmt: skip
        if step is not None:
            step()
        t = temperature if temperature is not None else wexler_temperature(distances)
        both = concat([chroma_ref, chroma_ref * chroma_ref], 1)
        votes.append(_vote(both, indices, distances, patch_size, t))
        dists.append(astype(distances[:, :1], y))
        temps.append(t)
        if consistency:  # the reference's own nearest patches in the target
            back, _ = _search(kf, q, k=1, patch_size=patch_size, iters=iters,
                              seed=seed + 7919 * j + 17, backend=backend)  # fmt: skip
            errors.append(forward_backward_error(indices[:, :1], back))
            if step is not None:
                step()
    if not votes:  # every scale too small, or with no opaque patch
        if alpha is not None:
            raise _no_opaque_patch(patch_size, window)
        raise ValueError(
            f"reference: at scales {scales} it holds no {patch_size}x{patch_size} patch; "
            "give larger scales or a larger reference"
        )
    t = min(temps)
    d = concat(dists, 1)
    # per pixel, the scales whose patches match best dominate the blend
    tb = t / 4 if t != float("inf") else float("inf")
    w = _softmax1(-d / tb) if tb != float("inf") else namespace(d).full_like(d, 1 / d.shape[1])
    voted = sum(w[:, i : i + 1] * v for i, v in enumerate(votes))
    chroma = voted[:, :2]
    # weighted variance of the proposed colours: high where look-alike patches disagree
    var = (voted[:, 2:] - chroma * chroma).clip(0).sum(1)[:, None]
    err = sum(w[:, i : i + 1] * astype(e, y) for i, e in enumerate(errors)) if errors else None
    return chroma, namespace(d).amin(d, 1)[:, None], var, t, err


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
            luminance. An alpha channel is kept. Float images must be in [0, 1]
            (integer types use their full range).
        reference: a colour image (3 or 4 channels), any size (at least ``patch_size``);
            floats in [0, 1], as ``target``.
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
        seed: makes the result reproducible (None: a fresh seed, from
            torch's generator if torch is imported: ``torch.manual_seed`` repeats it).
        device: torch device for the work (default: the target's, or CPU).
        backend: PatchMatch backend.
        progress: called as ``progress(done, total)`` after each PatchMatch search
            and after each image's propagation; None: no reports.

    Returns:
        The coloured image, same kind and dtype as ``target``, with 3 channels (4 with
        alpha): a PIL ``L`` image gives ``RGB``, ``LA`` gives ``RGBA``, a numpy
        ``(H, W)`` array gives ``(H, W, 3)``; floats in [0, 1]. Its luminance (BT.601
        luma) equals the target's to float rounding in floating point, and to within
        rounding (half a level) for integer types.

    Raises:
        ValueError: a reference without colour channels, or smaller than a patch; a
            float ``target`` or ``reference`` with values outside [0, 1]; an option
            out of range (``k`` above :data:`MAX_K`, ...).
        TypeError: unsupported input types; a ``progress`` that is not callable.

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
    progress = check_progress(progress)
    use_np = not is_tensor(target) and not is_tensor(reference) and compiled_cpu(device, backend)
    if use_np:
        x, spec = to_array(target, "target")
        ref, _ = to_array(reference, "reference")
    else:
        from ..utils.convert import to_tensor

        x, spec = to_tensor(target, "target", device=device)
        ref, _ = to_tensor(reference, "reference", device=x.device)
    # a float target outside [0, 1] would come back gray (its luma leaves the gamut);
    # integer types lie in [0, 1] once divided by their full range, and pass
    check_unit_float(x, "target")
    check_reference(ref)
    ref = astype(ref, x)
    ref_alpha = ref[:, 3:4] if has_transparency(ref) else None  # its clear part is unseen
    hr, wr = ref.shape[-2:]
    if patch_size > min(hr, wr) or patch_size > min(x.shape[-2:]):
        raise ValueError(
            f"patch_size={patch_size} is larger than the target ({x.shape[-1]}x"
            f"{x.shape[-2]}) or the reference ({wr}x{hr})"
        )
    _check_opaque(ref_alpha, patch_size, window)
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

    if use_np:
        grad_off = contextlib.nullcontext()
    else:
        import torch

        grad_off = torch.no_grad()
    xp = namespace(x)
    with grad_off:
        for i in range(x.shape[0]):
            xi = x[i : i + 1]
            y = _luma_of(xi)
            start = done[0]
            chroma, d1, var, t, err = _match_scales(
                y, ref[:, :3], scales, patch_size=patch_size, k=k, iters=pm_iters,
                window=window, stats_weight=stats_weight, temperature=temperature,
                seed=seed + i, backend=backend, consistency=check, step=step, alpha=ref_alpha,
            )  # fmt: skip
            done[0] = start + per_image - 1  # scales too small for a patch were skipped
            if propagate:
                conf = xp.exp(-d1 / t) if t != float("inf") else xp.ones_like(d1)
                conf = (conf * xp.exp(-var / (spread * spread))).clip(floor)
                if err is not None:  # consistent matches: trusted as voted
                    ok = xp.exp(-((err / consistency) ** 2))
                    conf = conf * (1 - ok) + trust * ok
                chroma = propagate_values(chroma, conf, y, smoothness=smoothness, sigma=edge)
            # in the gamut to rounding (1 + 2e-16, -1e-8): clipped into [0, 1] exactly
            rgb = luma_chroma_to_rgb(y, chroma).clip(0, 1)
            if xi.shape[1] in (2, 4):  # keep alpha
                rgb = concat([rgb, xi[:, -1:]], 1)
            outs.append(rgb)
            step()
    out = concat(outs, 0)
    spec = spec.with_channels(out.shape[1])
    if use_np:
        return carry_metadata(from_array(astype(out, x), spec), target)
    from ..utils.convert import from_tensor

    return carry_metadata(from_tensor(out, spec), target)

"""Patch-based inpainting: multi-scale PatchMatch completion (Wexler 2007, Newson 2014).

The hole is filled by alternating, at each scale of an image pyramid,

1. a nearest-neighbour search (:func:`psal.patchmatch`) for every patch that touches
   the hole, among the patches entirely outside it (``query_valid`` = pixels whose
   patch touches the hole, so the work scales with the hole; ``key_valid`` = not hole),
   started from the previous field (``init``);
2. patch voting: each hole pixel becomes the weighted average of the pixels that all
   overlapping patches' neighbours propose for it, weights ``exp(-d / T)``: PSAL's
   ``aggregation="patch"``. One search + vote is masked PSAL self-attention,
   ``psal.ps_attention(img, img, img, aggregation="patch", hole=hole, init=field)``,
   computed by :func:`_em_step` with the layer's streaming inference path,
   :func:`psal.layers.vote`, at the hole pixels only, so memory scales with the hole.

At the finest scale the vote is winner-takes-all by default (``vote="best"``): each
hole pixel takes the value proposed by the best-matching patch that covers it
(:func:`psal.editing._mode.mode_vote`), as Newson et al. (2014) take the weighted mode
of the proposals; averaging them there blurs the texture (see docs/editing.md).

Patches are compared on the colours and, as Newson et al. (2014), on two texture
features (the mean absolute horizontal and vertical luma derivatives around each pixel,
from known pixels only, weighted by ``texture_weight``), which are extra channels of the
image at every scale and are filled with it: without them a smooth coarse estimate
matches smooth sources (an out-of-focus background) and the fill stays flat.

The coarsest scale is the one where the hole is a few pixels thick; it starts from a
smooth onion-peel fill. Each finer scale starts from the coarser field, upsampled, and
from the image those matches vote. Known pixels are never changed (bit for bit in the
returned image). Only a window around the hole (its bounding box grown by half its
larger side, at least :data:`CONTEXT_MIN` pixels) is converted and searched, so time and
memory follow the hole, not the image.

Numpy and PIL images on the CPU are filled on numpy arrays with the compiled kernels
(:func:`psal.patchmatch.cpu_numba.search_arrays`, :func:`psal.layers.vote.vote_arrays`),
without importing torch: ``import torch`` alone costs several times a whole fill. Tensors,
other devices and the ``torch`` / ``exact`` backends take the same code on tensors
(:mod:`psal.utils.arrays`); both give the same bits on the CPU (tested).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

from .._checks import (
    check_int,
    check_patch_size,
    check_positive_float,
    check_progress,
    resolve_seed,
)
from ..layers.vote import vote_arrays
from ..patchmatch.backends import compiled_cpu
from ..utils.arrays import Array, astype, concat, contiguous, copy, is_tensor, namespace, nonzero
from ..utils.convert import ImageLike, carry_metadata, from_array, to_array
from ..utils.filters import box_sum
from ..utils.masks import to_mask_array
from ..utils.progress import ProgressCallback
from ._alpha import has_transparency, premultiply, unpremultiply
from ._mode import mode_vote
from ._poisson import poisson_fill
from ._pyramid import (
    bbox,
    block_any,
    dilate,
    downsample,
    fill_smooth,
    hole_radius,
    texture_features,
    upsample_field,
)
from ._temperature import wexler_temperature

if TYPE_CHECKING:
    import torch
else:
    from ..utils.arrays import lazy_torch as torch  # for annotations (imports torch if resolved)

__all__ = ["inpaint"]

#: The window searched for sources: the hole's bounding box grown on each side by
#: half its larger side, and by at least this many pixels (on a 4000x3000 photo with a
#: 1100-pixel person, half rather than the whole side: 32 s -> 14 s CPU, 2.2 -> 1.45 GB).
CONTEXT_MIN = 256

VOTES = ("best", "mean")

#: With ``vote="best"``, the finest this many scales vote winner-takes-all.
BEST_LEVELS = 1

#: A coarse pixel is known when this fraction of its filter weight falls on known fine
#: pixels (:func:`psal.editing._pyramid.downsample`): thin holes vanish after a few
#: scales and the coarse layout is an average of what surrounds them (+0.5 dB hole
#: PSNR and faster than 0.25 on the benchmark, see docs/editing.md).
KNOWN_FRACTION = 0.1

#: Side of the window over which the texture features average the luma derivatives.
TEXTURE_WINDOW = 5

#: Conjugate-gradient steps of the gradient-domain reconstruction (at most); None: a cap
#: that grows with the hole (:func:`psal.editing._poisson.poisson_fill`, which warns if
#: it stops short of its tolerance).
POISSON_ITERS: int | None = None

#: Default search + vote iterations (``em_iters=None``): at the finest scale with
#: ``vote="best"``, and at every coarser scale. Winner-takes-all copies each hole pixel
#: from the best patch that covers it, so after one iteration the field already matches
#: the estimate it voted: further finest iterations changed hole PSNR and the gradient
#: ratio by under 0.05 dB / 0.01 on the tuning set and took a quarter of the time
#: (docs/editing.md, "Third round").
FINE_ITERS_BEST = 1
COARSE_ITERS = 5


class _Level:
    """One pyramid level: image, hole, the query crop around the hole."""

    def __init__(self, image: Array, hole: Array, patch_size: int, forbid: Array | None = None):
        r = patch_size // 2
        self.image = image
        self.hole = hole
        forbid = hole if forbid is None else forbid
        self.forbid = forbid  # hole, or outside the source mask: never copied from
        # patches that touch the hole: a square dilation equals ~valid_key_positions
        # (reflected border pixels lie inside the clipped square), at a cost that follows
        # the hole
        self.touch = dilate(hole, r)
        # the crop holds every touching patch whole (reflection only at image borders),
        # so searching it against the whole image is the same as a masked full search
        self.box = bbox(self.touch, r)
        y0, y1, x0, x1 = self.box
        self.origin = (y0, x0)
        self.touch_crop = contiguous(self.touch[..., y0:y1, x0:x1])
        hy, hx = nonzero(hole[0, 0])
        self.ys, self.xs = hy, hx  # hole pixels, image coordinates
        self.n_valid = int((~dilate(forbid, r)).sum())

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[-2], self.image.shape[-1]

    def crop(self, image: Array) -> Array:
        y0, y1, x0, x1 = self.box
        return contiguous(image[..., y0:y1, x0:x1])


def _build_pyramid(
    image: Array,
    hole: Array,
    patch_size: int,
    k: int,
    levels: int | None,
    forbid: Array,
    has_source: bool,
) -> list[_Level]:
    pyramid = [_Level(image, hole, patch_size, forbid)]
    if pyramid[0].n_valid < k:
        few = f"no {patch_size}x{patch_size} patch" if k == 1 else (
            f"fewer than k={k} {patch_size}x{patch_size} patches")  # fmt: skip
        if has_source:
            raise ValueError(
                f"source_mask leaves {few} inside the source area and outside the hole: "
                "nothing to copy from (allow a larger source area)"
            )
        raise ValueError(
            f"the mask leaves {few} entirely outside the hole: nothing to copy from (use a "
            "smaller patch_size or mask)"
        )
    target = max(2, patch_size // 2)
    while levels is None or len(pyramid) <= levels:
        top = pyramid[-1]
        h, w = top.size
        if levels is None and hole_radius(top.hole, target + 1) <= target:
            break
        if min(math.ceil(h / 2), math.ceil(w / 2)) < 2 * patch_size:
            break
        img_c, hole_c = downsample(top.image, top.hole, KNOWN_FRACTION)
        if bool(hole_c.all()) or not bool(hole_c.any()):
            break  # nothing known, or the hole vanished at that scale
        # a coarse pixel may be copied from only if its whole 2x2 block may be
        barred = top.forbid & ~top.hole
        forbid_c = hole_c | block_any(barred)
        level = _Level(img_c, hole_c, patch_size, forbid_c)
        if level.n_valid < max(k, 4 * patch_size * patch_size):
            break  # too little known texture left at that scale
        pyramid.append(level)
    return pyramid


def _search(cur: Array, level: _Level, field: Array | None, *, k: int, patch_size: int,
            pm_iters: int, seed: int, backend: str) -> tuple[Array, Array]:  # fmt: skip
    """The level's search: its crop of ``cur`` against ``cur``, sources outside ``forbid``.

    ``psal.patchmatch(level.crop(cur), cur, query_valid=level.touch_crop,
    key_valid=~level.forbid, init=field, ...)``; numpy arrays call the compiled search
    directly (the pyramid already checked that every level has ``k`` sources).
    """
    if isinstance(cur, np.ndarray):
        from ..patchmatch.cpu_numba import search_arrays

        return search_arrays(level.crop(cur), cur, k=k, patch_size=patch_size, iters=pm_iters,
                             query_valid=level.touch_crop,
                             key_ok=box_sum(level.forbid, patch_size) == 0,
                             seed=seed & (2**63 - 1), init=field)  # fmt: skip
    from ..patchmatch import patchmatch

    res = patchmatch(level.crop(cur), cur, k=k, patch_size=patch_size, iters=pm_iters,
                     query_valid=level.touch_crop, key_valid=~level.forbid, seed=seed,
                     backend=backend, init=field)  # fmt: skip
    return res.indices, res.distances


def _vote(cur: Array, indices: Array, distances: Array, patch_size: int, temperature: float,
          ys: Array, xs: Array) -> tuple[Array, Array]:  # fmt: skip
    """:func:`psal.layers.vote` at the query pixels ``(ys, xs)``: ``(vals (C, N), covered)``."""
    if isinstance(cur, np.ndarray):
        zeros = np.zeros_like(ys)
        return vote_arrays(cur, indices, distances, patch_size // 2, temperature, zeros, ys, xs)
    import torch

    from ..layers.vote import vote

    return vote(cur, indices, distances, patch_size, temperature,
                pixels=(torch.zeros_like(ys), ys, xs))  # fmt: skip


def _em_step(
    cur: Array,
    level: _Level,
    field: Array | None,
    *,
    k: int,
    patch_size: int,
    pm_iters: int,
    temperature: float | None,
    seed: int,
    backend: str,
    best: bool = False,
) -> tuple[Array, Array, Array]:
    """One search + vote iteration: masked PSAL self-attention of the image.

    The result is ``psal.ps_attention(cur, cur, cur, k=k, patch_size=patch_size,
    iters=pm_iters, temperature=T, aggregation="patch", hole=hole, init=field,
    return_field=True)`` (tested equal with
    the exact search), with the query cropped to the patches that touch the hole and the
    vote (:func:`psal.layers.vote`) computed at the hole pixels only. With ``best``, the
    vote is winner-takes-all instead (:func:`mode_vote` with no mean-shift step).

    Returns:
        ``(image, field, distances)``, field and distances over the level's crop.
    """
    indices, distances = _search(cur, level, field, k=k, patch_size=patch_size,
                                 pm_iters=pm_iters, seed=seed, backend=backend)  # fmt: skip
    oy, ox = level.origin
    hy, hx = level.ys, level.xs
    if best:
        vals, covered = mode_vote(cur, indices, distances, patch_size, (hy - oy, hx - ox),
                                  iters=0)  # fmt: skip
    else:
        t = temperature
        if t is None:
            t = wexler_temperature(distances, level.touch_crop)
        vals, covered = _vote(cur, indices, distances, patch_size, t, hy - oy, hx - ox)
    # in place: ``cur`` is the caller's working copy (one image copy less at the peak)
    cur[0][:, hy, hx] = namespace(cur).where(covered, vals, cur[0][:, hy, hx])
    return cur, indices, distances


def _inpaint_one(
    image: Array,
    hole: Array,
    forbid: Array,
    has_source: bool,
    *,
    vote_best: bool,
    texture_weight: float,
    gradient_domain: bool,
    patch_size: int,
    k: int,
    levels: int | None,
    em_iters: int | None,
    pm_iters: int,
    temperature: float | None,
    seed: int,
    backend: str,
    progress: ProgressCallback | None,
    done: list[int],
    total_ref: list[int],
) -> Array:
    xp = namespace(image)
    n_ch = image.shape[1]
    if texture_weight > 0:  # searched and voted as extra channels, dropped at the end
        feats = texture_features(image, hole, TEXTURE_WINDOW) * texture_weight
        image = concat([image, astype(feats, image)], 1)
    pyramid = _build_pyramid(image, hole, patch_size, k, levels, forbid, has_source)
    n_levels = len(pyramid)
    if em_iters is None:  # the finest scale, then every coarser one
        fine, coarse = (FINE_ITERS_BEST if vote_best else COARSE_ITERS - 2), COARSE_ITERS
    else:
        fine, coarse = em_iters, em_iters + 2
    iters_at = [fine] + [coarse] * (n_levels - 1)
    total_ref[0] += sum(iters_at)
    field = None
    prev: _Level | None = None
    prev_image: Array | None = None
    for lv in range(n_levels - 1, -1, -1):
        level = pyramid[lv]
        cur = copy(level.image)
        hy, hx = level.ys, level.xs
        if prev is None:
            cur = fill_smooth(cur, level.hole)
        else:
            field = upsample_field(
                field, prev.origin, prev.size, level.origin, level.touch_crop.shape[-2:], level.size
            )
            # the upsampled matches vote the first fine estimate (plain average). A match
            # good at the coarse scale may put a fine patch over the hole (its coarse
            # pixels known at a tenth of their weight): the hole holds the coarse
            # estimate (nearest x2) when it is read, never what the input had there
            fallback = prev_image[0][:, hy // 2, hx // 2]
            cur[0][:, hy, hx] = fallback
            oy, ox = level.origin
            zero_d = astype(xp.zeros_like(field), cur)
            vals, covered = _vote(cur, field, zero_d, patch_size, float("inf"), hy - oy, hx - ox)
            cur[0][:, hy, hx] = xp.where(covered, vals, fallback)
        for it in range(iters_at[lv]):
            cur, field, dist = _em_step(
                cur, level, field, k=k, patch_size=patch_size, pm_iters=pm_iters,
                temperature=temperature, backend=backend, best=vote_best and lv < BEST_LEVELS,
                seed=(seed + 7919 * lv + 104729 * it) % (2**62),
            )  # fmt: skip
            done[0] += 1
            if progress is not None:
                progress(done[0], total_ref[0])
        prev, prev_image = level, cur
    cur = cur[:, :n_ch]
    if gradient_domain and vote_best:
        cur = _gradient_domain(cur, pyramid[0], field, dist, patch_size)
    return cur


def _gradient_domain(
    image: Array, level: _Level, field: Array, dist: Array, patch_size: int
) -> Array:
    """Rebuild the winner-takes-all fill from its sources' differences (Poisson).

    The winner of each hole pixel is found again by voting the pixel coordinates with
    the same field and distances (the winner depends on the distances only), then
    :func:`psal.editing._poisson.poisson_fill` solves for the hole.
    """
    from ..utils.arrays import arange

    xp = namespace(image)
    h, w = level.size
    oy, ox = level.origin
    # in the image's dtype, as the search's distances: float32 holds every coordinate
    # exactly, and the vote's kernel is already loaded for that dtype
    gy, gx = (astype(arange(image, n), image) for n in (h, w))
    grid = concat([g[None] for g in xp.meshgrid(gy, gx, indexing="ij")], 0)
    where, covered = mode_vote(grid[None], field, dist, patch_size,
                               (level.ys - oy, level.xs - ox), iters=0)  # fmt: skip

    def source(coord: Array) -> Array:
        return astype(xp.nan_to_num(coord, nan=0.0).round(), "int64")

    # uncovered pixels (none when every hole pixel is searched) keep their own value
    sy = xp.where(covered, source(where[0]), level.ys)
    sx = xp.where(covered, source(where[1]), level.xs)
    image = contiguous(image)
    vals = poisson_fill(image, level.hole, level.ys, level.xs, sy, sx, iters=POISSON_ITERS)
    image[0][:, level.ys, level.xs] = vals
    return image


def _within_range(filled: Array, x: Array, hole: Array) -> Array:
    """``filled`` clipped to [min(0, known), max(1, known)].

    The gradient-domain step can overshoot past the values it is built from (e.g.
    -0.03 on a float photo in [0, 1], which a later ``* 255`` as uint8 wraps to a
    bright speck). Integer images were clipped to [0, 1] by the conversion back anyway,
    so their results do not change; known pixels lie in the range and stay exact.
    """
    known = x[0][:, ~hole[0, 0]]
    lo = min(0.0, float(known.min()))
    hi = max(1.0, float(known.max()))
    return namespace(filled).clip(filled, lo, hi, out=filled)  # in place: a fresh copy


def _size_of(image: ImageLike) -> tuple[int, int] | None:
    """(H, W) of an image without converting it (None for what to_tensor will refuse)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.size[1], image.size[0]
    if (isinstance(image, np.ndarray) or is_tensor(image)) and image.ndim >= 2:
        dims = image.shape if isinstance(image, np.ndarray) else tuple(image.shape)
        if isinstance(image, np.ndarray):
            return (dims[0], dims[1]) if image.ndim in (2, 3) else None
        return (dims[-2], dims[-1]) if image.ndim in (2, 3, 4) else None
    return None


def _crop(image: ImageLike, box: tuple[int, int, int, int]) -> ImageLike:
    y0, y1, x0, x1 = box
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.crop((x0, y0, x1, y1))
    if isinstance(image, np.ndarray):
        return image[y0:y1, x0:x1]
    return image[..., y0:y1, x0:x1]


def _paste(image: ImageLike, part: ImageLike, box: tuple[int, int, int, int]) -> ImageLike:
    """``image`` (copied) with ``part``, the inpainted crop ``box``, in place."""
    y0, y1, x0, x1 = box
    from PIL import Image

    if isinstance(image, Image.Image):
        out = image.copy()
        out.paste(part, (x0, y0))
        return out
    if isinstance(image, np.ndarray):
        out = image.copy()
        out[y0:y1, x0:x1] = part
        return out
    out = image.detach().clone().to(part.device)
    out[..., y0:y1, x0:x1] = part
    return out


def _context_box(hole: Array) -> tuple[int, int, int, int]:
    """The window that is searched: the hole's box grown by half its larger side.

    (And by at least :data:`CONTEXT_MIN` pixels.)
    """
    y0, y1, x0, x1 = bbox(hole.any(0)[None])
    grow = max(CONTEXT_MIN, max(y1 - y0, x1 - x0) // 2)
    return bbox(hole.any(0)[None], grow)


def inpaint(
    image: ImageLike,
    mask: ImageLike,
    *,
    patch_size: int = 7,
    k: int = 1,
    levels: int | None = None,
    em_iters: int | None = None,
    pm_iters: int = 2,
    vote: str = "best",
    texture_weight: float = 3.0,
    gradient_domain: bool | None = None,
    temperature: float | None = float("inf"),
    mask_threshold: float = 0.5,
    dilate_mask: int = 0,
    source_mask: ImageLike | None = None,
    seed: int | None = None,
    device: torch.device | str | None = None,
    backend: str = "auto",
    progress: ProgressCallback | None = None,
) -> ImageLike:
    """Fill the masked region of an image from the rest of it (object removal).

    Multi-scale PatchMatch completion in the manner of Wexler et al. (2007) and Newson
    et al. (2014); see the module docstring. Every channel (alpha included) is filled
    (a partly transparent image in premultiplied alpha: the colour hidden under
    transparent pixels does not reach the fill); outside the hole the image is
    returned bit for bit. Only a window around the hole
    is read and searched (see :data:`CONTEXT_MIN`), so a small hole in a huge photo
    costs little time and memory.

    Args:
        image: numpy ``(H, W)`` / ``(H, W, C)`` (uint8, uint16 or float in [0, 1]), PIL
            image (L, LA, RGB, RGBA, I;16, ...), or tensor ``(C, H, W)`` /
            ``(B, C, H, W)``; grayscale, RGB, RGBA, any size.
        mask: same size as the image, True / white = hole: numpy, PIL or tensor (see
            :func:`psal.utils.image.to_mask`). Soft masks are cut at
            ``mask_threshold`` (default: values above half the range are hole, i.e.
            ``> 127`` for 8-bit masks). One mask may serve a whole batch.
        patch_size: odd patch side (7 suits photos; larger for coarse textures).
        k: neighbours per patch in the search. More average more proposals at the
            coarse scales (smoother, and blurrier: 1 measured sharpest).
        levels: number of coarser scales; None chooses it so that the hole is about a
            patch thick at the coarsest one.
        em_iters: search + vote iterations at the finest scale (two more at each coarser
            scale, where they are cheap). None (default): 1 at the finest scale with
            ``vote="best"`` (winner-takes-all reaches its fixed point in one; see
            :data:`FINE_ITERS_BEST`), 3 with ``vote="mean"``; 5 at the coarser ones.
        pm_iters: PatchMatch iterations per search (the search starts from the previous
            field, so a few suffice).
        vote: how the finest scale is voted: ``"best"`` (default), each hole pixel
            takes the value proposed by the best-matching patch that covers it
            (winner-takes-all; as sharp as the source texture), or ``"mean"``, the
            ``exp(-d / T)``-weighted average of all proposals (smoother; the coarser
            scales always vote so).
        texture_weight: weight of the two texture features (mean absolute luma
            derivatives over 5x5 pixels, Newson et al. 2014) in the patch distance,
            beside the colours in [0, 1]; 0 compares colours only (smoother fills).
        gradient_domain: with ``vote="best"``, rebuild the fill from the differences of
            the pixels it was copied from, with the known pixels as the boundary
            (a Poisson solve, Pérez et al. 2003): no seams between copied pieces and
            no level offsets, the texture inside each piece kept. False: the plain
            winner-takes-all copy. None (default): True, unless ``source_mask`` is
            given (the fill then takes its levels from the hole's border, not from
            the chosen source area, so the plain copy is kept there).
        temperature: T of the mean vote's weights ``exp(-d / T)``. The default,
            ``float("inf")``, averages all proposals plainly; None sets T at each step
            from the distances as Wexler et al. (twice their 75th percentile).
        mask_threshold: fraction of the mask's full range above which a pixel is a hole,
            in (0, 1).
        dilate_mask: grow the hole by this many pixels (a square; helps anti-aliased
            object outlines and shadows). Costs the same whatever the radius.
        source_mask: where content may be copied from, True / white = allowed (the
            "sampling area" of photo editors), same size and rules as ``mask``; None:
            anywhere outside the hole.
        seed: makes the result reproducible (None: a fresh seed, from
            torch's generator if torch is imported: ``torch.manual_seed`` repeats it).
        device: torch device for the work (default: the input's, or CPU).
        backend: PatchMatch backend (see :mod:`psal.patchmatch.backends`).
        progress: called as ``progress(done, total)`` after each iteration; None: no
            reports.

    Returns:
        The completed image, of the same kind, size, dtype and mode as ``image``. With an
        empty mask, a copy of ``image`` (and a warning).

    Raises:
        ValueError: mask and image sizes differ; the mask covers the whole image (or
            leaves no patch outside the hole), or ``source_mask`` leaves no patch to copy
            from; bad settings (named by their keyword: ``mask_threshold``, ...).
        TypeError: unsupported image or mask type; a ``progress`` that is not callable.

    Example:
        >>> import numpy as np, psal
        >>> img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        >>> mask = np.zeros((64, 64), bool); mask[20:30, 25:40] = True
        >>> out = psal.inpaint(img, mask, seed=0)
        >>> out.shape, out.dtype, bool((out[~mask] == img[~mask]).all())
        ((64, 64, 3), dtype('uint8'), True)
    """
    patch_size = check_patch_size(patch_size)
    k = check_int(k, "k", minimum=1)
    if em_iters is not None:
        em_iters = check_int(em_iters, "em_iters", minimum=1)
    pm_iters = check_int(pm_iters, "pm_iters", minimum=0)
    dilate_mask = check_int(dilate_mask, "dilate_mask", minimum=0)
    if levels is not None:
        levels = check_int(levels, "levels", minimum=0)
    if vote not in VOTES:
        raise ValueError(f"vote must be one of {', '.join(map(repr, VOTES))}, got {vote!r}")
    if texture_weight != 0:
        texture_weight = check_positive_float(texture_weight, "texture_weight")
    if temperature is not None and temperature != float("inf"):
        temperature = check_positive_float(temperature, "temperature")
    progress = check_progress(progress)
    hw = _size_of(image)
    if hw is None:
        _to_work(image, device, False)  # raises the error that names what was expected
    h, w = hw
    b = image.shape[0] if is_tensor(image) and image.ndim == 4 else 1
    use_np = _numpy_path(image, device, backend)
    hole = dilate(_mask(mask, h, w, b, mask_threshold, "mask", use_np), dilate_mask)
    src = None
    if source_mask is not None:
        src = _mask(source_mask, h, w, b, mask_threshold, "source_mask", use_np)
    if gradient_domain is None:
        gradient_domain = source_mask is None
    kw = dict(patch_size=patch_size, k=k, levels=levels, em_iters=em_iters, pm_iters=pm_iters,
              vote=vote, texture_weight=texture_weight, gradient_domain=bool(gradient_domain),
              temperature=temperature, seed=seed, use_np=use_np,
              device=device, backend=backend, progress=progress)  # fmt: skip
    if bool(hole.any()) and not any(bool(hole[i].all()) for i in range(b)):
        # only the window around the hole is converted and searched
        box = _context_box(hole)
        y0, y1, x0, x1 = box
        if (y1 - y0) * (x1 - x0) < h * w and _croppable(image):
            crop = (..., slice(y0, y1), slice(x0, x1))
            part = _inpaint_all(_crop(image, box), hole[crop],
                                None if src is None else src[crop], **kw)  # fmt: skip
            return carry_metadata(_paste(image, part, box), image)
    return carry_metadata(_inpaint_all(image, hole, src, stacklevel=3, **kw), image)


def _croppable(image: ImageLike) -> bool:
    """Whether a crop of ``image`` comes back from inpainting in the image's own mode."""
    from PIL import Image

    from ..utils.convert import result_mode

    return not isinstance(image, Image.Image) or result_mode(image) == image.mode


def _numpy_path(image: ImageLike, device: object, backend: str) -> bool:
    """Whether the fill runs on numpy arrays (no torch).

    So it does for a numpy or PIL image on the CPU with the compiled search (``backend``
    ``"numba"``, or ``"auto"`` resolving to it).
    """
    return not is_tensor(image) and compiled_cpu(device, backend)


def _mask(mask: ImageLike, h: int, w: int, b: int, threshold: float, name: str,
          use_np: bool) -> Array:  # fmt: skip
    """The (B, 1, H, W) bool mask: a numpy array for the numpy path, else a tensor."""
    warn = name == "mask"  # white in a source mask is the allowed area, not a hole
    if use_np and not is_tensor(mask):
        return to_mask_array(mask, h, w, threshold=threshold, name=name, warn=warn,
                             threshold_name="mask_threshold")  # fmt: skip
    from ..utils.masks import to_mask

    m = to_mask(mask, h, w, batch=b, threshold=threshold, name=name, warn=warn,
                threshold_name="mask_threshold")  # fmt: skip
    return m.numpy() if use_np else m


def _to_work(image: ImageLike, device: object, use_np: bool):
    """The image as a (B, C, H, W) float array (numpy path) or tensor, and its spec."""
    if use_np:
        return to_array(image, "image")
    from ..utils.convert import to_tensor

    return to_tensor(image, "image", device=device)


def _inpaint_all(
    image: ImageLike,
    hole: Array,
    source: Array | None,
    *,
    patch_size: int,
    k: int,
    levels: int | None,
    em_iters: int | None,
    pm_iters: int,
    vote: str,
    texture_weight: float,
    gradient_domain: bool,
    temperature: float | None,
    seed: int | None,
    use_np: bool,
    device: torch.device | str | None,
    backend: str,
    progress: ProgressCallback | None,
    stacklevel: int = 4,
) -> ImageLike:
    """Inpaint ``image`` (any kind) given the final (B, 1, H, W) hole and source masks."""
    x, spec = _to_work(image, device, use_np)

    def back(x: Array) -> ImageLike:
        if use_np:
            return from_array(x, spec)
        from ..utils.convert import from_tensor

        return from_tensor(x, spec)

    b, _, h, w = x.shape
    if not use_np:
        hole = hole.to(x.device)
    if not bool(hole.any()):
        warnings.warn("inpaint: the mask is empty; the image is returned unchanged",
                      stacklevel=stacklevel)  # fmt: skip
        return back(x)  # a copy, of the kind and mode a fill would give
    for i in range(b):
        if bool(hole[i].all()):
            raise ValueError(
                "the mask covers the whole image: there is no known pixel to copy from"
            )
    if patch_size > min(h, w):
        raise ValueError(f"patch_size={patch_size} is larger than the image ({w}x{h})")
    forbid = hole if source is None else hole | ~(source if use_np else source.to(x.device))
    seed = resolve_seed(seed)
    outs = []
    done, total = [0], [0]
    if use_np:
        grad = contextlib.nullcontext()
    else:
        import torch

        grad = torch.no_grad()
    with grad:
        for i in range(b):
            if not bool(hole[i].any()):
                outs.append(x[i : i + 1])
                continue
            xi = x[i : i + 1]
            # a partly transparent image is filled in premultiplied alpha (the colour
            # hidden under transparent pixels must not reach the visible fill)
            clear = has_transparency(xi)
            filled = _inpaint_one(
                premultiply(xi) if clear else xi, hole[i : i + 1], forbid[i : i + 1],
                source is not None,
                vote_best=vote == "best", texture_weight=texture_weight,
                gradient_domain=gradient_domain, patch_size=patch_size,
                k=k, levels=levels, em_iters=em_iters, pm_iters=pm_iters, temperature=temperature,
                seed=seed + i, backend=backend, progress=progress, done=done, total_ref=total,
            )  # fmt: skip
            if clear:  # straight colour again; the known pixels as they were
                filled = namespace(xi).where(hole[i : i + 1], unpremultiply(filled), xi)
            # a copy of x changed at the hole pixels only: known pixels are exact
            outs.append(_within_range(filled, xi, hole[i : i + 1]))
    return back(outs[0] if b == 1 else concat(outs, 0))

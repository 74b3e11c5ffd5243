"""Single-image super-resolution from the image itself (Glasner et al. 2009).

Small patches of a natural image recur at other scales of the same image, so the
image's own downscaled copy teaches what detail a blurry patch lost. Each x2 step
(x4 takes two; x3 takes one and is finished by bicubic resampling and back-projection):

1. ``U`` = the input ``L`` upsampled with bicubic interpolation: the right size but
   missing detail;
2. ``D`` = ``L`` downscaled by the same factor, and ``DU`` = ``D`` upsampled back to
   ``L``'s size: ``DU`` lacks, relative to ``L``, about what ``U`` lacks relative to
   the unknown sharp image, and ``L - DU`` is that missing detail;
3. PSAL across scales (cross-scale attention, Mei et al. 2020): :func:`psal.patchmatch`
   matches every patch of ``L`` against the patches of ``D`` (``L`` is to the sharp
   image what ``D`` is to ``L``), and each match pastes the twice larger patch of the
   detail ``L - DU`` around twice its position into ``U`` (a cross-scale vote, see
   :mod:`psal.editing._xscale`);
4. iterative back-projection (Irani & Peleg 1991): the result is corrected until
   downscaling it gives back the input.

The search runs on the small images (``L`` against ``D``) rather than on the enlarged
one, which makes it about 16 times cheaper than matching ``U`` against ``DU`` for the
same result (``docs/upscale.md``). Large images are processed in tiles (``tile``) with
a margin of context, so that memory follows a tile plus the output, not the image.

The downscaling model is antialiased bicubic resampling (Pillow's ``BICUBIC`` resize,
``torch.nn.functional.interpolate(..., antialias=True)``): images that were made
smaller that way are restored best; ``benchmarks/upscale.py`` also measures another
kernel.

On the CPU with the compiled search (numpy or PIL images, and CPU tensors), the work
runs on numpy arrays: :func:`resize_array` (torch's bicubic interpolation as separable
weights, equal to ``F.interpolate`` to float rounding, tested), the compiled search
(:func:`psal.patchmatch.cpu_numba.search_arrays`) and cross-scale vote, so that
``psal upscale`` does not import torch. Other devices and backends run the same steps
on tensors.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import TYPE_CHECKING

import numpy as np
from numba import njit
from PIL import Image

from .._checks import (
    check_int,
    check_patch_size,
    check_positive_float,
    check_progress,
    resolve_seed,
)
from .._deprecation import keyword_only
from ..utils.arrays import concat, is_tensor, namespace
from ..utils.color import luma
from ..utils.convert import ImageLike, ImageSpec, carry_metadata, from_array, to_array
from ..utils.parallel import FASTMATH, run_chunked
from ..utils.progress import ProgressCallback
from ._temperature import wexler_temperature
from ._xscale import cross_scale_vote, cross_scale_vote_arrays

if TYPE_CHECKING:
    import torch
else:
    from ..utils.arrays import lazy_torch as torch  # imported on first use

__all__ = ["SCALES", "TILE", "TILE_MARGIN", "check_scale", "resize", "upscale"]

#: Supported upscaling factors.
SCALES = (2, 3, 4)

#: Output pixels along a side of the automatic tile of :func:`upscale` (its input tile
#: is ``TILE // scale`` pixels: 768 at x2, 512 at x3, 384 at x4).
TILE = 1536

#: Input pixels of context around each tile (search and back-projection reach).
TILE_MARGIN = 32


def check_scale(scale: object, name: str = "scale") -> int:
    """Check an upscaling factor: 2, 3 or 4 (any integer type, or an integral float)."""
    if isinstance(scale, numbers.Real) and not isinstance(scale, bool):
        if isinstance(scale, numbers.Integral):
            scale = int(scale)
        elif float(scale).is_integer():
            scale = int(scale)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in SCALES:
        raise ValueError(f"{name} must be one of {', '.join(map(str, SCALES))}, got {scale!r}")
    return scale


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of a (B, C, H, W) float tensor, antialiased when shrinking.

    Numpy arrays go to :func:`resize_array` (the same interpolation).
    """
    if isinstance(x, np.ndarray):
        return resize_array(x, size)
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    from ..utils.resample import interpolate

    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    if x.device.type not in ("cpu", "cuda"):  # antialias is implemented on CPU and CUDA
        shrink = False
    return interpolate(x, size, mode="bicubic", antialias=shrink)


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter ``a``."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _triangle(x: np.ndarray) -> np.ndarray:
    """The linear interpolation kernel ``max(0, 1 - |x|)``."""
    return np.maximum(0.0, 1.0 - np.abs(x))


@functools.lru_cache(maxsize=64)
def _resize_taps(
    n_in: int, n_out: int, antialias: bool, mode: str = "bicubic", single: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Taps of torch's resampling along one axis: ``(first (n_out,), w (n_out, T))``.

    Output ``i`` is ``sum_t w[i, t] * x[first[i] + t]``. ``mode="bicubic"``: without
    antialias (enlarging), ``F.interpolate(mode="bicubic", align_corners=False)``: 4
    taps of Keys' kernel with a = -0.75 around ``(i + 0.5) n_in / n_out - 0.5``,
    indices clamped to the edge. With it (``antialias=True``, shrinking, as Pillow):
    a = -0.5, the kernel stretched by the scale, taps inside the input, weights
    normalised to sum 1. ``mode="bilinear"``: the same with the triangle kernel (2 taps
    around the source position, clamped at 0 as torch does, without antialias; the
    stretched triangle with it). ``single``: the bilinear taps are computed in float32,
    as torch does for float32 inputs (in float64 they differ by ~1e-5 at 500 pixels).
    """
    scale = n_in / n_out
    if mode == "bilinear":
        ft = np.float32 if single else np.float64
        scale = ft(n_in) / ft(n_out)
    if mode == "bilinear" and not antialias:
        if n_in == 1:  # both taps on the one pixel
            return np.zeros(n_out, dtype=np.int64), np.ones((n_out, 1))
        src = np.maximum(scale * (np.arange(n_out, dtype=ft) + ft(0.5)) - ft(0.5), ft(0))
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        lam = (src - i0.astype(ft)).astype(np.float64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w = np.zeros((n_out, 2))
        w[:, 0] = 1 - lam
        w[:, 1] = np.where(i1 > i0, lam, 0.0)
        w[:, 0] += np.where(i1 > i0, 0.0, lam)  # at the last pixel both taps are one
        return _inside(i0, w, n_in)
    if mode == "bilinear":  # antialiased: the stretched triangle, in torch's precision
        one, half = ft(1), ft(0.5)
        support = max(scale, one)
        centre = scale * (np.arange(n_out, dtype=ft) + half)
        lo = np.maximum((centre - support + half).astype(np.int64), 0)
        hi = np.minimum((centre + support + half).astype(np.int64), n_in)
        span = int((hi - lo).max())
        j = (lo[:, None] + np.arange(span)[None, :]).astype(ft)
        w = _triangle((j - centre[:, None] + half) * (one / support)).astype(np.float64)
        w = np.where(j < hi[:, None], w, 0.0)
        return _inside(lo, w / w.sum(1, keepdims=True), n_in)
    if not antialias:
        src = scale * (np.arange(n_out) + 0.5) - 0.5
        i0 = np.floor(src).astype(np.int64)
        t = src - i0
        taps = np.stack([_cubic(t + 1, -0.75), _cubic(t, -0.75), _cubic(1 - t, -0.75),
                         _cubic(2 - t, -0.75)], 1)  # fmt: skip
        # clamped indices: fold the taps that fall outside onto the edge pixel
        pos = np.clip(i0[:, None] + np.arange(-1, 3)[None, :], 0, n_in - 1)
        first = pos.min(1)
        span = int((pos.max(1) - first).max()) + 1
        w = np.zeros((n_out, span))
        np.add.at(w, (np.arange(n_out)[:, None], pos - first[:, None]), taps)
        return _inside(first.astype(np.int64), w, n_in)
    support = 2.0 * max(scale, 1.0)
    inv = 1.0 / max(scale, 1.0)
    centre = scale * (np.arange(n_out) + 0.5)
    lo = np.maximum((centre - support + 0.5).astype(np.int64), 0)
    hi = np.minimum((centre + support + 0.5).astype(np.int64), n_in)
    span = int((hi - lo).max())
    j = lo[:, None] + np.arange(span)[None, :]
    w = np.where(j < hi[:, None], _cubic((j - centre[:, None] + 0.5) * inv, -0.5), 0.0)
    return _inside(lo, w / w.sum(1, keepdims=True), n_in)


def _inside(first: np.ndarray, w: np.ndarray, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Shift the windows that would read past the input back inside it.

    Outputs near the end have fewer taps than the widest window; their trailing weights
    are 0, but the kernels read every tap, so a window must lie inside the input (a
    read past it met whatever memory followed, and 0 * NaN is NaN).
    """
    span = w.shape[1]
    shift = np.maximum(first + span - n_in, 0)
    if shift.any():
        w = w.copy()
        for i in np.flatnonzero(shift):
            s = int(shift[i])
            w[i, s:] = w[i, : span - s].copy()
            w[i, :s] = 0.0
        first = first - shift
    assert (first >= 0).all() and (first + span <= n_in).all()
    return first, w


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def _resize_rows_kernel(x, first, w, out, lo, hi):  # pragma: no cover (compiled)
    # x (N, H, W) -> out (N, H', W) along H; items: the N * H' output rows
    hout = out.shape[1]
    span = w.shape[1]
    acc = np.empty(x.shape[2])
    for item in range(lo, hi):
        n = item // hout
        i = item - n * hout
        acc[:] = 0.0
        for t in range(span):
            wt = w[i, t]
            if wt != 0.0:
                row = x[n, first[i] + t]
                for j in range(row.shape[0]):
                    acc[j] += wt * row[j]
        for j in range(acc.shape[0]):
            out[n, i, j] = acc[j]


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def _resize_cols_kernel(x, first, w, out, lo, hi):  # pragma: no cover (compiled)
    # x (N, H, W) -> out (N, H, W') along W; items: the N * H rows
    h = x.shape[1]
    wout = out.shape[2]
    span = w.shape[1]
    for item in range(lo, hi):
        n = item // h
        y = item - n * h
        row = x[n, y]
        for i in range(wout):
            s = 0.0
            f = first[i]
            for t in range(span):
                s += w[i, t] * row[f + t]
            out[n, y, i] = s


def resize_array(x: np.ndarray, size: tuple[int, int], mode: str = "bicubic") -> np.ndarray:
    """:func:`resize` on a (B, C, H, W) float numpy array (compiled; no torch).

    Equal to ``F.interpolate(x, size, mode=mode, align_corners=False,
    antialias=shrink)`` to float rounding (sums in float64), for float32 and float64;
    ``mode`` ``"bicubic"`` or ``"bilinear"``.
    """
    if mode not in ("bicubic", "bilinear"):
        raise ValueError(f"mode must be 'bicubic' or 'bilinear', got {mode!r}")
    h, w = x.shape[-2:]
    size = (int(size[0]), int(size[1]))
    if (h, w) == size:
        return x
    shrink = size[0] < h or size[1] < w
    b, c = x.shape[:2]
    flat = np.ascontiguousarray(x).reshape(b * c, h, w)
    single = x.dtype == np.float32
    first, wts = _resize_taps(h, size[0], shrink, mode, single)
    rows = np.empty((b * c, size[0], w), dtype=x.dtype)
    run_chunked(_resize_rows_kernel, b * c * size[0], flat, first, wts, rows, min_parallel=64)
    first, wts = _resize_taps(w, size[1], shrink, mode, single)
    out = np.empty((b * c, size[0], size[1]), dtype=x.dtype)
    run_chunked(_resize_cols_kernel, b * c * size[0], rows, first, wts, out, min_parallel=64)
    return out.reshape(b, c, size[0], size[1])


def _guide(x: torch.Tensor) -> torch.Tensor:
    """Search features: luma for colour images, the image itself otherwise."""
    return luma(x[:, :3]) if x.shape[1] >= 3 else x[:, :1]


def _back_project(
    hr: torch.Tensor, lr: torch.Tensor, iters: int, step: float = 1.0
) -> torch.Tensor:
    """Irani-Peleg: ``hr += up(lr - down(hr))`` so that ``down(hr)`` approaches ``lr``."""
    size = tuple(hr.shape[-2:])
    for _ in range(iters):
        err = lr - resize(hr, tuple(lr.shape[-2:]))
        hr = hr + step * resize(err, size)
    return hr


def _step(
    lr: torch.Tensor,
    s: int,
    *,
    patch_size: int,
    k: int,
    iters: int,
    temperature: float | None,
    seed: int,
    backend: str,
) -> torch.Tensor:
    """One cross-scale step: (1, C, H, W) -> (1, C, s*H, s*W), before back-projection.

    Numpy arrays (the compiled search and vote) or tensors (:func:`psal.patchmatch`).
    """
    h, w = lr.shape[-2:]
    small = (max(patch_size, round(h / s)), max(patch_size, round(w / s)))
    down = resize(lr, small)
    detail = lr - resize(down, (h, w))  # what L has and its down-up copy lacks
    q, kf = _guide(lr), _guide(down)
    k = min(k, small[0] * small[1])  # tiny images have fewer patches than k
    if isinstance(lr, np.ndarray):
        from ..patchmatch.cpu_numba import search_arrays

        indices, distances = search_arrays(np.ascontiguousarray(q), np.ascontiguousarray(kf),
                                           k=k, patch_size=patch_size, iters=iters,
                                           query_valid=None, key_ok=None, seed=seed,
                                           init=None)  # fmt: skip
        vote = cross_scale_vote_arrays
    else:
        from ..patchmatch import patchmatch

        field = patchmatch(q, kf, k=k, patch_size=patch_size, iters=iters, seed=seed,
                           backend=backend)  # fmt: skip
        indices, distances = field.indices, field.distances
        vote = cross_scale_vote
    t = temperature if temperature is not None else wexler_temperature(distances)
    hf = vote(detail, indices, distances, s, patch_size, small[1], t)
    return resize(lr, (s * h, s * w)) + hf


def _upscale_whole(x: torch.Tensor, scale: int, seed: int, opts: dict) -> torch.Tensor:
    """The whole method on one (1, C, H, W) image (or tile)."""
    bp = opts["back_projection"]
    step = dict(opts)
    del step["back_projection"]
    cur = x
    for j in range(2 if scale == 4 else 1):
        cur = _back_project(_step(cur, 2, seed=seed + j, **step), cur, bp)
    if scale == 4:
        cur = _back_project(cur, x, bp)
    elif scale == 3:  # x2 by self-examples, then bicubic to x3, held to the input
        cur = _back_project(resize(cur, (3 * x.shape[-2], 3 * x.shape[-1])), x, bp)
    return cur


def _upscale_part(part, scale: int, seed: int, opts: dict, on_np: bool):
    """:func:`_upscale_whole` of a (1, C, h, w) tile, in premultiplied alpha if it has one.

    An enlarged colour channel mixes each pixel with its neighbours; beside a
    transparent pixel that mixes in a colour nobody sees (often black), a dark fringe
    along the outline of a cut-out. So a tile with a partly transparent alpha
    (:func:`psal.editing._alpha.has_transparency`) is enlarged as colour x alpha (the
    search then compares what is seen) and divided back by the enlarged alpha; fully
    transparent output pixels keep the bicubic enlargement of the hidden colour. Opaque
    tiles are enlarged as before, bit for bit.
    """
    from ._alpha import has_transparency, premultiply, unpremultiply

    if on_np:
        part = np.ascontiguousarray(part)
    clear = has_transparency(part)
    work = premultiply(part) if clear else part
    if on_np:
        res = _upscale_whole(np.ascontiguousarray(work), scale, seed, opts)
    else:
        with torch.no_grad():
            res = _upscale_whole(work, scale, seed, opts)
    if not clear:
        return res
    a = res[:, -1:].clip(0.0, 1.0)
    hidden = resize(part[:, :-1], tuple(res.shape[-2:])).clip(0.0, 1.0)
    return unpremultiply(concat([res[:, :-1], a], 1), hidden)


def _spans(n: int, tile: int) -> list[tuple[int, int]]:
    """Split ``[0, n)`` into about equal spans of at most ``tile``."""
    parts = max(1, math.ceil(n / tile))
    return [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]


@keyword_only(2, (), {"iters": "pm_iters"})
def upscale(
    image: ImageLike,
    scale: int = 2,
    *,
    patch_size: int = 3,
    k: int = 6,
    pm_iters: int = 3,
    back_projection: int = 10,
    temperature: float | None = float("inf"),
    tile: int | None = None,
    seed: int | None = None,
    device: torch.device | str | None = None,
    backend: str = "auto",
    progress: ProgressCallback | None = None,
    model: str | None = None,
    ensemble: bool = False,
) -> ImageLike:
    """Enlarge an image x2, x3 or x4 with detail found in the image itself.

    With ``model`` (the name of a network shipped with psal,
    :data:`psal.weights.UPSCALERS`), a trained network enlarges the image
    instead (:meth:`psal.models.Upscaler.from_pretrained`); the search options are then
    ignored.

    Args:
        image: numpy ``(H, W[, C])``, PIL image or tensor ``(C, H, W)`` /
            ``(B, C, H, W)``; grayscale, RGB or RGBA (every channel is enlarged, the
            search runs on the luma; a partly transparent image is enlarged in
            premultiplied alpha, so the colour hidden under transparent pixels does
            not fringe the visible outline).
        scale: 2, 3 or 4 (a Python or numpy integer, or an integral float).
        patch_size: odd side of the matched patches, in input pixels (at most the
            image's sides); each match pastes a patch twice as large.
        k: matches per patch whose detail is averaged.
        pm_iters: PatchMatch iterations per step (``iters=`` is the deprecated keyword).
        back_projection: iterations of back-projection after each step (0 disables it).
        temperature: voting temperature; the default ``float("inf")`` averages the
            proposed details plainly, which scored best in ``benchmarks/upscale.py``
            (borrowed detail is noisy, and averaging more of it is a safer estimate);
            None: Wexler's rule (see :func:`psal.editing._temperature.wexler_temperature`).
        tile: images with a side longer than this many (input) pixels are processed in
            tiles of about this side, each with :data:`TILE_MARGIN` pixels of context
            and cut without blending (tested: no seam), so that the working memory
            follows a tile (plus the input, and the output in its own dtype), not the
            image. None: ``TILE // scale`` (768 pixels at x2).
        seed: makes the result reproducible (None: a fresh seed, from
            torch's generator if torch is imported: ``torch.manual_seed`` repeats it).
        device: torch device for the work (default: the input's, or CPU).
        backend: PatchMatch backend.
        progress: called as ``progress(done, total)`` after each tile; None: no reports.
        model: None (training-free, the default) or a pretrained network's name, e.g.
            ``"edsr-x2"``; its scale must be ``scale``.
        ensemble: with ``model``, average the network over the 8 flips/rotations of
            the input (8 times slower, a little better: see :class:`psal.models.Upscaler`).

    Returns:
        The enlarged image, ``H * scale x W * scale``, same kind, dtype and mode as
        ``image``; values are clipped to the input's range (to [0, 1] for floats in
        [0, 1]).

    Raises:
        ValueError: a scale other than 2, 3, 4, or an image smaller than a patch; an
            unknown ``model``, or one trained for another scale.
        TypeError: a ``progress`` that is not callable.

    Example:
        >>> import numpy as np, psal
        >>> img = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
        >>> psal.upscale(img, 2, seed=0).shape
        (48, 64, 3)
    """
    scale = check_scale(scale)
    if not isinstance(ensemble, bool):
        raise TypeError(f"ensemble must be True or False, got {ensemble!r}")
    progress = check_progress(progress)
    if model is not None:
        out = _upscale_with_model(image, scale, model, seed, device, progress, ensemble)
        return carry_metadata(out, image)
    if ensemble:
        raise ValueError("ensemble=True needs model= (a pretrained network)")
    patch_size = check_patch_size(patch_size)
    k = check_int(k, "k", minimum=1)
    pm_iters = check_int(pm_iters, "pm_iters", minimum=0)
    back_projection = check_int(back_projection, "back_projection", minimum=0)
    tile = TILE // scale if tile is None else check_int(tile, "tile", minimum=4 * patch_size)
    if temperature is not None and temperature != float("inf"):
        temperature = check_positive_float(temperature, "temperature")
    from ..patchmatch.backends import compiled_cpu

    use_np = not is_tensor(image) and compiled_cpu(device, backend)
    if use_np:  # numpy or PIL on the CPU: no torch
        x, spec = to_array(image, "image")
    else:
        from ..utils.convert import to_tensor

        x, spec = to_tensor(image, "image", device=device)
    b, c, h, w = x.shape
    if min(h, w) < patch_size:
        raise ValueError(
            f"image is {w}x{h}; upscale with patch_size={patch_size} needs both sides "
            f">= {patch_size}"
        )
    seed = resolve_seed(seed)
    opts = dict(patch_size=patch_size, k=k, iters=pm_iters, temperature=temperature,
                backend=backend, back_projection=back_projection)  # fmt: skip
    if not use_np and compiled_cpu(x.device, backend):
        x = x.detach().numpy()  # a CPU tensor takes the numpy path too (the same results)
    on_np = isinstance(x, np.ndarray)
    if on_np:
        lo = x.min(axis=(0, 2, 3), keepdims=True)
        hi = x.max(axis=(0, 2, 3), keepdims=True)
    else:
        lo = x.amin(dim=(0, 2, 3), keepdim=True)
        hi = x.amax(dim=(0, 2, 3), keepdim=True)
    if spec.is_integer or bool((lo >= 0).all() and (hi <= 1).all()):
        xp = namespace(x)
        lo, hi = xp.zeros_like(lo), xp.ones_like(hi)
    # integer images (numpy, PIL) are assembled in their own dtype, tile by tile
    direct = spec.kind != "tensor" and spec.is_integer
    if direct:
        tile_spec = dataclasses.replace(spec, kind="numpy", layout="HWC")
        out = np.empty((h * scale, w * scale, c), dtype=np.dtype(spec.dtype))
    elif on_np:
        out = np.empty((b, c, h * scale, w * scale), dtype=x.dtype)
    else:
        out = torch.empty(b, c, h * scale, w * scale, dtype=x.dtype, device=x.device)
    rows, cols = _spans(h, tile), _spans(w, tile)
    m = TILE_MARGIN if len(rows) * len(cols) > 1 else 0
    done, total = 0, b * len(rows) * len(cols)
    for i in range(b):
        for ti, (y0, y1) in enumerate(rows):
            for tj, (x0, x1) in enumerate(cols):
                cy0, cy1 = max(y0 - m, 0), min(y1 + m, h)
                cx0, cx1 = max(x0 - m, 0), min(x1 + m, w)
                part = x[i : i + 1, :, cy0:cy1, cx0:cx1]
                tseed = (seed + 31 * i + 7919 * (ti * len(cols) + tj)) % 2**63
                res = _upscale_part(part, scale, tseed, opts, on_np)
                oy, ox = (y0 - cy0) * scale, (x0 - cx0) * scale
                res = res[..., oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale]
                xp = namespace(res)
                res = xp.maximum(xp.minimum(res, hi), lo)
                ys, xs = slice(y0 * scale, y1 * scale), slice(x0 * scale, x1 * scale)
                if direct:
                    out[ys, xs] = _tile_values(res, tile_spec)
                else:
                    out[i : i + 1, :, ys, xs] = res
                done += 1
                if progress is not None:
                    progress(done, total)
    if direct:
        return carry_metadata(_from_array(out, spec), image)
    if use_np:
        return carry_metadata(from_array(out, spec), image)
    from ..utils.convert import from_tensor

    return carry_metadata(from_tensor(torch.from_numpy(out) if on_np else out, spec), image)


def _tile_values(res, spec: ImageSpec) -> np.ndarray:
    """A (1, C, h, w) tile (array or tensor) as (h, w, C) values of ``spec``'s dtype."""
    if isinstance(res, np.ndarray):
        return from_array(res, spec)
    from ..utils.convert import from_tensor

    return from_tensor(res, spec)


def _upscale_with_model(image, scale, model, seed, device, progress, ensemble):
    """:func:`upscale` by the pretrained network ``model`` (checked: name and scale)."""
    from ..models.upscaler import Upscaler
    from ..weights import UPSCALERS

    if not isinstance(model, str) or model not in UPSCALERS:
        raise ValueError(
            f"model must be one of {', '.join(sorted(UPSCALERS))} (the pretrained "
            f"upscalers shipped with psal) or None, got {model!r}"
        )
    if device is None and isinstance(image, torch.Tensor):
        device = image.device
    net = Upscaler.from_pretrained(model, device=device or "cpu", ensemble=ensemble)
    if net.scale != scale:
        raise ValueError(f"scale is {scale} but model {model!r} enlarges x{net.scale}")
    return net.upscale(image, scale, seed=seed, progress=progress)


def _from_array(arr: np.ndarray, spec: ImageSpec) -> ImageLike:
    """An (H, W, C) array of the spec's dtype as the kind ``spec`` describes."""
    if spec.kind == "numpy":
        return arr[..., 0] if spec.layout == "HW" else arr
    return Image.fromarray(np.ascontiguousarray(arr[..., 0] if arr.shape[2] == 1 else arr))

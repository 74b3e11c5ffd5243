"""Streaming PSAL aggregation over a given field: the inference path (no gradients).

:func:`vote` computes exactly what :func:`psal.attend` computes (both aggregations),
from the distances the search returned, without keeping any per-proposal tensor: each
output pixel keeps a running softmax over its proposals. Memory is O(Cv · N) for N
output pixels instead of O(p² · k · H · W), and it can compute a chosen list of pixels
only (a hole, say), so its cost scales with that list whatever the image size. This is
the patch voting of Wexler et al. (2007) and the step that psal's editing tools
iterate; :func:`psal.ps_attention` uses it whenever no gradient is needed.

CPU tensors run a compiled numba kernel over pixel ranges on a thread pool (see
:mod:`psal.utils.parallel`); other devices a vectorised PyTorch loop over the ``p x p``
offsets. Both are tested against :func:`psal.attend`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from .._checks import check_float_tensor, check_indices, check_patch_size, check_tensor
from ..patchmatch._border import reflect1
from ..utils.parallel import run_chunked

if TYPE_CHECKING:
    import torch
else:
    from ..utils.arrays import lazy_torch as torch  # for annotations (imports torch if resolved)

__all__ = ["vote", "vote_arrays"]

#: Below this many output pixels the CPU kernel runs on the calling thread only.
PARALLEL_MIN = 16384


def shift_by_smallest(d: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``d`` less each batch element's smallest finite ``valid`` entry (0 if none).

    Softmax weights are then ``exp(-shifted / T)``: a row of a softmax ignores a
    constant, and the shift is detached, so outputs and gradients are those of
    ``exp(-d / T)``. Dividing first, ``-d / T`` of float32 distances ~1e6 at T ~1e-2
    is ~1e8, rounded in steps of 8, past the distances' differences (weights off by
    factors up to e²). Used by the torch paths of the votes and of the aggregation.

    Args:
        d: (B, ...) distances.
        valid: bool, broadcastable to ``d``: the entries that count; None: all.
    """
    import torch

    with torch.no_grad():
        ok = torch.isfinite(d) if valid is None else valid & torch.isfinite(d)
        low = torch.where(ok, d, torch.inf).amin(dim=tuple(range(1, d.ndim)), keepdim=True)
        low = torch.where(torch.isfinite(low), low, 0.0)
    return d - low


def _vote_torch(value, indices, distances, r, temperature, bs, ys, xs):
    """Vectorised PyTorch voting (any device): a running softmax over the offsets."""
    import torch

    from ..patchmatch.distance import reflect_index

    b, cv, hk, wk = value.shape
    _, kk, hq, wq = indices.shape
    n = ys.numel()
    acc = torch.float64 if value.dtype == torch.float64 else torch.float32
    vflat = value.permute(1, 0, 2, 3).reshape(cv, b * hk * wk)
    iflat = indices.permute(1, 0, 2, 3).reshape(kk, b * hq * wq)
    uniform = temperature == float("inf")
    distances = distances.to(acc)
    if not uniform:  # as the compiled vote does
        distances = shift_by_smallest(distances, indices >= 0)
    dflat = distances.permute(1, 0, 2, 3).reshape(kk, b * hq * wq)
    neg_inf = torch.tensor(float("-inf"), dtype=acc, device=value.device)
    m = torch.full((n,), float("-inf"), dtype=acc, device=value.device)
    num = torch.zeros(cv, n, dtype=acc, device=value.device)
    den = torch.zeros(n, dtype=acc, device=value.device)
    for dy in range(-r, r + 1):
        cy = ys - dy
        oky = (cy >= 0) & (cy < hq)
        for dx in range(-r, r + 1):
            cx = xs - dx
            inside = oky & (cx >= 0) & (cx < wq)
            c = (bs * hq + cy.clamp(0, hq - 1)) * wq + cx.clamp(0, wq - 1)
            idx = iflat[:, c]  # (k, N)
            ok = inside.unsqueeze(0) & (idx >= 0)
            if uniform:
                logit = torch.where(ok, 0.0, neg_inf)
            else:
                logit = torch.where(ok, -dflat[:, c] / temperature, neg_inf)
            safe = idx.clamp_min(0)
            py = reflect_index(torch.div(safe, wk, rounding_mode="floor") + dy, hk)
            px = reflect_index(safe % wk + dx, wk)
            vals = vflat[:, (bs * hk + py) * wk + px].to(acc)  # (Cv, k, N)
            m_new = torch.maximum(m, logit.amax(0))
            base = torch.where(torch.isfinite(m_new), m_new, 0.0)
            scale = torch.exp(m - base)  # rescales what was accumulated (0 when m = -inf)
            e = torch.exp(logit - base)  # (k, N), 0 where no proposal
            num = num * scale + (vals * e).sum(1)
            den = den * scale + e.sum(0)
            m = m_new
    covered = den > 0
    out = num / den.clamp_min(torch.finfo(den.dtype).tiny)
    return out.masked_fill(~covered, 0.0).to(value.dtype), covered


@njit(inline="always", cache=True)
def _clean(d):  # pragma: no cover (compiled)
    """``np.nan_to_num(d, posinf=0.0)`` of one distance (what the weights were made of)."""
    if d != d or d == np.inf:
        return 0.0
    if d == -np.inf:
        return -1.7976931348623157e308
    return d


@njit(inline="always", cache=True)
def _max_logit(indices, distances, b, y, x, r, inv_t):  # pragma: no cover (compiled)
    """The largest ``-d / T`` among the proposals at query pixel (y, x), -inf if none."""
    _, kk, hq, wq = indices.shape
    m = -np.inf
    for dy in range(-r, r + 1):
        cy = y - dy
        if cy < 0 or cy >= hq:
            continue
        for dx in range(-r, r + 1):
            cx = x - dx
            if cx < 0 or cx >= wq:
                continue
            for j in range(kk):
                if indices[b, j, cy, cx] >= 0:
                    lg = -_clean(distances[b, j, cy, cx]) * inv_t
                    if lg > m:
                        m = lg
    return m


@njit(inline="always", cache=True)
def _pixel_vote(value, kyx, src, b, y, x, r, mode, inv_t, m, acc):  # pragma: no cover
    """Accumulate pixel (y, x)'s proposals into ``acc``; returns (sum of weights, seen).

    ``kyx`` (B, k, Hq, Wq, 2) int32: each neighbour's key row and column (-1 where
    none), divided out once per call instead of once per proposal (p² proposals read
    each entry).

    The weight of a proposal is 1 (``mode`` 0, plain mean), ``src`` itself (1: the
    precomputed weights) or ``exp(-src * inv_t - m)`` (2: from the distances, shifted
    by ``m``).
    """
    _, hk, wk, cv = value.shape
    _, kk, hq, wq, _ = kyx.shape
    for c in range(cv):
        acc[c] = 0.0
    den = 0.0
    seen = False
    for dy in range(-r, r + 1):
        cy = y - dy
        if cy < 0 or cy >= hq:
            continue
        for dx in range(-r, r + 1):
            cx = x - dx
            if cx < 0 or cx >= wq:
                continue
            for j in range(kk):
                ky = kyx[b, j, cy, cx, 0]
                if ky < 0:
                    continue
                seen = True
                if mode == 0:
                    e = 1.0
                elif mode == 1:
                    e = np.float64(src[b, j, cy, cx])
                else:
                    e = np.exp(-_clean(src[b, j, cy, cx]) * inv_t - m)
                py = reflect1(ky + dy, hk)
                px = reflect1(kyx[b, j, cy, cx, 1] + dx, wk)
                den += e
                for c in range(cv):
                    acc[c] += e * value[b, py, px, c]
    return den, seen


def _check_vote_temperature(temperature: object) -> float:
    """T > 0 as a float (``inf``: plain average); a one-element tensor is read as its value."""
    import torch

    if isinstance(temperature, torch.Tensor):
        if temperature.numel() != 1:
            raise ValueError(
                "temperature must be a number or a one-element tensor, got shape "
                f"{tuple(temperature.shape)}"
            )
        temperature = float(temperature.detach())
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number)):
        raise TypeError(
            f"temperature must be a number > 0 (inf for a plain average), got "
            f"{type(temperature).__name__} {temperature!r}"
        )
    if not temperature > 0:  # NaN too
        raise ValueError(f"temperature must be > 0 (inf for a plain average), got {temperature}")
    return float(temperature)


@njit(nogil=True, cache=True)
def _vote_kernel(value, indices, kyx, distances, weights, tiny, bs, ys, xs, r, inv_t, uniform,
                 out, covered, lo, hi):  # fmt: skip
    # value is channels-last (B, Hk, Wk, Cv) and out (N, Cv): the channel loops are
    # contiguous (a (B, Cv, H, W) layout reads one cache line per channel per proposal).
    # ``weights`` holds exp(-(d - d_min) / T) per query pixel and neighbour, computed
    # once (each is read by the p² output pixels its patch covers): the softmax's
    # shift is the batch element's smallest distance instead of each output pixel's,
    # the same weights up to rounding, summed in float64. Where a pixel's weights sum
    # to less than ``tiny`` (its distances lie far above the smallest: ~70 T in
    # float32, ~640 T in float64), the exact per-pixel shift is used instead.
    cv = value.shape[3]
    acc = np.empty(cv)
    for n in range(lo, hi):
        b = bs[n]
        y = ys[n]
        x = xs[n]
        den, seen = _pixel_vote(value, kyx, weights, b, y, x, r, 0 if uniform else 1,
                                inv_t, 0.0, acc)  # fmt: skip
        if seen and not uniform and den < tiny:
            m = _max_logit(indices, distances, b, y, x, r, inv_t)
            den, seen = _pixel_vote(value, kyx, distances, b, y, x, r, 2, inv_t, m, acc)
        covered[n] = den > 0
        for c in range(cv):
            out[n, c] = acc[c] / den if den > 0 else 0.0


@njit(nogil=True, cache=True)
def _weights_kernel(indices, distances, inv_t, out, lo, hi):  # pragma: no cover (compiled)
    """``out = exp(-(d - d_min) / T)`` per batch element (0 where no neighbour).

    ``out`` may be ``distances`` itself (each value is read before it is overwritten).
    """
    _, kk, hq, wq = indices.shape
    for b in range(lo, hi):
        dmin = np.inf
        for j in range(kk):
            for y in range(hq):
                for x in range(wq):
                    if indices[b, j, y, x] >= 0 and distances[b, j, y, x] < dmin:
                        dmin = distances[b, j, y, x]
        if dmin == np.inf:
            dmin = 0.0
        for j in range(kk):
            for y in range(hq):
                for x in range(wq):
                    if indices[b, j, y, x] >= 0:
                        d = np.float64(distances[b, j, y, x])
                        out[b, j, y, x] = np.exp(-(d - dmin) * inv_t)
                    else:
                        out[b, j, y, x] = 0.0


def _vote_numba(value, indices, distances, r, temperature, bs, ys, xs):
    import torch

    acc = torch.float64 if value.dtype == torch.float64 else torch.float32
    v = value.detach().to("cpu", acc).numpy()
    out, covered = vote_arrays(v, indices.cpu().numpy(), distances.cpu().numpy(), r,
                               temperature, bs.cpu().numpy(), ys.cpu().numpy(),
                               xs.cpu().numpy())  # fmt: skip
    dev = value.device
    return torch.from_numpy(out).to(dev, value.dtype), torch.from_numpy(covered).to(dev)


def vote_arrays(
    value: np.ndarray,
    indices: np.ndarray,
    distances: np.ndarray,
    radius: int,
    temperature: float,
    bs: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The compiled vote on numpy arrays at chosen pixels, checked by the caller.

    Args:
        value: (B, Cv, Hk, Wk) float32 or float64.
        indices: (B, k, Hq, Wq) int64, -1 where not searched.
        distances: (B, k, Hq, Wq) (inf where not searched).
        radius: ``patch_size // 2`` for ``"patch"`` aggregation, 0 for ``"center"``.
        temperature: T > 0, or inf for the plain average.
        bs: (N,) int64 batch element of each output pixel.
        ys: (N,) int64 query row.
        xs: (N,) int64 query column.

    Returns:
        ``(out, covered)``: (Cv, N) in the value's dtype (0 where not covered) and (N,)
        bool.
    """
    np_dtype = np.float64 if value.dtype == np.float64 else np.float32
    v = np.ascontiguousarray(value.transpose(0, 2, 3, 1), dtype=np_dtype)
    uniform = temperature == float("inf")
    raw = np.ascontiguousarray(distances, dtype=np_dtype)  # no copy for the usual dtype
    n = ys.size
    out = np.empty((n, v.shape[3]), dtype=np_dtype)
    covered = np.empty(n, dtype=np.bool_)
    inv_t = 0.0 if uniform else 1.0 / float(temperature)
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    # the weights, in the value's precision, overwrite a cleaned copy of the distances
    # (no more memory than the vote took before); a pixel whose weights sum below
    # ``tiny`` takes the exact per-pixel shift, from the distances themselves
    weights = np.nan_to_num(raw, posinf=0.0)
    tiny = 1e-30 if np_dtype == np.float32 else 1e-280
    if not uniform:
        run_chunked(_weights_kernel, indices.shape[0], indices, weights,
                    float(np_dtype(inv_t)), weights)  # fmt: skip
    wk = v.shape[2]
    kyx = np.empty((*indices.shape, 2), dtype=np.int32)
    ky = indices // wk
    kyx[..., 0] = np.where(indices >= 0, ky, -1)
    kyx[..., 1] = indices - ky * wk
    args = (v, indices, kyx, raw, weights, tiny,
            np.ascontiguousarray(bs, dtype=np.int64), np.ascontiguousarray(ys, dtype=np.int64),
            np.ascontiguousarray(xs, dtype=np.int64), radius, np_dtype(inv_t), uniform, out,
            covered)  # fmt: skip
    run_chunked(_vote_kernel, n, *args, min_parallel=PARALLEL_MIN)
    return out.T, covered


def vote(
    value: torch.Tensor,
    indices: torch.Tensor,
    distances: torch.Tensor,
    patch_size: int = 3,
    temperature: float = 1.0,
    aggregation: str = "patch",
    *,
    pixels: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PSAL aggregation of ``value`` over a given field, without gradients.

    Computes :func:`psal.attend`'s output (same formulas, see
    :func:`psal.ps_attention`) from given distances instead of recomputing them.

    Args:
        value: (B, Cv, Hk, Wk) values on the key grid.
        indices: (B, k, Hq, Wq) int64 flat key positions, -1 where not searched.
        distances: (B, k, Hq, Wq) distances of those neighbours (ignored where -1).
        patch_size: odd patch side of the search (sets the proposals of ``"patch"``).
        temperature: T > 0; ``float("inf")`` gives the plain average of the proposals.
        aggregation: ``"patch"`` (every covering patch proposes) or ``"center"``.
        pixels: optional ``(b, y, x)``, three (N,) integer tensors (int64 or any other
            integer dtype): compute only these query pixels.

    Returns:
        ``(out, covered)``: without ``pixels``, out (B, Cv, Hq, Wq) and covered
        (B, 1, Hq, Wq); with ``pixels``, out (Cv, N) and covered (N,). ``covered`` is
        False where no searched patch proposes anything; ``out`` is 0 there.

    Example:
        >>> import psal, torch
        >>> img = torch.rand(1, 3, 32, 32)
        >>> f = psal.patchmatch(img, img, k=2, patch_size=5, seed=0)
        >>> out, covered = vote(img, f.indices, f.distances, 5, float("inf"))
        >>> out.shape, bool(covered.all())
        (torch.Size([1, 3, 32, 32]), True)
    """
    import torch

    if aggregation not in ("patch", "center"):
        raise ValueError(f"aggregation must be 'patch' or 'center', got {aggregation!r}")
    temperature = _check_vote_temperature(temperature)
    patch_size = check_patch_size(patch_size)
    check_float_tensor(value, "value")
    check_tensor(indices, "indices", ndim=4)
    check_tensor(distances, "distances", ndim=4)
    b, _, hq, wq = indices.shape
    hk, wk = value.shape[-2:]
    if b < 1 or value.shape[1] < 1:
        raise ValueError(
            f"value must have B >= 1 and C >= 1, got shape {tuple(value.shape)} (indices "
            f"{tuple(indices.shape)})"
        )
    if aggregation == "patch" and patch_size > min(hk, wk):
        raise ValueError(
            f"patch_size={patch_size} is larger than value, whose spatial size is {hk}x{wk}; "
            "use patch_size <= min(Hk, Wk) (the key grid the neighbours were found on)"
        )
    if indices.dtype != torch.int64:
        raise TypeError(f"indices must be int64, got {indices.dtype}")
    if indices.shape[0] != value.shape[0]:
        raise ValueError(
            f"indices and value must have the same batch size, got {indices.shape[0]} "
            f"and {value.shape[0]}"
        )
    if distances.shape != indices.shape:
        raise ValueError(
            f"distances must have the shape of indices {tuple(indices.shape)}, got "
            f"{tuple(distances.shape)}"
        )
    check_indices(indices, hk * wk)
    r = patch_size // 2 if aggregation == "patch" else 0
    if pixels is None:
        grid = torch.arange(b * hq * wq, device=indices.device)
        bs, rem = grid // (hq * wq), grid % (hq * wq)
        ys, xs = rem // wq, rem % wq
    else:
        if not isinstance(pixels, (tuple, list)):
            raise TypeError(
                f"pixels must be a tuple (b, y, x) of three integer tensors, got "
                f"{type(pixels).__name__}"
            )
        if len(pixels) != 3:
            raise ValueError(f"pixels must be three tensors (b, y, x), got {len(pixels)}")
        for name, coord in zip("byx", pixels):
            if not isinstance(coord, torch.Tensor) or coord.is_floating_point() or (
                coord.is_complex() or coord.dtype == torch.bool
            ):  # fmt: skip
                got = coord.dtype if isinstance(coord, torch.Tensor) else type(coord).__name__
                raise TypeError(
                    f"pixels must be three integer tensors (b, y, x) (float coordinates "
                    f"would be truncated), got {got} for {name}"
                )
        bs, ys, xs = (p.to(indices.device, torch.int64).reshape(-1) for p in pixels)
        if not bs.numel() == ys.numel() == xs.numel():
            raise ValueError(
                f"pixels must be three tensors of one length, got {bs.numel()}, "
                f"{ys.numel()} and {xs.numel()}"
            )
        for name, coord, size in (("b", bs, b), ("y", ys, hq), ("x", xs, wq)):
            if coord.numel() and (int(coord.min()) < 0 or int(coord.max()) >= size):
                raise ValueError(
                    f"pixels: {name} coordinates must lie in [0, {size}), got values in "
                    f"[{int(coord.min())}, {int(coord.max())}]"
                )
    with torch.no_grad():
        if value.device.type == "cpu":
            out, covered = _vote_numba(value, indices, distances, r, temperature, bs, ys, xs)
        else:
            out, covered = _vote_torch(value, indices, distances, r, temperature, bs, ys, xs)
    if pixels is None:
        out = out.view(-1, b, hq, wq).transpose(0, 1)
        covered = covered.view(b, 1, hq, wq)
    return out, covered

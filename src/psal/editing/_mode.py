"""Sharp patch voting: the weighted mode of the proposals (Newson et al. 2014).

Averaging the ``p² k`` values that overlapping patches propose for a pixel blurs as
soon as the proposals disagree (misaligned texture, two sides of an edge). Newson et
al. (2014) reconstruct the finest scale with the *weighted mode* of the proposals
instead, found by mean-shift: starting from the proposal of the best-matching patch,
repeat ``m <- Σ w_i g(|v_i - m|) v_i / Σ w_i g(|v_i - m|)`` with ``w_i = exp(-d_i / T)``
and a Gaussian kernel ``g`` of width ``bandwidth``. With ``mean_shift_iters=0`` this is
winner-takes-all (the best proposal's value); with a huge bandwidth it is the plain
weighted mean of :func:`psal.layers.vote`.

The CPU path is a numba kernel over pixel ranges (:mod:`psal.utils.parallel`); other
devices gather the proposals with PyTorch, one ``p x p`` offset at a time (the same
formulas, tested equal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from ..patchmatch._border import reflect1
from ..utils.parallel import run_chunked

if TYPE_CHECKING:
    import torch
else:
    from ..utils.arrays import lazy_torch as torch  # for annotations (imports torch if resolved)

__all__ = ["mode_vote"]


@njit(nogil=True, cache=True)
def _mode_kernel(value, indices, distances, ys, xs, r, inv_t, inv_h2, iters, out, lo, hi):
    _, hk, wk, cv = value.shape
    _, kk, hq, wq = indices.shape
    p = 2 * r + 1
    cap = p * p * kk
    vals = np.empty((cap, cv), dtype=value.dtype)
    # each proposal's distance in float64 (exact for float32 distances): the weights
    # are exp((d_best - d) / T), formed from the difference, so a level far from zero
    # does not cancel digits (as -d / T in float32 would: ~0.06 at d / T ~ 1e6)
    dprop = np.empty(cap)
    m = np.empty(cv, dtype=value.dtype)
    acc = np.empty(cv, dtype=value.dtype)
    for n in range(lo, hi):
        y = ys[n]
        x = xs[n]
        cnt = 0
        best = -np.inf
        ib = -1
        for dy in range(-r, r + 1):
            cy = y - dy
            if cy < 0 or cy >= hq:
                continue
            for dx in range(-r, r + 1):
                cx = x - dx
                if cx < 0 or cx >= wq:
                    continue
                for j in range(kk):
                    idx = indices[0, j, cy, cx]
                    if idx < 0:
                        continue
                    py = reflect1(idx // wk + dy, hk)
                    px = reflect1(idx - (idx // wk) * wk + dx, wk)
                    d = distances[0, j, cy, cx]
                    if -d > best:  # the best proposal: smallest distance, any temperature
                        best = -d
                        ib = cnt
                        for c in range(cv):
                            m[c] = value[0, py, px, c]
                    if iters > 0:  # winner-takes-all needs only the best one's value
                        for c in range(cv):
                            vals[cnt, c] = value[0, py, px, c]
                        dprop[cnt] = d
                    cnt += 1
        if cnt == 0:
            for c in range(cv):
                out[n, c] = np.nan
            continue
        for _ in range(iters):
            den = 0.0
            for c in range(cv):
                acc[c] = 0.0
            for i in range(cnt):
                d2 = 0.0
                for c in range(cv):
                    t = vals[i, c] - m[c]
                    d2 += t * t
                w = np.exp((dprop[ib] - dprop[i]) * inv_t - d2 * inv_h2)
                den += w
                for c in range(cv):
                    acc[c] += w * vals[i, c]
            for c in range(cv):
                m[c] = acc[c] / den
        for c in range(cv):
            out[n, c] = m[c]


def _mode_torch(value, indices, distances, ys, xs, r, inv_t, inv_h2, iters):
    import torch

    from ..patchmatch.distance import reflect_index

    _, cv, hk, wk = value.shape
    _, kk, hq, wq = indices.shape
    vals, logits = [], []
    for dy in range(-r, r + 1):
        cy = ys - dy
        oky = (cy >= 0) & (cy < hq)
        for dx in range(-r, r + 1):
            cx = xs - dx
            inside = oky & (cx >= 0) & (cx < wq)
            c = cy.clamp(0, hq - 1) * wq + cx.clamp(0, wq - 1)
            idx = indices[0].reshape(kk, -1)[:, c]  # (k, N)
            ok = inside.unsqueeze(0) & (idx >= 0)
            safe = idx.clamp_min(0)
            py = torch.div(safe, wk, rounding_mode="floor") + dy
            px = safe % wk + dx
            py, px = reflect_index(py, hk), reflect_index(px, wk)
            vals.append(value[0].reshape(cv, -1)[:, py * wk + px])  # (Cv, k, N)
            d = distances[0].reshape(kk, -1)[:, c]
            logits.append(torch.where(ok, -d, torch.tensor(float("-inf"), dtype=d.dtype)))
    v = torch.cat(vals, 1)  # (Cv, P, N), proposals in the kernel's order
    negd = torch.cat(logits, 0)  # (P, N): minus the distance, -inf where no proposal
    best, ib = negd.max(0)  # the best proposal: smallest distance (first of equals)
    n = ys.numel()
    m = v[:, ib, torch.arange(n, device=v.device)]  # (Cv, N)
    lg = (negd - best) * inv_t if inv_t > 0 else torch.where(torch.isfinite(negd), 0.0, negd)
    for _ in range(iters):
        d2 = ((v - m.unsqueeze(1)) ** 2).sum(0)
        w = torch.exp(lg - d2 * inv_h2)
        m = (v * w).sum(1) / w.sum(0)
    covered = torch.isfinite(best)
    return m.masked_fill(~covered, float("nan")), covered


def mode_vote(
    value: torch.Tensor,
    indices: torch.Tensor,
    distances: torch.Tensor,
    patch_size: int,
    pixels: tuple[torch.Tensor, torch.Tensor],
    *,
    temperature: float = float("inf"),
    bandwidth: float = 0.1,
    iters: int = 3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mode of the patch proposals at chosen pixels (mean-shift).

    Numpy arrays in give numpy arrays out (the compiled kernel, no torch); CPU tensors
    run the same kernel; tensors on other devices a PyTorch gather (tested equal).

    Args:
        value: (1, C, Hk, Wk) float image the field points into.
        indices: (1, k, Hq, Wq) int64 flat key positions, -1 where not searched.
        distances: (1, k, Hq, Wq) their patch distances.
        patch_size: odd patch side of the search.
        pixels: ``(y, x)``, two (N,) int64 tensors of query-grid positions.
        temperature: weights ``exp(-d / T)`` of the proposals in the mean-shift (inf:
            all equal). The starting point, and the winner when ``iters=0``, is the
            proposal of smallest distance whatever T.
        bandwidth: Gaussian kernel width in value units (per-pixel Euclidean distance
            over the channels).
        iters: mean-shift iterations; 0 = winner-takes-all.

    Returns:
        ``(out, covered)``: out (C, N) and covered (N,) bool, False where no searched
        patch proposes anything (out is NaN there).
    """
    r = patch_size // 2
    ys, xs = pixels
    inv_t = 0.0 if temperature == float("inf") else 1.0 / float(temperature)
    inv_h2 = 1.0 / (2.0 * float(bandwidth) ** 2)
    if isinstance(value, np.ndarray):
        return _mode_arrays(value, indices, distances, ys, xs, r, inv_t, inv_h2, iters)
    import torch

    if value.device.type != "cpu":
        dist = _worst_last(distances.to(value.dtype))
        return _mode_torch(value, indices, dist, ys, xs, r, inv_t, inv_h2, iters)
    dt = torch.float64 if value.dtype == torch.float64 else torch.float32
    out, covered = _mode_arrays(value.detach().to(dt).numpy(), indices.numpy(),
                                distances.numpy(), ys.numpy(), xs.numpy(), r, inv_t, inv_h2,
                                iters)  # fmt: skip
    return torch.from_numpy(out), torch.from_numpy(covered)


def _worst_last(d):
    """NaN and +inf distances as the largest finite one of their dtype.

    An overflowed float32 patch distance is the worst proposal, still a proposal (a
    pixel with only those is covered, by the first). As 0 it was the best.
    """
    if isinstance(d, np.ndarray):
        big = np.finfo(d.dtype).max
        return np.nan_to_num(d, nan=big, posinf=big)
    import torch

    big = torch.finfo(d.dtype).max
    return torch.nan_to_num(d, nan=big, posinf=big)


def _mode_arrays(value, indices, distances, ys, xs, r, inv_t, inv_h2, iters):
    """The compiled kernel on numpy arrays: ``(out (C, N), covered (N,))``."""
    dt = np.float64 if value.dtype == np.float64 else np.float32
    v = np.ascontiguousarray(value.transpose(0, 2, 3, 1), dtype=dt)
    dist = _worst_last(np.ascontiguousarray(distances, dtype=dt))
    n = ys.size
    out = np.empty((n, v.shape[3]), dtype=dt)
    args = (v, np.ascontiguousarray(indices, dtype=np.int64), dist,
            np.ascontiguousarray(ys, dtype=np.int64), np.ascontiguousarray(xs, dtype=np.int64),
            r, dt(inv_t), dt(inv_h2), int(iters), out)  # fmt: skip
    run_chunked(_mode_kernel, n, *args, min_parallel=8192)
    res = out.T
    return res, ~np.isnan(res[0])

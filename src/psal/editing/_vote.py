"""Patch voting over a given neighbour field, for the pixels that need it only.

This is PSAL's ``aggregation="patch"`` (:func:`psal.attend`, the patch voting of Wexler
et al. 2007) with two differences that matter for iterative editing and nothing
else: it reuses the distances the search returned instead of recomputing them
differentiably, and it computes only the listed output pixels (the hole), so one
voting step costs O(p² · k · N) for N hole pixels whatever the image size. The result
is the same as ``psal.attend(..., aggregation="patch")`` at those pixels (tested).

For an output pixel x every query patch covering it (centre ``x - δ``, δ in the
``p x p`` window, centre inside the query map and searched) proposes the value at
``n_j(x - δ) + δ`` (reflected into the key like the patch itself) for each of its k
neighbours, weighted by one softmax of ``-d_j(x - δ) / T`` over all proposals.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from ._parallel import run_chunked


def wexler_temperature(distances: torch.Tensor, where: torch.Tensor | None = None) -> float:
    """Voting temperature of Wexler et al. (2007): weights ``exp(-d / (2 σ²))``.

    σ² is the 75th percentile of the nearest-neighbour distances (``distances[:, 0]``,
    over the pixels ``where`` if given, (B, 1, H, W) bool), so ``T = 2 σ²``. Returns
    ``inf`` (plain average) when every distance is 0 or none is finite.
    """
    d = distances[:, 0:1]
    d = d[where] if where is not None else d.flatten()
    d = d[torch.isfinite(d)]
    if d.numel() == 0:
        return float("inf")
    if d.numel() > 1 << 20:  # quantile's size limit; a strided subsample is plenty
        d = d[:: d.numel() // (1 << 20) + 1]
    q = float(torch.quantile(d.float(), 0.75))
    return 2.0 * q if q > 0 else float("inf")


def _reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    i = torch.where(i < 0, -i, i)
    return torch.where(i >= size, 2 * (size - 1) - i, i)


def _vote_torch(
    value: torch.Tensor,
    indices: torch.Tensor,
    distances: torch.Tensor,
    patch_size: int,
    temperature: float,
    ys: torch.Tensor,
    xs: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectorised PyTorch version of :func:`vote` (any device).

    Args:
        value: (1, Cv, Hk, Wk) values on the key grid.
        indices: (1, k, Hq, Wq) int64 flat key positions, -1 where not searched.
        distances: (1, k, Hq, Wq) distances of those neighbours (inf where -1).
        patch_size: odd p.
        temperature: T > 0; ``float("inf")`` gives the plain average of the proposals.
        ys: (N,) int64 query rows of the output pixels.
        xs: (N,) int64 query columns.

    Returns:
        ``(out, covered)``: out (Cv, N) voted values, 0 where no proposal; covered (N,)
        bool, False where no searched patch covers the pixel.
    """
    _, cv, hk, wk = value.shape
    _, kk, hq, wq = indices.shape
    r = patch_size // 2
    n = ys.numel()
    vflat = value.reshape(cv, hk * wk)
    iflat = indices.reshape(kk, hq * wq)
    dflat = distances.reshape(kk, hq * wq).to(value.dtype)
    uniform = temperature == float("inf")
    neg_inf = torch.tensor(float("-inf"), dtype=value.dtype, device=value.device)
    m = torch.full((n,), float("-inf"), dtype=value.dtype, device=value.device)
    num = torch.zeros(cv, n, dtype=value.dtype, device=value.device)
    den = torch.zeros(n, dtype=value.dtype, device=value.device)
    for dy in range(-r, r + 1):
        cy = ys - dy
        oky = (cy >= 0) & (cy < hq)
        for dx in range(-r, r + 1):
            cx = xs - dx
            inside = oky & (cx >= 0) & (cx < wq)
            c = cy.clamp(0, hq - 1) * wq + cx.clamp(0, wq - 1)
            idx = iflat[:, c]  # (k, N)
            ok = inside.unsqueeze(0) & (idx >= 0)
            if uniform:
                logit = torch.where(ok, 0.0, neg_inf)
            else:
                logit = torch.where(ok, -dflat[:, c] / temperature, neg_inf)
            safe = idx.clamp_min(0)
            py = _reflect(torch.div(safe, wk, rounding_mode="floor") + dy, hk)
            px = _reflect(safe % wk + dx, wk)
            vals = vflat[:, py * wk + px]  # (Cv, k, N)
            m_new = torch.maximum(m, logit.amax(0))
            base = torch.where(torch.isfinite(m_new), m_new, 0.0)
            scale = torch.exp(m - base)  # rescale what was accumulated (0 when m = -inf)
            e = torch.exp(logit - base)  # (k, N), 0 where no proposal
            num = num * scale + (vals * e).sum(1)
            den = den * scale + e.sum(0)
            m = m_new
    covered = den > 0
    out = num / den.clamp_min(torch.finfo(den.dtype).tiny)
    return out, covered


@njit(nogil=True, cache=True)
def _vote_kernel(value, indices, distances, ys, xs, r, inv_t, uniform, out, covered, lo, hi):
    cv, hk, wk = value.shape
    kk, hq, wq = indices.shape
    for n in range(lo, hi):
        y = ys[n]
        x = xs[n]
        # first pass: the largest logit, so the exponentials never overflow
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
                    if indices[j, cy, cx] >= 0:
                        lg = 0.0 if uniform else -distances[j, cy, cx] * inv_t
                        if lg > m:
                            m = lg
        if m == -np.inf:
            covered[n] = False
            for c in range(cv):
                out[c, n] = 0.0
            continue
        covered[n] = True
        den = 0.0
        for c in range(cv):
            out[c, n] = 0.0
        for dy in range(-r, r + 1):
            cy = y - dy
            if cy < 0 or cy >= hq:
                continue
            for dx in range(-r, r + 1):
                cx = x - dx
                if cx < 0 or cx >= wq:
                    continue
                for j in range(kk):
                    idx = indices[j, cy, cx]
                    if idx < 0:
                        continue
                    lg = 0.0 if uniform else -distances[j, cy, cx] * inv_t
                    e = np.exp(lg - m)
                    py = idx // wk + dy
                    px = idx - (idx // wk) * wk + dx
                    if py < 0:
                        py = -py
                    elif py >= hk:
                        py = 2 * (hk - 1) - py
                    if px < 0:
                        px = -px
                    elif px >= wk:
                        px = 2 * (wk - 1) - px
                    den += e
                    for c in range(cv):
                        out[c, n] += e * value[c, py, px]
        for c in range(cv):
            out[c, n] /= den


def _vote_numba(value, indices, distances, patch_size, temperature, ys, xs):
    acc = torch.float64 if value.dtype == torch.float64 else torch.float32
    np_dtype = np.float64 if acc == torch.float64 else np.float32
    v = value[0].detach().to("cpu", acc).contiguous().numpy()
    idx = indices[0].to("cpu").contiguous().numpy()
    uniform = temperature == float("inf")
    dist = torch.nan_to_num(distances[0].to("cpu", acc), posinf=0.0).contiguous().numpy()
    out = np.empty((v.shape[0], ys.numel()), dtype=np_dtype)
    covered = np.empty(ys.numel(), dtype=np.bool_)
    inv_t = 0.0 if uniform else 1.0 / float(temperature)
    ys_np, xs_np = ys.to("cpu").numpy(), xs.to("cpu").numpy()
    args = (v, idx, dist, ys_np, xs_np, patch_size // 2, np_dtype(inv_t), uniform, out, covered)
    run_chunked(_vote_kernel, ys.numel(), *args)
    dev = value.device
    return torch.from_numpy(out).to(dev, value.dtype), torch.from_numpy(covered).to(dev)


def vote(
    value: torch.Tensor,
    indices: torch.Tensor,
    distances: torch.Tensor,
    patch_size: int,
    temperature: float,
    ys: torch.Tensor,
    xs: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch-voted values at the query pixels ``(ys, xs)``.

    CPU tensors use a compiled (numba) kernel, other devices vectorised PyTorch; both
    compute the same thing (tested against each other and against :func:`psal.attend`).

    Args:
        value: (1, Cv, Hk, Wk) values on the key grid.
        indices: (1, k, Hq, Wq) int64 flat key positions, -1 where not searched.
        distances: (1, k, Hq, Wq) distances of those neighbours (inf where -1).
        patch_size: odd p.
        temperature: T > 0; ``float("inf")`` gives the plain average of the proposals.
        ys: (N,) int64 query rows of the output pixels.
        xs: (N,) int64 query columns.

    Returns:
        ``(out, covered)``: out (Cv, N) voted values, 0 where no proposal; covered (N,)
        bool, False where no searched patch covers the pixel.
    """
    if value.device.type == "cpu":
        return _vote_numba(value, indices, distances, patch_size, temperature, ys, xs)
    return _vote_torch(value, indices, distances, patch_size, temperature, ys, xs)

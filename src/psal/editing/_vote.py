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

import torch


def _reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    i = torch.where(i < 0, -i, i)
    return torch.where(i >= size, 2 * (size - 1) - i, i)


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

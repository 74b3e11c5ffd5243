"""Differentiable aggregation of values over a given neighbour field.

Shared by :func:`psal.layers.ps_attention` (neighbours from PatchMatch) and
:func:`psal.layers.patch_attention` with ``k`` (exact neighbours).
"""

from __future__ import annotations

import torch

from ..patchmatch.distance import patch_distance, reflect_index


def _shift(x: torch.Tensor, dy: int, dx: int, fill: float | int) -> torch.Tensor:
    """``out[..., y, x] = x[..., y - dy, x - dx]``, ``fill`` where that is outside."""
    h, w = x.shape[-2:]
    out = torch.full_like(x, fill)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


class _WeightedGather(torch.autograd.Function):
    """``out[b, :, n] = sum_p weight[b, p, n] * value[b, :, pos[b, p, n]]``.

    Saves only ``value``, ``pos`` and ``weight`` (P scalars per pixel, no gathered
    copies of the values), so memory stays O(B * (Cv + P) * N); the gathers are
    redone in backward, and the value gradient is accumulated with ``scatter_add_``.
    """

    @staticmethod
    def forward(ctx, value, pos, weight):  # type: ignore[override]
        b, cv, _ = value.shape
        n = pos.shape[2]
        out = value.new_zeros(b, cv, n)
        for p in range(pos.shape[1]):
            idx = pos[:, p : p + 1].expand(b, cv, n)
            out.addcmul_(value.gather(2, idx), weight[:, p : p + 1])
        ctx.save_for_backward(value, pos, weight)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        value, pos, weight = ctx.saved_tensors
        b, cv, _ = value.shape
        n = pos.shape[2]
        grad_v = torch.zeros_like(value) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(weight) if ctx.needs_input_grad[2] else None
        for p in range(pos.shape[1]):
            idx = pos[:, p : p + 1].expand(b, cv, n)
            if grad_w is not None:
                grad_w[:, p] = (value.gather(2, idx) * grad).sum(1)
            if grad_v is not None:
                grad_v.scatter_add_(2, idx, (grad * weight[:, p : p + 1]).to(grad_v.dtype))
        return grad_v, None, grad_w


def aggregate(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    indices: torch.Tensor,
    patch_size: int,
    temperature: float | torch.Tensor,
    aggregation: str,
    window: tuple[int, int, int, int] | None = None,
    distances: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output over the neighbour field ``indices`` (see ps_attention's formulas).

    Args:
        query: (B, C, Hq, Wq).
        key: (B, C, Hk, Wk).
        value: (B, Cv, Hk, Wk).
        indices: (B, k, Hq, Wq) flat key positions, -1 = no neighbour.
        patch_size: odd patch side.
        temperature: T > 0.
        aggregation: ``"center"`` or ``"patch"``.
        window: ``(y0, y1, x0, x1)``: compute the output only for these query rows and
            columns (the rest of the query is only read by patches that reach into
            the window). None = the whole query.
        distances: optional (B, k, Hq, Wq) distances of ``indices`` as the search
            returned them; saves recomputing them in the forward pass.

    Returns:
        ``(out, covered)``: out (B, Cv, y1-y0, x1-x0) and covered (B, 1, y1-y0, x1-x0)
        bool, False where a pixel received no proposal (out is 0 there).
    """
    hq, wq = query.shape[-2:]
    hk, wk = key.shape[-2:]
    b, cv = value.shape[:2]
    y0, y1, x0, x1 = window if window is not None else (0, hq, 0, wq)
    r = patch_size // 2 if aggregation == "patch" else 0
    # centres whose patches reach the window
    cy0, cy1, cx0, cx1 = max(0, y0 - r), min(hq, y1 + r), max(0, x0 - r), min(wq, x1 + r)
    idx = indices[..., cy0:cy1, cx0:cx1]
    valid = idx >= 0
    # a finite placeholder before dividing, so a learnable temperature never sees inf*0
    window_c = (cy0, cy1, cx0, cx1)
    known = None if distances is None else distances[..., cy0:cy1, cx0:cx1]
    dist = patch_distance(query, key, idx, patch_size, window=window_c, known=known)
    dist = dist.masked_fill(~valid, 0)
    if isinstance(temperature, torch.Tensor):
        temperature = temperature.to(dist.dtype)
    logits = (-dist / temperature).masked_fill(~valid, float("-inf"))
    if aggregation == "center":
        pos = idx.clamp_min(0)
    else:
        # every patch covering x proposes its k neighbours shifted by x's offset in it
        ny = torch.div(idx.clamp_min(0), wk, rounding_mode="floor")
        nx = idx.clamp_min(0) - ny * wk
        shifted_logits, shifted_pos = [], []
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                shifted_logits.append(_shift(logits, dy, dx, float("-inf")))
                py = reflect_index(_shift(ny, dy, dx, 0) + dy, hk)
                px = reflect_index(_shift(nx, dy, dx, 0) + dx, wk)
                shifted_pos.append(py * wk + px)
        logits = torch.cat(shifted_logits, 1)
        pos = torch.cat(shifted_pos, 1)
    # crop from the centre region back to the window
    oy, ox = y0 - cy0, x0 - cx0
    logits = logits[..., oy : oy + y1 - y0, ox : ox + x1 - x0]
    pos = pos[..., oy : oy + y1 - y0, ox : ox + x1 - x0]
    covered = torch.isfinite(logits).any(1, keepdim=True)
    weights = torch.softmax(logits.masked_fill(~covered, 0.0), dim=1)
    n = (y1 - y0) * (x1 - x0)
    npos = pos.shape[1]
    out = _WeightedGather.apply(
        value.reshape(b, cv, hk * wk), pos.reshape(b, npos, n), weights.reshape(b, npos, n)
    )
    out = out.view(b, cv, y1 - y0, x1 - x0).to(value.dtype)
    return out.masked_fill(~covered, 0.0), covered

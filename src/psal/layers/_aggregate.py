"""Differentiable aggregation of values over a given neighbour field.

Shared by :func:`psal.layers.ps_attention` (neighbours from PatchMatch) and
:func:`psal.layers.patch_attention` with ``topk`` (exact neighbours).
"""

from __future__ import annotations

import torch

from ..patchmatch.distance import patch_distance


def reflect_index(i: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect integer coordinates in ``[-(size-1), 2*size-2]`` into ``[0, size)``."""
    i = torch.where(i < 0, -i, i)
    return torch.where(i >= size, 2 * (size - 1) - i, i)


def _as_temperature(temperature: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor | float:
    if isinstance(temperature, torch.Tensor):
        return temperature.to(like.dtype)
    return float(temperature)


def _shift(x: torch.Tensor, dy: int, dx: int, fill: float | int) -> torch.Tensor:
    """``out[..., y, x] = x[..., y - dy, x - dx]``, ``fill`` where that is outside."""
    h, w = x.shape[-2:]
    out = torch.full_like(x, fill)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def _gather_values(value: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Values at flat key positions: value (B, Cv, Hk, Wk), positions (B, k, H, W) >= 0.

    Returns (B, Cv, k, H, W).
    """
    b, cv = value.shape[:2]
    _, kk, h, w = positions.shape
    flat = value.reshape(b, cv, -1)
    idx = positions.reshape(b, 1, kk * h * w).expand(b, cv, kk * h * w)
    return flat.gather(2, idx).view(b, cv, kk, h, w)


def aggregate(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    indices: torch.Tensor,
    patch_size: int,
    temperature: float | torch.Tensor,
    aggregation: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output over the neighbour field ``indices`` (see ps_attention's formulas).

    Returns ``(out, covered)``: out (B, Cv, Hq, Wq) and covered (B, 1, Hq, Wq) bool,
    False where a pixel received no proposal (all its neighbours unsearched); there
    ``out`` is 0.
    """
    valid = indices >= 0
    # finite placeholder before dividing, so a learnable temperature never sees inf * 0
    dist = patch_distance(query, key, indices, patch_size).masked_fill(~valid, 0.0)
    t = _as_temperature(temperature, dist)
    logits = (-dist / t).masked_fill(~valid, float("-inf"))
    hk, wk = key.shape[-2:]
    if aggregation == "center":
        covered = valid.any(1, keepdim=True)
        logits = logits.masked_fill(~covered, 0.0)  # avoid softmax of all -inf
        weights = torch.softmax(logits, dim=1)  # (B, k, H, W)
        vals = _gather_values(value, indices.clamp_min(0))  # (B, Cv, k, H, W)
        out = (vals * weights.unsqueeze(1)).sum(2)
        return out.masked_fill(~covered, 0.0), covered

    # patch aggregation: every patch covering x proposes its k neighbours shifted by
    # the offset of x inside it; one softmax over all p*p*k proposals, computed as a
    # streaming log-sum-exp so only one offset's tensors are alive at a time.
    r = patch_size // 2
    ny = torch.div(indices.clamp_min(0), wk, rounding_mode="floor")
    nx = indices.clamp_min(0) - ny * wk
    with torch.no_grad():
        m = None
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                lm = _shift(logits, dy, dx, float("-inf")).amax(1, keepdim=True)
                m = lm if m is None else torch.maximum(m, lm)
        covered = torch.isfinite(m)
        m = torch.where(covered, m, torch.zeros_like(m))
    num = None
    den = None
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            l_s = _shift(logits, dy, dx, float("-inf"))  # logits of centre x - delta
            e = torch.exp(l_s - m)  # (B, k, H, W), 0 where no proposal
            py = reflect_index(_shift(ny, dy, dx, 0) + dy, hk)
            px = reflect_index(_shift(nx, dy, dx, 0) + dx, wk)
            vals = _gather_values(value, py * wk + px)  # (B, Cv, k, H, W)
            contrib = (vals * e.unsqueeze(1)).sum(2)
            esum = e.sum(1, keepdim=True)
            num = contrib if num is None else num + contrib
            den = esum if den is None else den + esum
    out = num / den.clamp_min(torch.finfo(den.dtype).tiny)
    return out.masked_fill(~covered, 0.0), covered

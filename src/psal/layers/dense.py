"""PatchAttention: exact dense patch attention, the reference for PSAttention."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .._checks import (
    check_choice,
    check_finite,
    check_int,
    check_mask,
    check_patch_size,
)
from .._deprecation import keyword_only, warn_deprecated
from ..patchmatch.distance import center_pair, reflect_index, unfold_patches, valid_key_positions
from .psattention import AGGREGATIONS, _check_qkv, _check_temperature, ps_attention

__all__ = ["PatchAttention", "patch_attention"]

#: Upper bound on one query chunk's score matrices, in bytes.
MAX_CHUNK_BYTES = 128 * 2**20


def _dense_chunk(qf, kf, kn, vf, key_ok, rows, hq, wq, hk, wk, patch_size, t, aggregation):
    """Dense attention output for the query pixels ``rows`` (1-D long). Returns (B, n, Cv)."""
    b = qf.shape[0]
    n = rows.numel()
    if aggregation == "center":
        offsets = [(0, 0)]
    else:
        r = patch_size // 2
        offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    y, x = rows // wq, rows % wq
    ky = torch.arange(hk, device=qf.device).view(hk, 1).expand(hk, wk).reshape(-1)
    kx = torch.arange(wk, device=qf.device).view(1, wk).expand(hk, wk).reshape(-1)
    dists, oks, values = [], [], []
    for dy, dx in offsets:
        cy, cx = y - dy, x - dx  # centre of the query patch that covers x at offset delta
        inside = (cy >= 0) & (cy < hq) & (cx >= 0) & (cx < wq)
        c = (cy.clamp(0, hq - 1) * wq + cx.clamp(0, wq - 1)).to(rows.device)
        qc = qf[:, :, c].transpose(1, 2)  # (B, n, D)
        qn = qc.square().sum(-1, keepdim=True)
        dists.append((qn + kn.unsqueeze(1) - 2 * torch.bmm(qc, kf)).clamp_min(0))  # (B, n, Nk)
        oks.append(key_ok.unsqueeze(1) & inside.view(1, n, 1))
        vidx = reflect_index(ky + dy, hk) * wk + reflect_index(kx + dx, wk)
        values.append(vf[:, :, vidx])  # (B, Cv, Nk): value at n + delta
    # Each pixel's distances less their (detached) smallest before dividing by T: the
    # softmax ignores the constant, but -d / T of distances ~1e5 rounds in float32, and
    # the temperature's gradient, sum g * d / T², cancels (40% off) unless d is shifted.
    with torch.no_grad():
        low = torch.stack([torch.where(ok, d, torch.inf).amin(-1) for d, ok in zip(dists, oks)])
        low = low.amin(0)  # (B, n)
        low = torch.where(torch.isfinite(low), low, torch.zeros_like(low)).unsqueeze(-1)
    scores = []
    for i, ok in enumerate(oks):
        d, dists[i] = dists[i], None  # freed as its scores are made
        scores.append((-(d - low) / t).masked_fill(~ok, float("-inf")))
    m = torch.stack([s.amax(-1) for s in scores], 0).amax(0).detach()  # (B, n)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    num = torch.zeros(b, n, vf.shape[1], dtype=qf.dtype, device=qf.device)
    den = torch.zeros(b, n, dtype=qf.dtype, device=qf.device)
    for s, v in zip(scores, values):
        e = torch.exp(s - m.unsqueeze(-1))
        num = num + torch.bmm(e, v.transpose(1, 2))
        den = den + e.sum(-1)
    return num / den.clamp_min(torch.finfo(den.dtype).tiny).unsqueeze(-1)


@keyword_only(3, ("patch_size", "temperature", "k", "aggregation"), {"topk": "k", "mask": "hole"})
def patch_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    k: int | None = None,
    patch_size: int = 3,
    temperature: float | torch.Tensor = 1.0,
    aggregation: str = "center",
    hole: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Exact patch attention over all key patches (or the exact top-k).

    Same distances, border rule, formulas and mask semantics as
    :func:`psal.layers.ps_attention`, with the approximate neighbours replaced by:

    * ``k=None``: every valid key patch n:
      ``out(x) = sum_n softmax_n(-d(x, n) / T) v(n)`` (``"center"``), or the softmax
      over all (δ, n) of ``-d(x-δ, n) / T`` with values ``v(n + δ)`` (``"patch"``);
    * ``k=k``: the exact k nearest key patches (brute-force search), i.e.
      PSAttention with a perfect search.

    Memory: the dense form scores query chunks against all ``Hk*Wk`` keys, so the
    forward pass holds one chunk's (chunk x Hk*Wk) score matrix at a time (bounded by
    ``MAX_CHUNK_BYTES``); under autograd each chunk is checkpointed and recomputed in
    backward, so training memory is bounded the same way. Time stays O((H·W)²·C·p²).

    Args:
        query: (B, C, Hq, Wq).
        key: (B, C, Hk, Wk).
        value: (B, Cv, Hk, Wk).
        k: None (all keys) or the number of exact nearest neighbours.
        patch_size: odd patch side.
        temperature: T > 0, float or one-element tensor.
        aggregation: ``"center"`` or ``"patch"``.
        hole: optional (B, 1, H, W) hole mask for self-attention (True = hole).

    Returns:
        (B, Cv, Hq, Wq).

    Example:
        >>> x = torch.rand(1, 3, 16, 16)
        >>> patch_attention(x, x, x, patch_size=3, temperature=0.1).shape
        torch.Size([1, 3, 16, 16])
    """
    patch_size = check_patch_size(patch_size)
    _check_qkv(query, key, value, patch_size=patch_size)
    check_choice(aggregation, "aggregation", AGGREGATIONS)
    temperature = _check_temperature(temperature)
    if k is not None:
        k = check_int(k, "k", minimum=1)
        return ps_attention(
            query, key, value, k=k, patch_size=patch_size, iters=0,
            temperature=temperature, aggregation=aggregation, hole=hole, backend="exact",
        )  # fmt: skip
    for name, t in (("query", query), ("key", key)):  # as the search refuses them for k
        check_finite(t, name)
    b, _, hq, wq = query.shape
    hk, wk = key.shape[-2:]
    key_ok = torch.ones(b, hk * wk, dtype=torch.bool, device=query.device)
    if hole is not None:
        if query.shape[-2:] != key.shape[-2:]:
            raise ValueError(
                f"hole is for self-attention: query and key must have the same spatial "
                f"size, got {tuple(query.shape[-2:])} and {tuple(key.shape[-2:])}"
            )
        hole = check_mask(hole, "hole", b, hq, wq, query.device)
        key_ok = valid_key_positions(hole, patch_size).reshape(b, hk * wk)
        if not bool(key_ok.any(1).all()):
            raise ValueError("hole leaves no key patch entirely outside the hole")
    acc = torch.float64 if query.dtype == torch.float64 else torch.float32
    qc, kc = center_pair(query.to(acc), key.to(acc))  # the scores cancel less
    qf = unfold_patches(qc, patch_size)  # (B, D, Nq)
    kf = unfold_patches(kc, patch_size)  # (B, D, Nk)
    kn = kf.square().sum(1)  # (B, Nk)
    vf = value.to(acc).reshape(b, value.shape[1], hk * wk)
    t = temperature.to(acc) if isinstance(temperature, torch.Tensor) else temperature
    n_off = patch_size**2 if aggregation == "patch" else 1
    chunk = max(1, MAX_CHUNK_BYTES // (b * hk * wk * n_off * (torch.finfo(acc).bits // 8) * 2))
    rows = torch.arange(hq * wq, device=query.device)
    grad = torch.is_grad_enabled() and any(
        x.requires_grad for x in (query, key, value, t) if isinstance(x, torch.Tensor)
    )
    outs = []
    for s in range(0, rows.numel(), chunk):
        args = (qf, kf, kn, vf, key_ok, rows[s : s + chunk], hq, wq, hk, wk, patch_size, t,
                aggregation)  # fmt: skip
        if grad:
            outs.append(checkpoint(_dense_chunk, *args, use_reentrant=False))
        else:
            outs.append(_dense_chunk(*args))
    out = torch.cat(outs, 1).transpose(1, 2).reshape(b, -1, hq, wq).to(value.dtype)
    if hole is not None:
        out = torch.where(hole, out, value)
    return out


class PatchAttention(nn.Module):
    """Exact dense patch attention; ``forward`` calls :func:`patch_attention`.

    Args:
        k: None for all key patches, or the number of exact nearest neighbours.
        patch_size: odd patch side.
        temperature: softmax temperature T > 0 (``float("inf")``: plain average).
        aggregation: ``"center"`` or ``"patch"``.

    Shape:
        query (B, C, Hq, Wq), key (B, C, Hk, Wk), value (B, Cv, Hk, Wk), optional hole
        (B, 1, H, W) (True = hole, self-attention) -> (B, Cv, Hq, Wq).

    Example:
        >>> layer = PatchAttention(patch_size=3, temperature=0.5)
        >>> x = torch.rand(1, 4, 12, 12)
        >>> layer(x, x, x).shape
        torch.Size([1, 4, 12, 12])
    """

    @keyword_only(1, ("patch_size", "temperature", "k", "aggregation"), {"topk": "k"})
    def __init__(
        self,
        *,
        k: int | None = None,
        patch_size: int = 3,
        temperature: float = 1.0,
        aggregation: str = "center",
    ) -> None:
        super().__init__()
        self.k = None if k is None else check_int(k, "k", minimum=1)
        self.patch_size = check_patch_size(patch_size)
        self.temperature = _check_temperature(temperature, tensor=False)  # inf: plain average
        self.aggregation = check_choice(aggregation, "aggregation", AGGREGATIONS)

    @property
    def topk(self) -> int | None:
        """Deprecated alias of :attr:`k`."""
        warn_deprecated("PatchAttention.topk is deprecated; use PatchAttention.k", 3)
        return self.k

    @keyword_only(4, ("hole",), {"mask": "hole"})
    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        *,
        hole: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend; see :func:`patch_attention`."""
        return patch_attention(
            query, key, value, k=self.k, patch_size=self.patch_size,
            temperature=self.temperature, aggregation=self.aggregation, hole=hole,
        )  # fmt: skip

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return (
            f"k={self.k}, patch_size={self.patch_size}, temperature={self.temperature:.4g}, "
            f"aggregation={self.aggregation!r}"
        )

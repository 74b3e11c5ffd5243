"""PSAttention: the Patch-based Stochastic Attention Layer (Cherel et al., CVIU 2024)."""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from .._checks import (
    check_choice,
    check_float_tensor,
    check_indices,
    check_int,
    check_mask,
    check_not_transformed,
    check_patch_fits,
    check_patch_size,
    check_same_device,
    check_tensor,
)
from .._deprecation import keyword_only
from ..patchmatch import PatchMatchResult, patchmatch
from ..patchmatch.distance import valid_key_positions
from ._aggregate import aggregate
from .vote import vote

__all__ = ["PSAttention", "attend", "ps_attention"]

AGGREGATIONS = ("center", "patch")

# The neighbour search (psal.patchmatch, disabled for torch.compile where it is defined)
# and the streaming vote have no gradient and are numpy/numba (or integer torch code
# with data-dependent loops): under torch.compile they run eagerly, one graph break
# each, instead of being traced. Traced, the search failed on a second input size
# (dynamic shapes reached the border reflection as symbolic slice bounds) and
# recompiled its helpers at every call. The seed, drawn from torch's generator inside
# the search, is then the eager one: compiled and eager calls find the same neighbours.


def _check_qkv(
    query: object,
    key: object,
    value: object,
    *,
    same_dtype: bool = True,
    patch_size: int | None = None,
) -> None:
    """Float (B, C, H, W) query/key, (B, Cv, Hk, Wk) value on one device (one dtype).

    B, C and Cv >= 1; with ``patch_size``, query and key at least a patch on each side
    (the kernels reflect borders once: a larger patch would read outside the maps).
    """
    q = check_float_tensor(query, "query", ndim=4)
    k = check_float_tensor(key, "key", ndim=4)
    v = check_float_tensor(value, "value", ndim=4)
    check_same_device({"query": q, "key": k, "value": v})
    if same_dtype and not (q.dtype == k.dtype == v.dtype):
        raise TypeError(
            f"query, key and value must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    if not (q.shape[0] == k.shape[0] == v.shape[0]):
        raise ValueError(
            f"query, key and value must have the same batch size B, got {q.shape[0]}, "
            f"{k.shape[0]}, {v.shape[0]}"
        )
    if q.shape[1] != k.shape[1]:
        raise ValueError(
            f"query and key must have the same channels C, got {q.shape[1]} and {k.shape[1]}"
        )
    if v.shape[-2:] != k.shape[-2:]:
        raise ValueError(
            f"value must have the key's spatial size {tuple(k.shape[-2:])}, got "
            f"{tuple(v.shape[-2:])}"
        )
    for name, t in (("query", q), ("value", v)):
        if t.shape[0] < 1 or t.shape[1] < 1:
            raise ValueError(f"{name} must have B >= 1 and C >= 1, got shape {tuple(t.shape)}")
    if patch_size is not None:
        check_patch_fits("query", q, patch_size)
        check_patch_fits("key", k, patch_size)


_TEMPERATURE_RULE = "temperature must be > 0 (inf for a plain average)"


def _check_temperature(temperature: object, *, tensor: bool = True) -> float | torch.Tensor:
    """T > 0 as a float (``inf``: the plain average) or, with ``tensor``, a 0-d tensor."""
    if tensor and isinstance(temperature, torch.Tensor):
        if temperature.numel() != 1:
            raise ValueError(
                f"temperature must be a number or a one-element tensor, got shape "
                f"{tuple(temperature.shape)}"
            )
        if not bool(temperature.detach() > 0):  # NaN too
            raise ValueError(f"{_TEMPERATURE_RULE}, got {float(temperature)}")
        return temperature.reshape(())
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        what = "a number or a one-element tensor" if tensor else "a number"
        raise TypeError(
            f"temperature must be {what} > 0 (inf for a plain average), got "
            f"{temperature!r} ({type(temperature).__name__})"
        )
    value = float(temperature)
    if not value > 0:  # NaN too
        raise ValueError(f"{_TEMPERATURE_RULE}, got {value}")
    return value


@keyword_only(4, ("patch_size", "temperature", "aggregation"))
def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    indices: torch.Tensor,
    *,
    patch_size: int = 3,
    temperature: float | torch.Tensor = 1.0,
    aggregation: str = "center",
) -> torch.Tensor:
    """Attention over a given neighbour field: the differentiable half of PSAttention.

    With the neighbours fixed, the output is a smooth function of query, key (through
    the softmax weights) and value (through the gathered values); see
    :func:`ps_attention` for the formulas. Pixels whose neighbours are all ``-1`` get 0.

    Args:
        query: (B, C, Hq, Wq).
        key: (B, C, Hk, Wk).
        value: (B, Cv, Hk, Wk).
        indices: (B, k, Hq, Wq) int64 flat key positions ``y * Wk + x`` (-1 = none), as
            returned by :func:`psal.patchmatch`.
        patch_size: odd patch side used for the distances (and the aggregation).
        temperature: softmax temperature T > 0, a float or a one-element tensor.
        aggregation: ``"center"`` or ``"patch"``.

    Returns:
        (B, Cv, Hq, Wq).

    Example:
        >>> import psal
        >>> q = torch.rand(1, 4, 8, 8); v = torch.rand(1, 2, 8, 8)
        >>> idx = psal.patchmatch(q, q, k=2, seed=0).indices
        >>> attend(q, q, v, idx).shape
        torch.Size([1, 2, 8, 8])
    """
    patch_size = check_patch_size(patch_size)
    _check_qkv(query, key, value, patch_size=patch_size)
    check_not_transformed("psal.attend", query, key, value, temperature)
    check_choice(aggregation, "aggregation", AGGREGATIONS)
    temperature = _check_temperature(temperature)
    check_tensor(indices, "indices", ndim=4)
    b, _, hq, wq = query.shape
    if indices.dtype != torch.int64 or indices.shape[0] != b or indices.shape[-2:] != (hq, wq):
        raise ValueError(
            f"indices must be int64 of shape (B, k, Hq, Wq) = ({b}, k, {hq}, {wq}), got "
            f"{indices.dtype} {tuple(indices.shape)}"
        )
    hk, wk = key.shape[-2:]
    check_indices(indices, hk * wk)
    out, _ = aggregate(query, key, value, indices, patch_size, temperature, aggregation)
    return out


@keyword_only(3, ("k", "patch_size", "iters", "temperature", "aggregation"), {"mask": "hole"})
def ps_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    k: int = 3,
    patch_size: int = 3,
    iters: int = 5,
    temperature: float | torch.Tensor = 1.0,
    aggregation: str = "center",
    hole: torch.Tensor | None = None,
    seed: int | None = None,
    backend: str = "auto",
    init: torch.Tensor | None = None,
    return_field: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, PatchMatchResult]:
    r"""Patch-based stochastic attention: attend to the k nearest patches only.

    Each query pixel x finds its k approximate nearest key patches n_1(x) .. n_k(x)
    with :func:`psal.patchmatch` (distance d_j(x): sum of squared differences over the
    ``p x p`` patches and all channels, reflection at borders), then

    * ``aggregation="center"``:
      ``out(x) = sum_j w_j(x) v(n_j(x))``, ``w(x) = softmax_j(-d_j(x) / T)``;
    * ``aggregation="patch"``: every query patch covering x (centre ``x - δ``, δ in
      the ``p x p`` window) proposes its k neighbours shifted by δ, all weighted by one
      softmax over the ``p² k`` proposals:
      ``out(x) = sum_{δ,j} ŵ_{δ,j}(x) v(n_j(x-δ) + δ)``,
      ``ŵ(x) = softmax_{δ,j}(-d_j(x-δ) / T)``; centres outside the image propose
      nothing, and ``n + δ`` is reflected into the key like the patch itself. Denser
      gradients, smoother output (this is the patch voting of Wexler et al. 2007).

    Gradients: the neighbour choice is a constant; the chosen neighbours' distances
    are recomputed differentiably (:func:`psal.patchmatch.patch_distance`), so
    gradients reach ``query`` and ``key`` through the weights and ``value`` through the
    gathered values. Memory is O(B·k·H·W·(C + Cv)), never O((H·W)²); when no gradient
    is needed (inference, ``torch.no_grad()``), the output comes from the streaming
    :func:`psal.layers.vote`, O(Cv·H·W) whatever k and the patch size.

    Masked self-attention (inpainting): with ``hole`` (B, 1, H, W) bool, True = hole,
    query and key must have the same spatial size. Hole pixels (and, for ``"patch"``,
    the pixels whose patch touches the hole) are searched, only among key patches
    entirely outside the hole, so no hole pixel ever receives content from a hole.
    **Outside the hole the output equals ``value``** (unchanged, with its gradient).

    Args:
        query: (B, C, Hq, Wq) float.
        key: (B, C, Hk, Wk), same B, C, dtype and device.
        value: (B, Cv, Hk, Wk).
        k: neighbours per pixel (any k >= 1, chosen at run time).
        patch_size: odd patch side.
        iters: PatchMatch iterations.
        temperature: softmax temperature T > 0 (float or one-element tensor, e.g. a
            learnable parameter); ``float("inf")`` gives the plain average. Distances are
            not normalised, so T should grow with ``C * patch_size**2`` and the scale of
            the features.
        aggregation: ``"center"`` or ``"patch"``.
        hole: optional (B, 1, H, W) hole mask (bool or 0/1, True = hole), for
            self-attention.
        seed: PatchMatch seed (None: drawn from torch's global generator).
        backend: PatchMatch backend, see :mod:`psal.patchmatch.backends`.
        init: optional (B, k, Hq, Wq) initial neighbour field for the search.
        return_field: also return the :class:`~psal.patchmatch.PatchMatchResult`
            (detached indices and distances), e.g. for :mod:`psal.viz`.

    Returns:
        (B, Cv, Hq, Wq), or ``(out, field)`` with ``return_field=True``.

    Example:
        >>> x = torch.rand(2, 8, 32, 32, requires_grad=True)
        >>> out = ps_attention(x, x, x, k=4, patch_size=3, seed=0)
        >>> out.shape
        torch.Size([2, 8, 32, 32])
        >>> out.sum().backward()
    """
    patch_size = check_patch_size(patch_size)
    _check_qkv(query, key, value, patch_size=patch_size)
    check_not_transformed("psal.ps_attention", query, key, value, temperature)
    k = check_int(k, "k", minimum=1)
    check_choice(aggregation, "aggregation", AGGREGATIONS)
    temperature = _check_temperature(temperature)
    b, _, hq, wq = query.shape
    query_valid = key_valid = None
    if hole is not None:
        if query.shape[-2:] != key.shape[-2:]:
            raise ValueError(
                f"hole is for self-attention: query and key must have the same spatial "
                f"size, got {tuple(query.shape[-2:])} and {tuple(key.shape[-2:])}"
            )
        hole = check_mask(hole, "hole", b, hq, wq, query.device)
        key_valid = ~hole
        sources = valid_key_positions(hole, patch_size)  # patches clear of the hole
        _check_sources(sources, patch_size, k)
        if aggregation == "patch":
            query_valid = ~sources  # patches touching the hole
        else:
            query_valid = hole
    field = patchmatch(
        query,
        key,
        k=k,
        patch_size=patch_size,
        iters=iters,
        query_valid=query_valid,
        key_valid=key_valid,
        seed=seed,
        backend=backend,
        init=init,
    )
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (query, key, value, temperature) if isinstance(t, torch.Tensor)
    )
    if not needs_grad:  # inference: the streaming vote, O(Cv * N) memory
        out = _voted_output(value, field, hole, patch_size, float(temperature), aggregation)
    elif hole is None:
        out, _ = aggregate(query, key, value, field.indices, patch_size, temperature, aggregation,
                           distances=field.distances)  # fmt: skip
    else:
        out = _masked_output(query, key, value, field, hole, patch_size, temperature,
                             aggregation)  # fmt: skip
    return (out, field) if return_field else out


def _check_sources(sources: torch.Tensor, patch_size: int, k: int) -> None:
    """Every batch element needs ``k`` key patches outside the hole: errors in its terms.

    ``sources``: :func:`valid_key_positions` of the hole (B, 1, H, W), True = a patch
    clear of the hole.
    """
    counts = sources.flatten(1).sum(1).tolist()
    for b, n in enumerate(counts):
        if n < k:
            what = "no key patch" if n == 0 else f"only {n} key patches (k={k})"
            raise ValueError(
                f"hole leaves {what} outside the hole in batch element {b}: a "
                f"{patch_size}x{patch_size} patch that touches the hole cannot be a source "
                f"(use a smaller hole, patch_size or k)"
            )


@torch.compiler.disable  # compiled kernels, no gradient: eager under torch.compile
def _voted_output(value, field, hole, patch_size, temperature, aggregation):
    """The same output through :func:`psal.layers.vote` (no gradients)."""
    if hole is None:
        out, _ = vote(value, field.indices, field.distances, patch_size, temperature, aggregation)
        return out
    b, _, y, x = hole.nonzero(as_tuple=True)
    vals, _ = vote(value, field.indices, field.distances, patch_size, temperature, aggregation,
                   pixels=(b, y, x))  # fmt: skip
    out = value.clone()
    out[b, :, y, x] = vals.t()
    return out


def _masked_output(query, key, value, field, hole, patch_size, temperature, aggregation):
    """Attention inside the hole's bounding box (the only place it is used), value outside."""
    rows = hole.any(3).any(0).reshape(-1).nonzero()
    cols = hole.any(2).any(0).reshape(-1).nonzero()
    if rows.numel() == 0:
        return value.clone()  # a new tensor, as in every other case
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    out, _ = aggregate(query, key, value, field.indices, patch_size, temperature, aggregation,
                       window=(y0, y1, x0, x1), distances=field.distances)  # fmt: skip
    h, w = value.shape[-2:]
    out = torch.nn.functional.pad(out, (x0, w - x1, y0, h - y1))
    return torch.where(hole, out, value)


class PSAttention(nn.Module):
    """Patch-based Stochastic Attention Layer; ``forward`` calls :func:`ps_attention`.

    Args:
        k: neighbours per pixel.
        patch_size: odd patch side.
        iters: PatchMatch iterations per forward.
        temperature: initial softmax temperature T > 0; ``float("inf")``: the plain
            average of the neighbours (as in :func:`ps_attention`; not learnable).
        aggregation: ``"center"`` or ``"patch"``.
        learnable_temperature: learn ``log T`` as a parameter.
        backend: PatchMatch backend (``"auto"`` picks by device), checked here.

    Shape:
        - query: (B, C, Hq, Wq), key: (B, C, Hk, Wk), value: (B, Cv, Hk, Wk)
        - hole: optional (B, 1, H, W), True = hole (self-attention)
        - output: (B, Cv, Hq, Wq); with ``return_field=True`` also the neighbour field
          (:class:`~psal.patchmatch.PatchMatchResult`, (B, k, Hq, Wq) each)

    Example:
        >>> layer = PSAttention(k=3, patch_size=3)
        >>> x = torch.rand(1, 16, 24, 24)
        >>> layer(x, x, x).shape
        torch.Size([1, 16, 24, 24])
    """

    @keyword_only(
        1,
        ("k", "patch_size", "iters", "temperature", "aggregation", "learnable_temperature",
         "backend"),
    )  # fmt: skip
    def __init__(
        self,
        *,
        k: int = 3,
        patch_size: int = 3,
        iters: int = 5,
        temperature: float = 1.0,
        aggregation: str = "center",
        learnable_temperature: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.k = check_int(k, "k", minimum=1)
        self.patch_size = check_patch_size(patch_size)
        self.iters = check_int(iters, "iters", minimum=0)
        self.aggregation = check_choice(aggregation, "aggregation", AGGREGATIONS)
        from ..patchmatch.backends import _check_name

        self.backend = _check_name(backend)
        t = _check_temperature(temperature, tensor=False)
        if t == float("inf") and learnable_temperature:
            raise ValueError("temperature=inf (a plain average) cannot be learnable")
        if learnable_temperature:
            self.log_temperature = nn.Parameter(torch.tensor(math.log(t)))
        else:  # used as the float t itself (a float32 exp(log t) is not t)
            log_t = torch.tensor(math.log(t), dtype=torch.float64)
            self.register_buffer("log_temperature", log_t, persistent=False)
        self._fixed_temperature = None if learnable_temperature else t
        self.learnable_temperature = learnable_temperature

    @property
    def temperature(self) -> torch.Tensor:
        """The current temperature T = exp(log T) (the given T when not learnable)."""
        if self._fixed_temperature is not None:
            return torch.tensor(self._fixed_temperature, dtype=torch.float64,
                                device=self.log_temperature.device)  # fmt: skip
        return self.log_temperature.exp()

    @keyword_only(4, ("hole", "return_field", "seed"), {"mask": "hole"})
    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        *,
        hole: torch.Tensor | None = None,
        return_field: bool = False,
        seed: int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, PatchMatchResult]:
        """Attend; see :func:`ps_attention`."""
        t = self.temperature if self._fixed_temperature is None else self._fixed_temperature
        return ps_attention(
            query,
            key,
            value,
            k=self.k,
            patch_size=self.patch_size,
            iters=self.iters,
            temperature=t,
            aggregation=self.aggregation,
            hole=hole,
            seed=seed,
            backend=self.backend,
            return_field=return_field,
        )

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return (
            f"k={self.k}, patch_size={self.patch_size}, iters={self.iters}, "
            f"temperature={float(self.temperature.detach()):.4g}, "
            f"aggregation={self.aggregation!r}, "
            f"learnable_temperature={self.learnable_temperature}, backend={self.backend!r}"
        )

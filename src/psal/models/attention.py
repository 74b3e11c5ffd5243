"""Attention adapters: the swappable attention layer of the DeepFill generator.

The refinement network's attention branch calls one adapter on its 1/4-resolution
features. Every adapter has the same small interface, so layers plug in by name
(:data:`psal.models.registry.ATTENTIONS`):

``forward(x, mask, return_flow=False) -> (out, flow)``

- ``x``: (B, C, h, w) features; ``mask``: (B, 1, h, w) bool, True = hole (at the
  features' resolution).
- ``out``: (B, C, h, w) features in which the hole has been filled from the known
  region; ``flow``: (B, 2, h, w) float displacement ``(dy, dx)`` in feature pixels from
  each pixel to its strongest source (zero where there is none), or ``None`` when
  ``return_flow`` is False or the adapter has no notion of a source.

Adapters:

- ``"none"``: identity; the attention branch becomes a plain convolutional branch.
- ``"contextual"``: :class:`psal.layers.ContextualAttention` (Yu et al. 2018) in
  self-attention mode (foreground = background = ``x``), as in DeepFill v1, defaults
  ``rate=2`` and ``softmax_scale=10``; its output replaces ``x`` everywhere, as in the
  reference.
- ``"psal"``: :class:`psal.PSAttention` in masked self-attention mode: hole pixels
  attend to their k nearest key patches entirely outside the hole; outside the hole the
  features pass unchanged. Queries and keys are the features L2-normalised per pixel
  (``normalize=True``), so the patch distance is ``2 p² - 2 Σ cos``, the analogue of
  contextual attention's cosine similarity; values are the raw features. The default
  temperature ``2 p² / 10`` gives the softmax the sharpness of contextual attention's
  scale 10.

All adapters run in float32 with autocast disabled (PatchMatch and the dense score
matrix are precision-sensitive) and return float32.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_mask, check_positive_float
from .registry import ATTENTIONS

__all__ = [
    "ContextualAdapter",
    "IdentityAdapter",
    "PSALAdapter",
    "build_attention",
    "list_attentions",
]


def _no_autocast(x: torch.Tensor) -> torch.autocast:
    return torch.autocast(device_type=x.device.type, enabled=False)


class IdentityAdapter(nn.Module):
    """No attention: ``out = x``, no flow."""

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, return_flow: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(x, None)``."""
        return x, None


class ContextualAdapter(nn.Module):
    """Contextual attention (DeepFill v1) as a self-attention adapter.

    Args:
        **options: passed to :class:`psal.layers.ContextualAttention` (``patch_size``,
            ``stride``, ``rate``, ``fuse_k``, ``softmax_scale``, ``fuse``).
    """

    def __init__(self, **options: Any) -> None:
        super().__init__()
        try:
            from ..layers import ContextualAttention
        except ImportError as err:  # pragma: no cover - depends on the build
            raise ImportError(
                "attention='contextual' needs psal.layers.ContextualAttention, which this "
                f"psal installation does not provide ({err})"
            ) from err
        self.layer = ContextualAttention(**options)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, return_flow: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``x`` to itself, hole patches excluded as sources."""
        with _no_autocast(x):
            out, offsets = self.layer(x.float(), x.float(), mask)
        return out, (offsets.float() if return_flow else None)


class PSALAdapter(nn.Module):
    """PSAttention (Cherel et al.) in masked self-attention mode.

    Args:
        k: neighbours per hole pixel.
        patch_size: odd patch side.
        iters: PatchMatch iterations per forward.
        temperature: softmax temperature; ``None`` picks ``2 * patch_size**2 / 10`` with
            ``normalize=True`` (contextual attention's sharpness) and 1 otherwise.
        aggregation: ``"center"`` or ``"patch"``.
        learnable_temperature: learn ``log T``.
        normalize: L2-normalise queries and keys per pixel.
        backend: PatchMatch backend (``"auto"``: numba on CPU, torch elsewhere).

    A sample whose hole leaves fewer than ``k`` valid key patches (every patch touching
    the hole is excluded) cannot be searched; its features pass through unchanged (as
    with ``"none"``) and a warning says so.
    """

    def __init__(
        self,
        k: int = 3,
        patch_size: int = 3,
        iters: int = 5,
        temperature: float | None = None,
        aggregation: str = "center",
        learnable_temperature: bool = False,
        normalize: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        from ..layers import PSAttention

        if temperature is None:
            temperature = 2 * patch_size**2 / 10 if normalize else 1.0
        check_positive_float(temperature, "temperature")
        self.layer = PSAttention(
            k=k,
            patch_size=patch_size,
            iters=iters,
            temperature=temperature,
            aggregation=aggregation,
            learnable_temperature=learnable_temperature,
            backend=backend,
        )
        self.normalize = bool(normalize)

    @property
    def min_size(self) -> int:
        """Smallest feature side the search works on (the patch size)."""
        return self.layer.patch_size

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, return_flow: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Fill the hole of ``x`` from its k nearest outside patches."""
        from ..patchmatch import valid_key_positions

        b, _, h, w = x.shape
        hole = check_mask(mask, "mask", b, h, w, x.device)
        p, k = self.layer.patch_size, self.layer.k
        if min(h, w) < p:
            raise ValueError(
                f"psal attention needs features of at least patch_size={p} pixels a side, "
                f"got {h}x{w}; use larger images"
            )
        n_valid = valid_key_positions(hole, p).flatten(1).sum(1)
        ok = (n_valid >= k).cpu()
        flow = x.new_zeros(b, 2, h, w, dtype=torch.float32) if return_flow else None
        with _no_autocast(x):
            x32 = x.float()
            if not bool(ok.all()):
                warnings.warn(
                    f"psal attention: {int((~ok).sum())} of {b} samples have fewer than k={k} "
                    f"valid key patches outside the hole at {h}x{w}; their features pass "
                    "through unchanged",
                    RuntimeWarning,
                    stacklevel=2,
                )
            if not bool(ok.any()):
                return x32, flow
            sel = ok.nonzero().flatten().to(x.device)
            xs = x32 if bool(ok.all()) else x32.index_select(0, sel)
            hs = hole if bool(ok.all()) else hole.index_select(0, sel)
            q = F.normalize(xs, dim=1) if self.normalize else xs
            out_s, field = self.layer(q, q, xs, mask=hs, return_field=True)
            out = out_s if bool(ok.all()) else x32.index_copy(0, sel, out_s)
        if return_flow:
            from ..viz import field_to_flow

            flow_s = field_to_flow(field.indices, w).float()  # nearest neighbour
            flow = flow_s if bool(ok.all()) else flow.index_copy(0, sel, flow_s)
        return out, flow


@ATTENTIONS.register("none")
def _none(**options: Any) -> nn.Module:
    if options:
        raise ValueError(f"attention 'none' takes no options, got {sorted(options)}")
    return IdentityAdapter()


@ATTENTIONS.register("contextual")
def _contextual(**options: Any) -> nn.Module:
    return ContextualAdapter(**options)


@ATTENTIONS.register("psal")
def _psal(**options: Any) -> nn.Module:
    return PSALAdapter(**options)


def build_attention(name: str, **options: Any) -> nn.Module:
    """Build the attention adapter registered as ``name`` with its ``options``."""
    try:
        return ATTENTIONS.get(name)(**options)
    except TypeError as err:
        raise TypeError(f"bad options for attention {name!r}: {err}") from err


def list_attentions() -> list[str]:
    """Names of the registered attention adapters."""
    return ATTENTIONS.names()

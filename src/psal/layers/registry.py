"""Attention chosen by name: one contract for every network.

Networks pick their attention by name (``"psal" | "contextual" | "dense" | "none"``,
:func:`list_attentions`) and build it with :func:`build_attention`; the options are
passed untouched to the layer. Every block built here has the same ``forward``::

    out, field = block(query, key, value, *, hole=None, return_field=False)

Shapes (B batch, C query/key channels, Cv value channels):

- ``query``: (B, C, Hq, Wq), the pixels that receive content;
- ``key``: (B, C, Hk, Wk), matched against the query; ``value``: (B, Cv, Hk, Wk), what
  is copied; the key (and value) may have another size than the query, the value
  another channel count than the key;
- ``hole``: optional (B, 1, Hk, Wk) bool (or 0/1), **True = hole**, for
  self-attention inside a hole; then Hq x Wq must equal Hk x Wk;
- ``out``: (B, Cv, Hq, Wq) float32;
- ``field``: (B, 2, Hq, Wq) float32 displacement ``(dy, dx)`` in pixels from each
  query pixel (y, x) to the key pixel ``(y + dy, x + dx)`` it copies most from (key
  coordinates, zero where a pixel attends to nothing), or None when
  ``return_field=False`` or the block has no single source per pixel (``"dense"``
  without ``k``, ``"none"``).

The three modes networks use:

============================  ==============================  ===========================
mode                          call                            blocks
============================  ==============================  ===========================
self-attention inside a hole  ``block(x, x, x, hole=hole)``   all four
(inpainting, DeepFill)
cross-attention, two images   ``block(target, ref, ref_v)``   psal, dense, contextual,
(colorization)                                                none (see below)
unmasked self-attention       ``block(x, x, x)``              all four
(super-resolution)
============================  ==============================  ===========================

With a hole, the queries searched are the hole pixels and the keys are the patches
entirely outside the hole: no hole pixel receives content from a hole pixel. What the
output holds **outside** the hole is the block's own: ``"psal"``, ``"dense"`` and
``"none"`` return ``value`` there unchanged; ``"contextual"`` attends everywhere, as
DeepFill's reference does (paste the hole yourself if you need the rest unchanged).

Blocks:

- ``"psal"`` (:class:`PSALBlock`): :class:`psal.PSAttention`, k nearest patches found
  by PatchMatch; memory linear in the pixels. Options: ``k``, ``patch_size``,
  ``iters``, ``temperature``, ``aggregation``, ``learnable_temperature``,
  ``normalize``, ``backend``.
- ``"dense"`` (:class:`DenseBlock`): :class:`psal.layers.PatchAttention`, the same
  attention over *every* key patch (or the exact ``k`` nearest); memory and time
  quadratic in the pixels, for small features and as a reference. Options: ``k``
  (None = all), ``patch_size``, ``temperature``, ``aggregation``, ``normalize``.
- ``"contextual"`` (:class:`ContextualBlock`): :class:`psal.layers.ContextualAttention`
  (DeepFill v1, Yu et al. 2018), dense cosine attention with attention propagation and
  patch pasting. Options: ``patch_size``, ``stride``, ``rate``, ``fuse_k``,
  ``softmax_scale``, ``fuse``.
- ``"none"`` (:class:`IdentityBlock`): no attention, no options. ``out = value`` when
  value has the query's size; for cross-attention between images of different sizes,
  value resized (bilinear) to the query's size, i.e. each pixel takes the value at the
  same relative position, the baseline attention is compared with.

``"psal"`` and ``"dense"`` compare L2-normalised queries and keys (``normalize=True``,
the default), so the patch distance is ``2 p^2 - 2 sum cos``, the analogue of
contextual attention's cosine score; the default temperature ``2 p^2 / 10`` gives the
softmax the sharpness of contextual attention's scale 10 (1 with ``normalize=False``).
A sample whose hole leaves fewer valid key patches than the block needs passes through
unchanged (``value``), with a RuntimeWarning.

Every block runs in float32 with autocast disabled (PatchMatch and dense scores are
precision-sensitive) and returns float32.

Example:
    >>> import torch
    >>> from psal.layers import build_attention, list_attentions
    >>> list_attentions()
    ['contextual', 'dense', 'none', 'psal']
    >>> block = build_attention("psal", k=4, patch_size=3)
    >>> target, ref = torch.rand(1, 16, 24, 24), torch.rand(1, 16, 32, 20)
    >>> colours = torch.rand(1, 2, 32, 20)                # value: other channels, key's size
    >>> out, field = block(target, ref, colours, return_field=True)
    >>> out.shape, field.shape
    (torch.Size([1, 2, 24, 24]), torch.Size([1, 2, 24, 24]))
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_mask, check_positive_float
from .._deprecation import warn_deprecated
from ..patchmatch.distance import valid_key_positions
from ..utils.registry import Registry
from .contextual import ContextualAttention
from .dense import PatchAttention
from .psattention import PSAttention, _check_qkv

__all__ = [
    "ATTENTIONS",
    "AttentionBlock",
    "ContextualBlock",
    "DenseBlock",
    "IdentityBlock",
    "PSALBlock",
    "build_attention",
    "list_attentions",
]

#: Attention blocks by name; :func:`build_attention` builds them.
ATTENTIONS = Registry("attention")


def _no_autocast(x: torch.Tensor) -> torch.autocast:
    return torch.autocast(device_type=x.device.type, enabled=False)


def _flat_to_flow(indices: torch.Tensor, key_width: int) -> torch.Tensor:
    """(B, k, Hq, Wq) flat key positions (-1 = none) -> (B, 2, Hq, Wq) float32 (dy, dx)."""
    from ..viz import field_to_flow

    return field_to_flow(indices, key_width).float()


class AttentionBlock(nn.Module):
    """Base of the blocks built by :func:`build_attention`; see the module docstring.

    Subclasses implement :meth:`attend` on checked float32 inputs. ``forward`` checks
    the inputs, turns autocast off and converts to float32.
    """

    #: Smallest feature side the block works on.
    min_size: int = 1

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        hole: torch.Tensor | None = None,
        return_field: bool = False,
        return_flow: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` to ``key``, copying ``value``; returns ``(out, field)``.

        Args:
            query: (B, C, Hq, Wq) float.
            key: (B, C, Hk, Wk), same B, C and device.
            value: (B, Cv, Hk, Wk).
            hole: optional (B, 1, Hk, Wk) bool, True = hole (Hq x Wq = Hk x Wk).
            return_field: also return the (B, 2, Hq, Wq) displacement field.
            return_flow: deprecated name of ``return_field``.

        Returns:
            ``(out, field)``: out (B, Cv, Hq, Wq) float32; field (B, 2, Hq, Wq) float32 or
            None.

        The old adapter call ``block(x, mask, return_flow=...)`` (self-attention of x
        inside the hole ``mask``) still works, with a DeprecationWarning.
        """
        if return_flow is not None:
            warn_deprecated(f"{type(self).__name__}(return_flow=...) is deprecated; use "
                            "return_field=")  # fmt: skip
            return_field = return_flow
        if value is None:
            if key is None or hole is not None:
                raise TypeError(
                    f"{type(self).__name__}.forward() needs query, key and value tensors"
                )
            warn_deprecated(f"{type(self).__name__}(x, mask) is deprecated; call "
                            "block(x, x, x, hole=mask)")  # fmt: skip
            query, key, value, hole = query, query, query, key
        if not isinstance(return_field, bool):
            raise TypeError(f"return_field must be a bool, got {return_field!r}")
        _check_qkv(query, key, value, same_dtype=False)  # cast to one dtype below
        q, k, v = query, key, value
        if hole is not None:
            if q.shape[-2:] != k.shape[-2:]:
                raise ValueError(
                    f"hole is for self-attention: query and key must have the same spatial "
                    f"size, got {tuple(q.shape[-2:])} and {tuple(k.shape[-2:])}"
                )
            hole = check_mask(hole, "hole", k.shape[0], k.shape[2], k.shape[3], k.device)
        with _no_autocast(q):
            qf = q.float()  # self-attention (query is key) stays one tensor: normalised once
            kf = qf if k is q else k.float()
            vf = qf if v is q else (kf if v is k else v.float())
            return self.attend(qf, kf, vf, hole, return_field)

    def attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        hole: torch.Tensor | None,
        return_field: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The block's attention on checked float32 tensors (``hole`` bool or None)."""
        raise NotImplementedError


class IdentityBlock(AttentionBlock):
    """No attention: ``out = value`` (resized to the query's size if it differs)."""

    def attend(self, query, key, value, hole, return_field):
        """Return ``(value, None)``, value resized bilinearly to the query's size."""
        if value.shape[-2:] != query.shape[-2:]:
            value = F.interpolate(value, size=query.shape[-2:], mode="bilinear",
                                  align_corners=False)  # fmt: skip
        return value, None


class ContextualBlock(AttentionBlock):
    """Contextual attention (DeepFill v1); ``options`` go to :class:`ContextualAttention`.

    The output is attended at every query pixel (inside and outside a hole), as in
    DeepFill's reference; the field is the layer's offsets (argmax source).
    """

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.layer = ContextualAttention(**options)

    def attend(self, query, key, value, hole, return_field):
        """Run :func:`psal.layers.contextual_attention`."""
        out, offsets = self.layer(query, key, value, hole=hole, return_field=True)
        return out, (offsets.float() if return_field else None)


class _PatchBlock(AttentionBlock):
    """Shared by ``"psal"`` and ``"dense"``: normalisation, temperature, hole fallback."""

    layer: nn.Module
    #: Valid key patches a sample needs (``k``, or 1 for dense attention over all).
    needed: int

    def _set_up(self, temperature: float | None, normalize: bool, patch_size: int) -> float:
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {normalize!r}")
        self.normalize = normalize
        if temperature is None:
            temperature = 2 * patch_size**2 / 10 if normalize else 1.0
        return check_positive_float(temperature, "temperature")

    @property
    def min_size(self) -> int:  # type: ignore[override]
        """Smallest feature side the search works on (the patch size)."""
        return self.layer.patch_size

    def _run(self, q, k, v, hole, return_field):
        """``(out, flow or None)`` for the samples given; the layer call of the subclass."""
        raise NotImplementedError

    def attend(self, query, key, value, hole, return_field):
        """Attend with L2-normalised queries and keys (``normalize=True``)."""
        p = self.layer.patch_size
        for name, t in (("query", query), ("key", key)):
            if min(t.shape[-2:]) < p:
                raise ValueError(
                    f"{name} features must be at least patch_size={p} pixels a side, got "
                    f"{t.shape[-2]}x{t.shape[-1]}; use larger images"
                )
        q = F.normalize(query, dim=1) if self.normalize else query
        k = q if key is query else (F.normalize(key, dim=1) if self.normalize else key)
        if hole is None:
            return self._run(q, k, value, None, return_field)
        b, _, h, w = query.shape
        n_valid = valid_key_positions(hole, p).flatten(1).sum(1)
        ok = (n_valid >= self.needed).cpu()
        if bool(ok.all()):
            return self._run(q, k, value, hole, return_field)
        warnings.warn(
            f"{self.name} attention: {int((~ok).sum())} of {b} samples have fewer than "
            f"{self.needed} valid key patches outside the hole at {h}x{w}; their features "
            "pass through unchanged",
            RuntimeWarning,
            stacklevel=4,
        )
        field = value.new_zeros(b, 2, h, w) if return_field else None
        if not bool(ok.any()):
            return value, field
        sel = ok.nonzero().flatten().to(query.device)
        out_s, field_s = self._run(q.index_select(0, sel), k.index_select(0, sel),
                                   value.index_select(0, sel), hole.index_select(0, sel),
                                   return_field)  # fmt: skip
        out = value.index_copy(0, sel, out_s)
        if field_s is not None:
            field = field.index_copy(0, sel, field_s)
        return out, field


class PSALBlock(_PatchBlock):
    """PSAttention (Cherel et al.): attention over the k nearest patches (PatchMatch).

    Args:
        k: neighbours per query pixel.
        patch_size: odd patch side.
        iters: PatchMatch iterations per forward.
        temperature: softmax temperature; None picks ``2 * patch_size**2 / 10`` with
            ``normalize=True`` (contextual attention's sharpness) and 1 otherwise.
        aggregation: ``"center"`` or ``"patch"``.
        learnable_temperature: learn ``log T``.
        normalize: L2-normalise queries and keys per pixel (values stay raw).
        backend: PatchMatch backend (``"auto"``: numba on CPU, torch elsewhere).
    """

    name = "psal"

    def __init__(
        self,
        *,
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
        t = self._set_up(temperature, normalize, patch_size)
        self.layer = PSAttention(
            k=k,
            patch_size=patch_size,
            iters=iters,
            temperature=t,
            aggregation=aggregation,
            learnable_temperature=learnable_temperature,
            backend=backend,
        )
        self.needed = self.layer.k

    def _run(self, q, k, v, hole, return_field):
        out, field = self.layer(q, k, v, hole=hole, return_field=True)
        flow = _flat_to_flow(field.indices, k.shape[-1]) if return_field else None
        return out, flow


class DenseBlock(_PatchBlock):
    """Exact patch attention over every key patch (or the exact k nearest).

    Args:
        k: None (every valid key patch) or the number of exact nearest neighbours.
        patch_size: odd patch side.
        temperature: as for ``"psal"`` (None: ``2 p^2 / 10`` normalised, else 1).
        aggregation: ``"center"`` or ``"patch"``.
        normalize: L2-normalise queries and keys per pixel.

    Memory and time grow with the square of the pixel count: for small features (and as
    the reference PSAL approximates). The field is given only with ``k`` set (the exact
    nearest neighbour); with ``k=None`` it is None.
    """

    name = "dense"

    def __init__(
        self,
        *,
        k: int | None = None,
        patch_size: int = 3,
        temperature: float | None = None,
        aggregation: str = "center",
        normalize: bool = True,
    ) -> None:
        super().__init__()
        t = self._set_up(temperature, normalize, patch_size)
        self.layer = PatchAttention(k=k, patch_size=patch_size, temperature=t,
                                    aggregation=aggregation)  # fmt: skip
        self.needed = 1 if self.layer.k is None else self.layer.k

    def _run(self, q, k, v, hole, return_field):
        lay = self.layer
        if lay.k is None or not return_field:
            return lay(q, k, v, hole=hole), None
        from .psattention import ps_attention

        out, field = ps_attention(q, k, v, k=lay.k, patch_size=lay.patch_size, iters=0,
                                  temperature=lay.temperature, aggregation=lay.aggregation,
                                  hole=hole, backend="exact", return_field=True)  # fmt: skip
        return out, _flat_to_flow(field.indices, k.shape[-1])


@ATTENTIONS.register("none")
def _none(**options: Any) -> nn.Module:
    if options:
        raise ValueError(f"attention 'none' takes no options, got {sorted(options)}")
    return IdentityBlock()


@ATTENTIONS.register("contextual")
def _contextual(**options: Any) -> nn.Module:
    return ContextualBlock(**options)


@ATTENTIONS.register("dense")
def _dense(**options: Any) -> nn.Module:
    return DenseBlock(**options)


@ATTENTIONS.register("psal")
def _psal(**options: Any) -> nn.Module:
    return PSALBlock(**options)


def build_attention(name: str, **options: Any) -> AttentionBlock:
    """Build the attention block registered as ``name`` with its ``options``.

    Args:
        name: one of :func:`list_attentions` (``"contextual"``, ``"dense"``, ``"none"``,
            ``"psal"``).
        **options: keyword options of that block (see the module docstring).

    Returns:
        An :class:`AttentionBlock` (an ``nn.Module``) with
        ``forward(query, key, value, *, hole=None, return_field=False) -> (out, field)``.

    Raises:
        ValueError: unknown name (the message lists the registered ones), or a bad
            option value.
        TypeError: an option the block does not take.
    """
    try:
        return ATTENTIONS.get(name)(**options)
    except TypeError as err:
        raise TypeError(f"bad options for attention {name!r}: {err}") from err


def list_attentions() -> list[str]:
    """Names of the registered attention blocks, sorted (the ``--attention`` choices)."""
    return ATTENTIONS.names()

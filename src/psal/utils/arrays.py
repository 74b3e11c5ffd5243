"""One code path for numpy arrays and torch tensors.

psal's training-free editing runs on numpy arrays on the CPU (so that ``psal inpaint``
never imports torch, which costs more than a whole fill) and on torch tensors on other
devices. The functions they share are written once, against the operations both
libraries spell alike (slicing, arithmetic, comparisons, ``.sum()``, ``.any()``,
``cumsum``), and the few they spell differently, gathered here. An elementwise
operation gives the same bits in both, so the two paths agree exactly on the CPU.

Nothing here imports torch: a tensor can only exist once torch has been imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

Array = Any  # numpy.ndarray or torch.Tensor


class _LazyTorch:
    """Stands for the torch module in annotations of modules that import it lazily.

    ``typing.get_type_hints`` on their functions resolves ``torch.Tensor`` through it
    (importing torch then); nothing else in those modules touches it.
    """

    def __getattr__(self, name: str) -> Any:
        import torch

        return getattr(torch, name)


lazy_torch = _LazyTorch()

__all__ = [
    "Array",
    "arange",
    "astype",
    "concat",
    "contiguous",
    "copy",
    "full",
    "is_tensor",
    "namespace",
    "nonzero",
    "pad2d",
]


def is_tensor(x: object) -> bool:
    """Whether ``x`` is a torch tensor (False without importing torch if it never was)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def namespace(x: Array) -> Any:
    """The module of ``x``: :mod:`numpy` for arrays, :mod:`torch` for tensors.

    For the functions both spell alike: ``where``, ``zeros_like``, ``arange``,
    ``maximum``.
    """
    if isinstance(x, np.ndarray):
        return np
    import torch

    return torch


def copy(x: Array) -> Array:
    """A copy of ``x`` (``ndarray.copy`` / ``Tensor.clone``)."""
    return x.copy() if isinstance(x, np.ndarray) else x.clone()


def contiguous(x: Array) -> Array:
    """``x`` in C order (a copy only if it is not already)."""
    return np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x.contiguous()


def nonzero(x: Array) -> tuple[Array, ...]:
    """The int64 coordinates of the True entries of ``x``, one array per dimension."""
    if isinstance(x, np.ndarray):
        return tuple(i.astype(np.int64, copy=False) for i in np.nonzero(x))
    import torch

    return torch.nonzero(x, as_tuple=True)


def concat(xs: Sequence[Array], axis: int) -> Array:
    """Join arrays along ``axis`` (``np.concatenate`` / ``torch.cat``)."""
    if isinstance(xs[0], np.ndarray):
        return np.concatenate(xs, axis)
    import torch

    return torch.cat(list(xs), axis)


def pad2d(x: Array, pad: tuple[int, int, int, int]) -> Array:
    """Zero-pad the last two dimensions by ``(left, right, top, bottom)``."""
    if isinstance(x, np.ndarray):
        left, right, top, bottom = pad
        return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)])
    import torch.nn.functional as F

    return F.pad(x, pad)


def astype(x: Array, dtype: str | Array) -> Array:
    """``x`` converted to ``dtype``, a name or another array (whose dtype is taken).

    Names: ``"float32"``, ``"float64"``, ``"int64"``, ``"bool"`` (both libraries).
    """
    if not isinstance(dtype, str):
        dtype = dtype_name(dtype)
    if isinstance(x, np.ndarray):
        return x.astype(dtype, copy=False)
    import torch

    return x.to(getattr(torch, dtype))


def dtype_name(x: Array) -> str:
    """The dtype of ``x`` as a name both libraries know (``"float32"``, ``"bool"``...)."""
    return str(x.dtype).removeprefix("torch.")


def full(like: Array, shape: tuple[int, ...], value: float, dtype: str) -> Array:
    """A new array of ``shape`` filled with ``value``, like ``like``'s library and device.

    ``dtype`` is a name (``"int64"``, ``"float32"``...).
    """
    if isinstance(like, np.ndarray):
        return np.full(shape, value, dtype=dtype)
    import torch

    return torch.full(shape, value, dtype=getattr(torch, dtype), device=like.device)


def arange(like: Array, n: int) -> Array:
    """int64 ``0 .. n-1`` of the library (and device) of ``like``."""
    if isinstance(like, np.ndarray):
        return np.arange(n, dtype=np.int64)
    import torch

    return torch.arange(n, device=like.device)

"""Input checks shared by every public entry point.

Each check raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError``
(wrong value or shape) with a message that names the argument and says what was
expected and what was given. Never ``assert``: asserts vanish under ``python -O``.
"""

from __future__ import annotations

import numbers
import os
import random
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

# torch is imported by the checks that need it only: the numpy paths (``psal inpaint``
# on the CPU) never import it.


def __getattr__(name: str):
    if name == "FLOAT_DTYPES":  # floating dtypes the layers accept
        import torch

        return (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_tensor(
    x: object, name: str, ndim: int | None = None, layout: str | None = None
) -> torch.Tensor:
    """Check that ``x`` is a tensor, optionally of ``ndim`` dimensions.

    ``layout`` names the dimensions in the message (default: ``(B, C, H, W)`` for 4).
    """
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        if layout is None:
            layout = {4: "(B, C, H, W)", 3: "(C, H, W)", 2: "(H, W)"}.get(ndim, "")
        layout = f" {layout}" if layout else ""
        raise ValueError(
            f"{name} must have {ndim} dimensions{layout}, got {x.dim()} with shape {tuple(x.shape)}"
        )
    return x


def check_float_tensor(x: object, name: str, ndim: int | None = 4) -> torch.Tensor:
    """Check that ``x`` is a floating-point tensor (float16/bfloat16/float32/float64)."""
    x = check_tensor(x, name, ndim)
    if x.dtype not in __getattr__("FLOAT_DTYPES"):
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or "
            f"float64), got dtype {x.dtype}"
        )
    return x


def module_dtype(module: torch.nn.Module) -> torch.dtype | None:
    """The dtype of ``module``'s first floating-point parameter (None: it has none)."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def check_module_dtype(x: torch.Tensor, name: str, module: torch.nn.Module) -> None:
    """Refuse a tensor whose dtype differs from ``module``'s parameters.

    Without this, a float16 image given to a float32 network fails deep inside the first
    convolution ("Input type (c10::Half) and bias type (float) should be the same").
    Under :func:`torch.autocast` (mixed precision) the dtypes may differ: autocast casts
    the inputs of each operation itself.
    """
    import torch

    dtype = module_dtype(module)
    if dtype is None or x.dtype == dtype:
        return
    try:
        autocast = torch.is_autocast_enabled(x.device.type)
    except TypeError:  # torch < 2.4: no device_type argument
        autocast = (
            torch.is_autocast_cpu_enabled()
            if x.device.type == "cpu"
            else torch.is_autocast_enabled()
        )
    if autocast:
        return
    raise TypeError(
        f"{name} has dtype {x.dtype} but {type(module).__name__}'s parameters are {dtype}; "
        f"convert it ({name}.to({dtype})) or the network (.to({x.dtype})), or run under "
        "torch.autocast"
    )


def check_channels(x: torch.Tensor, name: str, channels: int) -> None:
    """Refuse a (B, C, H, W) tensor ``x`` whose C is not ``channels``."""
    if x.shape[1] != channels:
        raise ValueError(
            f"{name} must have {channels} channels (B, {channels}, H, W), got shape "
            f"{tuple(x.shape)}"
        )


def check_finite(x: torch.Tensor | np.ndarray, name: str) -> None:
    """Raise ``ValueError`` if ``x`` (a tensor or a numpy array) holds NaN or Inf."""
    import numpy as np

    if isinstance(x, np.ndarray):
        if x.size and not np.isfinite([x.min(), x.max()]).all():
            n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
            raise ValueError(f"{name} contains NaN or Inf values ({n_nan} NaN, {n_inf} Inf)")
        return
    import torch

    # min and max propagate NaN and reach +-Inf: one reduction pass and no (N,) bool
    # temporary (~15x faster than isfinite(x).all() on a 256x256x64 map)
    if x.numel() and not all(
        bool(torch.isfinite(v)) for v in torch.aminmax(x.detach().reshape(-1))
    ):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise ValueError(f"{name} contains NaN or Inf values ({n_nan} NaN, {n_inf} Inf)")


def check_int(value: object, name: str, minimum: int | None = None) -> int:
    """Check that ``value`` is an integer (bool excluded), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


#: Seeds are int64 on every backend: [0, 2**63).
SEED_LIMIT = 2**63


def check_seed(seed: object, name: str = "seed") -> int:
    """Check that ``seed`` is an integer in ``[0, 2**63)``."""
    seed = check_int(seed, name, minimum=0)
    if seed >= SEED_LIMIT:
        raise ValueError(f"{name} must be in [0, 2**63), got {seed}")
    return seed


def resolve_seed(seed: object, name: str = "seed") -> int:
    """``seed`` checked by :func:`check_seed`, or a fresh one if None.

    A fresh seed comes from torch's generator when torch is imported (so that
    ``torch.manual_seed`` makes a run repeat), else from the operating system: a
    numpy-only caller never seeded torch, and importing it only to draw a number would
    cost more than a second.
    """
    if seed is None:
        tmod = sys.modules.get("torch")
        if tmod is not None:
            return int(tmod.randint(0, 2**31 - 1, (1,)).item())
        return random.SystemRandom().randrange(2**31 - 1)
    return check_seed(seed, name)


def check_patch_size(patch_size: object, name: str = "patch_size") -> int:
    """Check that the patch size is a positive odd integer."""
    p = check_int(patch_size, name)
    if p < 1 or p % 2 == 0:
        raise ValueError(f"{name} must be a positive odd integer (1, 3, 5, ...), got {p}")
    return p


def check_positive_float(value: object, name: str) -> float:
    """Check that ``value`` is a real number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def check_progress(progress: object, name: str = "progress") -> Callable[[int, int], None] | None:
    """Check a progress callback: None, or a callable taking ``(done, total)``.

    Checked before any work: a wrong value would otherwise fail after the first unit of
    it, as "'int' object is not callable".
    """
    if progress is not None and not callable(progress):
        raise TypeError(
            f"{name} must be a callable progress(done, total) or None, got {progress!r} "
            f"({type(progress).__name__})"
        )
    return progress


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Check that ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_mask(
    mask: object, name: str, batch: int, height: int, width: int, device: torch.device
) -> torch.Tensor:
    """Check a (B, 1, H, W) hole mask and return it as a bool tensor on ``device``.

    Bool masks are used as they are; float or integer masks must hold only 0 and 1
    (1 = True).
    """
    import torch

    m = check_tensor(mask, name, ndim=4, layout="(B, 1, H, W)")
    expected = (batch, 1, height, width)
    if tuple(m.shape) != expected:
        raise ValueError(f"{name} must have shape {expected} (B, 1, H, W), got {tuple(m.shape)}")
    if m.device != device:
        raise ValueError(f"{name} is on {m.device} but the inputs are on {device}")
    if m.dtype != torch.bool:
        if m.is_floating_point():
            check_finite(m, name)
        if m.numel() and not bool(((m == 0) | (m == 1)).all()):
            raise ValueError(
                f"{name} must be bool or hold only 0 and 1 (1 = True); got values in "
                f"[{float(m.min())}, {float(m.max())}]"
            )
        m = m != 0
    return m


def check_patch_fits(name: str, t: torch.Tensor, patch_size: int) -> None:
    """Refuse a ``patch_size`` larger than ``t``'s spatial size (its last two dims).

    The kernels reflect borders once: a larger patch would read outside the map.
    """
    h, w = t.shape[-2:]
    if patch_size > h or patch_size > w:
        raise ValueError(
            f"patch_size={patch_size} is larger than {name}, whose spatial size is "
            f"{h}x{w}; use patch_size <= min(H, W)"
        )


def patch_misfit(
    patch_size: int, images: Sequence[tuple[str, Any]]
) -> tuple[str, int, int, int] | None:
    """The first of ``(name, image)`` pairs (``image.size`` = (W, H)) too small for the patch.

    Returns:
        ``(name, w, h, largest)``, ``largest`` being the largest odd patch size that fits
        it; None when the patch fits every image. The command line and the web app word
        the error each in their own terms (a flag, a slider).
    """
    for name, image in images:
        w, h = image.size
        side = min(w, h)
        if patch_size > side:
            return name, w, h, side - 1 + side % 2
    return None


def check_indices(indices: torch.Tensor, n_keys: int, name: str = "indices") -> None:
    """Check that flat key positions lie in ``[-1, n_keys)`` (-1 = not searched)."""
    if indices.numel() and (int(indices.min()) < -1 or int(indices.max()) >= n_keys):
        raise ValueError(
            f"{name} must lie in [-1, Hk*Wk) = [-1, {n_keys}), got values in "
            f"[{int(indices.min())}, {int(indices.max())}]"
        )


def check_same_device(tensors: dict[str, torch.Tensor]) -> torch.device:
    """Check that all named tensors share one device; return it."""
    items = list(tensors.items())
    device = items[0][1].device
    for name, t in items[1:]:
        if t.device != device:
            raise ValueError(f"{name} is on {t.device} but {items[0][0]} is on {device}")
    return device


def check_not_transformed(what: str, *tensors: object) -> None:
    """Refuse tensors of a ``torch.func`` transform (``grad``, ``vmap``, ``jacrev``...).

    psal's compiled kernels read tensor memory directly; the wrapped tensors of those
    transforms have none ("Cannot access data pointer of Tensor that doesn't have
    storage", from deep inside). Plain autograd (``.backward()``,
    ``torch.autograd.grad``) is what psal supports.
    """
    import torch

    wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
    if wrapped is None:
        return
    for t in tensors:
        if isinstance(t, torch.Tensor) and wrapped(t):
            raise RuntimeError(
                f"{what} does not support torch.func transforms (grad, vmap, jacrev, "
                "...): its compiled kernels need plain tensors; use tensor.backward() or "
                "torch.autograd.grad, and a loop over the batch instead of vmap"
            )


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def user_stacklevel() -> int:
    """``stacklevel`` for :func:`warnings.warn` that names the first caller outside psal.

    Call it from the function that warns: whatever wrappers (deprecation shims,
    dispatchers) sit between psal's entry point and the user's code, the warning points
    at the user's line (what Python 3.12's ``skip_file_prefixes`` does).
    """
    frame = sys._getframe(1)  # the function that warns: stacklevel 1
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level

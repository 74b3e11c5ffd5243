"""Masks: one rule that reads a numpy, PIL or tensor mask as a bool hole map.

True = hole. The **mask rule**, applied in this order (numpy arrays, PIL images and
tensors alike; ``(H, W, 2)`` and ``(H, W, 4)`` arrays have alpha last):

1. **Transparency.** A mask with an alpha channel that is not everywhere opaque is read
   from its alpha: a pixel is *transparent* when its alpha is ``<= (1 - threshold)`` of
   the full range (``<= 127`` for 8 bits). The hole is the smaller of the two parts:
   the transparent part when it covers at most half the image (a region erased from a
   photo), else the painted, opaque part (strokes, of any colour, on a transparent
   layer). An everywhere-opaque alpha is ignored.
2. **Colour.** A colour mask is reduced to its brightest channel (a red scribble counts).
3. **Threshold.** A pixel is a hole when its value is above ``threshold`` (default half)
   of the full range: ``> 127`` for uint8, ``> 32767`` for 16-bit masks (uint16, PIL
   ``I;16``, and PIL ``I``, which psal reads as 16-bit data), ``> 0.5`` for floats. Soft
   or anti-aliased masks are cut at mid-grey.
4. **Labels.** An integer mask in which no pixel passes the threshold but some are not 0
   is a label mask: every non-zero pixel is a hole. So 0/1 masks (with a stray 2 or
   not), and 0/1 or 0/255 masks stored in 16 or 32 bits, read as meant. Integer dtypes
   without a usual full range (int8..int64, uint32, uint64) are always read this way;
   negative values are refused.

Bool masks are used as they are. Float masks must be finite; complex masks are refused.
:func:`to_mask` warns (``UserWarning``) when the hole covers more than half the image.
"""

from __future__ import annotations

import numbers
import warnings
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .._checks import user_stacklevel
from .convert import _ALPHA_MODES, _I16_MODES, ImageLike

if TYPE_CHECKING:
    import torch
else:
    from .arrays import lazy_torch as torch  # for annotations (imports torch if resolved)

__all__ = ["MOSTLY_HOLE", "to_mask", "to_mask_array"]

#: Fraction of the image above which :func:`to_mask` warns that the hole covers most of it.
MOSTLY_HOLE = 0.5

_FULL = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.bool_): 1.0}


def _full_range(dtype: np.dtype) -> float | None:
    """The value of an opaque alpha / a full-range mask pixel for a numpy dtype."""
    if dtype.kind == "f":
        return 1.0
    return _FULL.get(dtype)


def _check_kind(dtype: object, name: str) -> None:
    kind = getattr(dtype, "kind", None)
    complex_torch = getattr(dtype, "is_complex", False) is True
    if kind == "c" or complex_torch or (kind is not None and kind not in "biuf"):
        raise TypeError(f"{name} must be bool, integer or float, got dtype {dtype}")


def _threshold_gray(arr: np.ndarray, threshold: float, name: str, full: float | None) -> np.ndarray:
    """Steps 3 and 4 of the rule on a (H, W) array; ``full`` overrides the dtype's range."""
    if arr.dtype == np.bool_:
        return arr.copy()
    if arr.dtype.kind == "f":
        return arr > threshold
    if arr.size and int(arr.min()) < 0:
        raise ValueError(
            f"{name} with integer dtype {arr.dtype} must not hold negative values; got "
            f"values in [{int(arr.min())}, {int(arr.max())}]"
        )
    full = full if full is not None else _FULL.get(arr.dtype)
    if full is not None:
        hole = arr > threshold * full
        if hole.any():
            return hole
    return arr != 0  # a label mask: every non-zero value is a hole


def _reduce_mask_array(
    arr: np.ndarray, threshold: float, name: str, full: float | None = None
) -> np.ndarray:
    """Apply the mask rule (module docstring) to a numpy (H, W) or (H, W, C) -> bool (H, W)."""
    _check_kind(arr.dtype, name)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        alpha, arr = arr[..., -1], arr[..., :-1]
        opaque = _full_range(alpha.dtype)
        if opaque is not None and alpha.size and float(alpha.min()) < opaque:
            clear = alpha.astype(np.float64) <= (1.0 - threshold) * opaque
            return clear if clear.mean() <= 0.5 else ~clear
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (H, W) or (H, W, C), got {arr.shape}")
    return _threshold_gray(arr, threshold, name, full)


def _pil_mask(image: Image.Image, threshold: float, name: str = "mask") -> np.ndarray:
    """A PIL mask through the same rule as a numpy one (see :func:`_reduce_mask_array`)."""
    mode = image.mode
    if mode == "I":  # 32-bit integers, read as 16-bit data (as 16-bit PNGs once opened)
        return _reduce_mask_array(np.asarray(image), threshold, name, full=65535.0)
    if mode in ("1", "I;16", "F", "L", "LA", "RGB", "RGBA") or mode in _I16_MODES:
        arr = np.asarray(image)
        arr = arr.astype(np.uint16) if mode.startswith("I;16") else arr
    elif mode in _ALPHA_MODES or "transparency" in image.info:
        arr = np.asarray(image.convert("RGBA"))
    else:  # palette, CMYK, YCbCr, LAB, HSV, ...
        arr = np.asarray(image.convert("RGB"))
    return _reduce_mask_array(arr, threshold, name)


def to_mask(
    mask: ImageLike,
    height: int,
    width: int,
    *,
    batch: int = 1,
    threshold: float = 0.5,
    device: torch.device | str | None = None,
    name: str = "mask",
    warn: bool = True,
    threshold_name: str = "threshold",
) -> torch.Tensor:
    """Turn a mask given as numpy, PIL or tensor into a (B, 1, H, W) bool tensor.

    True marks the hole. The mask rule is in the module docstring (transparency, colour,
    threshold, labels): values above ``threshold`` times the full range are hole pixels
    (``> 127`` for uint8); an integer mask with no such pixel reads non-zero as hole.

    Args:
        mask: numpy ``(H, W)`` / ``(H, W, C)`` (colour channels reduced by max, alpha
            as in the module docstring), PIL image (the same rule), or tensor
            ``(H, W)``, ``(1, H, W)``, ``(B, 1, H, W)``.
        height: expected H (the image's).
        width: expected W.
        batch: the image's batch size; a single mask is shared by every element.
        threshold: fraction of the full range above which a pixel is a hole, in (0, 1).
        device: device of the result.
        name: argument name for error messages.
        warn: warn when True covers most of the image (off for masks where True is
            not a hole, such as a source mask's allowed area).
        threshold_name: the caller's name of ``threshold``, for error messages (e.g.
            ``"mask_threshold"`` for :func:`psal.inpaint`).

    Raises:
        TypeError: unsupported kind or dtype (complex, object, ...); a ``threshold``
            that is not a number.
        ValueError: wrong size (the message gives the mask's and the image's sizes),
            NaN / Inf, negative integers; a ``threshold`` outside (0, 1).

    Warns:
        UserWarning: the hole covers more than half the image (:data:`MOSTLY_HOLE`).

    Example:
        >>> import numpy as np
        >>> m = np.zeros((4, 6), np.uint8); m[1, 2] = 200; m[2, 2] = 100
        >>> to_mask(m, 4, 6).sum().item()
        1
    """
    import torch

    if isinstance(mask, (Image.Image, np.ndarray)):
        m = to_mask_array(mask, height, width, threshold=threshold, name=name, warn=warn,
                          threshold_name=threshold_name)  # fmt: skip
        m = torch.from_numpy(m)
        return m.expand(batch, 1, height, width).to(device=device or "cpu").contiguous()
    threshold = _check_threshold(threshold, threshold_name)
    if isinstance(mask, torch.Tensor):
        t = mask.detach()
        if t.dim() == 2:
            t = t[None, None]
        elif t.dim() == 3:
            t = t[None]
        if t.dim() != 4 or t.shape[1] != 1:
            raise ValueError(
                f"{name} must be a tensor of shape (H, W), (1, H, W) or (B, 1, H, W), got "
                f"shape {tuple(mask.shape)}"
            )
        _check_kind(t.dtype, name)
        if t.dtype == torch.bool:
            m = t
        elif t.is_floating_point():
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} contains NaN or Inf values")
            m = t > threshold
        else:
            full = 255.0 if t.dtype == torch.uint8 else None
            m = torch.stack(
                [
                    torch.from_numpy(_threshold_gray(ti.cpu().numpy(), threshold, name, full))
                    for ti in t[:, 0]
                ]
            )[:, None].to(t.device)
    else:
        raise _kind_error(mask, name)
    _check_size(m, height, width, batch, name)
    if warn:
        _warn_mostly_hole(float(m.float().mean()) if m.numel() else 0.0, name)
    m = m.expand(batch, 1, height, width)
    return m.to(device=device or "cpu").contiguous()


def to_mask_array(
    mask: np.ndarray | Image.Image,
    height: int,
    width: int,
    *,
    threshold: float = 0.5,
    name: str = "mask",
    warn: bool = True,
    threshold_name: str = "threshold",
) -> np.ndarray:
    """:func:`to_mask` for a numpy or PIL mask, without torch: (1, 1, H, W) bool array.

    The same rule, arguments, checks, errors and warning as :func:`to_mask` (which
    calls it).
    """
    threshold = _check_threshold(threshold, threshold_name)
    if isinstance(mask, Image.Image):
        m = _pil_mask(mask, threshold, name)[None, None]
    elif isinstance(mask, np.ndarray):
        m = _reduce_mask_array(mask, threshold, name)[None, None]
    else:
        raise _kind_error(mask, name)
    _check_size(m, height, width, 1, name)
    if warn:
        _warn_mostly_hole(float(m.mean()) if m.size else 0.0, name)
    return np.ascontiguousarray(m)


def _check_threshold(threshold: object, name: str) -> float:
    """``threshold`` as a float in (0, 1); errors name it ``name`` (the caller's keyword)."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(
            f"{name} must be a number in (0, 1), got {threshold!r} ({type(threshold).__name__})"
        )
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {threshold}")
    return float(threshold)


def _kind_error(mask: object, name: str) -> TypeError:
    return TypeError(
        f"{name} must be a numpy array, a PIL image or a torch tensor, got {type(mask).__name__}"
    )


def _check_size(m, height: int, width: int, batch: int, name: str) -> None:
    """A (B, 1, H, W) mask (array or tensor) must have the image's size and batch."""
    if tuple(m.shape[-2:]) != (height, width):
        hint = ""
        if min(height, width) <= 4 and max(m.shape[-2:]) > 4:  # channels read as a side
            hint = (" (is the image's layout right? numpy arrays are (H, W) or (H, W, C), "
                    "tensors (C, H, W) or (B, C, H, W))")  # fmt: skip
        raise ValueError(
            f"{name} has size {m.shape[-1]}x{m.shape[-2]} (WxH) but the image is "
            f"{width}x{height}; they must match{hint}"
        )
    if m.shape[0] not in (1, batch):
        raise ValueError(f"{name} has batch size {m.shape[0]} but the image has {batch}")


def _warn_mostly_hole(fraction: float, name: str) -> None:
    if MOSTLY_HOLE < fraction < 1.0:  # a full hole is refused by the callers
        warnings.warn(
            f"{name}: the hole covers {100 * fraction:.0f}% of the image; check that white "
            "(or the painted part of a transparent layer) marks what to fill",
            UserWarning,
            stacklevel=user_stacklevel(),
        )

"""Masks: one rule that reads a numpy, PIL or tensor mask as a bool hole map.

True = hole. **Threshold rule**: a pixel is a hole pixel when its value is above half of
the full range, i.e. ``> 127`` for 8-bit masks, ``> 32767`` for 16-bit ones, ``> 0.5``
for float masks, so soft or anti-aliased masks are cut at mid-grey (``threshold``
changes the fraction). A mask image with transparency (alpha not everywhere opaque) is
read from its alpha channel instead: transparent pixels (alpha ``<= 127``) are the hole,
as in common image-edit tools; an opaque alpha channel is ignored. In a colour mask a
pixel is a hole when its brightest channel is above the threshold (a pure red scribble
counts). A uint8 mask whose largest value is 1 is read as a 0/1 mask. numpy arrays and
PIL images follow the same rule: ``(H, W, 2)`` and ``(H, W, 4)`` arrays have alpha last.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .convert import _ALPHA_MODES, ImageLike

__all__ = ["to_mask"]


def _full_range(dtype: np.dtype) -> float | None:
    """The value of an opaque alpha / a full-range mask pixel for a numpy dtype."""
    if dtype.kind == "f":
        return 1.0
    return {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.bool_): 1.0}.get(
        dtype
    )


def _reduce_mask_array(arr: np.ndarray, threshold: float, name: str) -> np.ndarray:
    """Apply the mask rule to a numpy mask (H, W) or (H, W, C) -> bool (H, W).

    With 2 or 4 channels the last is alpha: if it is not everywhere opaque it is the
    mask (transparent = hole); otherwise it is dropped. The colour channels are then
    reduced by their maximum (a red scribble counts), and the threshold rule applied.
    """
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        alpha, arr = arr[..., -1], arr[..., :-1]
        full = _full_range(arr.dtype)
        if full is not None and alpha.size and float(alpha.min()) < full:
            return alpha.astype(np.float64) <= (1.0 - threshold) * full
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (H, W) or (H, W, C), got {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.copy()
    if arr.dtype == np.uint8:
        if arr.max() <= 1:
            return arr > 0
        return arr > threshold * 255
    if arr.dtype == np.uint16:
        return arr > threshold * 65535
    if arr.dtype.kind == "f":
        return arr > threshold
    if arr.dtype.kind in "iu":
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError(
                f"{name} with integer dtype {arr.dtype} must hold only 0 and 1 (use uint8 "
                f"0..255, bool or float 0..1 for other conventions); got values in "
                f"[{arr.min()}, {arr.max()}]"
            )
        return arr > 0
    raise TypeError(f"{name} must be bool, integer or float, got dtype {arr.dtype}")


def _pil_mask(image: Image.Image, threshold: float, name: str = "mask") -> np.ndarray:
    """A PIL mask through the same rule as a numpy one (see :func:`_reduce_mask_array`)."""
    mode = image.mode
    if mode == "I":  # 16-bit data as Pillow opens 16-bit PNGs
        return np.asarray(image).astype(np.float64) > threshold * 65535
    if mode in ("1", "I;16", "F", "L", "LA", "RGB", "RGBA"):
        arr = np.asarray(image)
        arr = arr.astype(np.uint16) if mode == "I;16" else arr
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
) -> torch.Tensor:
    """Turn a mask given as numpy, PIL or tensor into a (B, 1, H, W) bool tensor.

    True marks the hole. The threshold rule is in the module docstring: values above
    ``threshold`` times the full range are hole pixels (``> 127`` for uint8).

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

    Raises:
        TypeError: unsupported kind or dtype.
        ValueError: wrong size (the message gives the mask's and the image's sizes).

    Example:
        >>> import numpy as np
        >>> m = np.zeros((4, 6), np.uint8); m[1, 2] = 200; m[2, 2] = 100
        >>> to_mask(m, 4, 6).sum().item()
        1
    """
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if isinstance(mask, Image.Image):
        m = torch.from_numpy(_pil_mask(mask, threshold, name))[None, None]
    elif isinstance(mask, np.ndarray):
        m = torch.from_numpy(_reduce_mask_array(mask, threshold, name))[None, None]
    elif isinstance(mask, torch.Tensor):
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
        if t.dtype == torch.bool:
            m = t
        elif t.dtype == torch.uint8:
            m = t > (0 if int(t.max()) <= 1 else threshold * 255)
        elif t.is_floating_point():
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} contains NaN or Inf values")
            m = t > threshold
        else:
            if int(t.min()) < 0 or int(t.max()) > 1:
                raise ValueError(f"{name} with dtype {t.dtype} must hold only 0 and 1")
            m = t > 0
    else:
        raise TypeError(
            f"{name} must be a numpy array, a PIL image or a torch tensor, got "
            f"{type(mask).__name__}"
        )
    if tuple(m.shape[-2:]) != (height, width):
        raise ValueError(
            f"{name} has size {m.shape[-1]}x{m.shape[-2]} (WxH) but the image is "
            f"{width}x{height}; they must match"
        )
    if m.shape[0] not in (1, batch):
        raise ValueError(f"{name} has batch size {m.shape[0]} but the image has {batch}")
    m = m.expand(batch, 1, height, width)
    return m.to(device=device or "cpu").contiguous()

"""Images in and out: numpy / PIL / torch conversions that round-trip, masks, and files.

The editing functions of psal take an image as a numpy array, a PIL image or a torch
tensor and give back the same kind of object. :func:`to_tensor` turns any of them into
a ``(B, C, H, W)`` float tensor with values in ``[0, 1]`` (for integer types; float
inputs are taken as they are, expected in ``[0, 1]``) and an :class:`ImageSpec` that
records how to go back; :func:`from_tensor` goes back, so that a pixel that was not
changed comes back bit for bit.

Supported inputs:

* numpy: ``(H, W)`` or ``(H, W, C)``, dtype uint8 (full range 255), uint16 (65535),
  bool, or float16/32/64 (taken as ``[0, 1]``).
* PIL: modes ``1``, ``L``, ``LA``, ``RGB``, ``RGBA``, ``I;16``, ``I`` (16-bit data, as
  Pillow opens 16-bit PNGs) and ``F`` come back in the same mode; palette images
  (``P``, ``PA``) and the other modes are converted to ``RGB`` / ``RGBA`` and come back
  as such.
* torch: ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)``, any float dtype, or uint8.

Masks (:func:`to_mask`, :func:`load_mask`): True = hole. **Threshold rule**: a pixel
is a hole pixel when its value is above half of the full range, i.e. ``> 127`` for
8-bit masks, ``> 32767`` for 16-bit ones, ``> 0.5`` for float masks, so soft or
anti-aliased masks are cut at mid-grey (``threshold`` changes the fraction). A mask
image with transparency (alpha not everywhere opaque) is read from its alpha channel
instead: transparent pixels (alpha ``<= 127``) are the hole, as in common image-edit
tools; an opaque alpha channel is ignored. In a colour mask a pixel is a hole when its
brightest channel is above the threshold (a pure red scribble counts). A uint8 mask
whose largest value is 1 is read as a 0/1 mask. numpy arrays and PIL images follow the
same rule: ``(H, W, 2)`` and ``(H, W, 4)`` arrays have alpha last.

Files (:func:`load_image`, :func:`save_image`): PNG, JPEG and WebP (and whatever else
Pillow reads); EXIF orientation is applied on loading; every write goes through
:func:`psal.utils.atomic.atomic_path`, so a failure never leaves a half-written file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .._checks import check_finite as _check_finite
from .atomic import atomic_path

__all__ = [
    "ImageLike",
    "ImageSpec",
    "check_savable",
    "file_format",
    "from_tensor",
    "load_image",
    "load_mask",
    "result_mode",
    "save_image",
    "to_mask",
    "to_tensor",
]

ImageLike = np.ndarray | Image.Image | torch.Tensor

#: PIL modes that come back as they came, with the numpy dtype and full-range value.
_PIL_MODES: dict[str, tuple[Any, float]] = {
    "1": (np.bool_, 1.0),
    "L": (np.uint8, 255.0),
    "LA": (np.uint8, 255.0),
    "RGB": (np.uint8, 255.0),
    "RGBA": (np.uint8, 255.0),
    "I;16": (np.uint16, 65535.0),
    "I": (np.int32, 65535.0),
    "F": (np.float32, 1.0),
}
_NP_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.bool_): 1.0}

#: File suffix -> Pillow format name, for the formats psal writes.
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
#: Modes each written format can hold (others are refused with a clear error).
_FORMAT_MODES = {
    "PNG": {"1", "L", "LA", "RGB", "RGBA", "I;16", "I"},
    "JPEG": {"L", "RGB"},
    "WEBP": {"RGB", "RGBA", "L", "LA"},
}


@dataclass(frozen=True)
class ImageSpec:
    """How an image was given, so that a result can be returned the same way.

    Attributes:
        kind: ``"numpy"``, ``"pil"`` or ``"tensor"``.
        layout: ``"HW"``, ``"HWC"`` (numpy), ``"HW"``, ``"CHW"``, ``"BCHW"`` (tensor) or
            ``"PIL"``.
        dtype: numpy or torch dtype of the input (for PIL, the numpy dtype of its mode).
        mode: PIL mode to return (PIL inputs only).
        scale: the value that maps to 1.0 (255 for 8 bits, 65535 for 16, 1 for floats).
        channels: number of channels C.
        device: torch device of a tensor input (None otherwise).
    """

    kind: str
    layout: str
    dtype: Any
    mode: str | None
    scale: float
    channels: int
    device: torch.device | None = None

    @property
    def is_integer(self) -> bool:
        """Whether the values are integers that results must be rounded to."""
        if self.kind == "tensor":
            return not self.dtype.is_floating_point
        return np.dtype(self.dtype).kind in "uib"

    @property
    def has_alpha(self) -> bool:
        """Whether the last channel is an alpha channel (LA, RGBA, (H, W, 2 or 4))."""
        return self.channels in (2, 4)

    def with_channels(self, channels: int) -> ImageSpec:
        """The same spec for an image of another channel count (e.g. gray -> colour)."""
        mode = self.mode
        if self.kind == "pil":
            modes = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
            if mode in ("1", "I;16", "I", "F") and channels == 1:
                pass
            else:
                mode = modes[channels]
        layout = self.layout
        if self.kind == "numpy" and channels > 1:
            layout = "HWC"
        if self.kind == "tensor" and layout == "HW" and channels > 1:
            layout = "CHW"
        dtype, scale = self.dtype, self.scale
        if self.kind == "pil":
            dtype, scale = _PIL_MODES[mode]
        return ImageSpec(self.kind, layout, dtype, mode, scale, channels, self.device)


#: PIL modes with an alpha band that :func:`to_tensor` converts to ``RGBA``.
_ALPHA_MODES = ("PA", "La", "RGBa")


def _pil_to_array(image: Image.Image) -> tuple[np.ndarray, str]:
    mode = image.mode
    if mode not in _PIL_MODES:
        # "A" in the mode name is not enough: LAB's A band is a colour axis
        alpha = mode in _ALPHA_MODES or "transparency" in image.info
        mode = "RGBA" if alpha else "RGB"
        image = image.convert(mode)
    arr = np.asarray(image)
    if mode == "I;16":
        arr = arr.astype(np.uint16)
    return arr, mode


def result_mode(image: Image.Image) -> str:
    """The PIL mode that an editing function gives back for ``image``.

    Modes listed in the module docstring come back as they are; palette images and the
    other modes (CMYK, YCbCr, LAB, HSV, ...) come back ``RGB``, or ``RGBA`` when they
    carry transparency.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image, got {type(image).__name__}")
    if image.mode in _PIL_MODES:
        return image.mode
    alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    return "RGBA" if alpha else "RGB"


def to_tensor(
    image: ImageLike, name: str = "image", device: torch.device | str | None = None
) -> tuple[torch.Tensor, ImageSpec]:
    """Convert a numpy array, PIL image or tensor to a (B, C, H, W) float tensor.

    Args:
        image: see the module docstring for the accepted kinds, layouts and dtypes.
        name: argument name used in error messages.
        device: where to put the result (default: the tensor's own device, else CPU).

    Returns:
        ``(x, spec)``: ``x`` is (B, C, H, W) float32 (float64 for float64 inputs), values
        divided by the full range of integer types; ``spec`` goes to
        :func:`from_tensor`.

    Raises:
        TypeError: an unsupported kind of object or dtype.
        ValueError: an unsupported shape or an empty image.

    Example:
        >>> import numpy as np
        >>> x, spec = to_tensor(np.zeros((4, 5, 3), np.uint8))
        >>> x.shape, spec.layout
        (torch.Size([1, 3, 4, 5]), 'HWC')
    """
    if isinstance(image, Image.Image):
        arr, mode = _pil_to_array(image)
        dtype, scale = _PIL_MODES[mode]
        c = 1 if arr.ndim == 2 else arr.shape[2]
        spec = ImageSpec("pil", "PIL", dtype, mode, scale, c)
        x = torch.from_numpy(np.ascontiguousarray(arr.astype(np.float32)))
        x = x[None, None] if arr.ndim == 2 else x.permute(2, 0, 1)[None]
        if mode not in ("F", "1"):
            x = x / scale
        _check_finite(x, name)
        return x.contiguous().to(device or "cpu"), spec
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
            raise ValueError(
                f"{name} must be a numpy array of shape (H, W) or (H, W, C) with C in "
                f"1..4, got shape {image.shape}"
            )
        dt = image.dtype
        if dt in _NP_SCALE:
            scale = _NP_SCALE[dt]
        elif dt.kind == "f":
            scale = 1.0
        else:
            raise TypeError(
                f"{name} must have dtype uint8, uint16, bool or float, got numpy dtype {dt}"
            )
        if image.size == 0:
            raise ValueError(f"{name} is empty (shape {image.shape})")
        c = 1 if image.ndim == 2 else image.shape[2]
        spec = ImageSpec("numpy", "HW" if image.ndim == 2 else "HWC", dt, None, scale, c)
        compute = torch.float64 if dt == np.float64 else torch.float32
        np_compute = np.float64 if dt == np.float64 else np.float32
        x = torch.from_numpy(np.ascontiguousarray(image).astype(np_compute))
        x = x[None, None] if image.ndim == 2 else x.permute(2, 0, 1)[None]
        if scale != 1.0:
            x = x / scale
        _check_finite(x, name)
        return x.to(device=device or "cpu", dtype=compute).contiguous(), spec
    if isinstance(image, torch.Tensor):
        layouts = {2: "HW", 3: "CHW", 4: "BCHW"}
        if image.dim() not in layouts:
            raise ValueError(
                f"{name} must be a tensor of shape (H, W), (C, H, W) or (B, C, H, W), got "
                f"shape {tuple(image.shape)}"
            )
        if not (image.is_floating_point() or image.dtype in (torch.uint8, torch.bool)):
            raise TypeError(f"{name} must be a float, uint8 or bool tensor, got {image.dtype}")
        if image.numel() == 0:
            raise ValueError(f"{name} is empty (shape {tuple(image.shape)})")
        x = image.detach()
        x = x[None, None] if x.dim() == 2 else (x[None] if x.dim() == 3 else x)
        scale = 255.0 if image.dtype == torch.uint8 else 1.0
        compute = torch.float64 if image.dtype == torch.float64 else torch.float32
        spec = ImageSpec(
            "tensor", layouts[image.dim()], image.dtype, None, scale, x.shape[1], image.device
        )
        x = x.to(device=device or image.device, dtype=compute) / scale
        _check_finite(x, name)
        return x.contiguous(), spec
    raise TypeError(
        f"{name} must be a numpy array, a PIL image or a torch tensor, got {type(image).__name__}"
    )


def from_tensor(x: torch.Tensor, spec: ImageSpec) -> ImageLike:
    """Convert a (B, C, H, W) tensor back to the kind, layout, dtype and mode of ``spec``.

    Integer outputs are rounded to the nearest integer and clipped to their range; a
    value that came from :func:`to_tensor` unchanged comes back bit for bit. Float
    outputs are not clipped.

    Args:
        x: (B, C, H, W) float tensor; B must be 1 unless the spec is a (B, C, H, W) tensor.
        spec: from :func:`to_tensor` (use :meth:`ImageSpec.with_channels` if C changed).

    Returns:
        A numpy array, PIL image or tensor like the original input.
    """
    if x.shape[1] != spec.channels:
        spec = spec.with_channels(x.shape[1])
    if spec.kind == "tensor":
        y = x
        if spec.layout != "BCHW":
            if y.shape[0] != 1:
                raise ValueError(f"expected a batch of one image, got shape {tuple(y.shape)}")
            y = y[0, 0] if spec.layout == "HW" else y[0]
        if spec.dtype == torch.bool:
            return (y > 0.5).to(spec.device)
        if not spec.dtype.is_floating_point:
            y = (y * spec.scale).round().clamp(0, 255)
        return y.to(device=spec.device, dtype=spec.dtype)
    if x.shape[0] != 1:
        raise ValueError(f"expected a batch of one image, got shape {tuple(x.shape)}")
    y = x[0].detach().to("cpu", torch.float64 if x.dtype == torch.float64 else torch.float32)
    arr = y.permute(1, 2, 0).numpy()
    dtype = np.dtype(spec.dtype)
    if dtype == np.bool_:
        arr = arr > 0.5
    elif dtype.kind in "ui":
        hi = spec.scale if spec.mode == "I" else np.iinfo(dtype).max
        arr = np.clip(np.rint(arr * spec.scale), 0, hi).astype(dtype)
    else:
        arr = arr.astype(dtype)
    if spec.kind == "numpy":
        return arr[..., 0] if spec.layout == "HW" else arr
    if arr.shape[2] == 1:
        arr = arr[..., 0]
    # the mode follows from the dtype and shape (Pillow infers L, LA, RGB, RGBA, I;16,
    # I, F and 1 from uint8 (H, W[, 2|3|4]), uint16, int32, float32 and bool arrays)
    return Image.fromarray(np.ascontiguousarray(arr))


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


def load_image(path: str | os.PathLike[str], name: str = "image") -> Image.Image:
    """Open an image file (PNG, JPEG, WebP, ...), apply its EXIF orientation, load it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an image Pillow can read.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{name}: no such file: {p}")
    if p.is_dir():
        raise ValueError(f"{name}: {p} is a directory, not an image file")
    try:
        with Image.open(p) as im:
            im.load()
            out = ImageOps.exif_transpose(im)
            if out is im:
                out = im.copy()
            out.info.update({k: v for k, v in im.info.items() if k == "icc_profile"})
    except UnidentifiedImageError:
        raise ValueError(
            f"{name}: cannot read {p} as an image (unknown or corrupt format)"
        ) from None
    except OSError as err:
        raise ValueError(f"{name}: cannot read {p}: {err}") from None
    return out


def load_mask(
    path: str | os.PathLike[str], size: tuple[int, int] | None = None, threshold: float = 0.5
) -> np.ndarray:
    """Read a mask file into a bool (H, W) array (True = hole), by the threshold rule.

    Args:
        path: image file: grayscale (white = hole), or with transparency
            (transparent = hole).
        size: expected ``(width, height)`` (PIL order); a mismatch raises ValueError.
        threshold: fraction of the full range above which a pixel is a hole.
    """
    image = load_image(path, name="mask")
    if size is not None and image.size != tuple(size):
        raise ValueError(
            f"mask {path} is {image.size[0]}x{image.size[1]} but the image is "
            f"{size[0]}x{size[1]}; they must have the same size"
        )
    return to_mask(image, image.size[1], image.size[0], threshold=threshold)[0, 0].numpy()


def array_to_pil(arr: np.ndarray) -> Image.Image:
    """A numpy image as a PIL image.

    uint8 (H, W[, 2|3|4]) gives L, LA, RGB or RGBA; uint16 (H, W) gives I;16; bool
    (H, W) gives 1.
    """
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    ok = (
        arr.dtype == np.uint8 and (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (2, 3, 4)))
    ) or (arr.dtype in (np.uint16, np.bool_) and arr.ndim == 2)
    if not ok:
        raise ValueError(
            f"cannot save a numpy array of shape {arr.shape} and dtype {arr.dtype} as an "
            "image; use uint8 (H, W[, C]) or uint16 (H, W)"
        )
    return Image.fromarray(np.ascontiguousarray(arr))


def save_format(path: str | os.PathLike[str]) -> str:
    """Pillow format name for an output path, from its suffix (PNG, JPEG or WEBP)."""
    suffix = Path(path).suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise ValueError(
            f"output {path}: unsupported file type {suffix or '(none)'!r}; use one of "
            f"{', '.join(sorted(SAVE_FORMATS))}"
        )
    return SAVE_FORMATS[suffix]


def check_savable(mode: str, path: str | os.PathLike[str]) -> str:
    """Check that an image of PIL ``mode`` can be written to ``path``; return the format.

    Raises:
        ValueError: unknown suffix, or a mode the format cannot hold (alpha or 16 bits
            in JPEG, 16 bits in WebP).
    """
    fmt = save_format(path)
    dest = Path(path)
    if dest.is_dir():
        raise ValueError(f"output {path}: is a directory; give a file name")
    parent = dest.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"output {path}: {parent} is a file, not a directory")
    if mode not in _FORMAT_MODES[fmt]:
        lost = "alpha" if "A" in mode else "bit depth" if mode in ("I;16", "I", "F") else "mode"
        hint = ".png or .webp" if mode in _FORMAT_MODES["WEBP"] else ".png"
        raise ValueError(
            f"output {path}: {fmt} cannot store a {mode} image without losing its {lost}; "
            f"use {hint}"
        )
    return fmt


def file_format(path: str | os.PathLike[str]) -> str | None:
    """Pillow's name for the format of an existing image file (None if unreadable)."""
    try:
        with Image.open(path) as im:
            return im.format
    except (OSError, UnidentifiedImageError):
        return None


def save_image(
    image: Image.Image | np.ndarray,
    path: str | os.PathLike[str],
    *,
    quality: int = 95,
    icc_profile: bytes | None = None,
) -> None:
    """Write an image atomically; the format comes from the suffix (.png, .jpg, .webp).

    JPEG is written at ``quality``; WebP losslessly. Modes a format cannot hold (alpha
    or 16 bits in JPEG) are refused with a clear error rather than silently converted.

    Raises:
        ValueError: unsupported suffix or a mode the format cannot hold.
        OSError: the file cannot be written (nothing is left behind).
    """
    if isinstance(image, np.ndarray):
        image = array_to_pil(image)
    fmt = check_savable(image.mode, path)
    kwargs: dict[str, Any] = {}
    if fmt == "JPEG":
        kwargs = {"quality": int(quality), "subsampling": 0 if quality >= 90 else 2}
    elif fmt == "WEBP":
        kwargs = {"lossless": True, "quality": 100}
    if icc_profile and fmt in ("PNG", "JPEG", "WEBP"):
        kwargs["icc_profile"] = icc_profile
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **kwargs)

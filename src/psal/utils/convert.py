"""Images as numpy arrays, PIL images or torch tensors, to and from (B, C, H, W) tensors.

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
  Pillow opens 16-bit PNGs) and ``F`` come back in the same mode; ``I;16B`` (and the
  other 16-bit byte orders) come back ``I;16``; palette images (``P``, ``PA``) and the
  other modes are converted to ``RGB`` / ``RGBA`` and come back as such. A mode ``I``
  image with values outside 0..65535 is refused (ValueError) rather than clipped.
* torch: ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)``, any float dtype, or uint8.

A PIL result also carries its input's metadata where it still holds
(:func:`carry_metadata`): the ICC profile, the EXIF block (previews dropped) and the DPI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image

from .._checks import check_finite as _check_finite
from .._checks import check_positive_float
from .arrays import is_tensor

if TYPE_CHECKING:
    import torch
else:
    from .arrays import lazy_torch as torch  # for annotations (imports torch if resolved)

__all__ = [
    "ImageLike",
    "ImageSpec",
    "carried_info",
    "carry_metadata",
    "check_device",
    "check_unit_float",
    "check_values",
    "dots_per_metre",
    "dpi_pair",
    "exif_resolution",
    "from_array",
    "from_tensor",
    "result_mode",
    "stated_dpi",
    "to_array",
    "to_tensor",
]

# (torch is imported only for tensors: numpy and PIL images convert without it)
ImageLike = Union[np.ndarray, Image.Image, "torch.Tensor"]

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


#: 16-bit modes of other byte orders, read as ``I;16`` (converting them to RGB would
#: cut them to 8 bits).
_I16_MODES = ("I;16B", "I;16L", "I;16N")

#: Largest value of a mode ``I`` (32-bit integer) image that psal accepts: it reads ``I``
#: as 16-bit data (how older Pillow opened 16-bit PNGs); larger values are refused.
I_MAX = 65535


def _pil_to_array(image: Image.Image, name: str = "image") -> tuple[np.ndarray, str]:
    mode = image.mode
    if mode in _I16_MODES:
        return np.asarray(image).astype(np.uint16), "I;16"
    if mode not in _PIL_MODES:
        # "A" in the mode name is not enough: LAB's A band is a colour axis
        alpha = mode in _ALPHA_MODES or "transparency" in image.info
        mode = "RGBA" if alpha else "RGB"
        image = image.convert(mode)
    arr = np.asarray(image)
    if mode == "I;16":
        arr = arr.astype(np.uint16)
    elif mode == "I":
        check_int32_range(arr, name)
    return arr, mode


def check_values(image: Image.Image, name: str = "image", *, unit_float: bool = False) -> None:
    """Refuse, before any work, a PIL image whose values psal would change.

    Mode ``I`` (32-bit integers) must hold 0..65535 (psal reads it as 16-bit data), mode
    ``F`` (32-bit floats) finite values, and, with ``unit_float`` (for a result that is
    written at 8 bits, as colorize's RGB), values in [0, 1]. Other modes always pass.
    :func:`to_tensor` applies the same ``I`` check; this one lets a caller check a file
    right after reading it.

    Raises:
        ValueError: naming ``name``, the mode and the range of values found.
    """
    if image.mode == "I":
        check_int32_range(np.asarray(image), name)
    elif image.mode == "F":
        check_unit_float(np.asarray(image), name, unit_float)


def check_unit_float(arr: np.ndarray | torch.Tensor, name: str, unit: bool = True) -> None:
    """Refuse NaN / Inf in a float image, and values outside [0, 1] when ``unit``.

    ``arr``: a numpy array or a tensor (any shape), as given or as :func:`to_array` /
    :func:`to_tensor` convert it (integer types then lie in [0, 1] and always pass).

    Raises:
        ValueError: naming ``name`` and the range of values found.
    """
    if is_tensor(arr):
        import torch

        if arr.numel() == 0:
            return
        lo, hi = (float(v) for v in torch.aminmax(arr.detach().reshape(-1)))
    else:
        if arr.size == 0:
            return
        lo, hi = float(arr.min()), float(arr.max())  # NaN propagates; Inf is an end
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or Inf values")
    if unit and (lo < 0.0 or hi > 1.0):
        raise ValueError(
            f"{name} is a float image with values in [{lo:g}, {hi:g}]; float images must "
            "be in [0, 1] (1 = full intensity): rescale it first (e.g. divide by 255)"
        )


def check_int32_range(arr: np.ndarray, name: str) -> None:
    """Refuse a 32-bit integer (mode ``I``) image whose values leave 0..65535.

    psal reads mode ``I`` as 16-bit data; wider values would be clipped, changing
    every known pixel, so they are refused before any work.
    """
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > I_MAX):
        raise ValueError(
            f"{name} is a 32-bit integer image (mode I) with values in "
            f"[{int(arr.min())}, {int(arr.max())}]; psal reads it as 16-bit data "
            f"(0..{I_MAX}) and would change its values: convert it to 16 bits first"
        )


def check_device(device: object, name: str = "device") -> torch.device | None:
    """Check a ``device`` argument: None, or a torch device (or its name) that exists.

    Raises:
        TypeError: not a string or :class:`torch.device`.
        ValueError: an unknown name, CUDA / MPS that is not available, a CUDA index
            beyond the devices present, or ``meta`` (which holds no data).
    """
    if device is None:
        return None
    import torch

    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"{name} must be a str or torch.device, got {device!r} ({type(device).__name__})"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"{name} must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}={device!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name}={device!r}: no such CUDA device (found {torch.cuda.device_count()})"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{name}={device!r}: MPS is not available on this machine")
    elif dev.type != "cpu":
        raise ValueError(
            f"{name} must be 'cpu', 'cuda', 'cuda:N' or 'mps' (a device that holds image "
            f"data), got {device!r}"
        )
    return dev


def _check_pil(image: Any, name: str) -> None:
    if not isinstance(image, Image.Image):
        raise TypeError(f"{name} must be a PIL image, got {type(image).__name__}")


def result_mode(image: Image.Image) -> str:
    """The PIL mode that an editing function gives back for ``image``.

    Modes listed in the module docstring come back as they are; palette images and the
    other modes (CMYK, YCbCr, LAB, HSV, ...) come back ``RGB``, or ``RGBA`` when they
    carry transparency.
    """
    _check_pil(image, "image")
    if image.mode in _PIL_MODES:
        return image.mode
    if image.mode in _I16_MODES:
        return "I;16"
    alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    return "RGBA" if alpha else "RGB"


def to_array(image: np.ndarray | Image.Image, name: str = "image") -> tuple[np.ndarray, ImageSpec]:
    """Convert a numpy array or PIL image to a (1, C, H, W) float numpy array.

    What :func:`to_tensor` does for those kinds (it calls this), without torch.

    Returns:
        ``(x, spec)``: ``x`` is (1, C, H, W) C-ordered float32 (float64 for float64
        inputs), values divided by the full range of integer types; ``spec`` goes to
        :func:`from_array` or :func:`from_tensor`.

    Raises:
        TypeError: not a numpy array or PIL image, or an unsupported dtype.
        ValueError: an unsupported shape, an empty image, NaN / Inf, a mode ``I``
            image beyond 16 bits.
    """
    if isinstance(image, Image.Image):
        arr, mode = _pil_to_array(image, name)
        dtype, scale = _PIL_MODES[mode]
        c = 1 if arr.ndim == 2 else arr.shape[2]
        spec = ImageSpec("pil", "PIL", dtype, mode, scale, c)
        x = arr.astype(np.float32)
        x = x[None, None] if arr.ndim == 2 else x.transpose(2, 0, 1)[None]
        if mode not in ("F", "1"):
            x = x / np.float32(scale)
        x = np.ascontiguousarray(x)
        _check_finite(x, name)
        return x, spec
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
        compute = np.float64 if dt == np.float64 else np.float32
        x = image.astype(compute)
        x = x[None, None] if image.ndim == 2 else x.transpose(2, 0, 1)[None]
        if scale != 1.0:
            x = x / compute(scale)
        x = np.ascontiguousarray(x, dtype=compute)
        _check_finite(x, name)
        return x, spec
    raise TypeError(
        f"{name} must be a numpy array, a PIL image or a torch tensor, got {type(image).__name__}"
    )


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
        TypeError: an unsupported kind of object or dtype, or a ``device`` that is not
            a str or torch.device.
        ValueError: an unsupported shape, an empty image, NaN / Inf, a mode ``I``
            image beyond 16 bits, or a device that is unknown, unavailable or ``meta``.

    Example:
        >>> import numpy as np
        >>> x, spec = to_tensor(np.zeros((4, 5, 3), np.uint8))
        >>> x.shape, spec.layout
        (torch.Size([1, 3, 4, 5]), 'HWC')
    """
    import torch

    device = check_device(device)
    if isinstance(image, (Image.Image, np.ndarray)):
        x, spec = to_array(image, name)
        return torch.from_numpy(x).to(device or "cpu"), spec
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
    import torch

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
    dt = torch.float64 if x.dtype == torch.float64 else torch.float32
    return from_array(x.detach().to("cpu", dt).numpy(), spec)


def from_array(x: np.ndarray, spec: ImageSpec) -> np.ndarray | Image.Image:
    """Convert a (1, C, H, W) float array back to the numpy or PIL image of ``spec``.

    The inverse of :func:`to_array`, with :func:`from_tensor`'s rules (integers
    rounded and clipped, floats not clipped).
    """
    if is_tensor(x) or spec.kind == "tensor":
        raise TypeError("from_array takes a numpy array and the spec of a numpy or PIL image")
    if x.shape[1] != spec.channels:
        spec = spec.with_channels(x.shape[1])
    if x.shape[0] != 1:
        raise ValueError(f"expected a batch of one image, got shape {tuple(x.shape)}")
    arr = x[0].transpose(1, 2, 0)
    if arr.dtype != np.float64:
        arr = arr.astype(np.float32, copy=False)
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


#: ``info`` keys that :func:`carry_metadata` gives a PIL result (nothing else is kept).
CARRIED_INFO = ("icc_profile", "exif", "dpi")

#: Result modes whose pixels are gray (an ICC profile of the ``GRAY`` colour space).
_GRAY_MODES = ("1", "L", "LA", "I;16", "I", "F")

#: EXIF orientation tag (kept: the editing functions do not turn the pixels).
_ORIENTATION = 0x0112


def _carried_icc(image: Image.Image, out_mode: str) -> bytes | None:
    """``image``'s ICC profile if it describes a result of mode ``out_mode``, else None.

    The rule of the ``psal`` commands (kept if psal did not convert the colours: palette
    images are only looked up; not if the result is colour and the input gray, as
    colorize's), and the profile's own colour space (``RGB`` or ``GRAY``, in its header)
    must be the result's.
    """
    icc = image.info.get("icc_profile")
    if not isinstance(icc, bytes) or len(icc) < 128:  # 128: an ICC header
        return None
    source = result_mode(image)
    if image.mode != source and image.mode not in ("P", "PA"):  # CMYK, LAB... -> RGB
        return None
    gray = out_mode in _GRAY_MODES
    if (source in _GRAY_MODES) != gray:
        return None
    return icc if icc[16:20] == (b"GRAY" if gray else b"RGB ") else None


def _carried_exif(image: Image.Image, size: tuple[int, int], factor: tuple[float, float]):
    """The EXIF block of ``image`` for a result of ``size``, or None.

    :func:`psal.utils.io.edited_exif` (previews and layout tags dropped, pixel
    dimensions set to ``size``); the resolution tags are multiplied by ``factor`` as
    the DPI is. A TIFF file's own tags are not EXIF and are not kept (nor are they by
    :func:`psal.utils.io.load_image`), but for its orientation (which Pillow applies,
    removing the tag, when it loads a TIFF's pixels).
    """
    from .io import edited_exif

    try:
        exif = image.getexif()
        if getattr(image, "tag_v2", None) is not None and "exif" not in image.info:
            own = Image.Exif()
            if exif.get(_ORIENTATION) is not None:
                own[_ORIENTATION] = exif[_ORIENTATION]
            exif = own
        if not len(exif):
            return None
        try:
            raw = exif.tobytes()
        except Exception:  # Pillow cannot write back a block whose thumbnail was read
            raw = image.info.get("exif")
        return exif_resolution(edited_exif(raw, size), factor)
    except Exception:  # a damaged block: nothing is better than a wrong one
        return None


#: EXIF tags of the resolution: XResolution, YResolution (per unit) and ResolutionUnit.
_X_RES, _Y_RES, _RES_UNIT = 0x011A, 0x011B, 0x0128


def exif_resolution(
    block: bytes | Image.Exif | None,
    factor: tuple[float, float] = (1.0, 1.0),
    *,
    swap: bool = False,
) -> bytes | None:
    """An EXIF block whose resolution tags follow a change of the pixels.

    XResolution and YResolution are exchanged if ``swap`` (the image was turned 90
    degrees: its width is the stored height), then multiplied by ``factor`` (x, y) (an
    upscale by 2 doubles them, so that the printed size stays the same). ``block``: the
    bytes of a block (one without those tags, or no change, comes back as it is), or an
    :class:`PIL.Image.Exif`, changed in place (an image's ``getexif()``, so that it
    agrees with the bytes returned).

    Raises:
        Exception: a block Pillow cannot parse or write (the caller drops it).
    """
    if isinstance(block, Image.Exif):
        out = block
    elif not block or (factor == (1.0, 1.0) and not swap):
        return block
    else:
        out = Image.Exif()
        out.load(block)
    x, y = out.get(_X_RES), out.get(_Y_RES)
    if x is None and y is None and not isinstance(block, Image.Exif):
        return block
    out.get_ifd(0x8769)  # keep the Exif IFD (loaded, so that tobytes writes it)
    if swap:
        x, y = y, x
    for tag, value, f in ((_X_RES, x, factor[0]), (_Y_RES, y, factor[1])):
        if value is None:
            out.pop(tag, None)
        else:
            out[tag] = float(value) * f
    return out.tobytes()


def _exif_dpi(image: Image.Image) -> tuple[float, float] | None:
    """The DPI (x, y) of ``image``'s EXIF resolution tags, or None (none, or no unit)."""
    try:
        exif = image.getexif()
        unit, x, y = exif.get(_RES_UNIT, 2), exif.get(_X_RES), exif.get(_Y_RES)
        if x is None or unit not in (2, 3):  # 2: inch, 3: centimetre (1: none)
            return None
        per = 2.54 if unit == 3 else 1.0
        return float(x) * per, float(x if y is None else y) * per
    except Exception:  # a damaged block: no resolution
        return None


def stated_dpi(image: Image.Image) -> tuple[float, float] | None:
    """The DPI (x, y) that ``image``'s file states, or None.

    ``info["dpi"]`` (a JPEG's JFIF density, a PNG's ``pHYs``, a TIFF's resolution tags),
    else the EXIF resolution tags; a pair of positive finite numbers, never what Pillow
    makes up when a file states none (``(1, 1)`` for a TIFF without resolution tags,
    ``(72, 72)`` for a JPEG whose EXIF block has none) nor its reading of a JPEG's EXIF
    XResolution for both axes. An image not opened from a file (a copy, as
    :func:`psal.utils.io.load_image` returns) is taken at its ``info``.
    """
    _check_pil(image, "image")
    fmt = getattr(image, "format", None)
    dpi = image.info.get("dpi")
    if fmt in ("JPEG", "MPO") and image.info.get("jfif_unit") not in (1, 2):
        dpi = None  # Pillow's, from the EXIF block (read below) or made up
    elif fmt == "TIFF" and _X_RES not in getattr(image, "tag_v2", {}):
        return None
    if dpi is None:
        dpi = _exif_dpi(image)
    elif fmt == "PNG":
        dpi = tuple(_png_dpi(v) for v in dpi)
    return dpi_pair(dpi)


def _png_dpi(dpi: Any) -> Any:
    """The whole DPI a PNG's ``pHYs`` dots per metre were written from, where there is one.

    A PNG stores whole dots per metre, so 300 DPI is saved as 11811 and read back by
    Pillow as 299.9994: the whole number whose dots per metre round to the same count
    is what was meant (300), and a TIFF or another PNG written from it then says 300.
    """
    try:
        whole = round(float(dpi))
        if whole > 0 and dots_per_metre(whole) == dots_per_metre(float(dpi)):
            return float(whole)
    except (TypeError, ValueError, OverflowError):
        pass
    return dpi


def dots_per_metre(dpi: float) -> int:
    """A PNG's ``pHYs`` count for ``dpi``, rounded as Pillow's writer rounds it.

    Raises:
        TypeError / ValueError: ``dpi`` is not a finite number > 0.
    """
    return int(check_positive_float(dpi, "dpi") / 0.0254 + 0.5)


def dpi_pair(dpi: Any) -> tuple[float, float] | None:
    """``dpi`` as a pair of positive finite floats (x, y), or None (anything else)."""
    try:
        x, y = (float(v) for v in dpi)
    except (TypeError, ValueError):  # no DPI, or not a pair of numbers
        return None
    if x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y):
        return x, y
    return None


def carried_info(image: Image.Image, mode: str, size: tuple[int, int]) -> dict[str, Any]:
    """The metadata of ``image`` that holds for a result of ``mode`` and ``size``.

    The one rule of :func:`carry_metadata` (PIL results) and of the files written by
    the ``psal`` commands and the app (:func:`psal.utils.io.save_image` takes the same
    keys, :data:`CARRIED_INFO`): the ICC profile, the EXIF block and the DPI as
    :func:`carry_metadata` describes them; keys whose value does not hold are left out.

    Args:
        image: the input (or, for colorize, the target), as opened or as
            :func:`psal.utils.io.load_image` returns it.
        mode: the result's PIL mode (``RGB;16`` / ``RGBA;16`` for 16-bit colour).
        size: the result's ``(width, height)``; the DPI and the EXIF resolution are
            multiplied by its ratio to ``image.size``, per axis.
    """
    _check_pil(image, "image")
    try:
        sw, sh = (int(v) for v in size)
    except (TypeError, ValueError):
        raise TypeError(f"size must be the result's (width, height), got {size!r}") from None
    w, h = image.size
    factor = (sw / w, sh / h) if w and h else (1.0, 1.0)
    info: dict[str, Any] = {}
    icc = _carried_icc(image, mode)
    if icc is not None:
        info["icc_profile"] = icc
    exif = _carried_exif(image, (sw, sh), factor)
    if exif is not None:
        info["exif"] = exif
    dpi = stated_dpi(image)
    if dpi is not None:
        info["dpi"] = (dpi[0] * factor[0], dpi[1] * factor[1])
    return info


def carry_metadata(result: ImageLike, image: ImageLike) -> ImageLike:
    """Give a PIL ``result`` the metadata of the PIL ``image`` it was made from.

    What the editing functions return for a PIL input (any other kind is returned
    unchanged). ``result.info`` is replaced by what still holds for its pixels, under
    the keys Pillow's writers take (:data:`CARRIED_INFO`), so that
    ``result.save(path, **result.info)`` keeps them in a PNG, JPEG, WebP or TIFF:

    * ``icc_profile``: the input's, if it describes the result's colours: the pixels
      stay in the input's colour space. Dropped when the input was converted to RGB
      (CMYK, LAB...) or a gray input became colour (colorize), and when the profile's
      colour space is not the result's (``RGB`` / ``GRAY``).
    * ``exif``: the input's (``image.getexif()``) as :func:`psal.utils.io.edited_exif`
      keeps it for files: without the embedded thumbnail, maker's note and layout
      tags, with the recorded pixel dimensions set to the result's. The orientation
      tag is kept as it is: the editing functions work on the pixels as stored and do
      not apply it, so the result is shown turned as the input was.
      (:func:`psal.utils.io.load_image` applies it and removes the tag instead.)
    * ``dpi``: the input's (:func:`stated_dpi`), multiplied by the change of size (an
      upscale by 2 doubles it, so that the printed size stays the same); the EXIF
      resolution tags likewise.

    Nothing else is kept: not ``transparency`` (a palette or colour key that the new
    pixels may not respect), XMP or text chunks.
    """
    if not (isinstance(result, Image.Image) and isinstance(image, Image.Image)):
        return result
    result.info = carried_info(image, result.mode, result.size)
    return result

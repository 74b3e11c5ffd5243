"""Visualising displacement fields: nearest-neighbour fields and attention offsets.

A displacement field holds, per pixel, ``(dy, dx)``: where the pixel takes its content
from, relative to itself. Contextual attention returns one
(:func:`psal.layers.contextual_attention`'s ``offsets``), and :func:`field_to_flow` turns
a PatchMatch neighbour field into one. :func:`flow_to_color` draws it with the optical
flow colour wheel of the Middlebury benchmark (Baker et al., IJCV 2011), as DeepFill does:
the hue gives the direction, the saturation the length (white = no displacement).

This module depends on numpy, torch and Pillow only.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from ._checks import check_int, check_positive_float, check_tensor
from .utils.atomic import atomic_path

__all__ = [
    "color_wheel",
    "field_to_flow",
    "flow_to_color",
    "flow_to_image",
    "make_colorwheel",
    "save_flow_visualization",
]

# Number of hues between the primary and secondary colours of the Middlebury wheel:
# red-yellow, yellow-green, green-cyan, cyan-blue, blue-magenta, magenta-red.
_SEGMENTS = (15, 6, 4, 11, 13, 6)


def make_colorwheel() -> np.ndarray:
    """The Middlebury optical-flow colour wheel.

    Returns:
        (55, 3) float64 array of RGB colours in [0, 255], going red, yellow, green, cyan,
        blue, magenta and back towards red; entry ``i`` is the colour of the direction at
        angle ``i / 54`` of a full turn (see :func:`flow_to_color` for the orientation),
        so entries 0 and 54 both lie next to "right", as in the Middlebury code.

    Example:
        >>> wheel = make_colorwheel()
        >>> wheel.shape, wheel[0].tolist()
        ((55, 3), [255.0, 0.0, 0.0])
    """
    rows = []
    # (channel held at 255, channel that ramps, ramp goes up?) for each segment
    plan = ((0, 1, True), (1, 0, False), (1, 2, True), (2, 1, False), (2, 0, True), (0, 2, False))
    for n, (full, ramp, up) in zip(_SEGMENTS, plan):
        seg = np.zeros((n, 3))
        seg[:, full] = 255
        steps = np.floor(255 * np.arange(n) / n)
        seg[:, ramp] = steps if up else 255 - steps
        rows.append(seg)
    return np.concatenate(rows, axis=0)


def _as_batched_flow(flow: object, name: str) -> tuple[torch.Tensor, bool]:
    if isinstance(flow, np.ndarray):
        flow = torch.from_numpy(flow)
    t = check_tensor(flow, name)
    if t.dim() not in (3, 4) or t.shape[-3] != 2:
        raise ValueError(
            f"{name} must have shape (2, H, W) or (B, 2, H, W) holding (dy, dx), got "
            f"{tuple(t.shape)}"
        )
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    return (t.unsqueeze(0), True) if t.dim() == 3 else (t, False)


def flow_to_color(flow: torch.Tensor, max_norm: float | None = None) -> torch.Tensor:
    """Colour a displacement field with the Middlebury optical-flow colour wheel.

    With ``u = dx``, ``v = dy`` (y pointing down) and ``rho = |(dy, dx)| / max_norm``, the
    hue is read on :func:`make_colorwheel` at the angle ``atan2(-v, -u)`` (linear
    interpolation between its 55 colours) and the colour is ``1 - rho * (1 - hue)``: white
    for no displacement, the full hue at ``rho = 1``. Lengths beyond ``max_norm`` get the
    full hue darkened to 75 %. Pixels whose displacement is NaN or infinite are black.

    Args:
        flow: (B, 2, H, W) or (2, H, W) tensor holding ``(dy, dx)``, any real dtype (int64
            offsets or float flows); a numpy array is accepted too.
        max_norm: length drawn with full saturation. None: the largest finite length of
            each sample (so each sample uses the whole range; a sample without any
            displacement is all white).

    Returns:
        float32 tensor (B, 3, H, W), or (3, H, W) for a (2, H, W) input, RGB in [0, 1], on
        the input's device.

    Example:
        >>> import torch
        >>> flow = torch.zeros(2, 4, 4)
        >>> flow[1, :, 2:] = 3.0                       # right half moves 3 pixels right
        >>> rgb = flow_to_color(flow)
        >>> rgb.shape, rgb[:, 0, 0].tolist()           # no displacement: white
        (torch.Size([3, 4, 4]), [1.0, 1.0, 1.0])
    """
    flow, single = _as_batched_flow(flow, "flow")
    if max_norm is not None:
        max_norm = check_positive_float(max_norm, "max_norm")
    f = flow.to(torch.float64 if flow.dtype == torch.float64 else torch.float32)
    finite = torch.isfinite(f).all(dim=1)  # (B, H, W)
    f = torch.where(finite.unsqueeze(1), f, torch.zeros((), dtype=f.dtype, device=f.device))
    v, u = f[:, 0] + 0.0, f[:, 1] + 0.0  # -0.0 + 0.0 = +0.0: one colour for one direction
    length = torch.sqrt(u * u + v * v)
    if max_norm is None:
        norm = length.flatten(1).amax(dim=1).view(-1, 1, 1) if length.numel() else length
        norm = torch.where(norm > 0, norm, torch.ones_like(norm))
    else:
        norm = torch.full((), max_norm, dtype=f.dtype, device=f.device)
    rho = length / norm

    wheel = torch.as_tensor(make_colorwheel() / 255.0, dtype=f.dtype, device=f.device)
    ncols = wheel.shape[0]
    angle = torch.atan2(-v, -u) / math.pi  # in [-1, 1]
    fk = (angle + 1) / 2 * (ncols - 1)
    k0 = fk.floor().long().clamp(0, ncols - 1)
    k1 = (k0 + 1) % ncols
    frac = (fk - k0.to(f.dtype)).unsqueeze(-1)
    hue = (1 - frac) * wheel[k0] + frac * wheel[k1]  # (B, H, W, 3)
    rho = rho.unsqueeze(-1)
    color = torch.where(rho <= 1, 1 - rho * (1 - hue), hue * 0.75)
    color = color * finite.unsqueeze(-1).to(color.dtype)
    color = color.permute(0, 3, 1, 2).to(torch.float32).contiguous()
    return color[0] if single else color


def flow_to_image(flow: torch.Tensor | np.ndarray, max_norm: float | None = None) -> np.ndarray:
    """:func:`flow_to_color` as an 8-bit, channels-last numpy image.

    Args:
        flow: (2, H, W) or (B, 2, H, W) tensor or numpy array holding ``(dy, dx)``.
        max_norm: see :func:`flow_to_color`.

    Returns:
        uint8 array (H, W, 3), or (B, H, W, 3) for a batched input.

    Example:
        >>> import numpy as np
        >>> flow_to_image(np.zeros((2, 3, 5))).shape
        (3, 5, 3)
    """
    color = flow_to_color(flow, max_norm)
    arr = (color.movedim(-3, -1) * 255).round().clamp(0, 255).to(torch.uint8)
    return arr.cpu().numpy()


def color_wheel(size: int = 65) -> torch.Tensor:
    """A legend: the colour of every displacement, centre = no displacement.

    Pixel ``(y, x)`` shows the displacement ``(y - c, x - c)`` with ``c = (size - 1) / 2``
    and ``max_norm = c``, so the disc of radius c holds every direction at every length and
    the corners show lengths beyond ``max_norm``.

    Args:
        size: side of the square image, >= 2.

    Returns:
        float32 tensor (3, size, size), RGB in [0, 1].

    Example:
        >>> color_wheel(33).shape
        torch.Size([3, 33, 33])
    """
    size = check_int(size, "size", minimum=2)
    c = (size - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    flow = torch.stack((ys - c, xs - c)).to(torch.float32)
    return flow_to_color(flow, max_norm=c)


def field_to_flow(indices: torch.Tensor, key_width: int, *, rank: int = 0) -> torch.Tensor:
    """Turn a neighbour field of flat key positions into the displacement of one neighbour.

    For a field from :func:`psal.patchmatch` (``indices[b, j, y, x] = ky * Wk + kx``, the
    j-th nearest key patch of query pixel (y, x)), the displacement of neighbour ``rank``
    is ``(ky - y, kx - x)``: the query and key grids share their top-left corner, which is
    what it means for self-attention (query = key). Unsearched pixels (index -1, where
    ``query_valid`` is False) get a zero displacement.

    Args:
        indices: (B, k, Hq, Wq) integer tensor of flat key positions ``y * Wk + x``, or -1.
        key_width: width Wk of the key image, >= 1.
        rank: which neighbour to show, 0 = the nearest (0 <= rank < k).

    Returns:
        int64 tensor (B, 2, Hq, Wq) holding ``(dy, dx)``, on the input's device.

    Raises:
        TypeError: a non-integer tensor or a bad ``key_width`` / ``rank`` type.
        ValueError: wrong dimensions, ``rank`` out of range, indices below -1.

    Example:
        >>> import torch
        >>> idx = torch.tensor([[[[1, 2], [-1, 0]]]])  # (1, 1, 2, 2), key width 2
        >>> flow = field_to_flow(idx, key_width=2)
        >>> flow[0, 0].tolist(), flow[0, 1].tolist()  # dy, dx
        ([[0, 1], [0, -1]], [[1, -1], [0, -1]])
    """
    idx = check_tensor(indices, "indices", ndim=4)
    if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.is_complex():
        raise TypeError(f"indices must be an integer tensor (int64), got dtype {idx.dtype}")
    key_width = check_int(key_width, "key_width", minimum=1)
    rank = check_int(rank, "rank", minimum=0)
    _, k, hq, wq = idx.shape
    if rank >= k:
        raise ValueError(f"rank must be < k = {k} (the neighbours in indices), got {rank}")
    sel = idx[:, rank].long()
    if sel.numel() and int(sel.min()) < -1:
        raise ValueError(f"indices must be flat key positions >= 0 or -1, got {int(sel.min())}")
    known = sel >= 0
    pos = sel.clamp_min(0)
    ky = torch.div(pos, key_width, rounding_mode="floor")
    kx = pos % key_width
    ys = torch.arange(hq, device=idx.device).view(1, hq, 1)
    xs = torch.arange(wq, device=idx.device).view(1, 1, wq)
    flow = torch.stack(((ky - ys) * known, (kx - xs) * known), dim=1)
    return flow


def _image_to_uint8(image: object, name: str) -> np.ndarray:
    """(B, H, W, 3) uint8 from a (C, H, W) / (B, C, H, W) tensor, C in {1, 3}."""
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(image)
    t = check_tensor(image, name)
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[1] not in (1, 3):
        raise ValueError(
            f"{name} must have shape (C, H, W) or (B, C, H, W) with C = 1 or 3, got "
            f"{tuple(image.shape)}"
        )
    if t.dtype == torch.uint8:
        out = t
    elif t.is_floating_point():
        out = (t.detach().float().nan_to_num(0.0).clamp(0, 1) * 255).round().to(torch.uint8)
    else:
        raise TypeError(f"{name} must be a float tensor in [0, 1] or uint8, got {t.dtype}")
    return out.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).cpu().numpy()


def save_flow_visualization(
    image: torch.Tensor,
    flow: torch.Tensor,
    path: str | os.PathLike[str],
    max_norm: float | None = None,
) -> Path:
    """Save an image and its coloured displacement field side by side.

    Each sample becomes one row: the image on the left, :func:`flow_to_color` of its field
    on the right. The file is written atomically (through
    :func:`psal.utils.atomic.atomic_path`); the format follows the suffix (``.png``, ...).

    Args:
        image: (C, H, W) or (B, C, H, W), C = 1 or 3, float in [0, 1] (clamped) or uint8.
        flow: (2, H, W) or (B, 2, H, W) displacement ``(dy, dx)``: contextual attention
            offsets or :func:`field_to_flow` of a neighbour field; same B, H, W as image.
        path: destination file.
        max_norm: see :func:`flow_to_color`.

    Returns:
        The destination path.

    Example:
        >>> import torch, tempfile, os
        >>> img = torch.rand(3, 16, 16)
        >>> flow = torch.randint(-4, 5, (2, 16, 16))
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = save_flow_visualization(img, flow, os.path.join(d, "flow.png"))
        ...     from PIL import Image
        ...     with Image.open(p) as im:
        ...         im.size
        (32, 16)
    """
    from PIL import Image

    dest = Path(path)
    known = Image.registered_extensions()
    if dest.suffix.lower() not in known:
        raise ValueError(
            f"path must end with an image extension Pillow can write (.png, .jpg, ...), "
            f"got {str(path)!r}"
        )
    pixels = _image_to_uint8(image, "image")
    colors = flow_to_image(flow, max_norm)
    if colors.ndim == 3:
        colors = colors[None]
    if pixels.shape != colors.shape:
        raise ValueError(
            f"image and flow must have the same batch size and spatial size, got image "
            f"{pixels.shape[0]}x{pixels.shape[1]}x{pixels.shape[2]} (B x H x W) and flow "
            f"{colors.shape[0]}x{colors.shape[1]}x{colors.shape[2]}"
        )
    rows = np.concatenate((pixels, colors), axis=2)  # (B, H, 2W, 3)
    canvas = rows.reshape(-1, rows.shape[2], 3)
    with atomic_path(dest) as tmp:
        Image.fromarray(np.ascontiguousarray(canvas)).save(tmp, format=known[dest.suffix.lower()])
    return dest

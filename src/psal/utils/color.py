"""Colour conversions: luma / chroma (YCbCr, ITU-R BT.601 full range, as in JPEG).

``Y = 0.299 R + 0.587 G + 0.114 B``, ``Cb = (B - Y) / 1.772``, ``Cr = (R - Y) / 1.402``
on values in [0, 1]; chroma is centred on 0. :func:`luma_chroma_to_rgb` goes back so
that the luma of the result is exactly the given Y: chroma that would leave the RGB
cube is scaled down towards grey (never clipped, which would change the luma).


:func:`check_reference` and :func:`warn_colour_target` are the input checks the
training-free and the learned colorizers share.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from .._checks import user_stacklevel
from .arrays import concat, namespace
from .convert import check_unit_float

if TYPE_CHECKING:
    import torch
else:  # imported on first use: :func:`luma` also serves numpy arrays (psal.upscale)
    from .arrays import lazy_torch as torch

KR, KG, KB = 0.299, 0.587, 0.114


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) luma Y (a tensor, or a numpy array)."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    return KR * r + KG * g + KB * b


def rgb_to_luma_chroma(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) RGB -> ``(Y (B, 1, H, W), CbCr (B, 2, H, W))`` (tensor or numpy)."""
    y = luma(rgb)
    cb = (rgb[:, 2:3] - y) / (2 * (1 - KB))
    cr = (rgb[:, 0:1] - y) / (2 * (1 - KR))
    return y, concat([cb, cr], 1)


def luma_chroma_to_rgb(y: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """``Y (B, 1, H, W)`` and ``CbCr (B, 2, H, W)`` -> RGB in [0, 1] whose luma is Y.

    Tensors or numpy arrays (the same formulas).

    Per pixel, the chroma is multiplied by the largest ``s`` in [0, 1] that keeps R, G,
    B in [0, 1] (``s = 1`` when it already fits); G is solved from the luma equation so
    that ``luma(out) == y`` up to floating-point rounding, for ``y`` in [0, 1].
    """
    cb, cr = chroma[:, 0:1], chroma[:, 1:2]
    # offsets of R, G, B from Y per unit of chroma
    a_r = 2 * (1 - KR) * cr
    a_b = 2 * (1 - KB) * cb
    a_g = -(KR * a_r + KB * a_b) / KG
    xp = namespace(y)
    s = xp.ones_like(y)
    yc = y.clip(0, 1)
    for a in (a_r, a_g, a_b):
        up = xp.where(a > 0, (1 - yc) / a.clip(1e-12), xp.ones_like(a))
        down = xp.where(a < 0, yc / (-a).clip(1e-12), xp.ones_like(a))
        s = xp.minimum(s, xp.minimum(up, down))
    s = s.clip(0, 1)
    r = y + s * a_r
    b = y + s * a_b
    g = (y - KR * r - KB * b) / KG
    return concat([r, g, b], 1)


def check_reference(reference: torch.Tensor) -> None:
    """Check a colorization's reference: one (1, 3|4, Hr, Wr) colour image in [0, 1].

    ``reference`` as :func:`psal.utils.convert.to_tensor` (or ``to_array``) gives it: a
    tensor or a numpy array, integer types already divided by their full range.

    Raises:
        ValueError: a reference without colour, a batch of references, or a float
            reference with values outside [0, 1] (a gray or oversaturated result).
    """
    if reference.shape[1] < 3:
        raise ValueError(
            "reference must be a colour image (3 or 4 channels): a colour reference is "
            f"needed, got {reference.shape[1]} channel(s)"
        )
    if reference.shape[0] != 1:
        raise ValueError(f"reference must be a single image, got a batch of {reference.shape[0]}")
    check_unit_float(reference, "reference")


def warn_colour_target(target: torch.Tensor) -> None:
    """Warn when a (B, C, H, W) target to colorize has colour.

    Its luminance is used and its colours replaced (``UserWarning``, attributed to the
    first caller outside psal).
    """
    rgb = target[:, :3]
    xp = namespace(target)
    if target.shape[1] >= 3 and bool((xp.amax(rgb, 1) - xp.amin(rgb, 1) > 1 / 510).any()):
        warnings.warn(
            "target is a colour image: its luminance is used and its colours replaced",
            UserWarning,
            stacklevel=user_stacklevel(),
        )

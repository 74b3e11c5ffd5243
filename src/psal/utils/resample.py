"""``F.interpolate`` with a workaround for antialiased resizing to one column.

PyTorch 2.13's antialiased ``bilinear`` and ``bicubic`` interpolation (CPU) returns
wrong values when the output is one pixel wide and the height changes (e.g. a 6x4 map
to 3x1: errors of 0.1-0.6 on values in [0, 1]); every other shape agrees with the
separable filter (:func:`psal.editing.upscale.resize_array`, tested over all sizes
1-12). Resizing the transposed map, whose output is then one pixel *high*, gives the
right values, so that is what :func:`interpolate` does in that case.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["interpolate"]


def interpolate(
    x: torch.Tensor, size: tuple[int, int], *, mode: str, antialias: bool = False
) -> torch.Tensor:
    """``F.interpolate(x, size, mode=mode, align_corners=False, antialias=antialias)``.

    Args:
        x: (B, C, H, W) float tensor.
        size: output (height, width).
        mode: ``"bilinear"`` or ``"bicubic"``.
        antialias: filter when shrinking (as ``F.interpolate``; CPU and CUDA only).

    Returns:
        (B, C, *size) tensor; one-column outputs are computed on the transposed map.
    """
    import torch.nn.functional as F

    size = (int(size[0]), int(size[1]))
    if antialias and size[1] == 1 and size[0] != x.shape[-2]:
        out = F.interpolate(x.transpose(-1, -2), size=size[::-1], mode=mode,
                            align_corners=False, antialias=True)  # fmt: skip
        return out.transpose(-1, -2)
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=antialias)

"""Box filters from running sums: O(1) work per pixel whatever the window.

PyTorch's stride-1 ``max_pool2d`` / ``avg_pool2d`` cost ``p`` to ``p²`` operations per
pixel and take a slow path on CPU (a 7x7 max over a 512x680 mask: ~17 ms, against ~3
ms here); a box sum is two cumulative sums and two differences.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["box_sum"]


def box_sum(x: torch.Tensor, size: int) -> torch.Tensor:
    """Sum of each ``size x size`` window centred on a pixel, zeros outside the map.

    Args:
        x: (..., H, W) tensor. Integer and bool inputs are summed exactly in int64
            (a count; e.g. ``box_sum(mask, p) > 0`` is a ``p x p`` dilation), floating
            inputs in float64 (differences of running sums lose no precision that
            matters) and returned in their dtype.
        size: odd window side >= 1.

    Returns:
        (..., H, W): int64 for integer/bool inputs, ``x.dtype`` for floating ones.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be an odd integer >= 1, got {size}")
    r = size // 2
    acc = torch.float64 if x.is_floating_point() else torch.int64
    s = F.pad(x.to(acc), (r + 1, r, r + 1, r))  # a leading zero for the differences
    s = s.cumsum(-1)
    s = s[..., size:] - s[..., :-size]
    s = s.cumsum(-2)
    s = s[..., size:, :] - s[..., :-size, :]
    return s.to(x.dtype) if x.is_floating_point() else s

"""The voting temperature of Wexler et al. (2007), used by the editing tools."""

from __future__ import annotations

import torch


def wexler_temperature(distances: torch.Tensor, where: torch.Tensor | None = None) -> float:
    """Voting temperature of Wexler et al. (2007): weights ``exp(-d / (2 σ²))``.

    σ² is the 75th percentile of the nearest-neighbour distances (``distances[:, 0]``,
    over the pixels ``where`` if given, (B, 1, H, W) bool), so ``T = 2 σ²``. Returns
    ``inf`` (plain average) when every distance is 0 or none is finite.
    """
    d = distances[:, 0:1]
    d = d[where] if where is not None else d.flatten()
    d = d[torch.isfinite(d)]
    if d.numel() == 0:
        return float("inf")
    if d.numel() > 1 << 20:  # quantile's size limit; a strided subsample is plenty
        d = d[:: d.numel() // (1 << 20) + 1]
    q = float(torch.quantile(d.float(), 0.75))
    return 2.0 * q if q > 0 else float("inf")

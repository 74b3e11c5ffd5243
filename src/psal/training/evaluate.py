"""Evaluation of an inpainting network on images with fixed masks.

Metrics (values in [0, 1], averaged over images):

- on the whole completed image, as in the DeepFill paper's Table 1: ``l1`` (mean L1),
  ``l2`` (mean L2, i.e. MSE), ``psnr`` (dB) and ``tv`` (mean total variation of the
  completed image), plus ``ssim`` (Wang et al., gaussian window 11, sigma 1.5);
- in the hole only: ``l1_hole``, ``l2_hole`` and ``psnr_hole``, which are not diluted by
  the known pixels (copied exactly) and so compare methods more sharply.

Example:
    >>> from psal.models import DeepFillV1, Inpainter
    >>> from psal.data import InpaintingFolder, MaskGenerator
    >>> ds = InpaintingFolder(files, 64, MaskGenerator("rect", 64), fixed=True)  # doctest: +SKIP
    >>> evaluate(Inpainter(DeepFillV1(width=8)), ds)["psnr"]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .. import metrics

__all__ = ["METRICS", "evaluate", "format_table"]

#: Metric names, in table order.
METRICS = ("l1", "l2", "psnr", "tv", "ssim", "l1_hole", "l2_hole", "psnr_hole")


def image_metrics(
    completed: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-image metrics (each (B,)) of completed images against the originals."""
    hole = mask.bool()
    out = {
        "l1": metrics.l1(completed, target),
        "l2": metrics.l2(completed, target),
        "psnr": metrics.psnr(completed, target),
        "tv": metrics.total_variation(completed),
        "l1_hole": metrics.l1(completed, target, mask=hole),
        "l2_hole": metrics.l2(completed, target, mask=hole),
        "psnr_hole": metrics.psnr(completed, target, mask=hole),
    }
    if min(completed.shape[-2:]) >= 11:
        out["ssim"] = metrics.ssim(completed, target)
    return out


@torch.no_grad()
def evaluate(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    dataset: Dataset,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    limit: int | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Mean metrics of ``model`` over a fixed-mask dataset.

    Args:
        model: ``model(images, masks) -> completed``, images (B, 3, H, W) in [0, 1] and
            masks (B, 1, H, W) bool (e.g. a :class:`psal.models.Inpainter`).
        dataset: a dataset with fixed masks (``InpaintingFolder(..., fixed=True)``).
        batch_size: images per batch.
        device: where the images go (default: the model's device, or CPU).
        num_workers: data loader processes.
        limit: evaluate only the first ``limit`` images.
        progress: show a progress bar.

    Returns:
        ``{metric: mean}`` for :data:`METRICS` (PSNR averaged in dB over the images
        with a finite value) and ``"images"``, the number of images.
    """
    if device is None:
        device = getattr(model, "device", torch.device("cpu"))
    indices = list(range(len(dataset) if limit is None else min(limit, len(dataset))))
    subset = torch.utils.data.Subset(dataset, indices)
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(indices), desc="eval", unit="img", file=sys.stderr)
    for batch in loader:
        images = batch["image"].to(device)
        masks = batch["mask"].to(device)
        completed = model(images, masks).float()
        for name, values in image_metrics(completed, images.float(), masks).items():
            finite = values[torch.isfinite(values)]
            sums[name] = sums.get(name, 0.0) + float(finite.sum())
            counts[name] = counts.get(name, 0) + int(finite.numel())
        if bar is not None:
            bar.update(images.shape[0])
    if bar is not None:
        bar.close()
    results = {name: sums[name] / counts[name] if counts.get(name) else math.nan for name in sums}
    ordered = {name: results[name] for name in METRICS if name in results}
    ordered["images"] = len(indices)
    return ordered


def format_table(rows: dict[str, dict[str, Any]], columns: tuple[str, ...] = METRICS) -> str:
    """A plain-text table: one row per named result, one column per metric."""
    cols = [c for c in columns if any(c in r for r in rows.values())]
    extra = sorted({k for r in rows.values() for k in r} - set(cols))
    cols += extra
    head = ["", *cols]
    lines = [head]
    for name, r in rows.items():
        cells = [name]
        for c in cols:
            v = r.get(c, "")
            if isinstance(v, float):
                cells.append(f"{v:.2f}" if c.startswith("psnr") else f"{v:.4f}")
            else:
                cells.append(str(v))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for i, line in enumerate(lines):
        out.append(
            "  ".join(
                cell.rjust(widths[j]) if j else cell.ljust(widths[j]) for j, cell in enumerate(line)
            )
        )
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)

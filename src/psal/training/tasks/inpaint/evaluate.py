"""Evaluation of an inpainting network on images with fixed masks.

Metrics (values in [0, 1], averaged over images):

- on the whole completed image, as in the DeepFill paper's Table 1: ``l1`` (mean L1),
  ``l2`` (mean L2, i.e. MSE), ``psnr`` (dB) and ``tv`` (mean total variation of the
  completed image), plus ``ssim`` (Wang et al., gaussian window 11, sigma 1.5);
- in the hole only: ``l1_hole``, ``l2_hole`` and ``psnr_hole``, which are not diluted by
  the known pixels (copied exactly) and so compare methods more sharply.

The loop (batches, averaging, progress bar) is the task-generic
:func:`psal.training.evaluate.mean_metrics`.

Example:
    >>> from psal.models import DeepFillV1, Inpainter
    >>> from psal.data import InpaintingFolder, MaskGenerator
    >>> ds = InpaintingFolder(files, 64, MaskGenerator("rect", 64), fixed=True)  # doctest: +SKIP
    >>> evaluate(Inpainter(DeepFillV1(width=8)), ds)["psnr"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from .... import metrics
from ...evaluate import mean_metrics

__all__ = ["METRICS", "evaluate", "image_metrics"]

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

    def batch_metrics(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        images = batch["image"].to(device)
        masks = batch["mask"].to(device)
        completed = model(images, masks).float()
        return image_metrics(completed, images.float(), masks)

    return mean_metrics(
        batch_metrics,
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        limit=limit,
        progress=progress,
        order=METRICS,
    )

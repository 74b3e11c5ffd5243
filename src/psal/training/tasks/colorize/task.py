"""The ``colorize`` task: the guided colorizer trained on (gray target, colour reference) pairs.

One step: a batch of pairs, the network's chroma, and the loss

    huber(chroma, truth) + grad_weight * L1(∇chroma, ∇truth)
        + attended_weight * huber(attended chroma, truth)

(the gradient term keeps colour flat where the truth is flat and sharp at its edges;
the attended term asks the attention itself to fetch the right colours, so the encoders
learn to match). Validation and ``psal eval colorize`` report the chroma PSNR (Cb, Cr on
the 8-bit scale), the PSNR and SSIM of the RGB result and its colourfulness (Hasler and
Suesstrunk 2003, 0-255 scale) beside the truth's.

Example:
    >>> from psal.training import Trainer
    >>> from psal.training.tasks.colorize import ColorizeConfig
    >>> cfg = ColorizeConfig(steps=10, batch_size=4)  # doctest: +SKIP
    >>> cfg.data.path, cfg.data.image_size = "photos/", 64  # doctest: +SKIP
    >>> Trainer(cfg).fit()  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ....data.colorize import ColorizationPairs, find_pair_sources, split_sources
from ....metrics import psnr, ssim
from ....models import Colorizer
from ....utils.color import luma_chroma_to_rgb
from ...optim import make_scheduler
from ...runtime import Runtime
from .. import register_task
from ..base import Task, build_model
from .config import (
    COLORIZE_OPTIONS,
    EVAL_OPTIONS,
    ColorizeConfig,
    ColorizeEvalConfig,
    check_colorize_config,
    check_eval_config,
)

__all__ = ["ColorizeTask", "colorize_metrics", "colourfulness"]

Batch = dict[str, torch.Tensor]


def colourfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Colourfulness (Hasler and Suesstrunk 2003) of (B, 3, H, W) RGB in [0, 1], 0-255 scale."""
    x = rgb.flatten(2) * 255
    rg = x[:, 0] - x[:, 1]
    yb = 0.5 * (x[:, 0] + x[:, 1]) - x[:, 2]
    std = torch.sqrt(rg.var(1, unbiased=False) + yb.var(1, unbiased=False))
    mean = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    return std + 0.3 * mean


def _chroma_loss(pred: torch.Tensor, truth: torch.Tensor, delta: float) -> torch.Tensor:
    if delta == 0:
        return (pred - truth).abs().mean()
    return F.huber_loss(pred, truth, delta=delta)


def _grad_l1(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    dx = (pred.diff(dim=-1) - truth.diff(dim=-1)).abs().mean()
    dy = (pred.diff(dim=-2) - truth.diff(dim=-2)).abs().mean()
    return dx + dy


def colorize_metrics(
    model: Callable[[torch.Tensor, torch.Tensor], Any],
    dataset: ColorizationPairs,
    device: torch.device | str,
    limit: int | None = None,
    batch_size: int = 4,
    progress: bool = False,
) -> dict[str, float]:
    """Mean chroma PSNR, RGB PSNR and SSIM, colourfulness (and the truth's) over pairs.

    Each value is computed per pair, then averaged over the pairs; ``pairs`` (an int)
    is the number of pairs scored.

    Each mean is over the pairs where the value is finite (a pair coloured exactly, e.g.
    a blown-out white frame, has an infinite PSNR: left out of that mean, not counted
    as a zero), as :func:`psal.training.evaluate.mean_metrics` does for every task.

    Args:
        model: ``model(y, reference)`` returning an object with ``chroma`` (B, 2, H, W).
        dataset: fixed pairs (``ColorizationPairs(..., fixed=True)``).
        device: where the batches go.
        limit: only the first ``limit`` pairs.
        batch_size: pairs per batch.
        progress: a progress bar on stderr.
    """
    from ...evaluate import mean_metrics

    def batch_metrics(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        y = batch["y"].to(device)
        truth_c = batch["chroma"].to(device)
        ref = batch["reference"].to(device)
        chroma = model(y, ref).chroma.float()
        rgb = luma_chroma_to_rgb(y, chroma).clamp(0, 1)
        truth = luma_chroma_to_rgb(y, truth_c).clamp(0, 1)
        return {
            "chroma_psnr": psnr(chroma * 255, truth_c * 255, data_range=255),
            "psnr": psnr(rgb, truth),
            "ssim": ssim(rgb, truth),
            "colourfulness": colourfulness(rgb),
            "truth_colourfulness": colourfulness(truth),
        }

    out = mean_metrics(batch_metrics, dataset, batch_size=batch_size, limit=limit,
                       progress=progress)  # fmt: skip
    out["pairs"] = out.pop("images")  # a count (an int: the table printed "4.0000")
    return out


@register_task("colorize")
class ColorizeTask(Task):
    """The guided colorizer; network ``network`` and its optimiser ``network``."""

    help = "reference-guided colorization network"
    description = (
        "Train the guided colorizer (PSAL at scales 1, 1/2, 1/4; attention psal, dense or\n"
        "none) on pairs of a gray target and a colour reference: frame folders (video) or\n"
        "single photos whose reference is a random geometric transform of the photo."
    )
    train_examples = """\
  psal train colorize --data photos/ --out runs/col --steps 20000
  psal train colorize --data videos/ --pairs video --max-gap 8 --out runs/vid
  psal train colorize --data photos/ --attention none --out runs/none --image-size 64
  psal train colorize --resume --out runs/col"""
    eval_examples = """\
  psal eval colorize --checkpoint runs/col --data val_photos/
  psal eval colorize --checkpoint runs/col --data val_videos/ --pairs video --json m.json
  psal eval colorize --model psal-w8 --data val_photos/      # the network shipped with psal

Chroma PSNR (Cb, Cr, 8-bit scale), PSNR and SSIM of the RGB result, colourfulness of the
result and of the truth, on fixed pairs (--pair-seed)."""
    config_class = ColorizeConfig
    options = COLORIZE_OPTIONS
    eval_config_class = ColorizeEvalConfig
    eval_options = EVAL_OPTIONS
    progress_keys = ("loss", "chroma")
    architecture_keys = ("model.",)

    @classmethod
    def check_config(cls, config: ColorizeConfig) -> None:  # noqa: D102
        check_colorize_config(config)

    def __init__(self, config: ColorizeConfig, runtime: Runtime) -> None:
        super().__init__(config, runtime)
        net = build_model(config.model.name, config.model.kwargs)
        low = int(getattr(net, "min_size", 1))
        size = config.data.image_size
        if size < low:
            self.options.fail("data.image_size", f">= {low} for this network", size)
        d = config.data
        with self.scanning_data():  # skipped files named once, not by every rank
            sources = find_pair_sources(d.path, d.pairs)
            # by a hash of each photo's or sequence's path: the same split for any seed
            train, val = split_sources(sources, d.val_fraction, d.val_max, root=d.path)
        self.train_set = ColorizationPairs(train, d.image_size, d.max_gap)
        self.val_set = (
            ColorizationPairs(val, d.image_size, d.max_gap, fixed=True, pair_seed=d.pair_seed)
            if val
            else None
        )
        self.network = net.to(runtime.device)
        self.networks = {"network": self.network}
        o = config.optim
        opt = torch.optim.Adam(self.network.parameters(), lr=o.lr, betas=o.betas)
        self.optimizers = {"network": opt}
        self.schedulers = {"network": make_scheduler(opt, o, config.steps)}
        self.net_train = runtime.wrap(self.network)

    def train_step(self, next_batch: Callable[[], Batch], images: bool) -> tuple[dict, Any]:
        """One update on a batch of pairs."""
        lc = self.config.loss
        batch = next_batch()
        with self.runtime.autocast():
            out = self.net_train(batch["y"], batch["reference"], return_flow=images)
        pred, att = out.chroma.float(), out.attended.float()
        truth = batch["chroma"]
        chroma = _chroma_loss(pred, truth, lc.huber_delta)
        grad = _grad_l1(pred, truth)
        attended = _chroma_loss(att, truth, lc.huber_delta)
        loss = chroma + lc.grad_weight * grad + lc.attended_weight * attended
        norm = self.runtime.step(loss, "network", "loss")
        logs = {
            "loss": loss.item(),
            "chroma": chroma.item(),
            "grad": grad.item(),
            "attended": attended.item(),
        }
        if norm is not None:
            logs["grad_norm"] = norm
        return logs, (out, batch)

    def validate(self) -> dict[str, float]:
        """Metrics on the fixed validation pairs."""
        if self.val_set is None:
            return {}
        try:
            self.network.eval()
            return colorize_metrics(
                self.network, self.val_set, self.runtime.device, batch_size=self.config.batch_size
            )
        finally:
            self.network.train()

    def summary(self, results: dict[str, float]) -> str:  # noqa: D102
        return f"val chroma psnr {results['chroma_psnr']:.2f} dB, ssim {results['ssim']:.3f}"

    def log_images(self, writer: Any, step: int, visuals: Any) -> None:
        """Target (gray), reference, result, truth, and where each pixel took its colour."""
        out, batch = visuals
        n = min(4, batch["y"].shape[0])
        y = batch["y"][:n].float()
        panels = [
            y.expand(-1, 3, -1, -1),
            batch["reference"][:n].float(),
            luma_chroma_to_rgb(y, out.chroma[:n].detach().float()),
            luma_chroma_to_rgb(y, batch["chroma"][:n].float()),
        ]
        if out.flow is not None:
            from ....viz import flow_to_color

            color = flow_to_color(out.flow[:n].float())
            color = color.float() / 255 if color.dtype == torch.uint8 else color.float()
            panels.append(color)
        rows = [torch.cat([p[i].clamp(0, 1).cpu() for p in panels], 2) for i in range(n)]
        writer.add_image("samples/target_reference_result_truth_source", torch.cat(rows, 1), step)

    def metadata(self) -> dict[str, Any]:
        """The network's description and the training crop size."""
        m = self.config.model
        return {
            "network": {"name": m.name, "kwargs": m.kwargs},
            "image_size": self.config.data.image_size,
        }

    @classmethod
    def load_inference(
        cls, path: str | os.PathLike[str], device: Any = None, **kwargs: Any
    ) -> Colorizer:
        """:meth:`psal.models.Colorizer.from_checkpoint`."""
        return Colorizer.from_checkpoint(path, device=device)

    @classmethod
    def evaluate(cls, config: ColorizeEvalConfig, progress: bool = False) -> dict[str, Any]:
        """Metrics of a checkpoint on fixed pairs of ``config.data``."""
        from ....models.io import load_weights

        check_eval_config(config)
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = cls.load_inference(config.checkpoint, device=device)
        size = config.image_size
        if size is None:
            size = int(load_weights(config.checkpoint, task="colorize")[1].get("image_size", 128))
        dataset = ColorizationPairs(
            find_pair_sources(config.data, config.pairs, "--data", decode=True, limit=config.limit),
            size,
            config.max_gap,
            fixed=True,
            pair_seed=config.pair_seed,
        )
        torch.manual_seed(config.seed)
        metrics = colorize_metrics(model, dataset, device, limit=config.limit,
                                   progress=progress)  # fmt: skip
        return {
            "image_size": size,
            "pairs": config.pairs,
            "pair_seed": config.pair_seed,
            "seed": config.seed,
            "metrics": metrics,
        }

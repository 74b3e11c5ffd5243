"""The ``upscale`` task: train, validate and evaluate a super-resolution network.

Training: pairs from :class:`psal.data.SuperResolutionFolder` (random HR crops, flips,
90-degree rotations, LR by antialiased bicubic downscaling), the network
``model.name`` (default ``edsr_psal``) with ``model.kwargs`` (``scale`` is set from
``data.scale``), L1 loss, Adam with ``optim.scheduler`` (``cosine`` from lr 1e-3 by
default, or ``step``: halved at 50% and 75% of the steps).

Metrics (:func:`sr_metrics`), the super-resolution literature's convention: PSNR and
SSIM on the Y channel of YCbCr (BT.601, 16-235) with ``scale`` pixels shaved at every
border, PSNR on RGB, and the gradient-energy ratio (mean squared finite differences of
the output over those of the original: below 1 = blurrier, the score PSNR does not
show).

``psal eval upscale`` scores whole images of a folder (cropped to multiples of the
scale; LR by the same degradation, quantised to 8 bits as image files are) for the
network, bicubic interpolation and the training-free :func:`psal.upscale`, in one table.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .... import metrics
from ....data import (
    SuperResolutionFolder,
    degrade,
    list_images,
    readable_images,
    split_files,
    usable_images,
)
from ....data.folder import _load_rgb
from ....models import Upscaler
from ...config import (
    BASE_OPTIONS,
    BaseConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    Option,
    OptionTable,
)
from ...optim import make_scheduler
from ...runtime import Runtime
from .. import register_task
from ..base import Task, build_model

__all__ = ["UpscaleConfig", "UpscaleEvalConfig", "UpscaleTask", "sr_metrics"]

Batch = dict[str, torch.Tensor]
SCALES = (2, 3, 4)
SCHEDULES = ("step", "cosine", "none")


def _model_kwargs() -> dict[str, Any]:
    return {"width": 32, "blocks": 6, "attention": "psal", "attention_options": {},
            "guide": "image", "guide_gate": True}  # fmt: skip


@dataclass
class UpscaleModel(ModelConfig):
    """The network: ``name`` and ``kwargs`` for ``create_model``.

    ``kwargs``: ``width``, ``blocks``, ``attention`` (psal, dense, none),
    ``attention_options``, ``guide`` (what the cross-scale block searches: ``image`` by
    default, ``features`` or ``both``), ``guide_gate`` (a per-pixel gate on the image
    guide's detail, on by default); runs stored before these options searched
    ``features`` without a gate and are read so; ``scale`` comes from ``data.scale``.
    """

    name: str = "edsr_psal"
    kwargs: dict[str, Any] = field(default_factory=_model_kwargs)


@dataclass
class UpscaleData(DataConfig):
    """Training pairs.

    Attributes:
        scale: 2, 3 or 4.
        patch: side of the LR training crops (HR crops: ``patch * scale``); images
            smaller than the HR crop are skipped (counted).
    """

    scale: int = 2
    patch: int = 48


@dataclass
class UpscaleOptim(OptimConfig):
    """Adam, lr 1e-3 with a cosine decay by default (``scheduler``: ``cosine``, ``step``).

    EDSR used 1e-4 halved periodically on GPUs; for the small CPU networks
    ``benchmarks/train_upscale.py`` measured 1e-3 with a cosine decay +0.27 dB above
    2e-4 constant at equal CPU time (``docs/upscale.md``).
    """

    lr: float = 1e-3
    scheduler: str = "cosine"


@dataclass
class UpscaleConfig(BaseConfig):
    """A super-resolution training run."""

    model: UpscaleModel = field(default_factory=UpscaleModel)
    data: UpscaleData = field(default_factory=UpscaleData)
    optim: UpscaleOptim = field(default_factory=UpscaleOptim)
    out: str = "runs/upscale"
    batch_size: int = 8
    steps: int = 20_000


def _attentions() -> tuple[str, ...]:
    from ....models.edsr import ATTENTIONS

    return ATTENTIONS


def _guides() -> tuple[str, ...]:
    from ....models.edsr import GUIDES

    return GUIDES


UPSCALE_OPTIONS = BASE_OPTIONS.extend(
    [
        Option("out", "--out", "run folder for checkpoints and logs"),
        Option("steps", "--steps", "total training steps"),
        Option("data.scale", "--scale", "upscaling factor: 2, 3 or 4"),
        Option("data.patch", "--patch", "side of the LR training crops, >= 8"),
        Option("model.kwargs.attention", "--attention", "attention blocks", _attentions),
        Option("model.kwargs.guide", "--guide", "what the cross-scale block searches", _guides),
        Option("model.kwargs.width", "--width", "feature channels, >= 4"),
        Option("model.kwargs.blocks", "--blocks", "residual blocks, >= 0"),
        Option("optim.scheduler", "--scheduler", "learning-rate schedule", SCHEDULES),
    ]
)


@dataclass
class UpscaleEvalConfig:
    """Settings of ``psal eval upscale``.

    Attributes:
        checkpoint: weights file or run folder.
        data: folder of HR images (searched recursively).
        limit: only the first ``limit`` images (None: all).
        baselines: also score bicubic and the training-free ``psal.upscale``.
        seed: randomness of PatchMatch (network attention and psal.upscale).
        device: ``auto``, ``cpu``, ``cuda``, ...
    """

    checkpoint: str = ""
    data: str = ""
    limit: int | None = None
    baselines: bool = True
    seed: int = 0
    device: str = "auto"


EVAL_OPTIONS = OptionTable(
    [
        Option("checkpoint", "--checkpoint", "weights file or run folder", required=True),
        Option("data", "--data", "folder of HR images (searched recursively)", required=True),
        Option("limit", "--limit", "evaluate only the first N images (N >= 1)"),
        Option("seed", "--seed", "random seed of PatchMatch"),
        Option("device", "--device", "torch device: auto, cpu, cuda, cuda:N, mps"),
    ]
)


def _y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of (B, 3, H, W) RGB in [0, 1], in [16/255, 235/255] (MATLAB rgb2ycbcr)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def _grad_energy(x: torch.Tensor) -> torch.Tensor:
    return x.diff(dim=-1).pow(2).mean((1, 2, 3)) + x.diff(dim=-2).pow(2).mean((1, 2, 3))


def _finite_mean(values: list[float]) -> float:
    """Mean of the finite ``values`` (NaN if none is)."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def sr_metrics(out: torch.Tensor, hr: torch.Tensor, scale: int) -> dict[str, float]:
    """Super-resolution scores of (1, 3, H, W) images in [0, 1] (``out`` quantised to 8 bits).

    Returns:
        ``y_psnr``, ``y_ssim`` (Y channel, ``scale`` pixels shaved per border),
        ``rgb_psnr`` (same shave) and ``grad_ratio`` (gradient energy of ``out`` over
        that of ``hr``, on Y).
    """
    out = (out.clamp(0, 1) * 255).round() / 255
    s = scale
    o, h = out[..., s:-s, s:-s].double(), hr[..., s:-s, s:-s].double()
    yo, yh = _y(o), _y(h)
    truth = float(_grad_energy(yh))  # 0 on a flat image: the ratio is undefined (NaN)
    return {
        "y_psnr": float(metrics.psnr(yo, yh)),
        "y_ssim": float(metrics.ssim(yo, yh)),
        "rgb_psnr": float(metrics.psnr(o, h)),
        "grad_ratio": float(_grad_energy(yo)) / truth if truth > 1e-12 else math.nan,
    }


@register_task("upscale")
class UpscaleTask(Task):
    """Single-image super-resolution (see the module docstring)."""

    help = "super-resolution network (EDSR with PSAL non-local blocks)"
    description = ("Train an EDSR-style super-resolution network with PSAL non-local "
                   "attention (in-scale and cross-scale) on a folder of HR images.")  # fmt: skip
    train_examples = (
        "  psal train upscale --data photos/ --out runs/sr --scale 2 --steps 20000\n"
        "  psal train upscale --data photos/ --out runs/sr-none --attention none\n"
    )
    eval_examples = (
        "  psal eval upscale --checkpoint runs/sr --data val/ --json sr.json\n"
        "  psal eval upscale --model edsr-x2 --data val/      # the network shipped with psal\n"
    )
    config_class = UpscaleConfig
    options = UPSCALE_OPTIONS
    eval_config_class = UpscaleEvalConfig
    eval_options = EVAL_OPTIONS
    progress_keys = ("l1",)
    architecture_keys = ("model.", "data.scale")

    @classmethod
    def check_config(cls, config: UpscaleConfig) -> None:  # noqa: D102
        opts = cls.options
        opts.check_base(config)
        if config.data.scale not in SCALES or isinstance(config.data.scale, bool):
            opts.fail("data.scale", "2, 3 or 4", config.data.scale)
        opts.integer(config, "data.patch", 8)
        kw = config.model.kwargs
        if "scale" in kw and kw["scale"] != config.data.scale:
            opts.fail("model.kwargs.scale", f"absent or data.scale ({config.data.scale})",
                      kw["scale"])  # fmt: skip
        for key, low in (("width", 4), ("blocks", 0)):
            v = kw.get(key, 4)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                opts.fail(f"model.kwargs.{key}", f"an integer >= {low}", v)
        if not isinstance(kw.get("attention_options", {}), dict):
            opts.fail("model.kwargs.attention_options", "a table/object", kw["attention_options"])
        if config.optim.scheduler not in ("step", "cosine", "none"):
            opts.fail("optim.scheduler", "step, cosine or none", config.optim.scheduler)

    @classmethod
    def upgrade_config(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Runs stored before ``guide`` / ``guide_gate`` existed: features, no gate."""
        model = data.get("model")
        kwargs = model.get("kwargs") if isinstance(model, dict) else None
        if isinstance(kwargs, dict) and not {"guide", "guide_gate"} <= set(kwargs):
            kwargs = {"guide": "features", "guide_gate": False, **kwargs}
            data = {**data, "model": {**model, "kwargs": kwargs}}
        return data

    def __init__(self, config: UpscaleConfig, runtime: Runtime) -> None:
        super().__init__(config, runtime)
        d = config.data
        if not d.path:
            raise ValueError("data.path (--data) must name a folder of images")
        name = "data.path (--data)"
        with self.scanning_data() as reports:  # skipped files named once, not by every rank
            # one pass over the headers: unreadable files named, small ones counted
            listed = list_images(d.path)
            files, skipped = usable_images(listed, d.patch * d.scale, name)
            # by a hash of each path, counted before the size filter: x2 and x4 runs
            # (and any seed) hold out the same images
            train, val = split_files(files, d.val_fraction, d.val_max, root=d.path, listed=listed)
        if skipped and reports:
            print(f"psal: warning: {skipped} image(s) smaller than the {d.patch * d.scale}"
                  " HR crop skipped", file=sys.stderr)  # fmt: skip
        self.train_set = SuperResolutionFolder(train, d.scale, d.patch)
        self.val_set = SuperResolutionFolder(val, d.scale, d.patch, fixed=True) if val else None
        self.net = build_model(config.model.name, self._net_kwargs()).to(runtime.device)
        self.networks = {"net": self.net}
        self.net_train = runtime.wrap(self.net)
        o = config.optim
        opt = torch.optim.Adam(self.net.parameters(), lr=o.lr, betas=o.betas)
        self.optimizers = {"net": opt}
        self.schedulers = {"net": make_scheduler(opt, o, config.steps)}

    def _net_kwargs(self) -> dict[str, Any]:
        return {**self.config.model.kwargs, "scale": self.config.data.scale}

    def train_step(self, next_batch: Callable[[], Batch], images: bool) -> tuple[dict, Any]:
        """One L1 step on a batch of LR/HR pairs."""
        batch = next_batch()
        with self.runtime.autocast():
            out = self.net_train(batch["lr"])
            loss = (out.float() - batch["hr"]).abs().mean()
        self.runtime.step(loss, "net", "l1 loss")
        return {"l1": loss.item()}, ((out.detach(), batch) if images else None)

    def validate(self) -> dict[str, float]:
        """Y-PSNR / SSIM of the validation crops, and bicubic's for reference."""
        if self.val_set is None:
            return {}
        s = self.config.data.scale
        self.net.eval()
        try:
            rows = []
            for i in range(len(self.val_set)):
                item = self.val_set[i]
                lr = item["lr"][None].to(self.runtime.device)
                hr = item["hr"][None].to(self.runtime.device)
                out = self.net(lr)
                bic = F.interpolate(lr, scale_factor=s, mode="bicubic", align_corners=False)
                m, b = sr_metrics(out, hr, s), sr_metrics(bic, hr, s)
                rows.append((m["y_psnr"], m["y_ssim"], b["y_psnr"]))
            # finite values only (a flat crop is reproduced exactly: infinite PSNR)
            return {
                key: _finite_mean([r[i] for r in rows])
                for i, key in enumerate(("y_psnr", "y_ssim", "bicubic_y_psnr"))
            }
        finally:
            self.net.train()

    def summary(self, results: dict[str, float]) -> str:  # noqa: D102
        return (f"val Y-PSNR {results['y_psnr']:.2f} dB (bicubic "
                f"{results['bicubic_y_psnr']:.2f}), SSIM {results['y_ssim']:.4f}")  # fmt: skip

    def log_images(self, writer: Any, step: int, visuals: Any) -> None:
        """Bicubic, network output and original, side by side."""
        if visuals is None:
            return
        out, batch = visuals
        n = min(4, out.shape[0])
        s = self.config.data.scale
        bic = F.interpolate(batch["lr"][:n].float(), scale_factor=s, mode="bicubic",
                            align_corners=False)  # fmt: skip
        panels = [bic, out[:n].float(), batch["hr"][:n].float()]
        rows = [torch.cat([p[i].clamp(0, 1).cpu() for p in panels], 2) for i in range(n)]
        writer.add_image("samples/bicubic_output_original", torch.cat(rows, 1), step)

    def metadata(self) -> dict[str, Any]:
        """The network's description (for :class:`psal.models.Upscaler`)."""
        return {
            "network": {"name": self.config.model.name, "kwargs": self._net_kwargs()},
            "scale": self.config.data.scale,
        }

    @classmethod
    def load_inference(cls, path: str | os.PathLike[str], device: Any = None) -> Upscaler:
        """:meth:`psal.models.Upscaler.from_checkpoint`."""
        return Upscaler.from_checkpoint(path, device=device)

    @classmethod
    def evaluate(cls, config: UpscaleEvalConfig, progress: bool = False) -> dict[str, Any]:
        """Network, bicubic and ``psal.upscale`` on whole images: one table.

        Returns:
            ``{"metrics": {...network...}, "rows": {method: metrics}, "images": n,
            "scale": s, "seed": ...}``.
        """
        from ....editing import upscale as psal_upscale

        EVAL_OPTIONS.check_eval(config)
        EVAL_OPTIONS.integer(config, "seed", 0)
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = cls.load_inference(config.checkpoint, device=device)
        s = model.scale
        # decoded whole: a truncated file is skipped (named) before any work, not met
        # half-way through the table; images too small to score are skipped (counted)
        # before they take a place under --limit
        smallest = metrics.SSIM_WINDOW + 2 * s  # SSIM's window after the shave
        files = readable_images(list_images(config.data), "--data", decode=True,
                                limit=config.limit, min_side=smallest)  # fmt: skip
        methods: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"network": model}
        if config.baselines:
            methods["bicubic"] = lambda lr: F.interpolate(
                lr, scale_factor=s, mode="bicubic", align_corners=False
            )
            methods["psal.upscale"] = lambda lr: psal_upscale(lr, s, seed=config.seed)
        sums: dict[str, dict[str, float]] = {m: {} for m in methods}
        counts: dict[str, dict[str, int]] = {m: {} for m in methods}  # finite values
        n = 0
        for path in files:
            im = _load_rgb(path)
            w, h = im.size
            w, h = w - w % s, h - h % s  # each side >= 11 + 2 s (min_side above)
            hr = torch.frombuffer(bytearray(im.crop((0, 0, w, h)).tobytes()), dtype=torch.uint8)
            hr = hr.view(h, w, 3).permute(2, 0, 1)[None].float() / 255
            lr = (degrade(hr, s).clamp(0, 1) * 255).round() / 255  # an 8-bit LR file
            torch.manual_seed(config.seed)
            for name, fn in methods.items():
                t0 = time.perf_counter()
                out = fn(lr.to(device) if name == "network" else lr).cpu()
                scores = sr_metrics(out, hr, s)
                scores["seconds"] = time.perf_counter() - t0
                for k, v in scores.items():
                    if math.isfinite(v):  # an exact result (a flat image) has an infinite PSNR
                        sums[name][k] = sums[name].get(k, 0.0) + v
                        counts[name][k] = counts[name].get(k, 0) + 1
            n += 1
            if progress:
                print(f"\r{n}/{len(files)} images", end="", file=sys.stderr)
        if progress:
            print(file=sys.stderr)  # the table starts on a line of its own
        rows = {m: {k: sums[m][k] / c for k, c in counts[m].items()} for m in methods}
        for m in methods:  # a metric finite on no image: NaN (none scored), not missing
            for k in scores:
                rows[m].setdefault(k, math.nan)
        if "bicubic" in rows and all(
            math.isfinite(rows[m]["y_psnr"]) for m in ("network", "bicubic")
        ):
            rows["network"]["gain_vs_bicubic"] = (
                rows["network"]["y_psnr"] - rows["bicubic"]["y_psnr"]
            )
        return {"metrics": rows["network"], "rows": rows, "images": n, "scale": s,
                "seed": config.seed}  # fmt: skip

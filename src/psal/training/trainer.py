"""The DeepFill training loop: WGAN-GP (or SN-PatchGAN) with reconstruction losses.

One training **step** is ``n_critic`` critic updates, each on a fresh batch, then one
generator update on a fresh batch (the reference code's schedule). Per step:

- critic: ``wgan-gp``: global critic on the completed image and local critic on the
  hole's box, loss ``E[D(fake)] - E[D(real)]`` plus ``gp_weight`` times the (masked)
  gradient penalties; ``sn-patchgan``: hinge loss on image + mask;
- generator: spatially discounted L1 in the hole and L1 outside it, for the coarse
  (x ``coarse_weight``) and refined outputs, plus ``adv_weight`` times the adversarial
  loss of the completed image.

Adam (lr 1e-4, betas 0.5 and 0.9), autocast (bfloat16, or float16 with gradient
scaling) on CUDA, optional gradient clipping, DistributedDataParallel under torchrun,
rank-0 logging (TensorBoard, progress bar) and atomic checkpoints with everything
needed to continue exactly (see :mod:`psal.training.checkpoint`).

Example:
    >>> cfg = TrainConfig(steps=10, batch_size=4)  # doctest: +SKIP
    >>> cfg.data.path, cfg.data.image_size, cfg.model.width = "photos/", 64, 8
    >>> Trainer(cfg).fit()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from .._checks import check_choice
from ..data import InpaintingFolder, MaskGenerator, StreamSampler, list_images, split_files
from ..models import Inpainter, create_model
from ..models import losses as L
from ..models.io import FORMAT
from . import distributed
from .checkpoint import (
    capture_rng,
    existing_step,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from .config import TrainConfig, config_from_dict, config_to_dict, key_name, validate_config
from .evaluate import evaluate

__all__ = ["Trainer", "crop_boxes"]

AMP_MODES = ("auto", "bf16", "fp16", "off")


def crop_boxes(x: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop a ``size`` window at each sample's box ``(top, left, ...)``: (B, C, h, w)."""
    h, w = size
    return torch.stack(
        [x[i, :, t : t + h, s : s + w] for i, (t, s) in enumerate(boxes[:, :2].tolist())]
    )


def _amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    check_choice(mode, "optim.amp", AMP_MODES)
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


class Trainer:
    """Trains an inpainting generator and its critics from a :class:`TrainConfig`.

    Args:
        config: the run's settings (``config.data.path`` must be set).
        resume: a checkpoint (weights file, or a run folder: its latest) to continue
            from, exactly: weights, optimisers, step, RNG states, data position.

    Under torchrun (``WORLD_SIZE`` > 1) it joins the process group itself; call
    :meth:`close` when done to leave it (and close the TensorBoard writer).

    The config is checked (:func:`~psal.training.config.validate_config`, then the image
    size against the generator) before anything is written. Without ``resume``,
    ``config.out`` must not already hold a run (checkpoints): a new run never mixes its
    checkpoints with an old one's.
    """

    def __init__(self, config: TrainConfig, resume: str | Path | None = None) -> None:
        self.config = config
        cfg = validate_config(config)
        if not cfg.data.path:
            raise ValueError("data.path (--data) must name a folder of images")
        self.out = Path(cfg.out)
        if resume is None and (done := existing_step(self.out)) is not None:
            raise ValueError(
                f"--out {self.out} already holds a run (step {done}); pass --resume to "
                "continue it or choose another --out"
            )
        self.info, self.device = distributed.setup(cfg.device)
        self.amp_dtype = _amp_dtype(cfg.optim.amp, self.device)

        # Networks: identical initialisation on every rank.
        torch.manual_seed(cfg.seed)
        self.generator_spec = {
            "name": cfg.model.generator,
            "kwargs": {
                "width": cfg.model.width,
                "attention": cfg.model.attention,
                "attention_options": dict(cfg.model.attention_options),
            },
        }
        self.generator = create_model(cfg.model.generator, **self.generator_spec["kwargs"]).to(
            self.device
        )
        size = cfg.data.image_size
        multiple = int(getattr(self.generator, "size_multiple", 1))
        low = int(getattr(self.generator, "min_size", 1))
        if size % multiple or size < low:
            raise ValueError(
                f"{key_name('data.image_size')} must be a multiple of {multiple} and at "
                f"least {low} for this generator (attention {cfg.model.attention!r}), got {size}"
            )

        # Data: one sorted file list, a seeded split, per-sample masks (no torch RNG).
        self.masks = MaskGenerator(cfg.data.masks, size, cfg.data.hole_size, cfg.data.max_delta)
        files = list_images(cfg.data.path)
        train_files, val_files = split_files(
            files, cfg.data.val_fraction, cfg.data.val_max, seed=cfg.seed
        )
        self.train_set = InpaintingFolder(train_files, size, self.masks, cfg.data.resize)
        self.val_set = (
            InpaintingFolder(val_files, size, self.masks, cfg.data.resize, fixed=True)
            if val_files
            else None
        )

        self.critics: dict[str, nn.Module] = {}
        if cfg.model.critic == "wgan-gp":
            self.critics["critic_global"] = create_model(
                "wgan_global_critic", input_size=size, width=cfg.model.critic_width
            )
            self.critics["critic_local"] = create_model(
                "wgan_local_critic",
                input_size=self.masks.hole_size[0],
                width=cfg.model.critic_width,
            )
            if self.masks.hole_size[0] != self.masks.hole_size[1]:
                raise ValueError("the local WGAN critic needs a square hole_size")
        else:
            self.critics["critic_patch"] = create_model(
                "sn_patchgan_critic", width=cfg.model.critic_width
            )
        for c in self.critics.values():
            c.to(self.device)
        critic_params = [p for c in self.critics.values() for p in c.parameters()]
        self.opt_g = torch.optim.Adam(
            self.generator.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas
        )
        self.opt_d = torch.optim.Adam(critic_params, lr=cfg.optim.critic_lr, betas=cfg.optim.betas)
        fp16 = self.amp_dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)

        # Distributed wrappers: used for the updates of their own network only.
        self.g_train: nn.Module = self.generator
        self.d_train: dict[str, nn.Module] = dict(self.critics)
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_train = DistributedDataParallel(self.generator, device_ids=ids)
            self.d_train = {
                k: DistributedDataParallel(c, device_ids=ids) for k, c in self.critics.items()
            }

        self.step = 0
        self.skipped_steps = 0  # updates skipped for non-finite gradients
        self.position = 0  # keys of this rank's data stream consumed so far
        self.digest = ""  # running hash of the image indices this rank consumed
        # Training randomness (gradient penalty, PatchMatch seeds) differs per rank.
        torch.manual_seed(cfg.seed + 1_000_003 * (self.info.rank + 1))
        # Fail now, not after the first step, if TensorBoard is wanted but missing.
        self._writer_class = (
            _summary_writer_class() if cfg.tensorboard and self.info.is_main else None
        )
        if resume is not None:
            self._load(resume)
        self._writer: Any = None
        self._loader_iter: Iterator[dict[str, torch.Tensor]] | None = None

    # ----------------------------------------------------------------- data
    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        cfg = self.config
        sampler = StreamSampler(
            len(self.train_set),
            seed=cfg.seed,
            rank=self.info.rank,
            world_size=self.info.world_size,
            start=self.position,
        )
        loader = DataLoader(
            self.train_set,
            batch_size=cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.data.num_workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            # Its own generator: creating the iterator must not draw from the global RNG
            # (a resumed run creates one at a different step). The samples' randomness
            # comes from their keys, not from torch.
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        return iter(loader)

    def _next_batch(self) -> dict[str, torch.Tensor]:
        if self._loader_iter is None:
            self._loader_iter = self._batches()
        batch = next(self._loader_iter)
        self.position += batch["image"].shape[0]
        h = hashlib.sha1(self.digest.encode())
        h.update(batch["index"].numpy().tobytes())
        self.digest = h.hexdigest()
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    # ---------------------------------------------------------------- steps
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _update(
        self, loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, params
    ) -> float | None:
        """Backward, unscale, clip, step. Returns the gradient norm when it was computed.

        With mixed precision (or clipping) the gradient norm is checked: a step with a
        non-finite gradient is skipped (the float16 gradient scaler does this itself; for
        bfloat16 it is done here) and counted in :attr:`skipped_steps`.
        """
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        clip = self.config.optim.grad_clip
        norm = None
        if clip > 0 or self.amp_dtype is not None:
            scaler.unscale_(opt)
            norm = float(nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf))
        if norm is not None and not math.isfinite(norm):
            self.skipped_steps += 1
            if not scaler.is_enabled():
                opt.zero_grad(set_to_none=True)
                return norm
        scaler.step(opt)
        scaler.update()
        return norm

    def critic_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One critic update on ``batch``; returns its losses."""
        cfg = self.config
        real = batch["image"] * 2 - 1
        mask = batch["mask"]
        with torch.no_grad(), self._autocast():
            fake = self.generator(real, mask).completed.float()
        logs: dict[str, float] = {}
        if cfg.model.critic == "wgan-gp":
            hole = self.masks.hole_size
            real_l, fake_l = (
                crop_boxes(real, batch["box"], hole),
                crop_boxes(fake, batch["box"], hole),
            )
            mask_l = crop_boxes(mask, batch["box"], hole)
            d_g, d_l = self.d_train["critic_global"], self.d_train["critic_local"]
            with self._autocast():
                s_g = d_g(torch.cat([real, fake])).float()
                s_l = d_l(torch.cat([real_l, fake_l])).float()
            n = real.shape[0]
            loss_g = L.wgan_critic_loss(s_g[:n], s_g[n:])
            loss_l = L.wgan_critic_loss(s_l[:n], s_l[n:])
            gp_g = L.gradient_penalty(d_g, real, fake, mask if cfg.loss.gp_masked else None)
            gp_l = L.gradient_penalty(d_l, real_l, fake_l, mask_l if cfg.loss.gp_masked else None)
            gp = cfg.loss.gp_weight * (gp_g + gp_l)
            loss = loss_g + loss_l + gp
            logs.update(d_global=loss_g.item(), d_local=loss_l.item(), gp=gp.item())
        else:
            d_p = self.d_train["critic_patch"]
            with self._autocast():
                s = d_p(torch.cat([real, fake]), torch.cat([mask, mask])).float()
            n = real.shape[0]
            loss = L.hinge_critic_loss(s[:n], s[n:])
        params = [p for c in self.critics.values() for p in c.parameters()]
        norm = self._update(loss, self.opt_d, self.scaler_d, params)
        logs["d_loss"] = loss.item()
        if norm is not None:
            logs["d_grad_norm"] = norm
        return logs

    def generator_step(
        self, batch: dict[str, torch.Tensor], return_flow: bool = False
    ) -> tuple[dict[str, float], Any]:
        """One generator update on ``batch``; returns its losses and the outputs."""
        cfg, lc = self.config, self.config.loss
        real = batch["image"] * 2 - 1
        mask = batch["mask"]
        weights = L.spatial_discount(mask, lc.discount_gamma)
        for c in self.critics.values():
            c.requires_grad_(False)
        try:
            with self._autocast():
                out = self.g_train(real, mask, return_flow=return_flow)
                hole_c = L.discounted_l1(out.coarse, real, mask, weights=weights)
                hole_f = L.discounted_l1(out.refined, real, mask, weights=weights)
                known_c = L.known_l1(out.coarse, real, mask)
                known_f = L.known_l1(out.refined, real, mask)
                fake = out.completed
                if cfg.model.critic == "wgan-gp":
                    hole = self.masks.hole_size
                    adv = lc.global_adv_weight * L.wgan_generator_loss(
                        self.critics["critic_global"](fake)
                    ) + L.wgan_generator_loss(
                        self.critics["critic_local"](crop_boxes(fake, batch["box"], hole))
                    )
                else:
                    adv = L.hinge_generator_loss(self.critics["critic_patch"](fake, mask))
            loss = (
                lc.l1_weight * (lc.coarse_weight * hole_c + hole_f)
                + lc.ae_weight * (lc.coarse_weight * known_c + known_f)
                + lc.adv_weight * adv.float()
            )
        finally:
            for c in self.critics.values():
                c.requires_grad_(True)
        norm = self._update(loss, self.opt_g, self.scaler_g, list(self.generator.parameters()))
        logs = {
            "g_loss": loss.item(),
            "l1_hole_coarse": hole_c.item(),
            "l1_hole_fine": hole_f.item(),
            "l1_known_coarse": known_c.item(),
            "l1_known_fine": known_f.item(),
            "adv": adv.item(),
        }
        if norm is not None:
            logs["g_grad_norm"] = norm
        return logs, out

    def train_step(self, return_flow: bool = False) -> tuple[dict[str, float], Any, dict]:
        """``n_critic`` critic updates then one generator update; advances :attr:`step`."""
        self.generator.train()
        logs: dict[str, float] = {}
        for _ in range(self.config.optim.n_critic):
            for k, v in self.critic_step(self._next_batch()).items():
                logs[k] = logs.get(k, 0.0) + v / self.config.optim.n_critic
        batch = self._next_batch()
        g_logs, out = self.generator_step(batch, return_flow=return_flow)
        logs.update(g_logs)
        logs["skipped_steps"] = float(self.skipped_steps)
        self.step += 1
        return logs, out, batch

    # ------------------------------------------------------------ validation
    def inpainter(self) -> Inpainter:
        """The current generator wrapped for inference (shares its parameters)."""
        return Inpainter(self.generator, training_size=self.config.data.image_size, max_size=0)

    def validate(self) -> dict[str, float]:
        """Metrics on the validation split (fixed masks); {} without validation images.

        Runs in its own RNG context, so validating does not change the training run.
        """
        if self.val_set is None:
            return {}
        model = self.inpainter()
        devices = [self.device] if self.device.type == "cuda" else []
        # Validation must not consume the training's random numbers (PatchMatch seeds).
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            try:
                return evaluate(model, self.val_set, self.config.batch_size, self.device)
            finally:
                self.generator.train()

    # ---------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The training state of this run (all ranks' RNG and data positions gathered)."""
        ranks = distributed.all_gather_objects(
            {"rng": capture_rng(self.device), "position": self.position, "digest": self.digest}
        )
        return {
            "step": self.step,
            "skipped_steps": self.skipped_steps,
            "world_size": self.info.world_size,
            "optimizers": {
                "generator": self.opt_g.state_dict(),
                "critics": self.opt_d.state_dict(),
            },
            "scalers": {
                "generator": self.scaler_g.state_dict(),
                "critics": self.scaler_d.state_dict(),
            },
            "ranks": ranks,
            "config": config_to_dict(self.config),
        }

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0 writes; every rank must call this)."""
        state = self.state_dict()
        if not self.info.is_main:
            return None
        weights = {"generator": self.generator.state_dict()}
        weights.update({k: c.state_dict() for k, c in self.critics.items()})
        meta = {
            "generator": self.generator_spec,
            "image_size": self.config.data.image_size,
            "config": config_to_dict(self.config),
            "format": FORMAT,
        }
        return save_checkpoint(
            self.out, self.step, weights, meta, state, keep=self.config.keep_checkpoints
        )

    def _load(self, path: str | Path) -> None:
        weights, meta, state = load_checkpoint(path)
        for k, c in [("generator", self.generator), *self.critics.items()]:
            if k not in weights:
                raise ValueError(
                    f"checkpoint has no {k!r} weights (critics: "
                    f"{sorted(set(weights) - {'generator'})}); was it trained with another "
                    "model.critic?"
                )
            try:
                c.load_state_dict(weights[k])
            except RuntimeError as err:  # size mismatch, missing or unexpected keys
                raise ValueError(
                    f"resume: the {k} in {meta['path']!r} does not match the config "
                    f"({_model_differences(meta.get('config'), self.config, err)}); keep the "
                    "checkpoint's settings to resume it, or start a new run in another --out"
                ) from err
        self.opt_g.load_state_dict(state["optimizers"]["generator"])
        self.opt_d.load_state_dict(state["optimizers"]["critics"])
        self.scaler_g.load_state_dict(state["scalers"]["generator"])
        self.scaler_d.load_state_dict(state["scalers"]["critics"])
        self.step = int(state["step"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        ranks = state["ranks"]
        if int(state["world_size"]) == self.info.world_size:
            mine = ranks[self.info.rank]
            self.position, self.digest = int(mine["position"]), str(mine["digest"])
            restore_rng(mine["rng"], self.device)
        else:
            consumed = sum(int(r["position"]) for r in ranks)
            self.position = consumed // self.info.world_size
            self.digest = ""
            torch.manual_seed(self.config.seed + 1_000_003 * (self.info.rank + 1) + self.step)
            if self.info.is_main:
                warnings.warn(
                    f"resuming a {state['world_size']}-process run with "
                    f"{self.info.world_size} processes: the data order and random streams "
                    "continue approximately, not exactly",
                    RuntimeWarning,
                    stacklevel=2,
                )

    # -------------------------------------------------------------- logging
    def _tensorboard(self) -> Any:
        if self._writer is None and self._writer_class is not None:
            self._writer = self._writer_class(str(self.out / "tensorboard"))
        return self._writer

    def _start_outputs(self) -> Any:
        """After the first completed step: write ``config.json``, open TensorBoard."""
        if not self.info.is_main:
            return None
        from .evaluate import write_json

        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "config.json", config_to_dict(self.config))
        return self._tensorboard()

    def _log_images(self, out: Any, batch: dict[str, torch.Tensor]) -> None:
        writer = self._tensorboard()
        if writer is None:
            return
        n = min(4, batch["image"].shape[0])
        real = batch["image"][:n].float()
        mask = batch["mask"][:n]
        panels = [
            torch.where(mask, 1.0, real),  # input: hole shown white
            (out.coarse[:n].float() + 1) / 2,
            (out.completed[:n].float() + 1) / 2,
        ]
        if out.flow is not None:
            color = _flow_colors(out.flow[:n].float())
            if color is not None:
                size = real.shape[-2:]
                panels.append(torch.nn.functional.interpolate(color, size=size, mode="nearest"))
        panels.append(real)
        rows = [torch.cat([p[i].clamp(0, 1).cpu() for p in panels], 2) for i in range(n)]
        writer.add_image("samples/input_coarse_refined_flow_real", torch.cat(rows, 1), self.step)

    # ------------------------------------------------------------------ fit
    def fit(self, until: int | None = None) -> dict[str, float]:
        """Train up to step ``until`` (default ``config.steps``); returns validation metrics.

        Writes checkpoints every ``save_every`` steps and at the end, validates every
        ``val_every`` steps and at the end, logs every ``log_every`` steps. Nothing is
        written before the first step has completed (``config.json``, TensorBoard logs),
        and nothing at all when there is no step to run (the run is already at ``end``):
        then it returns ``{}``.
        """
        cfg = self.config
        end = cfg.steps if until is None else min(until, cfg.steps)
        main = self.info.is_main
        if self.step >= end:
            return {}
        first = self.step
        writer = None
        bar = None
        if main and cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=end, initial=self.step, desc="train", unit="step", file=sys.stderr)
        results: dict[str, float] = {}
        last_log = time.perf_counter()
        last_step = self.step
        try:
            while self.step < end:
                want_images = bool(
                    cfg.image_every
                    and (self.step + 1) % cfg.image_every == 0
                    and self._writer_class is not None
                )
                logs, out, batch = self.train_step(return_flow=want_images)
                if self.step == first + 1:
                    writer = self._start_outputs()
                if bar is not None:
                    bar.update(1)
                if cfg.log_every and self.step % cfg.log_every == 0:
                    logs = distributed.mean_over_ranks(logs, self.device)
                    now = time.perf_counter()
                    logs["steps_per_s"] = (self.step - last_step) / max(now - last_log, 1e-9)
                    last_log, last_step = now, self.step
                    if bar is not None:
                        bar.set_postfix(
                            {
                                k: f"{logs[k]:.3g}"
                                for k in ("d_loss", "g_loss", "l1_hole_fine")
                                if k in logs
                            }
                        )
                    if writer is not None:
                        for k, v in logs.items():
                            writer.add_scalar(f"train/{k}", v, self.step)
                if want_images and main:
                    self._log_images(out, batch)
                if cfg.val_every and self.step % cfg.val_every == 0 and self.step < end:
                    self._validate_and_log(writer, bar)
                if cfg.save_every and self.step % cfg.save_every == 0 and self.step < end:
                    self.save()
            results = self._validate_and_log(writer, bar)
            self.save()
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.flush()
        return results

    def _validate_and_log(self, writer: Any, bar: Any) -> dict[str, float]:
        if not self.info.is_main:
            return {}
        results = self.validate()
        if writer is not None:
            for k, v in results.items():
                if isinstance(v, float) and math.isfinite(v):
                    writer.add_scalar(f"val/{k}", v, self.step)
        if results:
            text = (
                f"step {self.step}: val psnr {results['psnr']:.2f} dB, "
                f"l1_hole {results['l1_hole']:.4f}"
            )
            (bar.write if bar is not None else print)(text, file=sys.stderr)
        return results

    def close(self) -> None:
        """Close the TensorBoard writer and leave the process group."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        distributed.cleanup()

    @staticmethod
    def config_from_checkpoint(path: str | Path) -> TrainConfig:
        """The training config stored in a checkpoint (weights file or run folder)."""
        from ..models.io import load_weights

        _, meta = load_weights(path)
        if not isinstance(meta.get("config"), dict):
            raise ValueError(f"{meta.get('path', path)} stores no training config")
        return config_from_dict(meta["config"])


def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError(
            "TensorBoard logging needs the 'tensorboard' package: pip install "
            "'psal[train]', or turn it off (--no-tensorboard / tensorboard=false)"
        ) from err
    return SummaryWriter


#: Config keys that change the networks' parameters (compared when a resume fails).
_ARCHITECTURE_KEYS = ("model.", "data.image_size", "data.hole_size")


def _model_differences(stored: Any, config: TrainConfig, err: Exception) -> str:
    """Which architecture keys differ between a checkpoint's config and ``config``."""

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in (d or {}).items():
            if isinstance(v, dict) and k != "attention_options":
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    old, new = flat(stored if isinstance(stored, dict) else {}), flat(config_to_dict(config))
    diffs = [
        f"{key_name(k)} {old[k]!r} in the checkpoint, {new[k]!r} now"
        for k in sorted(new)
        if k.startswith(_ARCHITECTURE_KEYS) and k in old and old[k] != new[k]
    ]
    if diffs:
        return "; ".join(diffs)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[1] if len(lines) > 1 else (lines[0] if lines else type(err).__name__)


def _flow_colors(flow: torch.Tensor) -> torch.Tensor | None:
    """Colour a (B, 2, h, w) flow with :func:`psal.viz.flow_to_color`, if available."""
    try:
        from ..viz import flow_to_color
    except ImportError:
        return None
    colors = flow_to_color(flow)
    if colors.dtype == torch.uint8:
        colors = colors.float() / 255
    return colors.float().cpu()

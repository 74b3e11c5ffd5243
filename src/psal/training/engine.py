"""The training engine: one short loop for every task (BasicSR's ``train.py``, nanoGPT).

:class:`Trainer` knows nothing of inpainting or any other task. It builds the task
registered for the config's type (:mod:`psal.training.tasks`), then runs::

    for step in range(start, steps):
        logs, visuals = task.train_step(next_batch, images)   # the task's losses
        schedulers step; log every log_every; images every image_every
        validate every val_every; save every save_every
    validate; save

and owns what every task needs: device and torchrun set-up (:class:`Runtime`),
mixed precision and the optimisation step (:meth:`Runtime.step`), the data stream
and its position (:class:`DataStream`), rank-0 progress and TensorBoard
(:class:`Monitor`), atomic checkpoints with the whole training state and exact resume
(:mod:`psal.training.checkpoint`).

Example:
    >>> from psal.training import InpaintConfig, Trainer
    >>> cfg = InpaintConfig(steps=10, batch_size=4)  # doctest: +SKIP
    >>> cfg.data.path = "photos/"  # doctest: +SKIP
    >>> trainer = Trainer(cfg)  # doctest: +SKIP
    >>> trainer.fit(); trainer.close()  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch

from ..models.io import FORMAT_VERSION, load_weights
from . import distributed
from .checkpoint import capture_rng, existing_step, load_checkpoint, restore_rng, save_checkpoint
from .config import BaseConfig, config_from_dict, config_to_dict
from .monitor import Monitor
from .runtime import Runtime, TrainingDiverged
from .stream import DataStream
from .tasks import get_task, task_for_config

__all__ = ["Trainer"]

#: Per-rank training randomness: torch is seeded ``seed + RANK_SEED_STRIDE * (rank + 1)``.
RANK_SEED_STRIDE = 1_000_003


class Trainer:
    """Trains the task of ``config`` (an ``InpaintConfig``, ...).

    Args:
        config: the run's settings; its type selects the task.
        resume: a checkpoint (weights file, or a run folder: its latest) to continue
            from, exactly: weights, optimisers, schedulers, step, RNG states, data
            position. It must be a checkpoint of the same task.

    The config is checked (the task's ``check_config``, then the networks) before
    anything is written. Without ``resume``, ``config.out`` must not already hold a run.
    Under torchrun it joins the process group itself; call :meth:`close` when done.

    Attributes:
        task: the task (networks, optimisers, data).
        runtime: device, ranks, mixed precision.
        stream: the training data stream (position, digest).
        step: training steps done.
    """

    def __init__(self, config: BaseConfig, resume: str | Path | None = None) -> None:
        task_class = task_for_config(config)
        task_class.check_config(config)
        self.config = config
        self.out = Path(config.out)
        if resume is None and (done := existing_step(self.out)) is not None:
            raise ValueError(
                f"--out {self.out} already holds a run (step {done}); pass --resume to "
                "continue it or choose another --out (in Python: Trainer(config, "
                "resume=config.out), or another config.out)"
            )
        self.runtime = Runtime(config.device, config.optim.amp, config.optim.grad_clip)
        self.info, self.device = self.runtime.info, self.runtime.device
        torch.manual_seed(config.seed)  # identical initialisation on every rank
        self.task = task_class(config, self.runtime)
        self.runtime.add_optimizers(self.task.optimizers)
        self.stream = DataStream(
            self.task.train_set,
            config.batch_size,
            config.seed,
            self.info,
            self.device,
            config.data.num_workers,
        )
        self.step = 0
        torch.manual_seed(config.seed + RANK_SEED_STRIDE * (self.info.rank + 1))
        self.monitor = Monitor(
            self.out,
            config_to_dict(config),
            self.info.is_main,
            config.tensorboard,
            config.progress,
        )
        if resume is not None:
            self._load(resume)

    # ------------------------------------------------------------------ loop
    def train_step(self, images: bool = False) -> tuple[dict[str, float], Any]:
        """One step of the task; advances :attr:`step`. Returns ``(logs, visuals)``."""
        for net in self.task.networks.values():
            net.train()
        logs, visuals = self.task.train_step(self.stream.next, images)
        for scheduler in self.task.schedulers.values():
            scheduler.step()
        self.step += 1
        logs["skipped_steps"] = float(self.runtime.skipped_steps)
        return logs, visuals

    def fit(self, until: int | None = None) -> dict[str, float]:
        """Train up to step ``until`` (default ``config.steps``); returns validation metrics.

        Validates every ``val_every`` steps and at the end, saves every ``save_every``
        steps and at the end, logs every ``log_every`` steps. Nothing is written before
        the first step has completed, and nothing at all when there is no step to run.

        Raises:
            TrainingDiverged: a loss or the weights became non-finite (no checkpoint of
                them is written).
        """
        cfg, mon = self.config, self.monitor
        end = cfg.steps if until is None else min(until, cfg.steps)
        if self.step >= end:
            return {}
        first = self.step
        mon.open_bar(self.step, end)
        try:
            while self.step < end:
                images = bool(cfg.image_every and (self.step + 1) % cfg.image_every == 0)
                images = images and mon.images
                logs, visuals = self.train_step(images)
                if self.step == first + 1:
                    mon.start()
                mon.advance()
                if cfg.log_every and self.step % cfg.log_every == 0:
                    logs = distributed.mean_over_ranks(logs, self.device)
                    mon.scalars(logs, self.step, self.task.progress_keys)
                if images and mon.writer is not None:
                    self.task.log_images(mon.writer, self.step, visuals)
                if cfg.val_every and self.step % cfg.val_every == 0 and self.step < end:
                    self.validate()
                if cfg.save_every and self.step % cfg.save_every == 0 and self.step < end:
                    self.save()
            results = self.validate()
            self.save()
        finally:
            mon.close_bar()
        return results

    def validate(self) -> dict[str, float]:
        """The task's validation metrics (rank 0; {} elsewhere), logged and printed.

        Runs in its own RNG context under ``torch.no_grad``, so validating does not
        change the training run.
        """
        if not self.info.is_main:
            return {}
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            with torch.no_grad():
                results = self.task.validate()
        if results:
            self.monitor.validation(results, self.step, self.task.summary(results))
        return results

    def close(self, wait: bool = True) -> None:
        """Close the TensorBoard writer and leave the process group.

        ``wait=False`` after an error: leave without waiting for the other ranks
        (:func:`psal.training.distributed.cleanup`).
        """
        self.monitor.close()
        distributed.cleanup(wait=wait)

    # ----------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The training state (every rank's RNG and data position gathered)."""
        ranks = distributed.all_gather_objects(
            {
                "rng": capture_rng(self.device),
                "position": self.stream.position,
                "digest": self.stream.digest,
                "weights": self.weights_digest(),
            }
        )
        return {
            "format_version": FORMAT_VERSION,
            "task": self.task.name,
            "step": self.step,
            "world_size": self.info.world_size,
            "optimizers": {k: o.state_dict() for k, o in self.task.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.task.schedulers.items()},
            **self.runtime.state_dict(),
            "ranks": ranks,
            "config": config_to_dict(self.config),
        }

    def weights_digest(self) -> str:
        """SHA-1 of every network's parameters and buffers.

        Equal on every rank of a correctly synchronised run; stored per rank in the
        training state.
        """
        h = hashlib.sha1()
        for name, net in sorted(self.task.networks.items()):
            for key, value in net.state_dict().items():
                h.update(f"{name}.{key}".encode())
                h.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
        return h.hexdigest()

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0 writes; every rank must call this).

        Raises:
            TrainingDiverged: a network holds non-finite weights (nothing is written).
        """
        for name, net in self.task.networks.items():
            if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
                raise TrainingDiverged(
                    f"training diverged: the {name} has non-finite weights at step "
                    f"{self.step}; not saved. Lower optim.lr and resume from the last checkpoint"
                )
        state = self.state_dict()
        if not self.info.is_main:
            return None
        weights = {k: net.state_dict() for k, net in self.task.networks.items()}
        meta = {"config": config_to_dict(self.config), **self.task.metadata()}
        return save_checkpoint(
            self.out,
            self.step,
            weights,
            meta,
            state,
            keep=self.config.keep_checkpoints,
            task=self.task.name,
        )

    def _load(self, path: str | Path) -> None:
        weights, meta, state = load_checkpoint(path, task=self.task.name)
        where = meta["path"]
        for k, net in self.task.networks.items():
            if k not in weights:
                raise ValueError(
                    f"resume: {where!r} has no {k!r} weights (it has "
                    f"{', '.join(sorted(weights))}); was it trained with other model settings?"
                )
            try:
                net.load_state_dict(weights[k])
            except RuntimeError as err:  # size mismatch, missing or unexpected keys
                raise ValueError(
                    f"resume: the {k} in {where!r} does not match the config "
                    f"({_model_differences(meta, self) or _first_line(err)}); "
                    "keep the checkpoint's settings to resume it, or start a new run in "
                    "another --out"
                ) from err
        try:
            self._load_state(state)
        except (KeyError, TypeError, IndexError, ValueError, AttributeError) as err:
            raise ValueError(
                f"resume: the training state of {where!r} is incomplete or corrupt "
                f"({type(err).__name__}: {_first_line(err, short=False)}); resume from an "
                "earlier checkpoint"
            ) from err
        changed = _setting_differences(meta, self)
        if changed and self.info.is_main:
            warnings.warn(
                f"resume: settings differ from those of {where!r} ({changed}); they apply "
                f"from step {self.step} on, so the run no longer continues as the "
                "checkpoint's would",
                RuntimeWarning,
                stacklevel=3,
            )

    def _load_state(self, state: dict[str, Any]) -> None:
        # The optimizers' moments and the schedules' step come from the checkpoint; their
        # settings (optim.lr, betas, ...) from this run's config, so that an override on
        # resume (optim.lr=..., what a divergence asks for) takes effect. Unchanged
        # settings give back exactly the values the checkpoint holds.
        fresh = {
            k: [{n: v for n, v in g.items() if n != "params"} for g in opt.param_groups]
            for k, opt in self.task.optimizers.items()
        }
        for k, opt in self.task.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
            for group, settings in zip(opt.param_groups, fresh[k]):
                group.update(settings)
        for k, sched in self.task.schedulers.items():
            sched.load_state_dict(state.get("schedulers", {})[k])
            _reapply_schedule(sched)
        for k, scaler in self.runtime.scalers.items():
            saved = state["scalers"][k]
            if not saved or not scaler.is_enabled():
                continue  # the run switched optim.amp: a fresh scaler (nothing to carry)
            scaler.load_state_dict(saved)
        self.step = int(state["step"])
        self.runtime.skipped_steps = int(state.get("skipped_steps", 0))
        ranks, world = state["ranks"], int(state["world_size"])
        if world == self.info.world_size:
            mine = ranks[self.info.rank]
            self.stream.seek(int(mine["position"]), str(mine["digest"]))
            restore_rng(mine["rng"], self.device)
            return
        consumed = sum(int(r["position"]) for r in ranks)
        self.stream.seek(consumed // self.info.world_size)
        seed = self.config.seed + RANK_SEED_STRIDE * (self.info.rank + 1) + self.step
        torch.manual_seed(seed)
        if self.info.is_main:
            warnings.warn(
                f"resuming a {world}-process run with {self.info.world_size} processes: "
                "the data order and random streams continue approximately, not exactly",
                RuntimeWarning,
                stacklevel=3,
            )

    @staticmethod
    def config_from_checkpoint(path: str | Path, task: str | None = None) -> BaseConfig:
        """The training config stored in a checkpoint (weights file or run folder).

        Args:
            path: the checkpoint.
            task: if given, the checkpoint must be of this task.
        """
        _, meta = load_weights(path, task=task)
        if not isinstance(meta.get("config"), dict):
            raise ValueError(f"{meta.get('path', path)} stores no training config")
        task_class = get_task(meta["task"])
        data = task_class.upgrade_config(meta["config"], int(meta["format_version"]))
        return config_from_dict(data, task_class.config_class())


def _reapply_schedule(sched: Any) -> None:
    """Set a loaded schedule's base rates from its optimizer's (this run's) settings.

    ``load_state_dict`` restores the checkpoint's ``base_lrs``; the optimizer's groups
    hold this run's ``initial_lr`` (set when the schedule was made from the config).
    For :class:`~torch.optim.lr_scheduler.LambdaLR` (every psal schedule) the current
    rate is recomputed as the schedule computes it, ``base * factor(step)``.
    """
    groups = sched.optimizer.param_groups
    sched.base_lrs = [g.get("initial_lr", g["lr"]) for g in groups]
    if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
        for g, base, factor in zip(groups, sched.base_lrs, sched.lr_lambdas):
            g["lr"] = base * factor(sched.last_epoch)
        sched._last_lr = [g["lr"] for g in groups]


def _first_line(err: Exception, short: bool = True) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    return lines[1] if short and len(lines) > 1 else lines[0]


#: Settings that do not change what is trained (where and how often it is reported).
BOOKKEEPING_KEYS = frozenset(
    {"out", "device", "progress", "tensorboard", "log_every", "image_every", "val_every",
     "save_every", "keep_checkpoints", "data.num_workers"}
)  # fmt: skip


def _setting_differences(meta: dict[str, Any], trainer: Trainer) -> str:
    """The settings of the run that differ from the checkpoint's, ``key old -> new``.

    Bookkeeping keys are left out, and ``steps`` when no schedule depends on it.
    """
    task = trainer.task
    try:
        stored = task.upgrade_config(meta.get("config"), int(meta.get("format_version", 2)))
        old_config = config_from_dict(stored, task.config_class())
    except (ValueError, TypeError, AttributeError):
        return ""
    skip = set(BOOKKEEPING_KEYS)
    if not task.schedulers or trainer.config.optim.scheduler == "none":
        skip.add("steps")
    old, new = _flat(config_to_dict(old_config)), _flat(config_to_dict(trainer.config))
    return "; ".join(
        f"{task.options.key_name(k)} {old.get(k)!r} -> {new.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if k not in skip and old.get(k) != new.get(k)
    )


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config dict as ``{"a.b": value}`` (``attention_options`` kept whole)."""
    out: dict[str, Any] = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict) and k != "attention_options":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _model_differences(meta: dict[str, Any], trainer: Trainer) -> str:
    """Which architecture keys differ between a checkpoint's config and the run's."""
    task, stored = trainer.task, meta.get("config")
    try:
        stored = task.upgrade_config(stored, int(meta.get("format_version", 2)))
        old_config = config_from_dict(stored, task.config_class())
    except (ValueError, TypeError, AttributeError):
        old_config = None
    old = _flat(config_to_dict(old_config)) if old_config is not None else {}
    new = _flat(config_to_dict(trainer.config))
    diffs = [
        f"{task.options.key_name(k)} {old[k]!r} in the checkpoint, {new[k]!r} now"
        for k in sorted(new)
        if k.startswith(task.architecture_keys) and k in old and old[k] != new[k]
    ]
    return "; ".join(diffs)

"""What the engine gives a task: device, ranks, mixed precision, the optimisation step.

A task receives a :class:`Runtime` and uses it for everything that is the same in every
task: :meth:`Runtime.autocast` around forward passes, :meth:`Runtime.wrap` for the
networks it updates (DistributedDataParallel under torchrun) and :meth:`Runtime.step`
for an update (backward with gradient scaling, unscale, clipping, a skipped update on a
non-finite gradient, optimiser step). Non-finite *losses* stop the run with
:class:`TrainingDiverged` instead of writing NaN weights.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import distributed

__all__ = ["AMP_MODES", "Runtime", "TrainingDiverged", "amp_dtype"]

AMP_MODES = ("auto", "bf16", "fp16", "off")

#: Updates in a row with a non-finite loss after which float16 training stops (the
#: gradient scaler recovers from a few overflows; more means the run has diverged).
FP16_NONFINITE_PATIENCE = 5


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite: training stops, no checkpoint of it is written."""


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of an ``optim.amp`` mode on ``device`` (None: full precision)."""
    if mode not in AMP_MODES:
        raise ValueError(f"optim.amp must be one of {', '.join(AMP_MODES)}, got {mode!r}")
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def keep_torch_threads() -> None:
    """Start numba's threading layer now, keeping torch's thread count as it is.

    numba's OpenMP layer, when it starts (at the first psal kernel, e.g. the first PSAL
    search of a run), sets the OpenMP thread count that torch shares to numba's own
    (all cores): ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` was then silently
    undone in the middle of the first step, and the float results of convolutions
    changed with it, so that a run resumed in a fresh process (whose first step is a
    later one) no longer matched an unbroken run bit for bit. ``num_threads`` starts
    the layer and puts torch's count back (for every psal entry point, not only
    training); calling it here does it before the first step.
    """
    from ..utils.parallel import num_threads

    num_threads()


class Runtime:
    """Device, process group, mixed precision and the optimisation step of a run.

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``; under torchrun ``cuda:LOCAL_RANK``.
        amp: ``optim.amp`` (see :func:`amp_dtype`).
        grad_clip: clip each optimiser's gradient norm to this (0 = off).

    Attributes:
        info: this process's :class:`~psal.training.distributed.DistInfo`.
        device: the torch device.
        amp_dtype: the autocast dtype, or None.
        optimizers: ``{name: optimizer}`` registered by :meth:`add_optimizers`.
        scalers: one gradient scaler per optimiser (enabled with float16 only).
        skipped_steps: updates skipped for a non-finite gradient.
    """

    def __init__(self, device: str = "auto", amp: str = "auto", grad_clip: float = 0.0) -> None:
        keep_torch_threads()
        self.info, self.device = distributed.setup(device)
        self.amp_dtype = amp_dtype(amp, self.device)
        self.grad_clip = float(grad_clip)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.scalers: dict[str, torch.amp.GradScaler] = {}
        self.skipped_steps = 0
        self._nonfinite_streak = 0

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision around a forward pass (a no-op without it)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel in a multi-process run, else itself."""
        if not self.info.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def add_optimizers(self, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """Register the task's optimisers by name (one gradient scaler each)."""
        fp16 = self.amp_dtype == torch.float16
        for name, opt in optimizers.items():
            self.optimizers[name] = opt
            self.scalers[name] = torch.amp.GradScaler(self.device.type, enabled=fp16)

    def step(self, loss: torch.Tensor, optimizer: str, name: str = "loss") -> float | None:
        """Backward, unscale, clip, step the optimiser ``optimizer``; returns the grad norm.

        The gradient norm (before clipping) is computed at every update: an update with
        a non-finite gradient is skipped (the float16 scaler does it itself; for the
        other modes it is done here) and counted in :attr:`skipped_steps`. Returns None
        when the update was skipped for a non-finite loss.

        Raises:
            TrainingDiverged: ``loss`` is NaN or infinite (in float16 training: for
                :data:`FP16_NONFINITE_PATIENCE` updates in a row). ``name`` names the loss.
        """
        opt, scaler = self.optimizers[optimizer], self.scalers[optimizer]
        opt.zero_grad(set_to_none=True)
        if not self._all_finite(loss):
            self._nonfinite_streak += 1
            patience = FP16_NONFINITE_PATIENCE if scaler.is_enabled() else 1
            if self._nonfinite_streak >= patience:
                raise TrainingDiverged(
                    f"training diverged: the {name} is {float(loss.detach()):g} ({optimizer} "
                    "update); lower optim.lr or turn on optim.grad_clip, and resume from the "
                    "last checkpoint (no checkpoint of the diverged weights was written)"
                )
            self.skipped_steps += 1
            return None
        self._nonfinite_streak = 0
        scaler.scale(loss).backward()
        params = [p for group in opt.param_groups for p in group["params"]]
        # the norm is always taken (an infinite limit scales by exactly 1): without
        # clipping or mixed precision a NaN gradient used to reach the weights
        scaler.unscale_(opt)
        limit = self.grad_clip if self.grad_clip > 0 else math.inf
        norm = float(nn.utils.clip_grad_norm_(params, limit))
        if not math.isfinite(norm):
            self.skipped_steps += 1
            if not scaler.is_enabled():
                opt.zero_grad(set_to_none=True)
                return norm
        scaler.step(opt)
        scaler.update()
        return norm

    def _all_finite(self, loss: torch.Tensor) -> bool:
        """Whether ``loss`` is finite on every rank (ranks must agree to skip or stop)."""
        finite = torch.isfinite(loss.detach()).all().to(torch.float32).reshape(1)
        if self.info.enabled:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        return bool(finite.item())

    def state_dict(self) -> dict[str, Any]:
        """The scalers' states and the skipped-update count."""
        return {
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
            "skipped_steps": self.skipped_steps,
        }

"""Learning-rate schedules for tasks that want one (``optim.scheduler``).

Example:
    >>> import torch
    >>> from psal.training.config import OptimConfig
    >>> opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> sched = make_scheduler(opt, OptimConfig(scheduler="cosine", warmup_steps=2), 10)
    >>> [round(sched.lr_lambdas[0](step), 3) for step in range(5)]  # factor of lr per step
    [0.5, 1.0, 1.0, 0.962, 0.854]
"""

from __future__ import annotations

import math

import torch

from .config import OptimConfig

__all__ = ["make_scheduler"]


def make_scheduler(
    optimizer: torch.optim.Optimizer, optim: OptimConfig, steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of ``optim.scheduler`` over ``steps`` steps, after a linear warm-up.

    ``"none"``: constant; ``"cosine"``: cosine decay to 0 at ``steps``; ``"step"``:
    halved at 50% and again at 75% of ``steps``. The engine calls ``step()`` once per
    training step; the schedule is a pure function of the step, so it resumes exactly.
    """
    warmup, kind, total = int(optim.warmup_steps), optim.scheduler, max(int(steps), 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "cosine":
            t = min(1.0, (step - warmup) / max(total - warmup, 1))
            return 0.5 * (1 + math.cos(math.pi * t))
        if kind == "step":
            return 0.5 ** ((step >= total // 2) + (step >= total * 3 // 4))
        return 1.0

    if kind not in ("none", "cosine", "step"):
        raise ValueError(f"optim.scheduler must be one of none, cosine, step, got {kind!r}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

"""Distributed training helpers: torchrun environment, process group, rank-0 duties.

``torchrun --nproc_per_node N -m psal train inpaint ...`` starts N processes with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment; :func:`setup` reads
them, joins the process group (NCCL on CUDA, gloo on CPU) and picks the device
(``cuda:LOCAL_RANK``). Without those variables it is a single process and nothing is
initialised. Only rank 0 logs and writes files; everything else is done by every rank.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_gather_objects", "cleanup", "mean_over_ranks", "setup"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True in a multi-process run."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and saves."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def setup(device: str = "auto", timeout_s: float = 1800.0) -> tuple[DistInfo, torch.device]:
    """Read the torchrun environment, join the process group, choose the device.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Under torchrun,
            ``auto``/``cuda`` become ``cuda:LOCAL_RANK`` when CUDA is available.
        timeout_s: collective timeout.

    Returns:
        ``(info, device)``.
    """
    info = DistInfo(
        rank=_env_int("RANK", 0),
        world_size=_env_int("WORLD_SIZE", 1),
        local_rank=_env_int("LOCAL_RANK", 0),
    )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device: CUDA was requested but no CUDA device is available")
        if info.enabled and dev.index is None:
            dev = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(dev)
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"timeout": datetime.timedelta(seconds=timeout_s)}
        if backend == "nccl":
            kwargs["device_id"] = dev
        dist.init_process_group(backend=backend, **kwargs)
    return info, dev


def cleanup(wait: bool = True) -> None:
    """Leave the process group (if any).

    Args:
        wait: first wait until every rank is here (after a run that ended normally).
            The barrier keeps a rank from tearing down its gloo pairs while a peer's
            last collective (the checkpoint's gather) may still be moving data over
            them: leaving without it aborted a rank now and then (``terminate called
            without an active exception``, SIGABRT) on a loaded machine. After an
            error, ``wait=False``: the other ranks may be inside another collective,
            and a barrier would hang until the group's timeout instead of failing
            fast. A barrier that fails (a peer already gone) does not keep this rank
            from leaving.
    """
    if dist.is_available() and dist.is_initialized():
        if wait:
            try:
                dist.barrier()
            except RuntimeError:
                pass
        dist.destroy_process_group()


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average scalars over the ranks (for logging); unchanged in a single process."""
    if not (dist.is_available() and dist.is_initialized()) or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out

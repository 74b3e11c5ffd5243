"""Shared helpers for the benchmark scripts (not part of the installed package)."""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch


def environment(device: torch.device | str = "cpu") -> dict[str, str]:
    """What the numbers were measured on."""
    device = torch.device(device)
    env = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "device": str(device),
    }
    try:
        import numba

        env["numba"] = numba.__version__
        env["numba_threads"] = str(numba.get_num_threads())
    except ImportError:  # pragma: no cover
        pass
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(
    fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: int = 1
) -> float:
    """Median wall time of ``fn`` in seconds, after ``warmup`` calls; syncs the device."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def print_table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> str:
    """Print rows as a Markdown table and return the text."""
    head = "| " + " | ".join(columns) + " |"
    sep = "|" + "|".join("---:" if i else "---" for i in range(len(columns))) + "|"
    lines = [head, sep]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write_json(path: str, payload: dict) -> None:
    """:func:`psal.utils.jsonfile.write_json` (atomic; NaN/inf written as strings)."""
    from psal.utils.jsonfile import write_json as _write

    _write(path, payload)


def skimage_photo(name: str, size: int | tuple[int, int]) -> torch.Tensor:
    """A scikit-image photo as (1, 3, H, W) float32 in [0, 1]."""
    from skimage import data, transform

    im = getattr(data, name)()
    if im.ndim == 2:
        im = np.stack([im] * 3, -1)
    hw = (size, size) if isinstance(size, int) else size
    im = transform.resize(im[..., :3], hw, anti_aliasing=True)
    return torch.from_numpy(im).permute(2, 0, 1)[None].float().contiguous()


def cnn_features(x: torch.Tensor, channels: int = 64) -> torch.Tensor:
    """Features of a fixed random 3-layer CNN (seed 0): coherent like real CNN features."""
    g = torch.Generator().manual_seed(0)
    layers = []
    cin = x.shape[1]
    for cout in (32, channels, channels):
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
        torch.nn.init.normal_(conv.weight, std=(1 / (cin * 9)) ** 0.5, generator=g)
        torch.nn.init.zeros_(conv.bias)
        layers += [conv, torch.nn.ReLU()]
        cin = cout
    net = torch.nn.Sequential(*layers[:-1]).to(x.device)
    with torch.no_grad():
        return net(x)


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_start(device: torch.device) -> int:
    """Start a peak-memory measurement; returns the baseline in bytes.

    On CPU (Linux) the freed heap is handed back to the system (``malloc_trim``) and the
    process's resident-size high-water mark is reset to its current size (``clear_refs``),
    so the peak that follows is this measurement's own; without those, the max RSS growth.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        rss = _rss_kib("VmRSS")
        if rss is not None:
            return rss * 1024
    except (OSError, AttributeError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def peak_end(device: torch.device, base: int) -> int:
    """Peak memory (bytes) since :func:`peak_start` returned ``base``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return max(torch.cuda.max_memory_allocated(device) - base, 0)
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # reset by clear_refs as well
    return max(hwm * 1024 - base, 0)


def quick_defaults(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    **values: object,
) -> None:
    """Set ``--quick``'s ``values`` on ``args``, except those the command line gave.

    ``--quick --steps 2`` runs 2 steps: an option given explicitly wins over the quick
    preset (it used to be overridden silently).
    """
    import sys

    given = list(sys.argv[1:] if argv is None else argv)
    for dest, value in values.items():
        flags = next((a.option_strings for a in parser._actions if a.dest == dest), [])
        if not any(g == f or g.startswith(f + "=") for g in given for f in flags):
            setattr(args, dest, value)


def set_threads(n: int) -> None:
    """Use ``n`` torch and numba threads (numba capped at its configured maximum).

    numba first: starting its OpenMP layer resets the thread count torch shares.
    """
    import numba
    import torch

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(n)

"""Running compiled CPU kernels on several threads without spinning threads.

psal's numba kernels are compiled ``nogil`` and run over ranges of work items on a pool
of Python threads. Unlike numba's ``parallel=True`` kernels, whose OpenMP threads keep
spinning after a kernel returns and then slow PyTorch's own threads down (convolutions
measured ~100x slower right after a PatchMatch search on 2 cores), idle pool threads
block. Each work item is computed by exactly one call, so results never depend on the
number of threads.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba


def num_threads() -> int:
    """Threads the CPU kernels use (``numba.set_num_threads``; all cores by default)."""
    return max(1, numba.get_num_threads())


def channel_blocks(channels: int, parts: int, align: int = 16) -> tuple[int, int]:
    """Split ``channels`` into at most ``parts`` blocks of a multiple of ``align``.

    Returns ``(nblock, block)``: block ``i`` holds channels ``[i * block, (i + 1) *
    block)`` (the last one clipped). For kernels that give every channel to one call and
    sum it in a fixed order, the result does not depend on the split, so the split may
    follow the thread count.
    """
    nblock = max(1, min(parts, -(-channels // align)))
    block = -(-channels // nblock)
    block = -(-block // align) * align
    return -(-channels // block), block


def run_chunked(kernel: Callable[..., None], n: int, *args: object, min_parallel: int = 2) -> None:
    """Call ``kernel(*args, start, stop)`` over ``[0, n)``, split across threads.

    Jobs of fewer than ``min_parallel`` items run on the calling thread (starting threads
    would cost more than the work). Several chunks per thread balance uneven items.
    """
    threads = min(num_threads(), n)
    if n < min_parallel or threads <= 1:
        kernel(*args, 0, n)
        return
    parts = min(n, 4 * threads)
    bounds = [n * i // parts for i in range(parts + 1)]
    with ThreadPoolExecutor(threads) as pool:
        futures = [
            pool.submit(kernel, *args, lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo
        ]
        for fut in futures:
            fut.result()

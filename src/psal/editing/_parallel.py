"""Running the editing kernels on several CPU threads.

The numba kernels of :mod:`psal.editing` are compiled ``nogil`` and run over ranges of
output pixels on a pool of Python threads, as the PatchMatch engine does (see
``psal.patchmatch.cpu_numba._TaskRunner``): unlike ``parallel=True`` kernels, whose
OpenMP threads keep spinning after they return and slow PyTorch down, idle pool
threads block. Small jobs run on the calling thread. Results never depend on the
number of threads (each output pixel is computed by one task).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba

#: Below this many output pixels a kernel runs on the calling thread only: starting
#: threads would cost more than the work.
PARALLEL_MIN = 16384


def run_chunked(kernel: Callable[..., None], n: int, *args: object) -> None:
    """Call ``kernel(*args, start, stop)`` over ``[0, n)`` split across threads."""
    threads = max(1, numba.get_num_threads())
    if n < PARALLEL_MIN or threads == 1:
        kernel(*args, 0, n)
        return
    parts = 4 * threads  # several chunks per thread for load balance
    bounds = [n * i // parts for i in range(parts + 1)]
    with ThreadPoolExecutor(threads) as pool:
        chunks = [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]
        futures = [pool.submit(kernel, *args, lo, hi) for lo, hi in chunks]
        for fut in futures:
            fut.result()

"""Thread policy for the compiled CPU kernels on small inputs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba

#: Below this many pixels of work, numba kernels run on the calling thread only: the
#: start-up and barriers of a parallel region cost more than the work (a 48x64
#: inpainting took 1.8 s with 2 threads and 0.03 s with one on a loaded 2-core machine).
#: Results do not depend on the thread count (the kernels are deterministic).
PARALLEL_MIN = 16384


@contextlib.contextmanager
def serial_below(n_work: int, minimum: int = PARALLEL_MIN) -> Iterator[None]:
    """Run the enclosed numba kernels single-threaded if ``n_work < minimum``."""
    if n_work >= minimum:
        yield
        return
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(threads)

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
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba

#: LLVM fast-math flags of psal's compiled kernels: reassociation lets LLVM vectorise
#: their reductions (the order is still fixed by the code, so results do not depend on
#: the thread count); 'ninf'/'nnan' are left out so that inf (e.g. the engine's 'no match
#: yet' distance) and NaN propagate.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()
_WORKER = threading.local()


def _pool(threads: int) -> ThreadPoolExecutor:
    """The process's pool of kernel threads, kept between calls.

    Starting threads at every call cost ~1 ms each, a third of an inpainting call on
    a small photo. Rebuilt when the thread count changes, and dropped in a forked child
    (data-loader workers), which inherits the pool but not its threads. The pool it
    replaces is not shut down: another thread may be about to submit to it (numba's
    thread count is per thread); once no one holds it, its idle threads exit.
    """
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE != threads:
            _POOL = ThreadPoolExecutor(threads, thread_name_prefix="psal-kernel",
                                       initializer=_mark_worker)  # fmt: skip
            _POOL_SIZE = threads
        return _POOL


def _mark_worker() -> None:
    _WORKER.active = True


def _forget_pool() -> None:
    global _POOL, _POOL_SIZE, _POOL_LOCK
    _POOL, _POOL_SIZE, _POOL_LOCK = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


_LAYER_STARTED = False


def _start_threading_layer() -> None:
    """Start numba's threading layer, keeping torch's thread count as it was.

    numba's OpenMP layer, when it starts (the first ``numba.get_num_threads`` of a
    process), sets the OpenMP thread count that torch shares to numba's own (all
    cores): a ``torch.set_num_threads(n)`` or ``OMP_NUM_THREADS`` of the caller was
    undone by the first psal kernel, and torch's results and speed changed with it.
    torch is not imported for this (``psal inpaint`` runs without it).
    """
    global _LAYER_STARTED
    with _POOL_LOCK:
        if _LAYER_STARTED:
            return
        torch = sys.modules.get("torch")
        before = torch.get_num_threads() if torch is not None else None
        numba.get_num_threads()  # launches numba's threads, once per process
        if before is not None and torch.get_num_threads() != before:
            torch.set_num_threads(before)
        _LAYER_STARTED = True


def num_threads() -> int:
    """Threads the CPU kernels use (``numba.set_num_threads``; all cores by default).

    The first call starts numba's threading layer without changing torch's thread count.
    """
    if not _LAYER_STARTED:
        _start_threading_layer()
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
    # a kernel run from a pool thread (nested call) runs inline: waiting on the pool
    # from inside it could deadlock
    if n < min_parallel or threads <= 1 or getattr(_WORKER, "active", False):
        kernel(*args, 0, n)
        return
    parts = min(n, 4 * threads)
    bounds = [n * i // parts for i in range(parts + 1)]
    pool = _pool(num_threads())
    futures = [
        pool.submit(kernel, *args, lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo
    ]
    for fut in futures:
        fut.result()


#: Optional modules numba imports when it sets up its CPU target (the first kernel a
#: process compiles or loads from the cache): SciPy's BLAS wrappers, for ``np.dot`` and
#: ``np.linalg`` inside kernels, and cffi, for calling cffi functions. psal's kernels
#: use neither; on this machine they cost 0.25-0.5 s of a 1-2 s command.
NUMBA_OPTIONAL_IMPORTS = ("scipy.linalg", "cffi")


class _Hide:
    """An import hook under which the named packages cannot be imported."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if any(name == n or name.startswith(n + ".") for n in self.names):
            raise ModuleNotFoundError(f"{name} is hidden while numba starts", name=name)


def start_numba_lean() -> bool:
    """Set numba's CPU target up now, without its optional SciPy and cffi support.

    For a short-lived process that runs psal's kernels only (``psal inpaint``): numba
    then never supports ``np.dot`` / ``np.linalg`` or cffi calls in kernels compiled
    by this process, which psal's kernels do not use. Only the modules not imported yet
    are hidden: one that is already there (Pillow before 10.1 imports cffi when it is
    installed) is something in the process may use, and numba supports it as usual.
    Does nothing (and returns False) if numba's target is already set up, or if both
    are imported (``import numba`` itself imports the ``scipy`` package, which is
    cheap, to check its version).
    """
    # numba.np.arraymath is imported by the set-up (it checks for SciPy's BLAS)
    done = "numba.np.arraymath" in sys.modules
    hidden = tuple(n for n in NUMBA_OPTIONAL_IMPORTS if n not in sys.modules)
    if done or not hidden:
        return False
    from numba.core.registry import cpu_target

    hide = _Hide(hidden)
    sys.meta_path.insert(0, hide)
    try:
        cpu_target.target_context.refresh()
    finally:
        sys.meta_path.remove(hide)
    return True

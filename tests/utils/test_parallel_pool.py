"""The kernel thread pool: kept between calls, safe in forked children and when nested."""

import gc
import multiprocessing as mp
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from psal.utils import parallel


def _fill(out, lo, hi):
    out[lo:hi] = np.arange(lo, hi)


def _nested(out, lo, hi):
    for i in range(lo, hi):
        inner = np.zeros(4)
        parallel.run_chunked(_fill, 4, inner)  # runs inline on a pool thread
        out[i] = inner.sum()


def _in_child(queue):
    out = np.zeros(64)
    parallel.run_chunked(_fill, 64, out)
    queue.put(float(out.sum()))


@pytest.fixture
def two_threads():
    old = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    yield
    numba.set_num_threads(old)


def test_pool_is_reused_and_results_are_complete(two_threads):
    if parallel.num_threads() < 2:
        pytest.skip("one thread: no pool")
    out = np.zeros(100)
    parallel.run_chunked(_fill, 100, out)
    pool = parallel._POOL
    assert pool is not None and np.array_equal(out, np.arange(100))
    parallel.run_chunked(_fill, 100, out)
    assert parallel._POOL is pool
    nested = np.zeros(10)
    parallel.run_chunked(_nested, 10, nested)  # no deadlock
    assert np.all(nested == 6)


def test_forked_child_gets_a_fresh_pool(two_threads):
    if parallel.num_threads() < 2 or "fork" not in mp.get_all_start_methods():
        pytest.skip("needs two threads and fork")
    parallel.run_chunked(_fill, 64, np.zeros(64))  # the parent's pool exists
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_in_child, args=(queue,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == float(np.arange(64).sum())


def test_a_pool_handed_out_stays_usable_when_another_size_is_asked_for():
    # numba's thread count is per thread: a thread that asked for another size shut the
    # pool down while another thread was about to submit to it ("cannot schedule new
    # futures after shutdown")
    import threading
    import weakref

    first = parallel._pool(2)
    other = threading.Thread(target=parallel._pool, args=(3,))
    other.start()
    other.join()
    assert parallel._POOL_SIZE == 3
    assert first.submit(sum, [1, 2]).result(timeout=10) == 3
    # once no one holds it, the old pool goes, its threads with it
    gone = weakref.ref(first)
    threads = list(first._threads)
    del first
    gc.collect()
    assert gone() is None
    for t in threads:
        t.join(10)
        assert not t.is_alive()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to see a change")
def test_the_first_kernel_keeps_torchs_thread_count():
    """numba's OpenMP layer, started by psal's first kernel, used to set the thread count
    torch shares to all cores, undoing the caller's torch.set_num_threads(1). A fresh
    process: psal.patchmatch (the first kernel), then torch's count is still 1."""
    code = (
        "import torch; torch.set_num_threads(1)\n"
        "import psal\n"
        "x = torch.rand(1, 3, 16, 16)\n"
        "psal.patchmatch(x, x, k=2, seed=0, backend='numba')\n"
        "print(torch.get_num_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)  # fmt: skip
    assert out.stdout.split()[-1] == "1", out.stdout

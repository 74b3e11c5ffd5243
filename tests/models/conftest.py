import pytest


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run faster on one thread (no OpenMP hand-offs); restored after.

    numba's OpenMP threads spin-wait after each parallel PatchMatch call and would starve
    torch's thread on a 2-core machine, so numba gets one thread too.
    """
    import numba
    import torch

    before = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(before[0])
    numba.set_num_threads(before[1])

"""Fuzz the layers' two implementations against each other and against float64.

The patch vote has a compiled CPU path and a torch path (the GPU's); both must give
the float64 vote to float32 precision on any field, including distances far larger
than their differences and small temperatures (a run of this property found the torch
path dividing before shifting: one vote 53% off).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fuzz_inputs import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from psal.layers.vote import _vote_numba, _vote_torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread_module):
    """Every case here is a tiny input: one numba and one torch thread."""


@fuzz_settings(60)
@given(
    seed=st.integers(0, 2**31 - 1),
    b=st.integers(1, 2),
    cv=st.integers(1, 4),
    k=st.integers(1, 4),
    p=st.sampled_from([1, 3, 5]),
    sizes=st.tuples(*[st.integers(5, 16)] * 4),
    holes=st.sampled_from([0.0, 0.2, 0.7]),
    base=st.sampled_from([0.0, 1e3, 1e6]),
    spread_exp=st.floats(-2, 3),
    temperature=st.sampled_from([float("inf"), 1e-2, 1.0, 100.0]),
    center=st.booleans(),
)
def test_compiled_and_torch_votes_match_the_float64_vote(seed, b, cv, k, p, sizes, holes,
                                                          base, spread_exp, temperature,
                                                          center):  # fmt: skip
    rng = np.random.default_rng(seed)
    hq, wq, hk, wk = sizes
    hk, wk = max(hk, p), max(wk, p)
    value = torch.from_numpy(rng.random((b, cv, hk, wk))).float()
    idx = torch.from_numpy(rng.integers(0, hk * wk, (b, k, hq, wq)))
    hole = torch.from_numpy(rng.random((b, k, hq, wq)) < holes)
    idx[hole] = -1
    # float32 distances (what a search returns), far from zero or not
    d = torch.from_numpy(base + rng.random((b, k, hq, wq)) * 10.0**spread_exp).float()
    d[hole] = float("inf")
    r = 0 if center else p // 2
    bs, ys, xs = (t.reshape(-1) for t in torch.meshgrid(
        torch.arange(b), torch.arange(hq), torch.arange(wq), indexing="ij"))  # fmt: skip
    ref, ref_cov = _vote_torch(value.double(), idx, d.double(), r, temperature, bs, ys, xs)
    for fn in (_vote_numba, _vote_torch):
        out, covered = fn(value, idx, d, r, temperature, bs, ys, xs)
        assert torch.equal(covered, ref_cov), fn.__name__
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4, msg=fn.__name__)

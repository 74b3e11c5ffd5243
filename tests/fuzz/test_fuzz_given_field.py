"""Fuzz the functions that take a neighbour field from the caller: a result or a clear error.

``psal.attend``, ``psal.layers.vote`` and ``psal.patchmatch.patch_distance`` take the
indices the caller gives (not the ones a search found). A review found that they
skipped the size checks the searching functions make, so that a patch larger than a
map made the compiled kernels read outside it (NaN, or one batch element read by
another). For any shapes, patch sizes, fields (in range or not), dtypes and
aggregations they return finite values of the documented shape, or raise one line
that names what is wrong; and a batch element's result depends on its own inputs only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fuzz_inputs import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

import psal
from psal.layers import vote
from psal.patchmatch import patch_distance

#: what these inputs may be refused for: a patch larger than a map, an index out of range
_REASONS = ("is larger than", "must lie in")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread_module):
    """Every case here is a tiny input: one numba and one torch thread."""


@fuzz_settings(60)
@given(
    seed=st.integers(0, 2**31 - 1),
    c=st.integers(1, 4),
    sizes=st.tuples(*[st.integers(1, 9)] * 4),
    p=st.sampled_from([1, 3, 5, 7]),
    k=st.integers(1, 3),
    bad_index=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    which=st.sampled_from(
        ["attend-center", "attend-patch", "vote-center", "vote-patch", "distance"]
    ),
)
def test_a_given_field_gives_a_result_or_a_one_line_error(seed, c, sizes, p, k, bad_index,
                                                         dtype, which):  # fmt: skip
    rng = np.random.default_rng(seed)
    hq, wq, hk, wk = sizes
    b = 2
    q = torch.from_numpy(rng.random((b, c, hq, wq))).to(dtype)
    key = torch.from_numpy(rng.random((b, c, hk, wk))).to(dtype)
    v = torch.from_numpy(rng.random((b, 2, hk, wk))).to(dtype)
    idx = torch.from_numpy(rng.integers(-1, hk * wk, (b, k, hq, wq)))
    if bad_index:
        idx[0, 0, 0, 0] = hk * wk  # one past the end: the next element's key
    dist = torch.from_numpy(rng.random((b, k, hq, wq))).to(dtype)

    def run(q, key, v):
        if which.startswith("attend"):
            agg = which.split("-")[1]
            return psal.attend(q, key, v, idx, patch_size=p, temperature=0.5, aggregation=agg)
        if which.startswith("vote"):
            return vote(v, idx, dist, p, 0.5, which.split("-")[1])[0]
        return patch_distance(q, key, idx, p)

    try:
        out = run(q, key, v)
    except (ValueError, TypeError) as err:
        msg = str(err)
        assert "\n" not in msg and len(msg) < 400, msg
        assert any(r in msg for r in _REASONS), msg
        return
    assert not bad_index, "an index past the end was accepted"
    shape = (b, k, hq, wq) if which == "distance" else (b, 2, hq, wq)
    assert tuple(out.shape) == shape
    finite = torch.isfinite(out) | (idx < 0 if which == "distance" else False)
    assert bool(finite.all()), out
    # batch element 1 depends on its own inputs only
    q2, key2, v2 = q.clone(), key.clone(), v.clone()
    q2[0], key2[0], v2[0] = q2[0] + 5, key2[0] + 5, v2[0] + 5
    again = run(q2, key2, v2)
    assert torch.equal(again[1], out[1])

"""Fuzz the attention layers' public surface: a result or a clear error, never a crash.

For any shapes, patch sizes, k, dtypes, scales, temperatures, aggregations, backends and
holes, ``psal.ps_attention``, ``psal.patch_attention`` and ``psal.contextual_attention``
either return a ``(B, Cv, Hq, Wq)`` tensor with finite values (and finite gradients when
asked) or raise a ValueError / TypeError of one line that names what is wrong. A
throw-away run of this property found two messages that named the wrong thing: a hole
that leaves too few sources was reported as ``key_valid`` (an argument the caller never
passed), and a one-channel value passed by position with ``hole=`` raised "got multiple
values for 'hole'" (it was taken for the old mask argument).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fuzz_inputs import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

import psal

#: What these inputs may be refused for (every other argument is valid by construction):
#: a patch larger than a map, a hole that leaves too few sources, k above the key patches.
_REASONS = ("is larger than", "hole leaves", "k=")
#: Names the caller never passes here: an error must not speak of them.
_FOREIGN = ("key_valid", "query_valid", "key_mask", "mask", "multiple values")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread_module):
    """Every case here is a tiny input: one numba and one torch thread."""


def _check(fn, query, key, value, grad, shape, **kw):
    try:
        out = fn(query, key, value, **kw)
    except (ValueError, TypeError) as err:
        msg = str(err)
        assert "\n" not in msg and len(msg) < 400, msg
        assert any(r in msg for r in _REASONS), msg
        assert not any(n in msg for n in _FOREIGN), msg
        return
    if isinstance(out, tuple):
        out = out[0]
    assert tuple(out.shape) == shape
    assert torch.isfinite(out.float()).all()
    if grad:
        out.float().square().sum().backward()
        for t in (query, value):
            assert t.grad is None or torch.isfinite(t.grad).all()


@fuzz_settings(60)
@given(
    seed=st.integers(0, 2**31 - 1),
    b=st.integers(1, 2),
    c=st.integers(1, 6),
    cv=st.integers(1, 4),
    sizes=st.tuples(*[st.integers(1, 12)] * 4),
    same=st.booleans(),
    p=st.sampled_from([1, 3, 5]),
    k=st.integers(1, 5),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16]),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    hole_share=st.sampled_from([None, 0.1, 0.6]),
    which=st.sampled_from(["psal", "dense", "contextual"]),
    temperature=st.sampled_from([1e-3, 1.0, 1e3]),
    aggregation=st.sampled_from(["center", "patch"]),
    backend=st.sampled_from(["auto", "torch"]),
    by_position=st.booleans(),
)
def test_attention_returns_a_result_or_a_one_line_error(seed, b, c, cv, sizes, same, p, k, dtype,
                                                        scale, hole_share, which, temperature,
                                                        aggregation, backend, by_position):  # fmt: skip
    rng = np.random.default_rng(seed)
    hq, wq, hk, wk = sizes
    if same:
        hk, wk = hq, wq
    q = torch.from_numpy(rng.standard_normal((b, c, hq, wq)) * scale).to(dtype)
    key = q if same else torch.from_numpy(rng.standard_normal((b, c, hk, wk)) * scale).to(dtype)
    v = torch.from_numpy(rng.random((b, cv, hk, wk))).to(dtype)
    hole = None
    if same and hole_share is not None:
        hole = torch.from_numpy(rng.random((b, 1, hq, wq)) < hole_share)
    grad = dtype != torch.float16
    q.requires_grad_(grad)
    v.requires_grad_(grad)
    shape = (b, cv, hq, wq)
    if which == "psal":
        _check(psal.ps_attention, q, key, v, grad, shape, k=k, patch_size=p,
               temperature=temperature, aggregation=aggregation, hole=hole, seed=seed,
               backend=backend)  # fmt: skip
    elif which == "dense":
        _check(psal.patch_attention, q, key, v, grad, shape, k=None if k == 5 else k,
               patch_size=p, temperature=temperature, aggregation=aggregation, hole=hole)  # fmt: skip
    else:
        kw = dict(hole=hole, patch_size=p, rate=1 + seed % 2, stride=1 + (seed >> 1) % 2,
                  fuse=bool(seed % 3))  # fmt: skip
        if by_position:  # the value by position: new-style call (hole= named)
            _check(psal.contextual_attention, q, key, v, grad, shape, **kw)
        else:
            _check(lambda a, bb, vv, **o: psal.contextual_attention(a, bb, value=vv, **o),
                   q, key, v, grad, shape, **kw)  # fmt: skip

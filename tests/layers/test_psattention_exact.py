"""PSAttention against the dense PatchAttention, gradients, batch independence, layouts.

PSAttention with the exact search and k = every valid key patch is dense patch
attention: same distances, softmax and aggregation. Each case runs through the fused
CPU node and through the torch reference graph (``_aggregate.FUSED`` off).
"""

from __future__ import annotations

import pytest
import torch

from psal.layers import PatchAttention, PSAttention, patch_attention, ps_attention
from psal.layers import _aggregate as agg_mod
from psal.patchmatch.distance import valid_key_positions

AGGREGATIONS = ["center", "patch"]


@pytest.fixture(params=["fused", "reference"])
def path(request, monkeypatch):
    """Run the aggregation through the fused CPU node or the torch reference graph."""
    ref = request.param == "reference"
    monkeypatch.setattr(agg_mod, "FUSED", not ref)
    monkeypatch.setattr(agg_mod, "NUMBA_FORWARD", not ref)
    monkeypatch.setattr(agg_mod, "NUMBA_BACKWARD", not ref)
    return request.param


def _grads(fn, *tensors):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*leaves)
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)
    return out.detach(), torch.autograd.grad((out * w).sum(), leaves)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_all_neighbours_equal_dense_cross_attention(aggregation, path):
    # batch 2, non-square, query and key of different sizes, value with other channels
    g = torch.Generator().manual_seed(0)
    q = torch.rand(2, 3, 5, 7, generator=g, dtype=torch.float64)
    k = torch.rand(2, 3, 6, 4, generator=g, dtype=torch.float64)
    v = torch.rand(2, 2, 6, 4, generator=g, dtype=torch.float64)
    t = torch.tensor(0.3, dtype=torch.float64)
    kw = dict(patch_size=3, aggregation=aggregation)

    def sparse(q, k, v, t):
        return ps_attention(q, k, v, k=24, iters=0, temperature=t, backend="exact", **kw)

    def dense(q, k, v, t):
        return patch_attention(q, k, v, temperature=t, **kw)

    out_s, grads_s = _grads(sparse, q, k, v, t)
    out_d, grads_d = _grads(dense, q, k, v, t)
    torch.testing.assert_close(out_s, out_d)
    for a, b in zip(grads_s, grads_d):
        torch.testing.assert_close(a, b)
    with torch.no_grad():  # the streaming vote
        torch.testing.assert_close(sparse(q, k, v, 0.3), out_d)
    module = PatchAttention(temperature=0.3, **kw)(q, k, v)
    torch.testing.assert_close(module, out_d)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_all_sources_equal_dense_with_holes(aggregation, path):
    # two samples, each with its own hole (one on the border) leaving as many sources
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 7, 9, generator=g, dtype=torch.float64)
    v = torch.rand(2, 2, 7, 9, generator=g, dtype=torch.float64)
    hole = torch.zeros(2, 1, 7, 9, dtype=torch.bool)
    hole[0, 0, 3, 3:5] = True
    hole[1, 0, 0:2, 5:7] = True  # on the border: reflected patches see it twice
    counts = valid_key_positions(hole, 3).flatten(1).sum(1).tolist()
    assert counts == [51, 51]
    kw = dict(patch_size=3, temperature=0.4, aggregation=aggregation, hole=hole)

    def sparse(x, v):
        return ps_attention(x, x, v, k=counts[0], iters=0, backend="exact", seed=0, **kw)

    def dense(x, v):
        return patch_attention(x, x, v, **kw)

    out_s, grads_s = _grads(sparse, x, v)
    out_d, grads_d = _grads(dense, x, v)
    torch.testing.assert_close(out_s, out_d)
    for a, b in zip(grads_s, grads_d):
        torch.testing.assert_close(a, b)
    assert torch.equal(out_s[~hole.expand_as(out_s)], v[~hole.expand_as(v)])
    with torch.no_grad():
        torch.testing.assert_close(sparse(x, v), out_d)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_gradcheck_with_a_hole_and_a_learnable_temperature(aggregation, path):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 1, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.rand(2, 2, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    hole = torch.zeros(2, 1, 5, 5, dtype=torch.bool)
    hole[0, 0, 1, 1:3] = True
    hole[1, 0, 4, 0:2] = True  # on the border

    def fn(x, v, t):
        return ps_attention(x, x, v, k=3, iters=2, temperature=t, aggregation=aggregation,
                            hole=hole, seed=1)  # fmt: skip

    assert torch.autograd.gradcheck(fn, (x, v, t))


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("masked", [False, True])
def test_batch_elements_are_independent(aggregation, masked, path):
    # changing sample 1 (its features and its hole) never changes sample 0's output or
    # gradient, on the training and the inference path
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 10, 11, generator=g, dtype=torch.float64)
    hole = None
    if masked:
        hole = torch.zeros(2, 1, 10, 11, dtype=torch.bool)
        hole[0, 0, 2:5, 3:6] = True
        hole[1, 0, 6:9, 6:10] = True
    x2 = x.clone()
    x2[1] = torch.rand(3, 10, 11, generator=g, dtype=torch.float64) * 5
    hole2 = None
    if masked:
        hole2 = hole.clone()
        hole2[1] = False
        hole2[1, 0, 0:3, 0:9] = True
    kw = dict(k=2, temperature=0.5, aggregation=aggregation, seed=3)

    def run(x, hole):
        out, (gx,) = _grads(lambda x: ps_attention(x, x, x, hole=hole, **kw), x)
        with torch.no_grad():
            infer = ps_attention(x, x, x, hole=hole, **kw)
        return out, gx, infer

    a, b = run(x, hole), run(x2, hole2)
    for u, w in zip(a, b):
        if path == "fused" or not masked:
            assert torch.equal(u[0], w[0])
        else:  # the hole's box spans the batch: torch's softmax on another size rounds
            torch.testing.assert_close(u[0], w[0], rtol=1e-15, atol=1e-15)  # otherwise


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("layout", ["channels_last", "permuted"])
def test_layouts_and_grad_modes_agree(aggregation, layout, path):
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 4, 9, 10, generator=g, dtype=torch.float64)
    if layout == "channels_last":
        y = x.to(memory_format=torch.channels_last)
    else:
        y = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert not y.is_contiguous() and torch.equal(x, y)
    layer = PSAttention(k=2, temperature=0.5, aggregation=aggregation)
    out_x, (gx,) = _grads(lambda t: layer(t, t, t, seed=0), x)
    out_y, (gy,) = _grads(lambda t: layer(t, t, t, seed=0), y)
    torch.testing.assert_close(out_y, out_x)
    torch.testing.assert_close(gy, gx)
    with torch.no_grad():
        torch.testing.assert_close(layer(y, y, y, seed=0), out_x)
    with torch.inference_mode():
        torch.testing.assert_close(layer(y, y, y, seed=0), out_x)

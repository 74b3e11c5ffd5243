"""The compiled CPU backward passes against the PyTorch loops they replace on CPU."""

from __future__ import annotations

import pytest
import torch

import psal
import psal.layers._aggregate as agg_mod
import psal.patchmatch.distance as dist_mod
from psal.patchmatch import patch_distance


@pytest.fixture(autouse=True)
def _torch_graph(monkeypatch):
    """These tests are about the compiled pieces of the torch graph (the reference on CPU
    since the fused node, tested in test_aggregate_cpu.py): switch the fused node off."""
    monkeypatch.setattr(agg_mod, "FUSED", False)


def _grads(fn, inputs, module, monkeypatch, flag):
    monkeypatch.setattr(module, "NUMBA_BACKWARD", flag)
    for t in inputs:
        t.grad = None
    fn().backward()
    return [None if t.grad is None else t.grad.clone() for t in inputs]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("window", [None, (2, 9, 3, 11)])
def test_patch_distance_backward_matches_torch(dtype, window, monkeypatch):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 5, 12, 13, generator=g, dtype=dtype, requires_grad=True)
    k = torch.randn(2, 5, 10, 11, generator=g, dtype=dtype, requires_grad=True)
    y0, y1, x0, x1 = window or (0, 12, 0, 13)
    idx = torch.randint(-1, 110, (2, 3, y1 - y0, x1 - x0), generator=g)
    w = torch.randn(idx.shape, generator=g, dtype=dtype)

    def fn():
        return (patch_distance(q, k, idx, 3, window=window).masked_fill(idx < 0, 0) * w).sum()

    ref = _grads(fn, [q, k], dist_mod, monkeypatch, False)
    new = _grads(fn, [q, k], dist_mod, monkeypatch, True)
    tol = {"rtol": 1e-5, "atol": 1e-4} if dtype == torch.float32 else {}
    for a, b in zip(ref, new, strict=True):
        torch.testing.assert_close(b, a, **tol)


def test_patch_distance_backward_one_input(monkeypatch):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 4, 9, 9, generator=g, requires_grad=True)
    k = torch.randn(1, 4, 9, 9, generator=g)  # no gradient wanted
    idx = torch.randint(0, 81, (1, 2, 9, 9), generator=g)
    ref = _grads(lambda: patch_distance(q, k, idx, 5).sum(), [q, k], dist_mod, monkeypatch, False)
    new = _grads(lambda: patch_distance(q, k, idx, 5).sum(), [q, k], dist_mod, monkeypatch, True)
    assert new[1] is None and ref[1] is None
    torch.testing.assert_close(new[0], ref[0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weighted_gather_backward_matches_torch(dtype, monkeypatch):
    g = torch.Generator().manual_seed(2)
    v = torch.randn(2, 7, 50, generator=g, dtype=dtype, requires_grad=True)
    w = torch.rand(2, 4, 30, generator=g, dtype=dtype, requires_grad=True)
    pos = torch.randint(0, 50, (2, 4, 30), generator=g)
    up = torch.randn(2, 7, 30, generator=g, dtype=dtype)

    def fn():
        return (agg_mod._WeightedGather.apply(v, pos, w) * up).sum()

    ref = _grads(fn, [v, w], agg_mod, monkeypatch, False)
    new = _grads(fn, [v, w], agg_mod, monkeypatch, True)
    for a, b in zip(ref, new, strict=True):
        torch.testing.assert_close(b, a)


@pytest.mark.parametrize("aggregation", ["center", "patch"])
def test_ps_attention_backward_matches_torch(aggregation, monkeypatch):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(1, 6, 14, 15, generator=g, requires_grad=True)
    k = torch.randn(1, 6, 13, 12, generator=g, requires_grad=True)
    v = torch.randn(1, 4, 13, 12, generator=g, requires_grad=True)
    w = torch.randn(1, 4, 14, 15, generator=g)

    def fn():
        out = psal.ps_attention(
            q, k, v, k=3, patch_size=3, temperature=2.0, aggregation=aggregation, seed=0
        )
        return (out * w).sum()

    monkeypatch.setattr(dist_mod, "NUMBA_BACKWARD", False)
    ref = _grads(fn, [q, k, v], agg_mod, monkeypatch, False)
    monkeypatch.setattr(dist_mod, "NUMBA_BACKWARD", True)
    new = _grads(fn, [q, k, v], agg_mod, monkeypatch, True)
    for a, b in zip(ref, new, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
        assert a.abs().max() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weighted_gather_forward_matches_torch(dtype, monkeypatch):
    g = torch.Generator().manual_seed(4)
    v = torch.randn(2, 7, 50, generator=g, dtype=dtype)
    w = torch.rand(2, 5, 30, generator=g, dtype=dtype)
    w[:, 1] = 0.0  # masked proposals contribute nothing
    pos = torch.randint(0, 50, (2, 5, 30), generator=g)
    monkeypatch.setattr(agg_mod, "NUMBA_FORWARD", False)
    ref = agg_mod._WeightedGather.apply(v, pos, w)
    monkeypatch.setattr(agg_mod, "NUMBA_FORWARD", True)
    new = agg_mod._WeightedGather.apply(v, pos, w)
    assert new.shape == ref.shape == (2, 7, 30) and new.dtype == dtype
    assert new.is_contiguous()
    torch.testing.assert_close(new, ref)
    assert not torch.equal(new, torch.zeros_like(new))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("window", [None, (2, 9, 3, 11)])
def test_patch_aggregate_forward_matches_torch(dtype, window, monkeypatch):
    from psal.layers._aggregate import aggregate

    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, 5, 12, 13, generator=g, dtype=dtype, requires_grad=True)
    k = torch.randn(2, 5, 10, 11, generator=g, dtype=dtype, requires_grad=True)
    v = torch.randn(2, 4, 10, 11, generator=g, dtype=dtype, requires_grad=True)
    idx = torch.randint(0, 110, (2, 3, 12, 13), generator=g)
    idx[:, :, :4, :5] = -1  # a block with no neighbour at all: uncovered pixels
    idx[:, 1, 6:] = -1  # masked single neighbours
    up = torch.randn(2, 4, 12, 13, generator=g, dtype=dtype)
    outs, grads = [], []
    for flag in (False, True):
        monkeypatch.setattr(agg_mod, "NUMBA_FORWARD", flag)
        out, cov = aggregate(q, k, v, idx, 3, 2.0, "patch", window=window)
        outs.append((out.detach(), cov))
        (out * up[..., : out.shape[-2], : out.shape[-1]]).sum().backward()
        grads.append([t.grad.clone() for t in (q, k, v)])
        for t in (q, k, v):
            t.grad = None
    (ref, ref_cov), (new, new_cov) = outs
    assert torch.equal(new_cov, ref_cov) and not ref_cov.all() and ref_cov.any()
    torch.testing.assert_close(new, ref)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(b, a, **tol)


@pytest.mark.parametrize("aggregation", ["center", "patch"])
def test_backward_blocks_of_channels_do_not_depend_on_thread_count(aggregation, monkeypatch):
    """The compiled backwards run over blocks of channels (40 = 16 + 16 + 8) on the thread
    pool: bit-identical gradients with 1 and 2 threads, and equal to the torch loops."""
    import numba

    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 40, 20, 24, generator=g, requires_grad=True)
    w = torch.randn(1, 40, 20, 24, generator=g)

    def grads(threads):
        n = numba.get_num_threads()
        try:
            numba.set_num_threads(threads)
            x.grad = None
            out = psal.ps_attention(x, x, x, k=3, patch_size=3, iters=2, seed=0,
                                    aggregation=aggregation)  # fmt: skip
            (out * w).sum().backward()
        finally:
            numba.set_num_threads(n)
        return x.grad.clone()

    one = grads(1)
    two = grads(min(2, numba.config.NUMBA_NUM_THREADS))
    assert torch.equal(one, two)
    monkeypatch.setattr(agg_mod, "NUMBA_BACKWARD", False)
    monkeypatch.setattr(dist_mod, "NUMBA_BACKWARD", False)
    torch.testing.assert_close(grads(1), one, rtol=1e-4, atol=1e-4)

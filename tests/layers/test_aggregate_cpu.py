"""The fused CPU aggregation (psal.layers._aggregate_cpu) against the torch reference."""

from __future__ import annotations

import numba
import pytest
import torch
import torch.nn.functional as F

import psal
import psal.layers._aggregate as agg_mod
import psal.layers._aggregate_cpu as fused
import psal.patchmatch.distance as dist_mod
from psal.layers._aggregate import aggregate


def _set_path(monkeypatch, path: str) -> None:
    """``"fused"``: the fused node; ``"reference"``: the plain torch graph."""
    ref = path == "reference"
    monkeypatch.setattr(agg_mod, "FUSED", not ref)
    monkeypatch.setattr(agg_mod, "NUMBA_FORWARD", not ref)
    monkeypatch.setattr(agg_mod, "NUMBA_BACKWARD", not ref)
    monkeypatch.setattr(dist_mod, "NUMBA_BACKWARD", not ref)


def _run(monkeypatch, path, fn, leaves):
    """(outputs of fn(), gradients of the leaves) on one path; fn returns (out, covered)."""
    _set_path(monkeypatch, path)
    for t in leaves:
        t.grad = None
    out, covered = fn()
    up = torch.randn(out.shape, generator=torch.Generator().manual_seed(9)).to(out.dtype)
    (out * up).sum().backward()
    return out.detach(), covered, [None if t.grad is None else t.grad.clone() for t in leaves]


def _inputs(dtype, b=2, c=5, cv=4, hq=12, wq=13, hk=10, wk=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, c, hq, wq, generator=g, dtype=dtype, requires_grad=True)
    k = torch.randn(b, c, hk, wk, generator=g, dtype=dtype, requires_grad=True)
    v = torch.randn(b, cv, hk, wk, generator=g, dtype=dtype, requires_grad=True)
    idx = torch.randint(0, hk * wk, (b, 3, hq, wq), generator=g)
    idx[:, :, :4, :5] = -1  # no neighbour at all: uncovered pixels ("center")
    idx[:, 1, 6:] = -1  # single missing neighbours
    return q, k, v, idx


def _close(new, ref, dtype):
    tol = {"rtol": 1e-5, "atol": 2e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(new, ref, **tol)


@pytest.mark.parametrize("aggregation", ["center", "patch"])
@pytest.mark.parametrize("window", [None, (2, 9, 3, 11)])
@pytest.mark.parametrize("known", [False, True])
def test_fused_matches_reference(dtype, aggregation, window, known, monkeypatch):
    """Outputs, coverage and gradients (query, key, value, a learnable temperature)."""
    q, k, v, idx = _inputs(dtype)
    t = torch.tensor(1.7, requires_grad=True)
    dist = None
    if known:  # the search's distances: float32 whatever the inputs
        with torch.no_grad():
            dist = dist_mod.patch_distance(q, k, idx, 3).float()

    def fn():
        return aggregate(q, k, v, idx, 3, t, aggregation, window=window, distances=dist)

    ref = _run(monkeypatch, "reference", fn, [q, k, v, t])
    new = _run(monkeypatch, "fused", fn, [q, k, v, t])
    assert new[0].dtype == dtype and new[0].shape == ref[0].shape
    assert torch.equal(new[1], ref[1]) and ref[1].dtype == torch.bool
    if aggregation == "center" and window is None:
        assert not ref[1].all() and ref[1].any()
    _close(new[0], ref[0], dtype)
    assert not new[0].masked_select(~new[1]).any()  # 0 where nothing was proposed
    for a, b in zip(ref[2][:3], new[2][:3], strict=True):
        assert a is not None and a.abs().max() > 0
        _close(b, a, dtype)
    # the temperature's gradient sums terms of both signs over every pixel: float32
    # rounding of the two summation orders is ~1e-4 of it
    tol = {"rtol": 2e-3, "atol": 0} if dtype == torch.float32 else {}
    torch.testing.assert_close(new[2][3], ref[2][3], **tol)


@pytest.mark.parametrize("aggregation", ["center", "patch"])
@pytest.mark.parametrize("share", ["qkv", "qk", "kv"])
def test_fused_shared_inputs(aggregation, share, monkeypatch):
    """Self-attention passes one tensor several times: gradients summed as autograd does."""
    q, k, v, idx = _inputs(torch.float64, c=4, hq=10, wq=11)
    q = {"qkv": k, "qk": k, "kv": q}[share]
    v = {"qkv": k, "qk": v, "kv": k}[share]
    idx = idx[..., : q.shape[-2], : q.shape[-1]]
    leaves = list({id(t): t for t in (q, k, v)}.values())

    def fn():
        return aggregate(q, k, v, idx, 3, 0.8, aggregation)

    ref = _run(monkeypatch, "reference", fn, leaves)
    new = _run(monkeypatch, "fused", fn, leaves)
    torch.testing.assert_close(new[0], ref[0])
    for a, b in zip(ref[2], new[2], strict=True):
        torch.testing.assert_close(b, a)


@pytest.mark.parametrize(("patch_size", "k"), [(1, 1), (5, 2), (3, 4)])
@pytest.mark.parametrize("aggregation", ["center", "patch"])
def test_fused_patch_sizes_and_neighbour_counts(patch_size, k, aggregation, monkeypatch):
    """1x1 patches (no padding), 5x5 patches (borders reflected twice), k = 1 .. 4;
    channels-last (non-contiguous) inputs. In float64: the geometry, not the rounding
    (float32 5x5 distances put the float32 reference ~1e-5 off)."""
    g = torch.Generator().manual_seed(6)
    q = torch.randn(2, 3, 9, 8, generator=g, dtype=torch.float64)
    q = q.to(memory_format=torch.channels_last)
    kv = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    q.requires_grad_(True)
    kv.requires_grad_(True)
    idx = torch.randint(-1, 42, (2, k, 9, 8), generator=g)

    def fn():
        return aggregate(q, kv, kv, idx, patch_size, 1.3, aggregation)

    ref = _run(monkeypatch, "reference", fn, [q, kv])
    new = _run(monkeypatch, "fused", fn, [q, kv])
    assert torch.equal(new[1], ref[1])
    torch.testing.assert_close(new[0], ref[0])
    for a, b in zip(ref[2], new[2], strict=True):
        torch.testing.assert_close(b, a)


@pytest.mark.parametrize("needs", ["q", "k", "v", "qk", "kv", "t"])
def test_fused_partial_gradients(needs, monkeypatch):
    """Only some inputs need a gradient: the others get None, the rest match."""
    q, k, v, idx = _inputs(torch.float32, b=1)
    t = torch.tensor(2.5, requires_grad=True)
    leaves = [x.detach().requires_grad_(name in needs) for x, name in zip((q, k, v, t), "qkvt")]

    def fn():
        return aggregate(*leaves[:3], idx, 3, leaves[3], "patch")

    ref = _run(monkeypatch, "reference", fn, leaves)
    new = _run(monkeypatch, "fused", fn, leaves)
    for name, a, b in zip("qkvt", ref[2], new[2], strict=True):
        assert (b is None) == (name not in needs) == (a is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=2e-3 if name == "t" else 1e-5, atol=2e-5)


@pytest.mark.parametrize("aggregation", ["center", "patch"])
def test_fused_gradcheck(aggregation):
    """float64 gradcheck of the fused node itself (distances recomputed, not known)."""
    assert agg_mod.FUSED
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 3, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(0, 30, (2, 2, 6, 7), generator=g)
    idx[0, 1, 2:4] = -1

    def fn(q, k, v, t):
        return aggregate(q, k, v, idx, 3, t, aggregation, window=(1, 5, 2, 7))[0]

    assert torch.autograd.gradcheck(fn, (q, k, v, t))
    x = q.detach().clone().requires_grad_(True)  # self-attention: one input three times
    idx_self = torch.randint(0, 42, (2, 2, 6, 7), generator=g)
    assert torch.autograd.gradcheck(lambda x: aggregate(x, x, x, idx_self, 3, 2.0,
                                                        aggregation)[0], (x,))  # fmt: skip


def test_fused_float32_is_as_accurate_as_reference(monkeypatch):
    """Plain average (T = inf) and a sharp softmax (T = 0.3, 5x5 patches): against the
    reference in float64, the fused float32 path errs no more than the float32 reference
    (its logits and softmax are computed in float64)."""
    q, k, v, idx = _inputs(torch.float32, b=1)
    for temperature in (float("inf"), 0.3):
        results = {}
        for path, dtype in (("reference", torch.float64), ("reference", torch.float32),
                            ("fused", torch.float32)):  # fmt: skip
            leaves = [t.detach().to(dtype).requires_grad_(True) for t in (q, k, v)]

            def fn(leaves=leaves, temperature=temperature):
                return aggregate(*leaves, idx, 5, temperature, "patch")

            out, _, grads = _run(monkeypatch, path, fn, leaves)
            results[path, dtype] = [out.double()] + [g.double() for g in grads]
        truth = results["reference", torch.float64]
        ref, new = results["reference", torch.float32], results["fused", torch.float32]
        for t, a, b in zip(truth, ref, new, strict=True):
            scale = float(t.abs().max())
            assert (b - t).abs().max() <= 2 * (a - t).abs().max() + 1e-6 * scale


@pytest.mark.parametrize("aggregation", ["center", "patch"])
def test_ps_attention_fused_matches_reference(aggregation, monkeypatch):
    """End to end, batch 2, with and without a hole, self-attention on one tensor."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 6, 20, 22, generator=g, requires_grad=True)
    hole = torch.zeros(2, 1, 20, 22, dtype=torch.bool)
    hole[0, :, 5:11, 6:12] = True
    hole[1, :, 12:17, 3:9] = True
    for mask in (None, hole):

        def fn(mask=mask):
            out = psal.ps_attention(x, x, x, k=3, patch_size=3, iters=2, temperature=0.7,
                                    aggregation=aggregation, hole=mask, seed=0)  # fmt: skip
            return out, None

        ref = _run(monkeypatch, "reference", fn, [x])
        new = _run(monkeypatch, "fused", fn, [x])
        _close(new[0], ref[0], torch.float32)
        _close(new[2][0], ref[2][0], torch.float32)
        if mask is not None:  # outside the hole, the output is the value
            assert torch.equal(new[0].masked_select(~mask), x.detach().masked_select(~mask))


def test_layout_kernels_are_the_padding_and_its_adjoint():
    g = torch.Generator().manual_seed(3)
    for r, (h, w) in ((1, (5, 7)), (2, (6, 5)), (0, (3, 4))):
        x = torch.randn(2, 19, h, w, generator=g, dtype=torch.float64, requires_grad=True)
        padded = F.pad(x, (r,) * 4, mode="reflect") if r else x
        assert torch.equal(fused._pad_cl(x, r), padded.detach().permute(0, 2, 3, 1))
        up = torch.randn(padded.shape, generator=g, dtype=torch.float64)
        (grad,) = torch.autograd.grad(padded, x, up)
        mine = fused._unpad_cl([up.permute(0, 2, 3, 1).contiguous()], r, True)
        torch.testing.assert_close(mine, grad)
        two = fused._unpad_cl([up.permute(0, 2, 3, 1).contiguous() for _ in range(2)], r, True)
        torch.testing.assert_close(two, 2 * grad)


def test_fused_results_do_not_depend_on_thread_count():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba was started with one thread")
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 40, 70, 70, generator=g, requires_grad=True)  # above the serial sizes
    idx = torch.randint(0, 70 * 70, (1, 3, 70, 70), generator=g)
    results = []
    n = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            x.grad = None
            out, _ = aggregate(x, x, x, idx, 3, 5.0, "patch")
            out.square().sum().backward()
            results.append((out.detach(), x.grad.clone()))
    finally:
        numba.set_num_threads(n)
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


def test_unsupported_inputs_take_the_reference_path(monkeypatch):
    q, k, v, idx = _inputs(torch.float32, b=1)
    assert fused.supported(q, k, v, 1.0)
    assert not fused.supported(q.bfloat16(), k.bfloat16(), v.bfloat16(), 1.0)
    called = []
    monkeypatch.setattr(fused, "aggregate_cpu", lambda *a: called.append(a))
    out, _ = aggregate(q.bfloat16(), k.bfloat16(), v.bfloat16(), idx, 3, 1.0, "center")
    assert out.dtype == torch.bfloat16 and not called


@pytest.mark.parametrize("aggregation", ["patch", "center"])
def test_torch_aggregation_keeps_float32_logits_exact_for_large_distances(monkeypatch, aggregation):
    """The differentiable torch aggregation (the GPU path), given the search's distances:
    ~1e6, differing by a few hundredths (exact in float32: steps of 1/16), T = 0.01.
    -d / T in float32 was rounded to ulps of 8 (weights off by up to e^2); shifted by the
    smallest distance first, the float32 output matches the float64 one."""
    from psal.layers import _aggregate

    monkeypatch.setattr(_aggregate, "FUSED", False)
    g = torch.Generator().manual_seed(4)
    key = torch.rand(1, 4, 10, 9, generator=g)
    query = torch.rand(1, 4, 8, 7, generator=g)
    value = torch.rand(1, 2, 10, 9, generator=g)
    idx = torch.randint(0, 90, (1, 3, 8, 7), generator=g)
    d = 1e6 + torch.randint(0, 2, (1, 3, 8, 7), generator=g) / 16.0  # float32-exact
    ref, _ = _aggregate.aggregate(query.double(), key.double(), value.double(), idx, 3, 0.01,
                                  aggregation, distances=d.double())  # fmt: skip
    out, covered = _aggregate.aggregate(query, key, value, idx, 3, 0.01, aggregation,
                                        distances=d)  # fmt: skip
    assert bool(covered.all())
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("aggregation", "rtol"), [("patch", 2e-2), ("center", 0.2)])
def test_fused_temperature_gradient_is_accurate_for_large_distances(monkeypatch, aggregation,
                                                                    rtol):  # fmt: skip
    """dL/dT = sum_n glogit_n d_n / T^2 with distances ~1e5 whose differences are ~10: the
    fused node summed glogit * d in float32 (here 6% off the float64 gradient for
    "patch", 6x it for "center", whose gradient nearly cancels); each pixel's softmax
    gradient sums to 0, so the distances less a constant give the same sum without the
    cancellation (0.6% and 3% left: the float32 distances' own rounding)."""
    _set_path(monkeypatch, "fused")
    g = torch.Generator().manual_seed(2)
    q = torch.rand(1, 4, 16, 16, generator=g, dtype=torch.float64)
    k = torch.rand(1, 4, 16, 16, generator=g, dtype=torch.float64) + 50.0
    v = torch.rand(1, 3, 16, 16, generator=g, dtype=torch.float64)
    idx = psal.patchmatch(q, k, k=4, seed=0).indices
    grads = []
    for dtype in (torch.float64, torch.float32):
        t = torch.tensor(2.0, dtype=dtype, requires_grad=True)
        out, _ = aggregate(q.to(dtype), k.to(dtype), v.to(dtype), idx, 3, t, aggregation)
        w = torch.linspace(-1, 1, out.numel(), dtype=dtype).view(out.shape)
        (gt,) = torch.autograd.grad((out * w).sum(), t)
        grads.append(float(gt))
    assert abs(grads[1] - grads[0]) <= rtol * abs(grads[0])


@pytest.mark.parametrize("aggregation", ["center", "patch"])
def test_the_fused_node_saves_its_buffers_through_saved_tensor_hooks(aggregation, monkeypatch):
    """Activation checkpointing and offloading work through saved-tensor hooks: the
    node's buffers (padded inputs, positions, weights, distances) must pass through
    them, or checkpointing keeps them alive (they were plain ctx attributes)."""
    _set_path(monkeypatch, "fused")
    x = torch.randn(1, 8, 24, 24, generator=torch.Generator().manual_seed(3), requires_grad=True)
    packed: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        packed.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = psal.ps_attention(x, x, x, k=3, patch_size=3, iters=2, aggregation=aggregation,
                                seed=0)  # fmt: skip
    out.sum().backward()
    ra = 1 if aggregation == "patch" else 0
    positions = 24 * 24 * 3 * (2 * ra + 1) ** 2  # per output pixel: k neighbours' pixels
    assert sum(packed) >= positions * (8 + 4)  # int64 positions and float32 weights at least
    assert x.grad is not None and torch.isfinite(x.grad).all()

"""Tests of PSAttention, attend and PatchAttention."""

from __future__ import annotations

import itertools

import pytest
import torch

import psal
from psal.layers import PatchAttention, PSAttention, attend, patch_attention, ps_attention


def loop_reference(q, k, v, idx, p, t, aggregation):
    """Plain loops over pixels, neighbours and offsets (float64), for one batch item."""
    r = p // 2
    _, hq, wq = q.shape
    _, hk, wk = k.shape
    qp = torch.nn.functional.pad(q[None], (r, r, r, r), mode="reflect")[0]
    kp = torch.nn.functional.pad(k[None], (r, r, r, r), mode="reflect")[0]

    def dist(y, x, n):
        ky, kx = divmod(int(n), wk)
        return float(((qp[:, y : y + p, x : x + p] - kp[:, ky : ky + p, kx : kx + p]) ** 2).sum())

    def refl(i, n):
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)

    out = torch.zeros(v.shape[0], hq, wq, dtype=torch.float64)
    for y, x in itertools.product(range(hq), range(wq)):
        logits, vals = [], []
        offsets = (
            [(0, 0)]
            if aggregation == "center"
            else list(itertools.product(range(-r, r + 1), repeat=2))
        )
        for dy, dx in offsets:
            cy, cx = y - dy, x - dx
            if not (0 <= cy < hq and 0 <= cx < wq):
                continue
            for n in idx[:, cy, cx].tolist():
                ny, nx = divmod(n, wk)
                logits.append(-dist(cy, cx, n) / t)
                vals.append(v[:, refl(ny + dy, hk), refl(nx + dx, wk)])
        w = torch.softmax(torch.tensor(logits, dtype=torch.float64), 0)
        out[:, y, x] = sum(wi * vi for wi, vi in zip(w, vals))
    return out


@pytest.mark.parametrize("aggregation", ["center", "patch"])
@pytest.mark.parametrize("p", [1, 3, 5])
def test_attend_matches_loop_reference(aggregation, p):
    q = torch.rand(2, 3, 6, 7, dtype=torch.float64)
    k = torch.rand(2, 3, 7, 5, dtype=torch.float64)
    v = torch.rand(2, 2, 7, 5, dtype=torch.float64)
    idx = psal.patchmatch(q, k, k=3, patch_size=p, seed=0).indices
    out = attend(q, k, v, idx, patch_size=p, temperature=0.3, aggregation=aggregation)
    for b in range(2):
        ref = loop_reference(q[b], k[b], v[b], idx[b], p, 0.3, aggregation)
        torch.testing.assert_close(out[b], ref)


@pytest.mark.parametrize("aggregation", ["center", "patch"])
def test_gradcheck_against_fixed_neighbours(aggregation):
    q = torch.rand(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    k = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    v = torch.rand(1, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    idx = psal.patchmatch(q, k, k=2, seed=0).indices
    assert torch.autograd.gradcheck(
        lambda *a: attend(*a[:3], idx, patch_size=3, temperature=a[3], aggregation=aggregation),
        (q, k, v, t),
    )


@pytest.mark.parametrize("aggregation", ["center", "patch"])
def test_ps_attention_gradients_are_those_of_its_field(aggregation):
    x = torch.rand(2, 4, 10, 9, dtype=torch.float64, requires_grad=True)
    v = torch.rand(2, 3, 10, 9, dtype=torch.float64, requires_grad=True)
    out, field = ps_attention(
        x, x, v, k=3, aggregation=aggregation, seed=1, return_field=True, temperature=0.4
    )
    g = torch.rand_like(out)
    gx, gv = torch.autograd.grad((out * g).sum(), (x, v))
    ref = attend(x, x, v, field.indices, patch_size=3, temperature=0.4, aggregation=aggregation)
    rx, rv = torch.autograd.grad((ref * g).sum(), (x, v))
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gv, rv)
    assert gx.abs().sum() > 0 and gv.abs().sum() > 0


@pytest.mark.parametrize("aggregation", ["center", "patch"])
def test_module_equals_function(aggregation):
    x = torch.rand(1, 4, 12, 12)
    layer = PSAttention(k=4, patch_size=3, iters=3, temperature=0.2, aggregation=aggregation)
    a = layer(x, x, x, seed=3)
    b = ps_attention(
        x, x, x, k=4, patch_size=3, iters=3, temperature=0.2, aggregation=aggregation, seed=3
    )
    torch.testing.assert_close(a, b)
    dense = PatchAttention(patch_size=3, temperature=0.2, aggregation=aggregation)
    torch.testing.assert_close(
        dense(x, x, x),
        patch_attention(x, x, x, patch_size=3, temperature=0.2, aggregation=aggregation),
    )


@pytest.mark.parametrize("aggregation", ["center", "patch"])
@pytest.mark.parametrize("temperature", [0.2, 0.01, 3.7])
def test_module_uses_the_temperature_it_was_given(aggregation, temperature):
    # A fixed temperature was kept as a float32 log T and used as exp(log T): 0.2 became
    # 0.19999998807907104, so the module's float64 output was not the function's.
    g = torch.Generator().manual_seed(1)
    q = torch.rand(2, 4, 10, 9, generator=g, dtype=torch.float64)
    k = torch.rand(2, 4, 8, 11, generator=g, dtype=torch.float64)
    v = torch.rand(2, 3, 8, 11, generator=g, dtype=torch.float64)
    layer = PSAttention(k=5, temperature=temperature, aggregation=aggregation)
    assert float(layer.temperature) == temperature
    kw = dict(k=5, temperature=temperature, aggregation=aggregation, seed=2)
    for grad in (False, True):
        qq = q.clone().requires_grad_(grad)
        assert torch.equal(layer(qq, k, v, seed=2), ps_attention(qq, k, v, **kw))


@pytest.mark.parametrize("aggregation", ["center", "patch"])
def test_psattention_with_many_iterations_approaches_exact_topk(aggregation):
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(
        torch.rand(1, 3, 7, 7, generator=g), size=(14, 14), mode="bilinear"
    )
    y = torch.nn.functional.interpolate(
        torch.rand(1, 3, 7, 7, generator=g), size=(14, 14), mode="bilinear"
    )
    exact = patch_attention(x, y, y, patch_size=3, temperature=0.05, k=6, aggregation=aggregation)
    few = ps_attention(x, y, y, k=6, iters=1, temperature=0.05, aggregation=aggregation, seed=0)
    many = ps_attention(x, y, y, k=6, iters=200, temperature=0.05, aggregation=aggregation, seed=0)
    err_few = (few - exact).abs().mean()
    err_many = (many - exact).abs().mean()
    assert err_many < 1e-4 and err_many < err_few / 10


@pytest.mark.parametrize("aggregation", ["center", "patch"])
def test_topk_over_all_keys_equals_dense(aggregation):
    q = torch.rand(2, 2, 5, 6, dtype=torch.float64)
    k = torch.rand(2, 2, 4, 5, dtype=torch.float64)
    v = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    dense = patch_attention(q, k, v, patch_size=3, temperature=0.7, aggregation=aggregation)
    sparse = patch_attention(q, k, v, patch_size=3, temperature=0.7, k=20, aggregation=aggregation)
    torch.testing.assert_close(dense, sparse)


def test_dense_chunking_and_checkpoint_do_not_change_results(monkeypatch):
    from psal.layers import dense as mod

    x = torch.rand(1, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    full = patch_attention(x, x, x, patch_size=3, temperature=0.5, aggregation="patch")
    (gf,) = torch.autograd.grad(full.sum(), x)
    monkeypatch.setattr(mod, "MAX_CHUNK_BYTES", 1)  # one query pixel per chunk
    small = patch_attention(x, x, x, patch_size=3, temperature=0.5, aggregation="patch")
    (gs,) = torch.autograd.grad(small.sum(), x)
    torch.testing.assert_close(full, small)
    torch.testing.assert_close(gf, gs)


@pytest.mark.parametrize("aggregation", ["center", "patch"])
@pytest.mark.parametrize("layer", ["psal", "dense", "topk"])
def test_mask_no_hole_content_reaches_the_hole(aggregation, layer):
    x = torch.rand(2, 3, 14, 14)
    mask = torch.zeros(2, 1, 14, 14, dtype=torch.bool)
    mask[0, 0, 3:8, 4:10] = True
    mask[1, 0, 9:14, 0:5] = True  # touches the border; per-sample masks
    v = torch.rand(2, 2, 14, 14)
    v = torch.where(mask, torch.full_like(v, 1e6), v)  # poison: hole values are huge
    if layer == "psal":
        out = ps_attention(x, x, v, k=3, aggregation=aggregation, hole=mask, seed=0)
    else:
        topk = 3 if layer == "topk" else None
        out = patch_attention(
            x, x, v, patch_size=3, temperature=0.5, k=topk, aggregation=aggregation, hole=mask
        )
    inside = mask.expand_as(out)
    assert float(out[inside].max()) <= 1.0, "content from the hole leaked into the hole"
    assert torch.equal(out[~inside], v[~inside]), "outside the hole the output is the value"


def test_per_sample_masks_give_each_sample_its_own_result():
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    mask = torch.zeros(2, 1, 12, 12, dtype=torch.bool)
    mask[0, 0, 2:6, 2:6] = True
    mask[1, 0, 6:11, 5:12] = True
    both = ps_attention(x, x, x, k=2, hole=mask, backend="exact", aggregation="patch")
    for b in range(2):
        alone = ps_attention(x[b : b + 1], x[b : b + 1], x[b : b + 1], k=2, hole=mask[b : b + 1],
                             backend="exact", aggregation="patch")  # fmt: skip
        torch.testing.assert_close(both[b : b + 1], alone)


def test_learnable_temperature_gets_a_gradient():
    layer = PSAttention(k=3, temperature=0.5, learnable_temperature=True, aggregation="patch")
    assert isinstance(layer.log_temperature, torch.nn.Parameter)
    x = torch.rand(1, 3, 10, 10)
    mask = torch.zeros(1, 1, 10, 10, dtype=torch.bool)
    mask[..., 3:6, 3:6] = True
    out = layer(x, x, x, hole=mask, seed=0)
    out.sum().backward()
    assert layer.log_temperature.grad is not None
    assert torch.isfinite(layer.log_temperature.grad) and layer.log_temperature.grad != 0
    assert "learnable_temperature=True" in repr(layer)


def test_return_field_and_cross_attention_shapes():
    q = torch.rand(2, 4, 9, 11)
    k = torch.rand(2, 4, 13, 7)
    v = torch.rand(2, 5, 13, 7)
    out, field = ps_attention(q, k, v, k=2, return_field=True, seed=0)
    assert out.shape == (2, 5, 9, 11)
    assert field.indices.shape == (2, 2, 9, 11) and int(field.indices.max()) < 13 * 7


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_runs_on_device_and_dtype(device, dtype):
    x = torch.rand(1, 3, 10, 10, device=device, dtype=dtype, requires_grad=True)
    for agg in ("center", "patch"):
        out = ps_attention(x, x, x, k=2, aggregation=agg, seed=0)
        assert out.device == x.device and out.dtype == dtype
        out.sum().backward()
        dense = patch_attention(x, x, x, patch_size=3, temperature=1.0, aggregation=agg)
        assert dense.device == x.device and dense.dtype == dtype


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda q, k, v: ps_attention(q[0], k, v), ValueError, "query must have 4 dimensions"),
        (lambda q, k, v: ps_attention(q, k[:, :2], v), ValueError, "same channels"),
        (lambda q, k, v: ps_attention(q, k, v[:1]), ValueError, "same batch size"),
        (lambda q, k, v: ps_attention(q, k, v[..., :5]), ValueError, "value must have the key's spatial size"),
        (lambda q, k, v: ps_attention(q, k, v.double()), TypeError, "share a dtype"),
        (lambda q, k, v: ps_attention(q, k, v, aggregation="mean"), ValueError, "aggregation must be one of"),
        (lambda q, k, v: ps_attention(q, k, v, temperature=0.0), ValueError, "temperature must be"),
        (lambda q, k, v: ps_attention(q, k, v, temperature=torch.ones(2)), ValueError, "one-element"),
        (lambda q, k, v: ps_attention(q[..., :6], k, v, hole=torch.zeros(2, 1, 6, 8, dtype=torch.bool)), ValueError, "same spatial size"),
        (lambda q, k, v: ps_attention(q, k, v, hole=torch.zeros(2, 1, 8, 7, dtype=torch.bool)), ValueError, "hole must have shape"),
        (lambda q, k, v: patch_attention(q, k, v, k=0), ValueError, "k must be >= 1"),
        (lambda q, k, v: patch_attention(q, k, v, hole=torch.ones(2, 1, 8, 8, dtype=torch.bool)), ValueError, "no key patch"),
        (lambda q, k, v: PSAttention(k=0), ValueError, "k must be >= 1"),
        (lambda q, k, v: PSAttention(patch_size=2), ValueError, "patch_size must be a positive odd"),
        (lambda q, k, v: attend(q, k, v, torch.zeros(2, 2, 8, 8)), ValueError, "indices must be int64"),
        (lambda q, k, v: attend(q, k, v, torch.full((2, 2, 8, 8), 64)), ValueError, "indices must lie in"),
    ],
)  # fmt: skip
def test_bad_input(call, exc, match):
    q, k, v = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), torch.rand(2, 4, 8, 8)
    with pytest.raises(exc, match=match):
        call(q, k, v)


@pytest.mark.parametrize("k", [None, 3])
@pytest.mark.parametrize("bad", ["query", "key"])
def test_dense_attention_refuses_non_finite_query_and_key(k, bad):
    # with k=3 (the exact search) a NaN query was refused, with k=None (all key
    # patches) it came back as a NaN output without a word
    x = {"query": torch.rand(1, 2, 6, 6), "key": torch.rand(1, 2, 6, 6)}
    x[bad][0, 0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=f"{bad} contains NaN or Inf"):
        patch_attention(x["query"], x["key"], torch.rand(1, 1, 6, 6), k=k)
    x[bad][0, 0, 2, 3] = float("inf")
    with pytest.raises(ValueError, match=f"{bad} contains NaN or Inf"):
        PatchAttention(k=k)(x["query"], x["key"], torch.rand(1, 1, 6, 6))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_mismatched_devices_are_rejected():
    q = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="is on"):
        ps_attention(q, q.cuda(), q)


@pytest.mark.parametrize("aggregation", ["center", "patch"])
def test_masked_output_is_the_full_aggregation_inside_the_hole(aggregation):
    x = torch.rand(2, 3, 16, 15, dtype=torch.float64, requires_grad=True)
    v = torch.rand(2, 2, 16, 15, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(2, 1, 16, 15, dtype=torch.bool)
    mask[0, 0, 5:9, 6:10] = True  # the bounding-box window is the union over the batch
    mask[1, 0, 10:12, 1:4] = True
    out, field = ps_attention(x, x, v, k=3, aggregation=aggregation, hole=mask, seed=0,
                              temperature=0.3, return_field=True)  # fmt: skip
    ref = torch.where(
        mask,
        attend(x, x, v, field.indices, patch_size=3, temperature=0.3, aggregation=aggregation),
        v,
    )
    torch.testing.assert_close(out, ref)
    g = torch.rand_like(out)
    for a, b in zip(
        torch.autograd.grad((out * g).sum(), (x, v)), torch.autograd.grad((ref * g).sum(), (x, v))
    ):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("aggregation", ["center", "patch"])
@pytest.mark.parametrize("masked", [False, True])
def test_inference_path_equals_training_path(aggregation, masked):
    # without gradients ps_attention votes (streaming); with them it builds the graph
    x = torch.rand(2, 3, 13, 12, dtype=torch.float64)
    v = torch.rand(2, 2, 13, 12, dtype=torch.float64)
    mask = None
    if masked:
        mask = torch.zeros(2, 1, 13, 12, dtype=torch.bool)
        mask[0, 0, 3:7, 2:6] = True
        mask[1, 0, 8:12, 7:11] = True
    kw = dict(k=3, aggregation=aggregation, hole=mask, seed=4, temperature=0.3)
    infer = ps_attention(x, x, v, **kw)
    train = ps_attention(x, x, v.clone().requires_grad_(), **kw)
    assert train.requires_grad and not infer.requires_grad
    torch.testing.assert_close(infer, train.detach())
    plain = ps_attention(x, x, v, **{**kw, "temperature": float("inf")})
    plain_t = ps_attention(x, x, v.clone().requires_grad_(), **{**kw, "temperature": float("inf")})
    torch.testing.assert_close(plain, plain_t.detach())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layer", ["psal", "topk"])
@pytest.mark.parametrize("aggregation", ["center", "patch"])
def test_half_precision_backward(dtype, layer, aggregation):
    # weights are float32 (softmax over float32 distances): the value gradient must be
    # cast back to the value's dtype, and match the float32 gradients closely
    x32 = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    grads = []
    for dt in (torch.float32, dtype):
        x = x32.to(dt, copy=True).requires_grad_()
        if layer == "psal":
            out = ps_attention(x, x, x, k=2, temperature=0.5, aggregation=aggregation, seed=0,
                               backend="exact")  # fmt: skip
        else:
            out = patch_attention(x, x, x, k=2, temperature=0.5, aggregation=aggregation)
        assert out.dtype == dt
        out.float().square().sum().backward()
        assert x.grad.dtype == dt
        grads.append(x.grad.float())
    torch.testing.assert_close(grads[1], grads[0], atol=0.1, rtol=0.05)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("aggregation", ["center", "patch"])
def test_half_precision_training_path_rounds_once(dtype, aggregation):
    # The training path (gradients needed) summed a pixel's k * p^2 weighted values, and
    # scattered the value gradient, in float16 / bfloat16: errors of several units of
    # the dtype's precision, growing with the proposals, where the inference path (and a
    # float32 accumulation) rounds once. Output and value gradient must be within one
    # eps (relative) of the float64 result on the same half-precision inputs.
    g = torch.Generator().manual_seed(0)
    q = torch.rand(2, 8, 10, 9, generator=g).to(dtype)
    k = (torch.rand(2, 8, 10, 9, generator=g) * 0.7 + 0.1).to(dtype)
    v = (torch.rand(2, 4, 10, 9, generator=g) + 0.5).to(dtype)
    kw = dict(k=8, patch_size=5, iters=0, temperature=2.0, aggregation=aggregation,
              backend="exact")  # fmt: skip
    vd = v.double().requires_grad_()
    ref = ps_attention(q.double(), k.double(), vd, **kw)
    w = torch.rand(ref.shape, generator=g, dtype=torch.float64)
    (gv_ref,) = torch.autograd.grad((ref * w).sum(), vd)
    vh = v.clone().requires_grad_()
    out = ps_attention(q, k, vh, **kw)
    (gv,) = torch.autograd.grad((out.double() * w).sum(), vh)
    assert out.dtype == gv.dtype == dtype
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.double(), ref.detach(), rtol=eps, atol=0)
    torch.testing.assert_close(gv.double(), gv_ref, rtol=eps, atol=0)


def test_output_is_a_new_tensor_even_without_hole_pixels():
    x = torch.rand(1, 2, 8, 8, requires_grad=True)
    out = ps_attention(x, x, x, k=2, hole=torch.zeros(1, 1, 8, 8, dtype=torch.bool), seed=0)
    assert out is not x
    torch.testing.assert_close(out, x)


@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_dense_attention_is_accurate_with_a_large_common_offset(offset):
    x = torch.rand(1, 3, 10, 10, generator=torch.Generator().manual_seed(0)) + offset
    out = patch_attention(x, x, x, temperature=0.1)
    ref = patch_attention(x.double(), x.double(), x.double(), temperature=0.1)
    torch.testing.assert_close(out.double(), ref, atol=1e-3, rtol=1e-6)


@pytest.mark.parametrize("aggregation", ["center", "patch"])
@pytest.mark.parametrize("seed", [0, 1])
def test_dense_temperature_gradient_is_accurate_for_large_distances(aggregation, seed):
    # key = query + 50: distances ~1e5 differing by ~10. The float32 temperature
    # gradient, sum g * d / T², cancelled over the raw distances: 40-60% (patch) and up to
    # 1e8 times (center) off the float64 one; with d less each pixel's smallest, < 1%.
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(1, 4, 12, 12, generator=g, dtype=torch.float64)
    k = torch.rand(1, 4, 12, 12, generator=g, dtype=torch.float64) + 50.0
    v = torch.rand(1, 3, 12, 12, generator=g, dtype=torch.float64)
    grads = []
    for dtype in (torch.float64, torch.float32):
        t = torch.tensor(2.0, dtype=dtype, requires_grad=True)
        out = patch_attention(q.to(dtype), k.to(dtype), v.to(dtype), temperature=t,
                              aggregation=aggregation)  # fmt: skip
        w = torch.linspace(-1, 1, out.numel(), dtype=dtype).view(out.shape)
        (gt,) = torch.autograd.grad((out * w).sum(), t)
        grads.append(float(gt))
    assert abs(grads[1] - grads[0]) <= 1e-2 * abs(grads[0])


@pytest.mark.parametrize("grow", [0, 1])
def test_a_hole_that_leaves_too_few_sources_is_named(grow):
    x = torch.rand(2, 3, 6, 6)
    hole = torch.zeros(2, 1, 6, 6, dtype=torch.bool)
    hole[1, :, 1:, :] = True  # element 1: one row of pixels left, no 3x3 patch outside
    hole[1, :, :, 5 - grow :] = True
    with pytest.raises(ValueError, match=r"^hole leaves no key patch outside the hole in batch "
                                         r"element 1: a 3x3 patch"):  # fmt: skip
        psal.ps_attention(x, x, x, k=2, patch_size=3, hole=hole)
    hole[1] = False
    hole[1, :, 2:, :] = True  # rows 0-1 known: the 6 patches centred on row 0 (the map's
    # outside is not hole)
    with pytest.raises(ValueError, match=r"only 6 key patches \(k=7\)"):
        psal.ps_attention(x, x, x, k=7, patch_size=3, hole=hole)
    psal.ps_attention(x, x, x, k=6, patch_size=3, hole=hole)  # enough

"""The layers under what PyTorch users do with modules every day.

Activation checkpointing, torch.compile, copies and state dicts, dtypes, grad modes,
thread counts. Small CPU inputs; the PatchMatch seed is left to torch's generator
(``seed=None``) wherever that is what a training loop does.
"""

import copy
import io
import pickle

import pytest
import torch
from torch.utils.checkpoint import checkpoint

from psal.layers import ContextualAttention, PatchAttention, PSAttention, build_attention

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(h=12, w=11, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 4, h, w, generator=g, dtype=dtype)
    v = torch.rand(2, 3, h, w, generator=g, dtype=dtype)
    up = torch.rand(2, 3, h, w, generator=g, dtype=dtype)  # the output's gradient
    hole = torch.zeros(2, 1, h, w, dtype=torch.bool)
    hole[0, :, 3:7, 2:6] = True
    hole[1, :, 5:9, 4:9] = True
    return x, v, up, hole


def _out(r):
    return r[0] if isinstance(r, tuple) else r


@pytest.mark.parametrize("use_reentrant", [False, True])
@pytest.mark.parametrize(
    "make",
    [
        lambda: PSAttention(k=3, iters=1),
        lambda: PSAttention(k=2, iters=1, aggregation="patch", learnable_temperature=True),
        lambda: build_attention("psal", k=3, iters=1),
    ],
    ids=["center", "patch_learnable_t", "psal_block"],
)
@pytest.mark.parametrize("masked", [False, True])
def test_checkpointing_recomputes_the_same_neighbours(make, use_reentrant, masked):
    # seed=None: the search draws its seed from torch's generator, which checkpoint
    # restores before recomputing, so the recomputed forward finds the same neighbours
    # and the gradients are those of the un-checkpointed call (a seed drawn elsewhere
    # would give the gradients of another neighbour field)
    x, v, up, hole = _inputs()
    layer = make().double()
    h = hole if masked else None

    def fn(x, v):
        return _out(layer(x, x, v, hole=h))

    grads = []
    for ckpt in (False, True):
        xs, vs = x.clone().requires_grad_(), v.clone().requires_grad_()
        torch.manual_seed(3)
        out = checkpoint(fn, xs, vs, use_reentrant=use_reentrant) if ckpt else fn(xs, vs)
        torch.rand(10)  # the generator moves on before backward, as in training
        (out * up).sum().backward()
        grads.append((xs.grad, vs.grad))
    for a, b in zip(grads[0], grads[1], strict=True):
        assert torch.equal(a, b)


@pytest.mark.usefixtures("fresh_dynamo")
def test_compiled_layer_takes_new_sizes_and_matches_eager():
    # the search was traced: on a second input size (dynamic shapes) tracing failed
    # in its border reflection ('slice start must be int or None, got SymInt'); the
    # search, the vote and the fused CPU aggregation now run eagerly (graph breaks).
    # The failure was in dynamo's tracing: the "eager" backend shows it, fast.
    layer = PSAttention(k=2, iters=1, learnable_temperature=True)
    compiled = torch.compile(layer, backend="eager")
    for h, w in ((9, 10), (12, 11)):
        x, v, up, _ = _inputs(h, w, dtype=torch.float32)
        results = []
        for m in (layer, compiled):
            xs, vs = x.clone().requires_grad_(), v.clone().requires_grad_()
            layer.zero_grad()
            torch.manual_seed(5)
            out = m(xs, xs, vs)
            (out * up).sum().backward()
            results.append([out.detach(), xs.grad, vs.grad, layer.log_temperature.grad])
        for a, b in zip(*results, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


_MODULES = {
    "psattention": lambda: PSAttention(k=2, iters=1, temperature=0.7),
    "psattention_learnable": lambda: PSAttention(
        k=2, iters=1, temperature=0.3, learnable_temperature=True
    ),
    "patch_attention": lambda: PatchAttention(temperature=0.7),
    "contextual": lambda: ContextualAttention(),
    "block_psal": lambda: build_attention("psal", k=2, iters=1, learnable_temperature=True),
    "block_dense": lambda: build_attention("dense"),
}


def _call(m, x, v, **kw):
    torch.manual_seed(7)
    return _out(m(x, x, v, **kw))


def _roundtrips(m):
    yield "deepcopy", copy.deepcopy(m)
    yield "pickle", pickle.loads(pickle.dumps(m))
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    yield "torch.save", torch.load(buf, weights_only=False)


@pytest.mark.parametrize("name", sorted(_MODULES))
def test_copies_state_dicts_and_modes_give_the_same_output(name):
    x, v, _, _ = _inputs(9, 8, dtype=torch.float32)
    m = _MODULES[name]()
    with torch.no_grad():  # a trained temperature, not the initial one
        for p in m.parameters():
            p.add_(0.25)
    ref = _call(m, x, v)
    for how, m2 in _roundtrips(m):
        assert torch.equal(_call(m2, x, v), ref), how
    fresh = _MODULES[name]()
    fresh.load_state_dict(m.state_dict(), strict=True)  # the learned log T travels
    assert torch.equal(_call(fresh, x, v), ref)
    # eval() and train() change nothing (no dropout, no batch statistics)
    assert torch.equal(_call(m.eval(), x, v), ref)
    assert torch.equal(_call(m.train(), x, v), ref)
    # without autograd (PSAttention: the streaming vote) the output is the same
    with torch.no_grad():
        torch.testing.assert_close(_call(m, x, v), ref, rtol=1e-6, atol=1e-6)
    with torch.inference_mode():
        torch.testing.assert_close(_call(m, x, v), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["psattention", "psattention_learnable", "patch_attention"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_module_dtype_conversions_run(name, dtype):
    x, v, up, _ = _inputs(9, 8, dtype=torch.float32)
    m = _MODULES[name]()
    ref = _call(m, x, v)
    m = m.to(dtype)
    xs, vs = x.to(dtype).requires_grad_(), v.to(dtype).requires_grad_()
    out = _call(m, xs, vs)
    assert out.dtype == dtype
    (out * up.to(dtype)).sum().backward()
    assert xs.grad.dtype == vs.grad.dtype == dtype
    tol = {torch.float64: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}[dtype]
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("aggregation", ["center", "patch"])
def test_gradients_of_inputs_that_alone_require_them(aggregation):
    x, v, up, _ = _inputs()
    layer = PSAttention(k=2, iters=1, aggregation=aggregation)

    def grads(needs):
        q, k, val = (t.clone().requires_grad_(n in needs) for t, n in ((x, "q"), (x, "k"),
                                                                       (v, "v")))  # fmt: skip
        torch.manual_seed(2)
        (_out(layer(q, k, val)) * up).sum().backward()
        return {"q": q.grad, "k": k.grad, "v": val.grad}

    every = grads("qkv")
    for one in "qkv":
        got = grads(one)
        torch.testing.assert_close(got[one], every[one], rtol=1e-12, atol=1e-12)
        assert all(got[o] is None for o in "qkv" if o != one)


def test_same_seed_same_output_on_one_or_two_threads():
    # the search and aggregation (numba threads) and the torch ops around them
    import numba

    x, v, up, hole = _inputs(dtype=torch.float32)
    layer = build_attention("psal", k=3, iters=2, aggregation="patch")
    before = torch.get_num_threads(), numba.get_num_threads()
    results = []
    try:
        for n_torch, n_numba in ((1, 1), (2, 2), (1, 2), (2, 1)):
            numba.set_num_threads(n_numba)  # first: it may reset torch's count
            torch.set_num_threads(n_torch)
            for h in (None, hole):
                xs = x.clone().requires_grad_()
                torch.manual_seed(11)
                out = layer(xs, xs, v, hole=h)[0]
                (out * up).sum().backward()
                results.append((out.detach(), xs.grad))
    finally:
        numba.set_num_threads(before[1])
        torch.set_num_threads(before[0])
    for i, r in enumerate(results[2:], 2):
        for a, b in zip(results[i % 2], r, strict=True):
            assert torch.equal(a, b)

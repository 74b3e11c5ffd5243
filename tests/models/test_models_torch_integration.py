"""The registered networks under what PyTorch users do with modules every day.

Copies and state dicts, ``.half()`` / ``.bfloat16()`` on CPU, torch.compile, thread
counts, train/eval. Tiny networks; one thread (``conftest``) unless a test sets more.
"""

import copy
import io
import pickle

import pytest
import torch

from psal.models import create_model

_G = torch.Generator().manual_seed(0)
_IMG = torch.rand(2, 3, 32, 32, generator=_G) * 2 - 1
_HOLE = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
_HOLE[0, :, 8:20, 8:20] = True
_HOLE[1, :, 4:12, 16:28] = True
_LR = torch.rand(1, 3, 12, 14, generator=_G)
_Y = torch.rand(1, 1, 16, 20, generator=_G)
_REF = torch.rand(1, 3, 16, 16, generator=_G)

# name: (constructor, forward on the fixed inputs in a dtype)
_NETS = {
    "deepfill_psal": (
        lambda: create_model(
            "deepfill_v1",
            width=4,
            attention="psal",
            attention_options={"iters": 1, "learnable_temperature": True},
        ),
        lambda m, dt: m(_IMG.to(dt), _HOLE).completed,
    ),
    "deepfill_contextual": (
        lambda: create_model("deepfill_v1", width=4, attention="contextual"),
        lambda m, dt: m(_IMG.to(dt), _HOLE).completed,
    ),
    "edsr_psal": (
        lambda: create_model("edsr_psal", scale=2, width=8, blocks=2, attention="psal"),
        lambda m, dt: m(_LR.to(dt)),
    ),
    "guided_colorizer": (
        lambda: create_model("guided_colorizer", width=4, attention="psal"),
        lambda m, dt: m(_Y.to(dt), _REF.to(dt)).chroma,
    ),
}


def _make(name):
    torch.manual_seed(1)
    m = _NETS[name][0]()
    with torch.no_grad():  # no zero-initialised head: every layer shows in the output
        for p in m.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
    return m


def _run(name, m, dtype=torch.float32, seed=3):
    torch.manual_seed(seed)
    return _NETS[name][1](m, dtype)


@pytest.mark.parametrize("name", sorted(_NETS))
def test_copies_state_dicts_modes_and_threads_give_the_same_output(name):
    m = _make(name)
    ref = _run(name, m)
    assert torch.equal(_run(name, m), ref)  # the same seed repeats
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    for how, m2 in (("deepcopy", copy.deepcopy(m)), ("pickle", pickle.loads(pickle.dumps(m))),
                    ("torch.save", torch.load(buf, weights_only=False))):  # fmt: skip
        assert torch.equal(_run(name, m2), ref), how
    fresh = _NETS[name][0]()  # other random weights
    fresh.load_state_dict(m.state_dict(), strict=True)
    assert torch.equal(_run(name, fresh), ref)
    assert torch.equal(_run(name, m.eval()), ref)  # no dropout or batch statistics
    m.train()
    with torch.inference_mode():
        torch.testing.assert_close(_run(name, m), ref, rtol=1e-5, atol=1e-5)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert torch.equal(_run(name, m), ref)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["edsr_psal", "guided_colorizer", "deepfill_psal"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_networks_run_on_cpu(name, dtype):
    # edsr_psal: torch's CPU bicubic has no float16/bfloat16 kernel (NotImplementedError
    # 'compute_index_ranges_weights'); guided_colorizer: the attention blocks return
    # float32, which met the decoder's float16 weights (a dtype error)
    m = _make(name)
    ref = _run(name, m)
    low = copy.deepcopy(m).to(dtype)
    with torch.no_grad():
        out = _run(name, low, dtype)
    assert out.dtype == dtype and out.shape == ref.shape
    assert torch.isfinite(out).all()
    # mostly the float32 result (a few pixels may pick other neighbours)
    tol = 0.02 if dtype == torch.float16 else 0.1
    assert (out.float() - ref).abs().mean() < tol


@pytest.mark.slow  # 4-8 s on 2 busy cores: dynamo traces the network's frames
@pytest.mark.usefixtures("fresh_dynamo")
def test_compiled_network_trains_like_the_eager_one():
    # the colorizer attends at two sizes in one forward: the traced PatchMatch search
    # failed on the second ('slice start must be int or None, got SymInt')
    torch.manual_seed(1)
    m = create_model("guided_colorizer", width=4, attention="psal", scales=(2, 4),
                     value_width=0, attention_options={"iters": 1})  # fmt: skip
    torch.nn.init.normal_(m.head.weight, std=0.1)
    compiled = torch.compile(m, backend="eager")
    results = []
    for net in (m, compiled):
        m.zero_grad()
        torch.manual_seed(3)
        out = net(_Y, _REF).chroma
        out.square().mean().backward()
        results.append([out.detach()] + [p.grad for p in m.parameters()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

"""Entry points that used to skip checks their siblings make (found by review).

Each case used to give a silently wrong answer (reads outside the maps, a gradient
without its second-order graph, duplicate neighbours), or an error from deep inside.
"""

from __future__ import annotations

import pytest
import torch

import psal
from psal.layers import vote
from psal.patchmatch import patch_distance


def _field(x, k=2):
    return psal.patchmatch(x, x, k=k, seed=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_attend_refuses_a_patch_larger_than_the_maps(dtype):
    torch.manual_seed(0)
    q, k, v = torch.rand(2, 1, 1, 8), torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    idx = torch.randint(0, 64, (2, 2, 1, 8))
    with pytest.raises(ValueError, match="patch_size=5 is larger than query, whose spatial"):
        psal.attend(q.to(dtype), k.to(dtype), v.to(dtype), idx, patch_size=5)
    small = torch.rand(2, 1, 2, 2)
    with pytest.raises(ValueError, match="patch_size=3 is larger than key"):
        psal.attend(torch.rand(2, 1, 4, 4), small, small, torch.zeros(2, 1, 4, 4).long())


def test_attend_batch_elements_stay_apart():
    # what the missing check let through: one batch element read another's memory
    torch.manual_seed(0)
    q, k, v = torch.rand(2, 1, 5, 8), torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    idx = torch.randint(0, 64, (2, 2, 5, 8))
    a = psal.attend(q, k, v, idx, patch_size=5, temperature=0.1)
    q2 = q.clone()
    q2[0] += 5.0
    b = psal.attend(q2, k, v, idx, patch_size=5, temperature=0.1)
    assert torch.equal(a[1], b[1])


def test_vote_refuses_a_patch_larger_than_the_value():
    v = torch.zeros(2, 1, 2, 2)
    idx = torch.zeros(2, 1, 24, 24, dtype=torch.long)
    d = torch.zeros(2, 1, 24, 24)
    with pytest.raises(ValueError, match="patch_size=21 is larger than value"):
        vote(v, idx, d, 21, float("inf"), "patch")
    out, _ = vote(v, idx, d, 21, float("inf"), "center")  # a centre vote reads no patch
    assert out.shape == (2, 1, 24, 24) and bool(torch.isfinite(out).all())


def test_vote_temperature_and_empty_batch():
    x = torch.rand(1, 3, 8, 8)
    f = _field(x)
    want, _ = vote(x, f.indices, f.distances, 3, 0.5)
    got, _ = vote(x, f.indices, f.distances, 3, torch.tensor(0.5))  # as ps_attention takes
    assert torch.equal(got, want)
    for bad, err in (("1", TypeError), (None, TypeError), (True, TypeError), (-1.0, ValueError),
                     (float("nan"), ValueError), (torch.ones(2), ValueError)):  # fmt: skip
        with pytest.raises(err, match="temperature"):
            vote(x, f.indices, f.distances, 3, bad)
    with pytest.raises(ValueError, match="B >= 1"):
        vote(x[:0], f.indices[:0], f.distances[:0])


def test_empty_batches_are_named():
    x = torch.rand(1, 3, 8, 8)
    f = _field(x)
    with pytest.raises(ValueError, match="B >= 1"):
        psal.attend(x[:0], x[:0], x[:0], f.indices[:0])
    with pytest.raises(ValueError, match="B >= 1"):
        psal.patch_attention(x[:0], x[:0], x[:0])
    with pytest.raises(ValueError, match="B >= 1"):
        psal.ps_attention(x[:0], x[:0], x[:0])


def test_patch_distance_checks_its_arguments():
    torch.manual_seed(0)
    q, k = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    idx = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    over = idx.clone()
    over[0] = 16  # == Hk * Wk: used to read the next batch element's key
    with pytest.raises(ValueError, match=r"indices must lie in \[-1, Hk\*Wk\) = \[-1, 16\)"):
        patch_distance(q, k, over, 3)
    with pytest.raises(ValueError, match="odd"):
        patch_distance(q, k, idx, 2)
    with pytest.raises(ValueError, match="same B >= 1 and C >= 1"):
        patch_distance(q, torch.rand(2, 3, 4, 4), idx, 3)
    with pytest.raises(ValueError, match="patch_size=5 is larger than query"):
        patch_distance(q, k, idx, 5)
    with pytest.raises(ValueError, match=r"indices must be int64 of shape \(B, k, Hq, Wq\)"):
        patch_distance(q, k, idx[..., :3], 3)
    with pytest.raises(ValueError, match="window must be"):
        patch_distance(q, k, idx, 3, window=(0, 5, 0, 4))
    d = patch_distance(q, k, idx[..., 1:3, :], 3, window=(1, 3, 0, 4))
    assert torch.equal(d, patch_distance(q, k, idx, 3)[..., 1:3, :])


def test_double_backward_is_refused_not_silently_wrong():
    import psal.layers._aggregate as aggregate

    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    idx = psal.patchmatch(x, x, k=2, seed=0, backend="exact").indices
    for fused in (True, False):
        old, aggregate.FUSED = aggregate.FUSED, fused
        try:
            loss = psal.attend(x, x, x, idx, temperature=2.0).sum()
            with pytest.raises(RuntimeError, match="cannot be differentiated twice"):
                torch.autograd.grad(loss, x, create_graph=True)
            # first-order gradients are untouched
            (g,) = torch.autograd.grad(psal.attend(x, x, x, idx, temperature=2.0).sum(), x)
            assert g.shape == x.shape and bool(torch.isfinite(g).all())
        finally:
            aggregate.FUSED = old
    d = patch_distance(x, x, idx, 3).sum()
    with pytest.raises(RuntimeError, match="patch_distance cannot be differentiated twice"):
        torch.autograd.grad(d, x, create_graph=True)


def test_double_backward_stays_exact_on_the_pure_torch_path(monkeypatch):
    # the path of CUDA and other dtypes: its backward is differentiable, and a gradient
    # penalty through it must keep working
    import psal.layers._aggregate as aggregate
    import psal.patchmatch.distance as distance

    for module, flag in ((aggregate, "FUSED"), (aggregate, "NUMBA_BACKWARD"),
                         (aggregate, "NUMBA_FORWARD"), (distance, "NUMBA_BACKWARD")):  # fmt: skip
        monkeypatch.setattr(module, flag, False)
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    idx = psal.patchmatch(x, x, k=2, seed=0, backend="exact").indices
    assert torch.autograd.gradgradcheck(lambda z: psal.attend(z, z, z, idx, temperature=2.0), (x,))
    assert torch.autograd.gradgradcheck(lambda z: patch_distance(z, z, idx, 3), (x,))


def test_torch_func_transforms_are_refused_by_name():
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"psal\.ps_attention does not support torch\.func"):
        torch.func.grad(lambda z: psal.ps_attention(z, z, z, seed=0).sum())(x)
    with pytest.raises(RuntimeError, match=r"psal\.patchmatch does not support torch\.func"):
        torch.func.vmap(lambda z: psal.patchmatch(z[None], z[None]).distances)(x)


def test_torch_backend_keeps_neighbours_distinct_when_distances_overflow():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 5, 5) * 1e20, torch.randn(1, 1, 5, 5) * 1e20  # SSDs overflow
    r = psal.patchmatch(q, k, k=3, iters=2, seed=0, backend="torch")
    flat = r.indices[0].reshape(3, -1).T
    assert all(len(set(row.tolist())) == 3 for row in flat)
    x = torch.rand(1, 2, 12, 12)  # ordinary inputs: sorted, distinct, as before
    r = psal.patchmatch(x, x, k=4, seed=0, backend="torch")
    assert bool((r.distances[:, 1:] >= r.distances[:, :-1]).all())
    assert all(len(set(row.tolist())) == 4 for row in r.indices[0].reshape(4, -1).T)


def test_layer_constructors_check_backend_and_take_an_infinite_temperature():
    with pytest.raises(ValueError, match="backend must be one of"):
        psal.PSAttention(backend="cuda")
    with pytest.raises(ValueError, match="cannot be learnable"):
        psal.PSAttention(temperature=float("inf"), learnable_temperature=True)
    x = torch.rand(1, 3, 10, 10)
    torch.manual_seed(0)
    got = psal.PSAttention(temperature=float("inf"))(x, x, x)
    assert got.shape == x.shape and bool(torch.isfinite(got).all())
    assert torch.allclose(psal.PatchAttention(temperature=float("inf"))(x, x, x),
                          psal.patch_attention(x, x, x, temperature=float("inf")))  # fmt: skip


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("-inf"), torch.tensor(-0.5)])
@pytest.mark.parametrize("call", ["ps_attention", "patch_attention", "PSAttention",
                                  "PatchAttention", "attend"])  # fmt: skip
def test_a_bad_temperature_names_what_is_allowed(call, bad):
    # float("inf") (the plain average) is a valid temperature: the message said "must
    # be a finite number > 0"
    x = torch.rand(1, 2, 6, 6)
    idx = _field(x).indices
    make = {
        "ps_attention": lambda: psal.ps_attention(x, x, x, temperature=bad),
        "patch_attention": lambda: psal.patch_attention(x, x, x, temperature=bad),
        "PSAttention": lambda: psal.PSAttention(temperature=bad),
        "PatchAttention": lambda: psal.PatchAttention(temperature=bad),
        "attend": lambda: psal.attend(x, x, x, idx, temperature=bad),
    }[call]
    constructor = call[0].isupper()
    err = TypeError if constructor and isinstance(bad, torch.Tensor) else ValueError
    with pytest.raises(
        err, match=r"temperature must be (a number )?> 0 \(inf for a plain average\)"
    ):
        make()

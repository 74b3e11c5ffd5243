from __future__ import annotations

import pytest
import torch

import psal
from psal.layers.vote import _vote_numba, _vote_torch, vote


def _grid(h, w):
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ys.flatten(), xs.flatten()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("temperature", [0.3, 5.0])
def test_vote_equals_psal_patch_attention(dtype, temperature):
    # the voting step is exactly PSAL's patch aggregation over the same field
    g = torch.Generator().manual_seed(0)
    q = torch.rand(1, 3, 14, 17, generator=g, dtype=dtype)
    k = torch.rand(1, 3, 12, 15, generator=g, dtype=dtype)
    v = torch.rand(1, 2, 12, 15, generator=g, dtype=dtype)
    field = psal.patchmatch(q, k, k=3, patch_size=5, iters=2, seed=0)
    ref = psal.attend(
        q, k, v, field.indices, patch_size=5, temperature=temperature, aggregation="patch"
    )
    out, covered = vote(v, field.indices, field.distances, 5, temperature)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert covered.all()
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)


def test_numba_and_torch_agree_with_unsearched_pixels():
    g = torch.Generator().manual_seed(1)
    img = torch.rand(1, 3, 16, 16, generator=g, dtype=torch.float64)
    hole = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    hole[..., 5:9, 6:11] = True
    qmask = hole.clone()
    qmask[..., 0:2, 0:2] = True
    field = psal.patchmatch(img, img, k=2, patch_size=3, iters=2, query_valid=qmask,
                            key_valid=~hole, seed=0)  # fmt: skip
    ys, xs = _grid(16, 16)
    bs = torch.zeros_like(ys)
    a, ca = _vote_numba(img, field.indices, field.distances, 1, 0.2, bs, ys, xs)
    b, cb = _vote_torch(img, field.indices, field.distances, 1, 0.2, bs, ys, xs)
    assert torch.equal(ca, cb)
    assert ca.view(16, 16)[6, 8] and not ca.view(16, 16)[15, 15]  # far pixels get nothing
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    u, _ = _vote_numba(img, field.indices, field.distances, 1, float("inf"), bs, ys, xs)
    w, _ = _vote_torch(img, field.indices, field.distances, 1, float("inf"), bs, ys, xs)
    torch.testing.assert_close(u, w, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_vote_survives_distances_far_above_the_smallest(dtype):
    # the compiled vote shifts the softmax by the smallest distance of the batch
    # element; a region whose proposals all lie ~1e4 T above it underflows there and
    # takes the exact per-pixel shift, like the torch path
    g = torch.Generator().manual_seed(3)
    v = torch.rand(2, 3, 12, 12, generator=g, dtype=dtype)
    idx = torch.randint(0, 144, (2, 2, 12, 12), generator=g)
    d = torch.rand(2, 2, 12, 12, generator=g, dtype=dtype)
    d[0, :, 6:, :] += 1e4  # 1e4 / 0.5 = 2e4 above the smallest logit: exp underflows
    d[0, :, :6, 6:] += 100  # weights ~1e-87: below float32's range, summed in float64
    d[1] += 1e3  # a shift of the whole element changes nothing
    ys, xs = _grid(12, 12)
    bs = torch.zeros_like(ys)
    for b in (0, 1):
        a, ca = _vote_numba(v, idx, d, 1, 0.5, bs + b, ys, xs)
        w, cw = _vote_torch(v, idx, d, 1, 0.5, bs + b, ys, xs)
        assert ca.all() and cw.all()
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(a, w, atol=tol, rtol=tol)


@pytest.mark.parametrize("aggregation", ["center", "patch"])
@pytest.mark.parametrize("backend_fn", ["numba", "torch"])
def test_batched_pixels_and_center_aggregation(aggregation, backend_fn):
    g = torch.Generator().manual_seed(2)
    q = torch.rand(2, 3, 11, 13, generator=g, dtype=torch.float64)
    v = torch.rand(2, 4, 11, 13, generator=g, dtype=torch.float64)
    field = psal.patchmatch(q, q, k=3, patch_size=3, iters=2, seed=0)
    ref = psal.attend(
        q, q, v, field.indices, patch_size=3, temperature=0.7, aggregation=aggregation
    )
    fn = _vote_numba if backend_fn == "numba" else _vote_torch
    bs = torch.tensor([0, 1, 1, 0])
    ys = torch.tensor([0, 10, 5, 3])
    xs = torch.tensor([0, 12, 6, 9])
    r = 1 if aggregation == "patch" else 0
    out, covered = fn(v, field.indices, field.distances, r, 0.7, bs, ys, xs)
    assert covered.all()
    torch.testing.assert_close(out, ref[bs, :, ys, xs].t())
    full, cov = vote(v, field.indices, field.distances, 3, 0.7, aggregation)
    torch.testing.assert_close(full, ref)
    assert cov.shape == (2, 1, 11, 13) and bool(cov.all())


def test_bad_arguments():
    v = torch.rand(1, 1, 4, 4)
    idx = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="aggregation must be"):
        vote(v, idx, idx.float(), 3, 1.0, "mean")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        vote(v, idx, idx.float(), 3, 0.0)


def test_bad_fields_are_rejected_not_read_out_of_bounds():
    v = torch.rand(1, 2, 4, 4)
    idx = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    d = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"indices must lie in \[-1, Hk\*Wk\) = \[-1, 16\)"):
        vote(v, torch.full_like(idx, 10**12), d, 1, 1.0, "center")
    with pytest.raises(ValueError, match="indices must lie"):
        vote(v, torch.full_like(idx, -2), d, 1, 1.0, "center")
    with pytest.raises(ValueError, match="same batch size, got 3 and 1"):
        vote(v, idx.expand(3, 1, 4, 4), d.expand(3, 1, 4, 4), 1, 1.0)
    with pytest.raises(ValueError, match="distances must have the shape of indices"):
        vote(v, idx, d[..., :3], 1, 1.0)
    with pytest.raises(TypeError, match="indices must be int64"):
        vote(v, idx.int(), d, 1, 1.0)
    with pytest.raises(ValueError, match="patch_size must be a positive odd"):
        vote(v, idx, d, 2, 1.0)
    with pytest.raises(TypeError, match="value must be a floating"):
        vote(v.long(), idx, d, 1, 1.0)
    one = torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match=r"pixels: y coordinates must lie in \[0, 4\)"):
        vote(v, idx, d, 1, 1.0, pixels=(one, one + 4, one))
    with pytest.raises(ValueError, match="pixels must be three tensors of one length"):
        vote(v, idx, d, 1, 1.0, pixels=(one, one, torch.zeros(2, dtype=torch.long)))


def test_pixels_must_be_integer_tensors():
    v = torch.rand(1, 2, 4, 4)
    idx = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    d = torch.zeros(1, 1, 4, 4)
    zero, one = torch.zeros(1, dtype=torch.long), torch.ones(1, dtype=torch.long)
    with pytest.raises(TypeError, match=r"pixels must be three integer tensors.*float32"):
        vote(v, idx, d, 1, 1.0, pixels=(zero, one.float() + 0.7, one))  # used to read y=1
    with pytest.raises(TypeError, match=r"pixels must be three integer tensors.*bool"):
        vote(v, idx, d, 1, 1.0, pixels=(zero, one, one.bool()))
    with pytest.raises(TypeError, match=r"pixels must be three integer tensors.*list"):
        vote(v, idx, d, 1, 1.0, pixels=(zero, [1], one))
    with pytest.raises(TypeError, match="pixels must be a tuple"):
        vote(v, idx, d, 1, 1.0, pixels=one)
    out32, _ = vote(v, idx, d, 1, 1.0, pixels=(zero.int(), one.int(), one.int()))
    out64, _ = vote(v, idx, d, 1, 1.0, pixels=(zero, one, one))
    assert torch.equal(out32, out64)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_torch_path_accumulates_half_precision_in_float32(dtype):
    # distances above float16's range (65504) and a sharp softmax must not break the
    # vectorised (GPU) path: its softmax runs in float32 like the numba kernel's
    g = torch.Generator().manual_seed(0)
    q = torch.rand(1, 8, 6, 6, generator=g) * 100
    key = torch.rand(1, 8, 6, 6, generator=g) * 100 + 200
    f = psal.patchmatch(q, key, k=2, patch_size=3, seed=0)
    assert float(f.distances.min()) > 65504
    ys, xs = _grid(6, 6)
    bs = torch.zeros_like(ys)
    for t in (1e6, 0.05):
        ref, _ = _vote_torch(key.to(dtype).float(), f.indices, f.distances, 1, t, bs, ys, xs)
        out, covered = _vote_torch(key.to(dtype), f.indices, f.distances, 1, t, bs, ys, xs)
        assert out.dtype == dtype and bool(covered.all())
        torch.testing.assert_close(out.float(), ref, atol=2e-2 * 300, rtol=1e-2)


@pytest.mark.parametrize("aggregation_radius", [0, 1])
def test_torch_vote_keeps_float32_weights_exact_for_large_distances(aggregation_radius):
    """Distances ~1e6 that differ by a few units, T = 0.01: -d / T rounded to float32 ulps
    of 8 made weight ratios e^8 instead of e^6; the torch path now shifts by the smallest
    distance first, as the compiled one does, and both match a float64 vote."""
    g = torch.Generator().manual_seed(3)
    value = torch.rand(2, 3, 9, 8, generator=g)
    idx = torch.randint(0, 9 * 8, (2, 3, 7, 6), generator=g)
    d = 1e6 + torch.rand(2, 3, 7, 6, generator=g) * 0.05  # float32 steps of 1/16 at 1e6
    bs, ys, xs = (t.reshape(-1) for t in torch.meshgrid(
        torch.arange(2), torch.arange(7), torch.arange(6), indexing="ij"))  # fmt: skip
    ref, _ = _vote_torch(value.double(), idx, d.double(), aggregation_radius, 0.01, bs, ys, xs)
    for fn in (_vote_torch, _vote_numba):
        out, covered = fn(value, idx, d, aggregation_radius, 0.01, bs, ys, xs)
        assert bool(covered.all())
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)

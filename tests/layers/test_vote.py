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
    ref = psal.attend(q, k, v, field.indices, 5, temperature, "patch")
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
    field = psal.patchmatch(img, img, k=2, patch_size=3, iters=2, query_mask=qmask,
                            key_mask=hole, seed=0)  # fmt: skip
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


@pytest.mark.parametrize("aggregation", ["center", "patch"])
@pytest.mark.parametrize("backend_fn", ["numba", "torch"])
def test_batched_pixels_and_center_aggregation(aggregation, backend_fn):
    g = torch.Generator().manual_seed(2)
    q = torch.rand(2, 3, 11, 13, generator=g, dtype=torch.float64)
    v = torch.rand(2, 4, 11, 13, generator=g, dtype=torch.float64)
    field = psal.patchmatch(q, q, k=3, patch_size=3, iters=2, seed=0)
    ref = psal.attend(q, q, v, field.indices, 3, 0.7, aggregation)
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

from __future__ import annotations

import pytest
import torch

import psal
from psal.editing._vote import _vote_numba, _vote_torch, vote, wexler_temperature


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
    ys, xs = _grid(14, 17)
    out, covered = vote(v, field.indices, field.distances, 5, temperature, ys, xs)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert covered.all()
    torch.testing.assert_close(out.view(2, 14, 17), ref[0], atol=tol, rtol=tol)


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
    a, ca = _vote_numba(img, field.indices, field.distances, 3, 0.2, ys, xs)
    b, cb = _vote_torch(img, field.indices, field.distances, 3, 0.2, ys, xs)
    assert torch.equal(ca, cb)
    assert ca.view(16, 16)[6, 8] and not ca.view(16, 16)[15, 15]  # far pixels get nothing
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    u, _ = _vote_numba(img, field.indices, field.distances, 3, float("inf"), ys, xs)
    w, _ = _vote_torch(img, field.indices, field.distances, 3, float("inf"), ys, xs)
    torch.testing.assert_close(u, w, atol=1e-12, rtol=0)


def test_wexler_temperature():
    d = torch.arange(1, 101, dtype=torch.float32).view(1, 1, 10, 10)
    assert wexler_temperature(d) == pytest.approx(2 * 75.25)
    assert wexler_temperature(torch.zeros(1, 1, 3, 3)) == float("inf")
    where = torch.zeros(1, 1, 10, 10, dtype=torch.bool)
    where[..., 0, :4] = True
    assert wexler_temperature(d, where) == pytest.approx(2 * 3.25)

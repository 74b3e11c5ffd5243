"""The exact backend against a float64 brute force, ties included (lowest index wins)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import psal


def brute_force(q, k, kk, p, query_valid=None, key_valid=None):
    """k nearest key patches by loops over float64 numpy arrays, the documented rules.

    Reflect-padded borders; a key patch is valid iff its window clipped to the image holds
    only valid pixels; ties go to the lowest flat key index; -1 / inf where not searched.
    """
    r = p // 2
    pad = ((0, 0), (0, 0), (r, r), (r, r))
    qn = np.pad(q.double().numpy(), pad, mode="reflect")
    kn = np.pad(k.double().numpy(), pad, mode="reflect")
    b, _, hq, wq = q.shape
    hk, wk = k.shape[-2:]
    idx = np.full((b, kk, hq, wq), -1, dtype=np.int64)
    dist = np.full((b, kk, hq, wq), np.inf)
    for bi in range(b):
        keys = np.stack(
            [kn[bi, :, y : y + p, x : x + p].ravel() for y in range(hk) for x in range(wk)]
        )
        ok = np.ones(hk * wk, dtype=bool)
        if key_valid is not None:
            kv = key_valid[bi, 0].numpy()
            for y in range(hk):
                for x in range(wk):
                    ok[y * wk + x] = kv[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1].all()
        for y in range(hq):
            for x in range(wq):
                if query_valid is not None and not query_valid[bi, 0, y, x]:
                    continue
                d = ((keys - qn[bi, :, y : y + p, x : x + p].ravel()) ** 2).sum(1)
                d[~ok] = np.inf
                order = np.argsort(d, kind="stable")[:kk]  # ties: lowest index first
                idx[bi, :, y, x], dist[bi, :, y, x] = order, d[order]
    return idx, dist


def _check(q, k, kk, p, **masks):
    res = psal.patchmatch(q, k, kk, p, backend="exact", **masks)
    idx, dist = brute_force(q, k, kk, p, **masks)
    np.testing.assert_array_equal(res.indices.numpy(), idx)
    rtol = 1e-12 if q.dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(res.distances.double().numpy(), dist, rtol=rtol, atol=rtol)


def _levels(*shape, seed, levels=3, dtype=torch.float32):
    """Small integers: every distance is exact in float32, and many tie."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, shape, generator=g).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [1, 3, 5])
def test_exact_ties_go_to_the_lowest_key_index(p, dtype):
    # fails before exact.py broke ties: topk and sort chose among equal distances
    q = _levels(2, 2, 7, 8, seed=p, dtype=dtype)
    k = _levels(2, 2, 6, 7, seed=p + 10, dtype=dtype)
    _check(q, k, 5, p)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_constant_maps_return_the_first_keys(dtype):
    # every key patch is at distance 0: the k lowest flat indices, in order
    q = torch.full((1, 3, 6, 5), 0.5, dtype=dtype)
    res = psal.patchmatch(q, q.clone(), 4, 3, backend="exact")
    expected = torch.arange(4).view(1, 4, 1, 1).expand(1, 4, 6, 5)
    assert torch.equal(res.indices, expected)
    assert bool((res.distances == 0).all())


def test_exact_ties_under_reduced_matmul_precision():
    # the float64 ranking path (every pixel) breaks ties the same way
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        _check(_levels(1, 3, 7, 7, seed=1), _levels(1, 3, 6, 8, seed=2), 6, 3)
        q = torch.zeros(1, 2, 5, 5)
        res = psal.patchmatch(q, q, 3, 3, backend="exact")
        assert torch.equal(res.indices[0, :, 0, 0], torch.arange(3))
    finally:
        torch.set_float32_matmul_precision(previous)


def test_exact_ties_with_masks():
    q = _levels(2, 1, 8, 7, seed=3)
    k = _levels(2, 1, 7, 9, seed=4)
    g = torch.Generator().manual_seed(5)
    key_valid = torch.rand(2, 1, 7, 9, generator=g) > 0.1
    query_valid = torch.rand(2, 1, 8, 7, generator=g) > 0.4
    _check(q, k, 3, 3, key_valid=key_valid, query_valid=query_valid)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("p", [1, 3, 5, 7])
def test_exact_equals_brute_force_with_masks_per_batch_element(p, dtype):
    g = torch.Generator().manual_seed(p)
    q = torch.rand(2, 3, 9, 11, generator=g).to(dtype)
    k = torch.rand(2, 3, 10, 8, generator=g).to(dtype)
    key_valid = torch.ones(2, 1, 10, 8, dtype=torch.bool)
    key_valid[0, 0, 0, 0] = False  # a corner hole in one element, a border hole in the other
    key_valid[1, 0, 4, 7] = False
    query_valid = torch.rand(2, 1, 9, 11, generator=g) > 0.3
    _check(q, k, 2, p, key_valid=key_valid, query_valid=query_valid)


def test_exact_patch_as_large_as_the_smaller_side():
    g = torch.Generator().manual_seed(0)
    _check(torch.rand(1, 2, 5, 9, generator=g), torch.rand(1, 2, 7, 5, generator=g), 4, 5)


def test_exact_channels_last_and_non_contiguous_inputs():
    g = torch.Generator().manual_seed(1)
    q = torch.rand(1, 4, 8, 9, generator=g).to(memory_format=torch.channels_last)
    k = torch.rand(1, 8, 7, 8, generator=g)[:, ::2].transpose(2, 3)
    assert not k.is_contiguous()
    _check(q, k, 3, 3)


@pytest.mark.parametrize("p", [1, 3, 5, 7])
def test_valid_key_positions_is_the_clipped_window_rule(p):
    # valid iff every pixel of the window clipped to the image is valid (brute force)
    g = torch.Generator().manual_seed(p)
    hole = torch.rand(2, 1, 7, 9, generator=g) > 0.85
    got = psal.patchmatch.valid_key_positions(hole, p)
    r = p // 2
    for b in range(2):
        for y in range(7):
            for x in range(9):
                window = hole[b, 0, max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
                assert bool(got[b, 0, y, x]) == (not bool(window.any()))
    assert psal.patchmatch.valid_key_positions(None, p) is None


@pytest.mark.parametrize(("p", "exc"), [(4, ValueError), (0, ValueError), (3.0, TypeError)])
def test_valid_key_positions_names_a_bad_patch_size(p, exc):
    # the error named box_sum's "size" (fails before) or accepted 3.0
    hole = torch.zeros(1, 1, 5, 5, dtype=torch.bool)
    for h in (hole, None):
        with pytest.raises(exc, match="patch_size"):
            psal.patchmatch.valid_key_positions(h, p)


@pytest.mark.parametrize("budget", [2**8, 2**12])
def test_exact_ties_in_small_chunks_and_float64_blocks(monkeypatch, budget):
    # many chunks of query pixels, and the float64 ranking's running top list over
    # many key blocks, keep the lowest index among equal distances
    from psal.patchmatch import exact

    monkeypatch.setattr(exact, "MAX_CHUNK_BYTES", budget)
    q, k = _levels(2, 2, 6, 7, seed=7), _levels(2, 2, 7, 6, seed=8)
    _check(q, k, 4, 3)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        _check(q, k, 4, 3)
    finally:
        torch.set_float32_matmul_precision(previous)

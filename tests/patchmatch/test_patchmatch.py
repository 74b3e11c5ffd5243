"""Tests of the PatchMatch engine: every backend against the exact reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import psal
from psal.patchmatch import patch_distance, valid_key_positions

APPROX = ["numba", "torch"]
ALL = ["exact", *APPROX]


def brute_force(q: torch.Tensor, k: torch.Tensor, kk: int, p: int, valid=None):
    """Obviously correct k-NN by loops over numpy reflect-padded arrays (one batch item)."""
    r = p // 2
    qn = np.pad(q.double().numpy(), ((0, 0), (r, r), (r, r)), mode="reflect")
    kn = np.pad(k.double().numpy(), ((0, 0), (r, r), (r, r)), mode="reflect")
    _, hq, wq = q.shape
    _, hk, wk = k.shape
    idx = np.zeros((kk, hq, wq), dtype=np.int64)
    dist = np.zeros((kk, hq, wq))
    for y in range(hq):
        for x in range(wq):
            qp = qn[:, y : y + p, x : x + p]
            ds = []
            for ky in range(hk):
                for kx in range(wk):
                    if valid is not None and not valid[ky, kx]:
                        continue
                    ds.append((((qp - kn[:, ky : ky + p, kx : kx + p]) ** 2).sum(), ky * wk + kx))
            ds.sort()
            for j in range(kk):
                dist[j, y, x], idx[j, y, x] = ds[j]
    return torch.from_numpy(idx), torch.from_numpy(dist)


def smooth(b, c, h, w, seed=0, dtype=torch.float32):
    """Spatially coherent random maps (PatchMatch relies on coherence, like real images)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h // 2 + 2, w // 2 + 2, generator=g)
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return (x + 0.05 * torch.rand(b, c, h, w, generator=g)).to(dtype)


# ----------------------------------------------------------------------------- reference


@pytest.mark.parametrize("p", [1, 3, 5])
def test_exact_equals_loop_reference(p):
    q = torch.rand(2, 2, 7, 6, dtype=torch.float64)
    k = torch.rand(2, 2, 6, 8, dtype=torch.float64)
    res = psal.patchmatch(q, k, k=4, patch_size=p, backend="exact")
    for b in range(2):
        idx, dist = brute_force(q[b], k[b], 4, p)
        torch.testing.assert_close(res.distances[b], dist)
        assert torch.equal(res.indices[b], idx)


def test_exact_with_key_valid_equals_loop_reference():
    q = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    k = torch.rand(1, 3, 8, 9, dtype=torch.float64)
    mask = torch.zeros(1, 1, 8, 9, dtype=torch.bool)
    mask[0, 0, 2:5, 3:6] = True
    valid = valid_key_positions(mask, 3)[0, 0].numpy()
    res = psal.patchmatch(q, k, k=3, patch_size=3, key_valid=~mask, backend="exact")
    idx, dist = brute_force(q[0], k[0], 3, 3, valid)
    assert torch.equal(res.indices[0], idx)
    torch.testing.assert_close(res.distances[0], dist)


@pytest.mark.parametrize("offset", [1000.0, -300.0])
def test_exact_is_exact_for_features_with_a_large_common_offset(offset):
    # |q|^2 + |k|^2 - 2 q.k cancels catastrophically in float32 unless centred first
    x = torch.rand(1, 3, 10, 10, generator=torch.Generator().manual_seed(0)) + offset
    res = psal.patchmatch(x, x, k=2, patch_size=3, backend="exact")
    assert torch.equal(res.indices[:, 0], torch.arange(100).view(1, 10, 10))
    assert float(res.distances[:, 0].abs().max()) < 1e-6
    _, ref_d = brute_force(x[0].double() - offset, x[0].double() - offset, 2, 3)
    torch.testing.assert_close(res.distances[0].double(), ref_d, rtol=1e-4, atol=1e-5)


def _two_far_clusters():
    g = torch.Generator().manual_seed(0)
    sign = torch.where(torch.rand(1, 1, 16, 16, generator=g) < 0.5, 1.0, -1.0)
    key = 1000.0 * sign + 0.1 * torch.rand(1, 4, 16, 16, generator=g)
    q = 1000.0 + 0.1 * torch.rand(1, 4, 6, 6, generator=g)
    ref = torch.cdist(q.double().view(4, -1).t(), key.double().view(4, -1).t()).square()
    return q, key, ref.topk(3, dim=1, largest=False).values.t().reshape(1, 3, 6, 6)


def test_exact_ranks_features_in_two_far_clusters_exactly():
    # keys in two clusters at +-1000: centring removes no offset, and a float32 score
    # |k|^2 - 2 q.k (~1e6, rounding ~0.06) cannot rank distances of ~1e-3; the true
    # nearest used to fall outside the k + 8 candidates re-scored exactly
    q, key, ref_d = _two_far_clusters()
    res = psal.patchmatch(q, key, k=3, patch_size=1, backend="exact")
    torch.testing.assert_close(res.distances.double(), ref_d, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(res.distances, patch_distance(q, key, res.indices, 1))


@pytest.mark.parametrize("budget", [2**10, 2**14])
def test_exact_float64_ranking_in_small_blocks(monkeypatch, budget):
    # the float64 re-ranking converts the keys a block at a time (a running top list)
    from psal.patchmatch import exact

    q, key, ref_d = _two_far_clusters()
    monkeypatch.setattr(exact, "MAX_CHUNK_BYTES", budget)
    res = psal.patchmatch(q, key, k=3, patch_size=1, backend="exact")
    torch.testing.assert_close(res.distances.double(), ref_d, rtol=1e-5, atol=1e-9)


def test_exact_ranks_in_float64_under_reduced_matmul_precision():
    from psal.patchmatch import exact

    q, key, ref_d = _two_far_clusters()
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")  # float32 products may use bfloat16
        assert not exact._float32_gemm_is_exact_rounding(q.device)
        res = psal.patchmatch(q, key, k=3, patch_size=1, backend="exact")
    finally:
        torch.set_float32_matmul_precision(before)
    assert exact._float32_gemm_is_exact_rounding(q.device)
    torch.testing.assert_close(res.distances.double(), ref_d, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("p", [1, 3])
def test_exact_float32_equals_float64_search(p):
    # the float32 search returns the neighbours of the float64 search (up to ties)
    q = smooth(2, 5, 9, 11, seed=50) * 300 - 40
    k = smooth(2, 5, 10, 8, seed=51) * 300 - 40
    a = psal.patchmatch(q, k, k=4, patch_size=p, backend="exact")
    b = psal.patchmatch(q.double(), k.double(), k=4, patch_size=p, backend="exact")
    torch.testing.assert_close(a.distances.double(), b.distances, rtol=1e-5, atol=1e-4)


def test_valid_key_positions_is_the_touching_rule():
    mask = torch.zeros(1, 1, 6, 7, dtype=torch.bool)
    mask[0, 0, 0, 3] = True  # a hole pixel on the top border
    v = valid_key_positions(mask, 3)[0, 0]
    for y in range(6):
        for x in range(7):
            touches = abs(y - 0) <= 1 and abs(x - 3) <= 1
            assert bool(v[y, x]) == (not touches)


@pytest.mark.parametrize("p", [1, 3, 5, 9])
def test_valid_key_positions_matches_a_max_pool(p):
    # the running-sum box filter against the definition: a p x p maximum of the hole
    g = torch.Generator().manual_seed(p)
    hole = torch.rand(2, 1, 13, 17, generator=g) > 0.9
    hole[1, 0, -1, -1] = True  # a corner pixel
    touched = torch.nn.functional.max_pool2d(hole.float(), p, stride=1, padding=p // 2) > 0
    assert torch.equal(valid_key_positions(hole, p), ~touched)
    assert valid_key_positions(torch.zeros(1, 1, 4, 5, dtype=torch.bool), p).all()


# ----------------------------------------------------------------------------- backends


@pytest.mark.parametrize("backend", APPROX)
def test_enough_iterations_find_the_exact_neighbours(backend):
    q = smooth(2, 3, 12, 14, seed=1)
    k = smooth(2, 3, 11, 13, seed=2)
    exact = psal.patchmatch(q, k, k=3, patch_size=3, backend="exact")
    res = psal.patchmatch(q, k, k=3, patch_size=3, iters=150, backend=backend, seed=0)
    agree = (res.indices == exact.indices).float().mean().item()
    assert agree > 0.99, agree
    # never better than exact, and close to it
    assert bool((res.distances >= exact.distances - 1e-4).all())
    assert res.distances.mean() <= exact.distances.mean() * 1.02


@pytest.mark.parametrize("backend", ALL)
def test_distances_are_recomputed_distances_sorted_distinct(backend):
    q = smooth(2, 4, 16, 13, seed=3)
    k = smooth(2, 4, 15, 17, seed=4)
    res = psal.patchmatch(q, k, k=5, patch_size=5, iters=3, backend=backend, seed=1)
    assert res.indices.dtype == torch.int64 and res.indices.shape == (2, 5, 16, 13)
    assert res.distances.dtype == torch.float32
    torch.testing.assert_close(res.distances, patch_distance(q, k, res.indices, 5))
    assert bool((res.distances[:, 1:] >= res.distances[:, :-1]).all())
    srt = res.indices.sort(1).values
    assert bool((srt[:, 1:] != srt[:, :-1]).all()), "neighbours must be distinct"
    assert int(res.indices.min()) >= 0 and int(res.indices.max()) < 15 * 17


@pytest.mark.parametrize("backend", ALL)
def test_border_pixels_get_real_neighbours(backend):
    # a map whose border patches are unique: the exact match of every pixel is itself
    x = torch.rand(1, 3, 9, 10)
    res = psal.patchmatch(x, x, k=2, patch_size=5, iters=20, backend=backend, seed=0)
    own = torch.arange(90).view(1, 9, 10)
    assert torch.equal(res.indices[:, 0], own), "every pixel, border included, finds itself"
    assert float(res.distances[:, 0].abs().max()) == 0.0
    assert bool((res.distances[:, 1] > 0).all())


@pytest.mark.parametrize("backend", ALL)
def test_key_valid_is_respected(backend):
    q = smooth(2, 3, 12, 12, seed=5)
    k = smooth(2, 3, 12, 12, seed=6)
    mask = torch.zeros(2, 1, 12, 12, dtype=torch.bool)
    mask[0, 0, 3:8, 2:9] = True
    mask[1, 0, 0:4, 6:12] = True  # touches the border; a different mask per element
    res = psal.patchmatch(q, k, k=3, patch_size=3, iters=5, key_valid=~mask, backend=backend)
    valid = valid_key_positions(mask, 3).reshape(2, -1)
    for b in range(2):
        assert bool(valid[b][res.indices[b].reshape(-1)].all())


@pytest.mark.parametrize("backend", ALL)
def test_query_valid_searches_only_those_pixels(backend):
    q = smooth(2, 3, 10, 11, seed=7)
    qm = torch.zeros(2, 1, 10, 11, dtype=torch.bool)
    qm[0, 0, 2:5, 3:7] = True
    qm[1, 0, 6:, :2] = True
    res = psal.patchmatch(q, q, k=2, patch_size=3, iters=4, query_valid=qm, backend=backend)
    off = ~qm.expand(2, 2, 10, 11)
    assert bool((res.indices[off] == -1).all())
    assert bool(torch.isinf(res.distances[off]).all())
    assert bool((res.indices[~off] >= 0).all())
    on = ~off
    torch.testing.assert_close(
        res.distances[on], patch_distance(q, q, res.indices, 3)[on], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("backend", ALL)
def test_batch_elements_are_independent(backend):
    q = smooth(2, 3, 12, 12, seed=8)
    k = smooth(2, 3, 12, 12, seed=9)
    a = psal.patchmatch(q, k, k=2, iters=3, backend=backend, seed=3)
    q2, k2 = q.clone(), k.clone()
    q2[1] = torch.rand_like(q2[1])
    k2[1] = torch.rand_like(k2[1])
    b = psal.patchmatch(q2, k2, k=2, iters=3, backend=backend, seed=3)
    assert torch.equal(a.indices[0], b.indices[0])
    assert torch.equal(a.distances[0], b.distances[0])


@pytest.mark.parametrize("backend", ALL)
def test_batch_element_depends_only_on_its_own_inputs_and_index(backend):
    # element b's field is a function of (seed, b, its own inputs): other elements'
    # content, query_valid, key_valid and init change nothing (the torch backend used
    # to draw every element's random numbers from one shared generator)
    q = smooth(2, 3, 12, 13, seed=16)
    k = smooth(2, 3, 11, 12, seed=17)
    qv = torch.ones(2, 1, 12, 13, dtype=torch.bool)
    kv = torch.ones(2, 1, 11, 12, dtype=torch.bool)
    init = torch.randint(0, 11 * 12, (2, 3, 12, 13), generator=torch.Generator().manual_seed(1))
    q2, k2, qv2, kv2, init2 = q.clone(), k.clone(), qv.clone(), kv.clone(), init.clone()
    q2[1], k2[1] = torch.rand_like(q2[1]), torch.rand_like(k2[1])
    qv2[1, 0, 3:9, 2:7] = False
    kv2[1, 0, :4] = False
    init2[1] = 0  # every entry a repeat: all repaired
    for use_init in (False, True):
        args = {"k": 3, "iters": 3, "backend": backend, "seed": 5}
        a = psal.patchmatch(q, k, query_valid=qv, key_valid=kv,
                            init=init if use_init else None, **args)  # fmt: skip
        b = psal.patchmatch(q2, k2, query_valid=qv2, key_valid=kv2,
                            init=init2 if use_init else None, **args)  # fmt: skip
        assert torch.equal(a.indices[0], b.indices[0])
        assert torch.equal(a.distances[0], b.distances[0])
        # and the other way round: element 1 does not depend on element 0
        c = psal.patchmatch(torch.stack([q2[1], q[1]]), torch.stack([k2[1], k[1]]),
                            query_valid=torch.stack([qv2[1], qv[1]]),
                            key_valid=torch.stack([kv2[1], kv[1]]),
                            init=torch.stack([init2[1], init[1]]) if use_init else None,
                            **args)  # fmt: skip
        assert torch.equal(a.indices[1], c.indices[1])
        assert torch.equal(a.distances[1], c.distances[1])
        # a batch of one gives element 0 of the batch
        d = psal.patchmatch(q[:1], k[:1], query_valid=qv[:1], key_valid=kv[:1],
                            init=init[:1] if use_init else None, **args)  # fmt: skip
        assert torch.equal(a.indices[:1], d.indices)


@pytest.mark.parametrize("backend", ALL)
def test_cross_matching_different_sizes(backend):
    q = smooth(1, 3, 9, 17, seed=10)
    k = smooth(1, 3, 14, 6, seed=11)
    res = psal.patchmatch(q, k, k=3, patch_size=3, iters=6, backend=backend, seed=0)
    assert res.indices.shape == (1, 3, 9, 17)
    assert int(res.indices.max()) < 14 * 6
    torch.testing.assert_close(res.distances, patch_distance(q, k, res.indices, 3))


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes(backend, dtype):
    q = smooth(1, 3, 10, 10, seed=12, dtype=dtype)
    k = smooth(1, 3, 10, 10, seed=13, dtype=dtype)
    res = psal.patchmatch(q, k, k=2, iters=3, backend=backend, seed=0)
    expected = torch.float64 if dtype == torch.float64 else torch.float32
    assert res.distances.dtype == expected
    # accumulated in float32 or better: equal to the distance of the upcast inputs
    ref = patch_distance(q.to(expected), k.to(expected), res.indices, 3)
    torch.testing.assert_close(res.distances, ref)


@pytest.mark.parametrize("backend", APPROX)
def test_seed_makes_runs_reproducible(backend):
    q = smooth(2, 3, 16, 16, seed=14)
    k = smooth(2, 3, 16, 16, seed=15)
    a = psal.patchmatch(q, k, k=3, iters=2, backend=backend, seed=42)
    b = psal.patchmatch(q, k, k=3, iters=2, backend=backend, seed=42)
    c = psal.patchmatch(q, k, k=3, iters=2, backend=backend, seed=43)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.distances, b.distances)
    assert not torch.equal(a.indices, c.indices)
    torch.manual_seed(7)
    d = psal.patchmatch(q, k, k=3, iters=2, backend=backend)
    torch.manual_seed(7)
    e = psal.patchmatch(q, k, k=3, iters=2, backend=backend)
    assert torch.equal(d.indices, e.indices), "seed=None follows torch.manual_seed"


def test_numba_result_does_not_depend_on_thread_count():
    import numba

    q = smooth(2, 4, 70, 40, seed=16)  # several row bands
    k = smooth(2, 4, 50, 45, seed=17)
    n = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = psal.patchmatch(q, k, k=3, iters=3, backend="numba", seed=5)
        numba.set_num_threads(n)
        many = psal.patchmatch(q, k, k=3, iters=3, backend="numba", seed=5)
    finally:
        numba.set_num_threads(n)
    assert torch.equal(one.indices, many.indices)


@pytest.mark.parametrize("backend", ALL)
def test_init_with_exact_field_is_kept(backend):
    q = smooth(1, 3, 12, 12, seed=18)
    k = smooth(1, 3, 12, 12, seed=19)
    exact = psal.patchmatch(q, k, k=3, backend="exact")
    res = psal.patchmatch(q, k, k=3, iters=2, backend=backend, init=exact.indices, seed=0)
    assert torch.equal(res.indices, exact.indices)


@pytest.mark.parametrize("backend", APPROX)
def test_init_with_bad_entries_is_repaired(backend):
    q = smooth(1, 3, 8, 8, seed=20)
    init = torch.full((1, 3, 8, 8), -1, dtype=torch.long)
    init[:, 0] = 5  # a valid entry repeated three times -> two repaired
    init[:, 1] = 5
    init[:, 2] = 10_000  # out of range
    res = psal.patchmatch(q, q, k=3, iters=0, backend=backend, init=init, seed=0)
    srt = res.indices.sort(1).values
    assert bool((srt[:, 1:] != srt[:, :-1]).all()) and int(res.indices.min()) >= 0
    assert bool((res.indices == 5).any(1).all()), "the valid init entry is kept"


@pytest.mark.parametrize("backend", ALL)
def test_k_equal_to_number_of_valid_keys(backend):
    q = smooth(1, 2, 6, 6, seed=21)
    mask = torch.ones(1, 1, 6, 6, dtype=torch.bool)
    mask[0, 0, 3:5, 3:5] = False  # exactly four valid 1x1 key patches
    res = psal.patchmatch(q, q, k=4, patch_size=1, iters=2, key_valid=~mask, backend=backend)
    for y in range(6):
        for x in range(6):
            assert set(res.indices[0, :, y, x].tolist()) == {21, 22, 27, 28}


def test_old_mask_names_warn_and_agree():
    """query_mask (True = search) and key_mask (True = hole): deprecated, same results."""
    q = smooth(1, 3, 10, 10, seed=30)
    hole = torch.zeros(1, 1, 10, 10, dtype=torch.bool)
    hole[0, 0, 3:6, 2:7] = True
    new = psal.patchmatch(q, q, k=2, query_valid=hole, key_valid=~hole, backend="exact")
    with pytest.warns(DeprecationWarning, match=r"query_mask=\.\.\.\) is deprecated"):
        old_q = psal.patchmatch(q, q, k=2, query_mask=hole, key_valid=~hole, backend="exact")
    with pytest.warns(DeprecationWarning, match="use key_valid=~key_mask"):
        old_k = psal.patchmatch(q, q, k=2, query_valid=hole, key_mask=hole, backend="exact")
    for old in (old_q, old_k):
        assert torch.equal(old.indices, new.indices)
        assert torch.equal(old.distances, new.distances)
    assert bool((new.indices[:, :, ~hole[0, 0]] == -1).all())


def test_no_gradient_flows_through_search():
    q = torch.rand(1, 2, 8, 8, requires_grad=True)
    res = psal.patchmatch(q, q, k=2)
    assert not res.indices.requires_grad and not res.distances.requires_grad


@st.composite
def feasible_problems(draw):
    """Shapes PatchMatch accepts: patch no larger than any side, k <= key patches."""
    p = draw(st.sampled_from([1, 3, 5, 7]))
    hq, wq, hk, wk = (draw(st.integers(p, 12)) for _ in range(4))
    kk = draw(st.integers(1, min(6, hk * wk)))
    return hq, wq, hk, wk, p, kk


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    b=st.integers(1, 2),
    c=st.integers(1, 4),
    shape=feasible_problems(),
    backend=st.sampled_from(ALL),
    seed=st.integers(0, 2**31),
)
def test_property_any_shape_k_and_patch_size(b, c, shape, backend, seed):
    hq, wq, hk, wk, p, kk = shape
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(b, c, hq, wq, generator=g)
    k = torch.rand(b, c, hk, wk, generator=g)
    res = psal.patchmatch(q, k, k=kk, patch_size=p, iters=2, backend=backend, seed=seed)
    assert res.indices.shape == (b, kk, hq, wq) == res.distances.shape
    assert int(res.indices.min()) >= 0 and int(res.indices.max()) < hk * wk
    assert bool((res.distances[:, 1:] >= res.distances[:, :-1]).all())
    srt = res.indices.sort(1).values
    assert bool((srt[:, 1:] != srt[:, :-1]).all())
    torch.testing.assert_close(res.distances, patch_distance(q, k, res.indices, p))


# ----------------------------------------------------------------------------- devices


@pytest.mark.parametrize("backend", ALL)
def test_runs_on_device(device, backend):
    q = smooth(1, 3, 12, 12, seed=22).to(device)
    res = psal.patchmatch(q, q, k=2, iters=2, backend=backend, seed=0)
    assert res.indices.device == q.device and res.distances.device == q.device


def test_torch_backend_draws_are_the_same_on_every_device(device):
    # the counter-based hash is integer arithmetic: one seed, one field of draws anywhere
    from psal.patchmatch import torch_backend as tb

    x = torch.arange(0, 2**32, 2**32 // 4099, dtype=torch.long)
    ref = [tb._hash32_int(int(v)) for v in x]
    assert tb._hash32(x.to(device)).cpu().tolist() == ref
    assert len(set(ref)) == len(ref)  # a bijection


def test_torch_backend_batch_elements_are_independent_on_device(device):
    q = smooth(2, 3, 10, 11, seed=18).to(device)
    qv = torch.ones(2, 1, 10, 11, dtype=torch.bool, device=device)
    q2, qv2 = q.clone(), qv.clone()
    q2[1] = q2[1].flip(-1)
    qv2[1, 0, 2:7] = False
    a = psal.patchmatch(q, q, k=2, iters=2, backend="torch", seed=9, query_valid=qv)
    b = psal.patchmatch(q2, q2, k=2, iters=2, backend="torch", seed=9, query_valid=qv2)
    assert torch.equal(a.indices[0], b.indices[0])


def test_auto_backend_by_device_and_overrides(monkeypatch):
    from psal.patchmatch import backends

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert backends.resolve_backend("auto", cpu) == "numba"
    assert backends.resolve_backend("auto", cuda) == "torch"
    assert backends.resolve_backend("exact", cuda) == "exact"
    with psal.patchmatch.use_backend("exact"):
        assert backends.resolve_backend("auto", cpu) == "exact"
    assert backends.resolve_backend("auto", cpu) == "numba"
    monkeypatch.setenv(backends.ENV_VAR, "torch")
    assert backends.resolve_backend("auto", cpu) == "torch"
    monkeypatch.setenv(backends.ENV_VAR, "nope")
    with pytest.raises(ValueError, match="PSAL_PATCHMATCH_BACKEND"):
        backends.resolve_backend("auto", cpu)
    assert all(psal.patchmatch.available_backends().values())


# ----------------------------------------------------------------------------- bad input


def _q(*shape, dtype=torch.float32):
    return torch.rand(*shape).to(dtype)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"query": _q(3, 8, 8)}, ValueError, "query must have 4 dimensions"),
        ({"key": _q(1, 3, 8)}, ValueError, "key must have 4 dimensions"),
        ({"key": _q(2, 3, 8, 8)}, ValueError, "same batch size"),
        ({"key": _q(1, 4, 8, 8)}, ValueError, "same channels"),
        ({"patch_size": 4}, ValueError, "patch_size must be a positive odd"),
        ({"patch_size": 0}, ValueError, "patch_size must be a positive odd"),
        ({"patch_size": -3}, ValueError, "patch_size must be a positive odd"),
        ({"patch_size": 3.0}, TypeError, "patch_size must be an integer"),
        ({"patch_size": 9}, ValueError, "patch_size=9 is larger than key"),
        ({"k": 0}, ValueError, "k must be >= 1"),
        ({"k": 65}, ValueError, r"k=65 is larger than the number of valid key patches \(64\)"),
        ({"iters": -1}, ValueError, "iters must be >= 0"),
        ({"backend": "cuda"}, ValueError, "backend must be one of"),
        ({"query": torch.randint(0, 9, (1, 3, 8, 8))}, TypeError, "query must be a floating"),
        ({"key": _q(1, 3, 8, 8, dtype=torch.float64)}, TypeError, "share a dtype"),
        ({"query": [[1.0]]}, TypeError, "query must be a torch.Tensor"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"seed": 2**64}, ValueError, r"seed must be in \[0, 2\*\*63\)"),
        ({"key_valid": torch.zeros(1, 1, 8, 8, dtype=torch.bool)}, ValueError, "no valid key patch"),
        ({"key_valid": torch.zeros(1, 1, 7, 8, dtype=torch.bool)}, ValueError, "key_valid must have shape"),
        ({"key_valid": torch.full((1, 1, 8, 8), 0.5)}, ValueError, "key_valid must be bool or hold only 0 and 1"),
        ({"query_valid": torch.zeros(1, 2, 8, 8, dtype=torch.bool)}, ValueError, "query_valid must have shape"),
        ({"query_valid": torch.ones(1, 1, 8, 8, dtype=torch.bool),
          "query_mask": torch.ones(1, 1, 8, 8, dtype=torch.bool)}, TypeError, "both query_mask"),
        ({"key_valid": torch.ones(1, 1, 8, 8, dtype=torch.bool),
          "key_mask": torch.zeros(1, 1, 8, 8, dtype=torch.bool)}, TypeError, "both key_mask"),
        ({"init": torch.zeros(1, 3, 8, 8)}, TypeError, "init must be an int64"),
        ({"init": torch.zeros(1, 2, 8, 8, dtype=torch.long)}, ValueError, "init must have shape"),
    ],
)  # fmt: skip
def test_bad_input_raises_clear_errors(kwargs, exc, match):
    args = {"query": _q(1, 3, 8, 8), "key": _q(1, 3, 8, 8), "k": 3, "patch_size": 3}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        psal.patchmatch(**args)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("which", ["query", "key"])
def test_non_finite_inputs_are_rejected(bad, which):
    q, k = _q(1, 3, 8, 8), _q(1, 3, 8, 8)
    (q if which == "query" else k)[0, 1, 2, 3] = bad
    with pytest.raises(ValueError, match=f"{which} contains NaN or Inf values"):
        psal.patchmatch(q, k)


def test_patch_larger_than_query_is_rejected():
    with pytest.raises(ValueError, match="larger than query"):
        psal.patchmatch(_q(1, 3, 2, 8), _q(1, 3, 8, 8), patch_size=3)


# ----------------------------------------------------------------------------- distance


def test_patch_distance_gradcheck():
    q = torch.rand(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    k = torch.rand(2, 2, 6, 4, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(0, 24, (2, 3, 5, 6))
    idx[0, 1, 2, 2] = -1  # unsearched entries: inf distance, no gradient
    torch.autograd.gradcheck(
        lambda a, b: patch_distance(a, b, idx, 3).masked_fill(idx < 0, 0), (q, k)
    )


def test_patch_distance_rejects_bad_window_and_known():
    q, k = torch.rand(1, 2, 6, 7), torch.rand(1, 2, 6, 7)
    idx = torch.zeros(1, 2, 3, 4, dtype=torch.long)
    ok = patch_distance(q, k, idx, 3, window=(1, 4, 2, 6))
    assert ok.shape == (1, 2, 3, 4)
    with pytest.raises(TypeError, match=r"window must be four integers.*float"):
        patch_distance(q, k, idx, 3, window=(1.5, 4, 2, 6))  # used to truncate to 1
    with pytest.raises(ValueError, match=r"window must be four integers \(y0, y1, x0, x1\).*3"):
        patch_distance(q, k, idx, 3, window=(1, 4, 2))
    with pytest.raises(TypeError, match="window must be four integers"):
        patch_distance(q, k, idx, 3, window=5)
    assert torch.equal(patch_distance(q, k, idx, 3, window=torch.tensor([1, 4, 2, 6])), ok)
    with pytest.raises(TypeError, match=r"known must be a floating-point tensor.*int64"):
        patch_distance(q, k, idx, 3, window=(1, 4, 2, 6), known=torch.zeros_like(idx))
    with pytest.raises(TypeError, match=r"known must be a floating-point tensor.*bool"):
        patch_distance(q, k, idx, 3, window=(1, 4, 2, 6), known=idx == 0)
    assert torch.equal(patch_distance(q, k, idx, 3, window=(1, 4, 2, 6), known=ok), ok)


def test_patch_distance_matches_autograd_of_plain_formula():
    q = torch.rand(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    k = torch.rand(1, 3, 7, 5, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(0, 35, (1, 2, 6, 6))
    d = patch_distance(q, k, idx, 3)
    qf = psal.patchmatch.unfold_patches(q, 3)  # (1, D, 36)
    kf = psal.patchmatch.unfold_patches(k, 3)  # (1, D, 35)
    ref = (kf[0][:, idx[0].reshape(-1)] - qf[0].repeat(1, 2)).square().sum(0).view(1, 2, 6, 6)
    torch.testing.assert_close(d, ref)
    w = torch.rand_like(d)
    g1 = torch.autograd.grad((d * w).sum(), (q, k))
    g2 = torch.autograd.grad((ref * w).sum(), (q, k))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("c", "p"), [(3, 7), (16, 3), (5, 1)])
def test_numba_projection_distance_is_a_lower_bound(c, p):
    from psal.patchmatch import cpu_numba

    mix = torch.rand(c, 3, generator=torch.Generator().manual_seed(1))  # correlated channels
    q = torch.einsum("ij,bjhw->bihw", mix, smooth(1, 3, 20, 18, seed=30)) * 50 + 100
    k = torch.einsum("ij,bjhw->bihw", mix, smooth(1, 3, 17, 21, seed=31)) * 50 + 100
    qpr, kpr = cpu_numba._projections(q.numpy(), k.numpy(), p, np.float32)
    assert qpr.shape == (1, 20 * 18, qpr.shape[2]) and 0 < qpr.shape[2] <= 16
    g = torch.Generator().manual_seed(0)
    ind = torch.randint(0, 17 * 21, (1, 1, 20, 18), generator=g)
    d = patch_distance(q.double(), k.double(), ind, p).reshape(-1).numpy()
    lb = ((qpr[0] - kpr[0, ind.reshape(-1).numpy()]) ** 2).sum(1)
    assert np.all(lb * cpu_numba._LB_SAFETY <= d + 1e-3)
    assert np.median(lb / d) > 0.15  # and a useful one on coherent maps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_channel_projection_ignores_what_its_output_held(dtype):
    # the projection writes into np.empty buffers: garbage there (NaN, inf) must not leak
    # into the result (a typed zero made as "dst[0] * 0" once gave NaN rows)
    from psal.patchmatch import cpu_numba

    rng = np.random.default_rng(0)
    x = (rng.random((2, 5, 9, 18)) * 50 + 100).astype(dtype)
    v = rng.random((5, 3)).astype(dtype)
    mu = rng.random(5).astype(dtype)
    r = 2
    for fill in (np.nan, np.inf, -7.0):
        out = np.full((2, 3, 9 + 2 * r, 18 + 2 * r), fill, dtype=dtype)
        cpu_numba.run_chunked(cpu_numba._project_tasks, 2 * 9, x, v, mu, r, out)
        ref = np.einsum("bchw,cm->bmhw", x - mu[None, :, None, None], v)
        np.testing.assert_allclose(out[:, :, r:-r, r:-r], ref, rtol=1e-5)


def test_numba_projection_bound_is_off_for_incoherent_features():
    from psal.patchmatch import cpu_numba

    g = torch.Generator().manual_seed(0)
    q, k = torch.rand(1, 64, 24, 24, generator=g), torch.rand(1, 64, 24, 24, generator=g)
    qpr, kpr = cpu_numba._projections(q.numpy(), k.numpy(), 3, np.float32)
    assert qpr.shape[2] == kpr.shape[2] == 0


@pytest.mark.parametrize("rank", [0, 1, 2, 4, 5, 16])
def test_numba_projection_basis_is_orthonormal_for_any_channel_rank(rank):
    """Dead or dependent channels (cov of low rank): the basis columns stay orthonormal
    (or zero), else the projection distance could exceed the patch distance."""
    from psal.patchmatch import cpu_numba

    rng = np.random.default_rng(rank)
    a = rng.normal(size=(16, rank)) * np.logspace(0, -3, rank)
    cov = a @ a.T * 1e4
    v = cpu_numba._leading_subspace(cov, 5, cpu_numba.SUBSPACE_ITERS)
    g = v.T @ v
    assert np.abs(g - np.diag(np.diag(g))).max() < 1e-9
    assert np.all((np.abs(np.diag(g) - 1) < 1e-9) | (np.diag(g) == 0))
    assert np.all(np.diag(g)[: min(rank, 5)] > 0.5)  # the directions cov has are kept


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numba_projection_bound_holds_on_low_rank_features(dtype, monkeypatch):
    """16 channels mixed from 3 smooth fields (rank 3-4 < the 5 channel directions kept):
    in float64 the basis had two equal columns and the 'bound' reached 2x the distance."""
    from psal.patchmatch import cpu_numba

    mix = torch.rand(16, 3, generator=torch.Generator().manual_seed(2))
    q = (torch.einsum("ij,bjhw->bihw", mix, smooth(2, 3, 20, 18, seed=40)) * 9).to(dtype)
    k = (torch.einsum("ij,bjhw->bihw", mix, smooth(2, 3, 17, 21, seed=41)) * 9).to(dtype)
    k[1, 3] *= 40
    acc = np.float64 if dtype == torch.float64 else np.float32
    qpr, kpr = cpu_numba._projections(q.numpy(), k.numpy(), 3, acc)
    assert qpr.shape[2] > 0
    ind = torch.randint(0, 17 * 21, (1, 1, 20, 18), generator=torch.Generator().manual_seed(5))
    for b in range(2):
        d = patch_distance(q[b : b + 1].double(), k[b : b + 1].double(), ind, 3).reshape(-1)
        lb = ((qpr[b].astype(np.float64) - kpr[b, ind.reshape(-1).numpy()]) ** 2).sum(1)
        assert np.all(lb * cpu_numba._LB_SAFETY <= d.numpy() + 1e-6)
    # and the search with the bound finds what it finds without any bound
    res = {}
    for dims in (cpu_numba.PROJ_DIMS, 0):
        monkeypatch.setattr(cpu_numba, "PROJ_DIMS", dims)
        monkeypatch.setattr(cpu_numba, "QUANTISE", dims > 0)
        res[dims] = psal.patchmatch(q, k, k=3, iters=6, backend="numba", seed=3)
    a, b = res.values()
    assert torch.equal(a.indices, b.indices) and torch.equal(a.distances, b.distances)


def test_numba_projection_bound_on_features_far_from_zero(monkeypatch):
    """float32 features ~2e7 with spreads of 500-6000 (a case a fuzz run found, stored in
    data/far_from_zero.npz): the projections were v.x - v.mu, two large numbers cancelling,
    with errors beyond the bound's slack; 9% of the k-lists then differed from the
    bound-free search's."""
    from psal.patchmatch import cpu_numba

    data = np.load(Path(__file__).parent / "data" / "far_from_zero.npz")
    q, k = torch.from_numpy(data["query"]), torch.from_numpy(data["key"])
    assert q.dtype == torch.float32 and q.shape == (2, 8, 22, 4) and k.shape == (2, 8, 24, 10)
    res = {}
    for dims in (cpu_numba.PROJ_DIMS, 0):
        monkeypatch.setattr(cpu_numba, "PROJ_DIMS", dims)
        monkeypatch.setattr(cpu_numba, "QUANTISE", dims > 0)
        res[dims] = psal.patchmatch(q, k, k=2, patch_size=1, iters=3, backend="numba", seed=731)
    a, b = res.values()
    assert torch.equal(a.indices, b.indices) and torch.equal(a.distances, b.distances)


def test_numba_bound_does_not_change_exactness():
    from psal.patchmatch import cpu_numba

    q = smooth(2, 3, 12, 14, seed=1)
    k = smooth(2, 3, 11, 13, seed=2)
    assert (
        cpu_numba._projections(q.numpy(), k.numpy(), 3, np.float32)[0].shape[2] > 0
    )  # the bound is on
    exact = psal.patchmatch(q, k, k=3, patch_size=3, backend="exact")
    saved = cpu_numba.PROJ_DIMS
    try:
        for dims in (0, 16):
            cpu_numba.PROJ_DIMS = dims
            res = psal.patchmatch(q, k, k=3, iters=150, backend="numba", seed=3)
            assert (res.indices == exact.indices).float().mean().item() > 0.99, dims
            assert bool((res.distances >= exact.distances - 1e-4).all())
    finally:
        cpu_numba.PROJ_DIMS = saved


def test_numba_8bit_bound_is_exact_on_incoherent_features(monkeypatch):
    """Uniform noise: the projection bound is off and the 8-bit bound is on; it only
    skips candidates that could not enter the list, so the results do not change."""
    from psal.patchmatch import cpu_numba

    g = torch.Generator().manual_seed(4)
    q, k = torch.rand(2, 64, 30, 26, generator=g), torch.rand(2, 64, 28, 31, generator=g)
    k[1, 5] *= 3  # channels of unequal ranges: one scale for all
    qp = cpu_numba._rows(q.numpy(), 1, np.float32)
    kp = cpu_numba._rows(k.numpy(), 1, np.float32)
    qq, kq, margin, inv_s2 = cpu_numba._quantised(q.numpy(), k.numpy(), 3, True, False)
    assert qq.dtype == kq.dtype == np.int8 and qq.shape == qp.shape and kq.shape == kp.shape
    assert margin.shape == (2, 30 * 26) and inv_s2 > 0
    scale = 1 / np.sqrt(inv_s2)
    # the bound: sqrt(d) >= scale * sqrt(d8) - margin, and not loose by much more
    for b in range(2):
        for qi in range(0, 30 * 26, 53):
            y, x = divmod(qi, 26)
            qsl = (b, slice(y, y + 3), slice(x * 64, x * 64 + 192))
            for cand in range(0, 28 * 31, 37):
                ky, kx = divmod(cand, 31)
                ksl = (b, slice(ky, ky + 3), slice(kx * 64, kx * 64 + 192))
                d = ((qp[qsl].astype(np.float64) - kp[ksl]) ** 2).sum()
                d8 = ((qq[qsl].astype(np.int64) - kq[ksl]) ** 2).sum()
                gap = scale * np.sqrt(d8) - np.sqrt(d)
                assert gap <= margin[b, qi] and gap >= -margin[b, qi] - 1e-6
    # a self-search quantises one map
    qq2, kq2, m2, _ = cpu_numba._quantised(q.numpy(), q.numpy(), 3, True, True)
    assert qq2 is kq2 and m2.shape == (2, 30 * 26)
    for query, key in ((q, k), (q, q), (q.double(), k.double())):
        res = {}
        for flag in (False, True):
            monkeypatch.setattr(cpu_numba, "QUANTISE", flag)
            res[flag] = psal.patchmatch(query, key, k=3, iters=4, backend="numba", seed=2)
        assert torch.equal(res[False].indices, res[True].indices)
        assert torch.equal(res[False].distances, res[True].distances)


def test_numba_bounds_skipped_for_small_work_give_the_same_result(monkeypatch):
    """A few searched pixels (an inpainting hole): the bounds are not built (their pass
    over the whole key would cost more than they save) and the result is unchanged."""
    from psal.patchmatch import cpu_numba

    q = smooth(1, 3, 40, 44, seed=5)
    qmask = torch.zeros(1, 1, 40, 44, dtype=torch.bool)
    qmask[..., 10:20, 12:24] = True  # 7% of the pixels, 2 iterations: below the threshold
    out = {}
    calls = []
    real = cpu_numba._projections
    monkeypatch.setattr(cpu_numba, "_projections", lambda *a: calls.append(1) or real(*a))
    for work in (0.0, cpu_numba.BOUND_MIN_WORK):
        monkeypatch.setattr(cpu_numba, "BOUND_MIN_WORK", work)
        calls.clear()
        out[work] = psal.patchmatch(q, q, k=2, patch_size=5, iters=2, query_valid=qmask,
                                    backend="numba", seed=1)  # fmt: skip
        assert bool(calls) == (work == 0.0)
    a, b = out.values()
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(a.distances, b.distances)


def test_torch_backend_sync_free_path_gives_the_same_result(monkeypatch):
    """The accelerator path (every pair computed, no host sync) equals the compact one."""
    from psal.patchmatch import torch_backend

    q = smooth(2, 3, 14, 12, seed=40)
    k = smooth(2, 3, 13, 15, seed=41)
    qmask = torch.rand(2, 1, 14, 12, generator=torch.Generator().manual_seed(0)) > 0.3
    out = {}
    for compact in (True, False):
        monkeypatch.setattr(torch_backend, "COMPACT_PAIRS", compact)
        out[compact] = psal.patchmatch(q, k, k=3, iters=3, backend="torch", seed=4,
                                       query_valid=qmask)  # fmt: skip
    assert torch.equal(out[True].indices, out[False].indices)
    torch.testing.assert_close(out[True].distances, out[False].distances)


class _HostReads(torch.overrides.TorchFunctionMode):
    """Counts the torch calls that would wait for an accelerator: values read on the host
    (``item``, ``bool(t)``, ``int(t)``, ``tolist``, copies to the CPU) and ops whose output
    size depends on the data (``nonzero``, boolean-mask indexing, ``unique``...)."""

    READS = frozenset(
        {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "cpu", "numpy"}
    )
    SIZED = frozenset({"nonzero", "argwhere", "masked_select", "unique", "unique_consecutive"})

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name in self.READS or name in self.SIZED:
            self.calls.append(name)
        elif name in ("__getitem__", "__setitem__") and len(args) > 1:
            items = args[1] if isinstance(args[1], tuple) else (args[1],)
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items):
                self.calls.append(f"{name}[bool mask]")
        elif name == "where" and len(args) + len(kwargs) == 1:
            self.calls.append("where(cond)")
        elif name == "repeat_interleave" and "output_size" not in kwargs:
            self.calls.append(name)
        elif name == "to" and any(str(a) == "cpu" for a in [*args[1:], *kwargs.values()]):
            self.calls.append("to(cpu)")
        return func(*args, **kwargs)


def _host_reads(fn) -> list[str]:
    with _HostReads() as spy:
        fn()
    return spy.calls


def test_torch_backend_waits_for_the_device_only_in_its_set_up(monkeypatch):
    """Issue 14: on an accelerator the iteration loop never waits for the device. Counted
    on the CPU with the accelerators' path (``COMPACT_PAIRS=False``): the host reads are
    the same for 1 and 4 iterations and for one chunk or many, so none is in the loop."""
    from psal.patchmatch import torch_backend

    monkeypatch.setattr(torch_backend, "COMPACT_PAIRS", False)
    q, k = smooth(2, 6, 20, 18, seed=50), smooth(2, 6, 17, 21, seed=51)
    qmask = torch.rand(2, 1, 20, 18, generator=torch.Generator().manual_seed(1)) > 0.3
    kvalid = torch.rand(2, 1, 17, 21, generator=torch.Generator().manual_seed(2)) > 0.2

    def run(iters, masks):
        extra = {"query_mask": qmask, "valid": kvalid} if masks else {"query_mask": None,
                                                                       "valid": None}  # fmt: skip
        return _host_reads(lambda: torch_backend.search(q, k, k=3, patch_size=3, iters=iters,
                                                        seed=3, init=None, **extra))  # fmt: skip

    for masks in (False, True):
        one = run(1, masks)
        assert run(4, masks) == one
        assert len(one) <= 8, one  # the set-up's: valid keys, duplicate repair
        monkeypatch.setattr(torch_backend, "MAX_CHUNK_BYTES", 4096)  # dozens of chunks a step
        assert run(4, masks) == one
        monkeypatch.undo()
        monkeypatch.setattr(torch_backend, "COMPACT_PAIRS", False)
    # the CPU's compacted path does read the device in the loop: the counter sees it
    monkeypatch.setattr(torch_backend, "COMPACT_PAIRS", True)
    assert len(run(4, False)) > len(run(1, False))


def test_psattention_waits_for_the_device_a_fixed_number_of_times(monkeypatch):
    """A PSAttention training step on the accelerators' path (torch search, torch graph):
    its host reads (argument checks, the search's set-up) do not grow with the
    iterations or the map size."""
    from psal.layers import _aggregate
    from psal.patchmatch import torch_backend

    monkeypatch.setattr(torch_backend, "COMPACT_PAIRS", False)
    monkeypatch.setattr(_aggregate, "FUSED", False)
    counts = set()
    for agg in ("center", "patch"):
        for iters, size in ((1, 12), (3, 12), (3, 20)):
            layer = psal.PSAttention(k=2, iters=iters, aggregation=agg, backend="torch")
            x = smooth(2, 4, size, size, seed=size).requires_grad_()

            def step(layer=layer, x=x):
                layer(x, x, x).square().mean().backward()

            calls = [c for c in _host_reads(step) if c != "numpy"]  # CPU-only kernels' views
            counts.add((agg, len(calls)))
            assert len(calls) <= 12, calls  # 11 today: checks, the search's set-up
    assert len({n for agg, n in counts if agg == "center"}) == 1, counts
    assert len({n for agg, n in counts if agg == "patch"}) == 1, counts


def test_torch_backend_chunk_budget_per_device(monkeypatch):
    """The CPU keeps cache-sized chunks; accelerators get larger ones (fewer launches per
    step): a sixteenth of the free memory, clamped, or ACCEL_CHUNK_BYTES when set."""
    from psal.patchmatch import torch_backend as tb

    assert tb.chunk_budget(torch.device("cpu")) == tb.MAX_CHUNK_BYTES
    cuda = torch.device("cuda", 0)
    for free, want in ((80 * 2**30, 2**30), (8 * 2**30, 2**29), (2**20, tb.MAX_CHUNK_BYTES)):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d=None, f=free: (f, 2 * f))
        assert tb.chunk_budget(cuda) == want
    assert tb.chunk_budget(torch.device("mps")) == tb.MAX_CHUNK_BYTES  # cannot say: the CPU's
    monkeypatch.setattr(tb, "ACCEL_CHUNK_BYTES", 123456)
    assert tb.chunk_budget(cuda) == 123456
    assert tb.chunk_budget(torch.device("cpu")) == tb.MAX_CHUNK_BYTES


def test_torch_backend_result_does_not_depend_on_the_chunking(monkeypatch):
    """Chunks of one pixel and one chunk for everything give the same field."""
    from psal.patchmatch import torch_backend as tb

    q = smooth(2, 3, 14, 12, seed=42)
    k = smooth(2, 3, 13, 15, seed=43)
    qmask = torch.rand(2, 1, 14, 12, generator=torch.Generator().manual_seed(1)) > 0.3
    out = {}
    for budget in (1, 2**30):
        monkeypatch.setattr(tb, "MAX_CHUNK_BYTES", budget)
        out[budget] = psal.patchmatch(q, k, k=3, iters=3, backend="torch", seed=5,
                                      query_valid=qmask)  # fmt: skip
    assert torch.equal(out[1].indices, out[2**30].indices)
    torch.testing.assert_close(out[1].distances, out[2**30].distances)


def test_numba_bound_keeps_near_duplicate_patches(monkeypatch):
    """Self-search on ReLU features, whose zero regions repeat (k-th distances ~1e-16):
    the projection bound's float rounding is absolute, so below LB_FLOOR of the patch
    energy it is not used, and the result equals the search without bounds, bit for bit
    (before, 8 pixels of a 128x128 map differed)."""
    from skimage import data, transform

    from psal.patchmatch import cpu_numba

    g = torch.Generator().manual_seed(0)
    layers, cin = [], 3
    for cout in (32, 64, 64):  # a fixed random CNN, as the benchmarks' feature maps
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
        torch.nn.init.normal_(conv.weight, std=(1 / (cin * 9)) ** 0.5, generator=g)
        torch.nn.init.zeros_(conv.bias)
        layers += [conv, torch.nn.ReLU()]
        cin = cout
    im = transform.resize(data.astronaut(), (96, 96), anti_aliasing=True)
    im = torch.from_numpy(im).permute(2, 0, 1)[None].float().contiguous()
    with torch.no_grad():
        x = torch.nn.Sequential(*layers[:-1])(im)
    out = {}
    for work in (0.0, 1e12):  # bounds built / never built
        monkeypatch.setattr(cpu_numba, "BOUND_MIN_WORK", work)
        out[work] = psal.patchmatch(x, x, k=3, patch_size=3, iters=5, backend="numba", seed=0)
    a, b = out.values()
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(a.distances, b.distances)


def test_numba_search_refuses_more_neighbours_than_valid_keys():
    """Internal callers too: the random start would never find k distinct keys (it hung)."""
    from psal.patchmatch import cpu_numba

    q = np.random.default_rng(0).random((1, 4, 10, 12), dtype=np.float32)
    key_ok = np.zeros((1, 1, 5, 3), dtype=bool)
    key_ok[0, 0, 0, :2] = True
    with pytest.raises(ValueError, match="k=3 is more than the 2 valid key positions"):
        cpu_numba.search_arrays(q, q[:, :, :5, :3].copy(), k=3, patch_size=1, iters=2,
                                query_valid=None, key_ok=key_ok, seed=0, init=None)  # fmt: skip


@pytest.mark.usefixtures("fresh_dynamo")
def test_torch_compile_of_a_caller_takes_new_sizes():
    """Code that calls the search, compiled: the search runs eagerly (a graph break) and
    gives the eager result at every size. Traced, it failed at the second size ('slice
    start must be int or None, got SymInt': the shapes had become symbolic)."""

    def total(q: torch.Tensor) -> torch.Tensor:
        return psal.patchmatch(q, q, k=2, patch_size=3, iters=2, seed=0).distances.sum() * 2

    compiled = torch.compile(total, backend="eager")
    g = torch.Generator().manual_seed(0)
    for size in (12, 15):
        q = torch.rand(1, 4, size, size, generator=g)
        assert torch.equal(compiled(q), total(q))

from __future__ import annotations

import itertools

import pytest
import torch

from psal.editing._mode import _mode_torch, mode_vote


def _field(seed=0, h=9, w=11, k=2, hk=12, wk=13):
    g = torch.Generator().manual_seed(seed)
    value = torch.rand(1, 3, hk, wk, generator=g, dtype=torch.float64)
    idx = torch.randint(0, hk * wk, (1, k, h, w), generator=g)
    idx[0, 0, 0, 0] = -1  # unsearched
    dist = torch.rand(1, k, h, w, generator=g, dtype=torch.float64) * 5
    return value, idx, dist


def _proposals(value, idx, dist, p, y, x):
    """Every (distance, value) proposed for query pixel (y, x), brute force."""
    r = p // 2
    _, _, hk, wk = value.shape
    out = []
    for dy, dx in itertools.product(range(-r, r + 1), repeat=2):
        cy, cx = y - dy, x - dx
        if not (0 <= cy < idx.shape[2] and 0 <= cx < idx.shape[3]):
            continue
        for j in range(idx.shape[1]):
            i = int(idx[0, j, cy, cx])
            if i < 0:
                continue
            py, px = i // wk + dy, i % wk + dx
            py = -py if py < 0 else (2 * (hk - 1) - py if py >= hk else py)
            px = -px if px < 0 else (2 * (wk - 1) - px if px >= wk else px)
            out.append((float(dist[0, j, cy, cx]), value[0, :, py, px]))
    return out


def test_winner_takes_all_is_the_best_proposal():
    value, idx, dist = _field()
    ys, xs = torch.meshgrid(torch.arange(9), torch.arange(11), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    out, covered = mode_vote(value, idx, dist, 3, (ys, xs), iters=0)
    assert covered.all()
    for n in range(0, ys.numel(), 7):
        props = _proposals(value, idx, dist, 3, int(ys[n]), int(xs[n]))
        best = min(props, key=lambda t: t[0])[1]
        torch.testing.assert_close(out[:, n], best)


@pytest.mark.parametrize("iters", [0, 3])
@pytest.mark.parametrize("temperature", [float("inf"), 0.7])
def test_numba_and_torch_paths_agree(iters, temperature):
    value, idx, dist = _field(1)
    ys = torch.tensor([0, 4, 8, 3])
    xs = torch.tensor([0, 5, 10, 1])
    a, ca = mode_vote(value, idx, dist, 5, (ys, xs), iters=iters, temperature=temperature,
                      bandwidth=0.2)  # fmt: skip
    inv_t = 0.0 if temperature == float("inf") else 1 / temperature
    b, cb = _mode_torch(value, idx, dist, ys, xs, 2, inv_t, 1 / (2 * 0.2**2), iters)
    assert torch.equal(ca, cb)
    torch.testing.assert_close(a, b)


def test_mean_shift_with_a_huge_bandwidth_is_the_weighted_mean():
    value, idx, dist = _field(2)
    ys, xs = torch.tensor([4]), torch.tensor([5])
    out, _ = mode_vote(value, idx, dist, 3, (ys, xs), iters=1, temperature=2.0, bandwidth=1e6)
    props = _proposals(value, idx, dist, 3, 4, 5)
    w = torch.tensor([torch.exp(torch.tensor(-d / 2.0)) for d, _ in props], dtype=torch.float64)
    ref = (torch.stack([v for _, v in props], 1) * w).sum(1) / w.sum()
    torch.testing.assert_close(out[:, 0], ref)


def test_uncovered_pixels():
    value, idx, dist = _field()
    idx[:] = -1
    out, covered = mode_vote(value, idx, dist, 3, (torch.tensor([2]), torch.tensor([2])))
    assert not covered.any() and torch.isnan(out).all()


def test_mean_shift_weights_of_large_distances_in_float32():
    """Distances far above T: the weights come from differences to the best distance.

    With d ~ 1e5 and T = 0.1, ``-d / T`` in float32 is ~1e6 with a rounding step of
    0.06, so differences of such logits would carry exponent errors of several
    hundredths; the kernel forms ``(d_best - d) / T`` in float64 from the float32
    distances (exact there) instead. The float32 result must match the float64
    computation on the same float32 distances.
    """
    value, idx, dist = _field(3)
    dist = (1e5 + dist).float()  # the spread stays 0-5, the level is far from zero
    ys = torch.tensor([1, 4, 8, 3])
    xs = torch.tensor([2, 5, 10, 6])
    kw = dict(iters=2, temperature=0.1, bandwidth=0.3)
    ref, _ = mode_vote(value, idx, dist.double(), 5, (ys, xs), **kw)
    out, _ = mode_vote(value.float(), idx, dist, 5, (ys, xs), **kw)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=0)


def test_infinite_and_nan_distances_rank_last():
    """A patch distance that overflowed float32 (inf; psal.patchmatch returns it with a
    valid index when the squared differences pass 3.4e38) or NaN is the worst proposal,
    never the best: the winner is the smallest finite distance, on every path."""
    import numpy as np

    value, idx, dist = _field(4)
    g = torch.Generator().manual_seed(4)
    bad = torch.rand(dist.shape, generator=g) < 0.4
    dist = dist.masked_fill(bad, float("inf"))
    dist[0, 1, 3, 4] = float("nan")
    ys, xs = torch.meshgrid(torch.arange(9), torch.arange(11), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    out, covered = mode_vote(value, idx, dist, 3, (ys, xs), iters=0)
    out_np, _ = mode_vote(value.numpy(), idx.numpy(), dist.numpy(), 3, (ys.numpy(), xs.numpy()),
                          iters=0)  # fmt: skip
    assert covered.all()
    checked = 0
    for n in range(ys.numel()):
        props = _proposals(value, idx, dist, 3, int(ys[n]), int(xs[n]))
        finite = [t for t in props if np.isfinite(t[0])]
        if not finite or len(finite) == len(props):
            continue
        best = min(finite, key=lambda t: t[0])[1]
        torch.testing.assert_close(out[:, n], best)
        torch.testing.assert_close(torch.from_numpy(out_np[:, n]), best)
        checked += 1
    assert checked > 20
    # the PyTorch path of other devices, on the distances as mode_vote passes them
    from psal.editing._mode import _worst_last

    out_t, _ = _mode_torch(value, idx, _worst_last(dist), ys, xs, 1, 0.0, 1.0, 0)
    torch.testing.assert_close(out_t, out)


def test_ties_go_to_the_first_proposal_on_both_paths():
    # equal distances everywhere: the winner is the first proposal in the kernel's
    # order (offset dy, then dx, from -r; then the k matches), on the CPU kernel and
    # the PyTorch path alike
    value, idx, _ = _field(5)
    idx[0, 0, 0, 0] = 7  # every patch searched
    dist = torch.full(idx.shape, 0.25, dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.arange(9), torch.arange(11), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    out, _ = mode_vote(value, idx, dist, 3, (ys, xs), iters=0)
    out_t, _ = _mode_torch(value, idx, dist, ys, xs, 1, 0.0, 1.0, 0)
    assert torch.equal(out, out_t)
    for n in range(0, ys.numel(), 5):
        first = _proposals(value, idx, dist, 3, int(ys[n]), int(xs[n]))[0][1]
        assert torch.equal(out[:, n], first)

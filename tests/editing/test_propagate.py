from __future__ import annotations

import torch

from psal.editing._propagate import propagate


def test_full_confidence_keeps_the_values():
    v = torch.rand(1, 2, 20, 30, dtype=torch.float64)
    g = torch.rand(1, 1, 20, 30, dtype=torch.float64)
    out = propagate(v, torch.full_like(g, 1.0), g, smoothness=1e-6)
    torch.testing.assert_close(out, v, atol=1e-4, rtol=0)


def test_values_spread_over_flat_regions_and_stop_at_edges():
    h, w = 40, 80
    g = torch.zeros(1, 1, h, w, dtype=torch.float64)
    g[..., w // 2 :] = 1.0  # an edge down the middle
    v = torch.zeros(1, 1, h, w, dtype=torch.float64)
    c = torch.zeros_like(g)
    v[..., 5, 5], c[..., 5, 5] = 1.0, 1.0  # one known pixel on each side
    v[..., 30, 70], c[..., 30, 70] = -1.0, 1.0
    out = propagate(v, c, g, smoothness=1.0, sigma=0.05, iters=400, tol=1e-10)
    assert (out[..., : w // 2] - 1.0).abs().max() < 0.02
    assert (out[..., w // 2 :] + 1.0).abs().max() < 0.02


def test_solves_the_weighted_least_squares_system():
    # compare with a dense solve of (diag(c) + λ L) u = c v on a tiny problem
    torch.manual_seed(0)
    h, w = 5, 6
    v = torch.randn(1, 1, h, w, dtype=torch.float64)
    c = torch.rand(1, 1, h, w, dtype=torch.float64)
    g = torch.rand(1, 1, h, w, dtype=torch.float64)
    lam, sigma = 0.7, 0.3
    n = h * w
    a = torch.diag(c.flatten())
    for y in range(h):
        for x in range(w):
            for dy, dx in ((0, 1), (1, 0)):
                if y + dy < h and x + dx < w:
                    p, q = y * w + x, (y + dy) * w + x + dx
                    wt = lam * torch.exp(
                        -((g[0, 0, y, x] - g[0, 0, y + dy, x + dx]) ** 2) / (2 * sigma**2)
                    )
                    a[p, p] += wt
                    a[q, q] += wt
                    a[p, q] -= wt
                    a[q, p] -= wt
    want = torch.linalg.solve(a, (c * v).flatten()).view(1, 1, h, w)
    got = propagate(v, c, g, smoothness=lam, sigma=sigma, iters=200, tol=1e-12)
    torch.testing.assert_close(got, want, atol=1e-8, rtol=0)
    assert n == 30


def test_compiled_solve_matches_the_torch_solve(monkeypatch):
    # the CPU path (compiled, float64, incomplete-Cholesky preconditioned) against the
    # Jacobi-preconditioned torch path of other devices: the same solution
    import psal.editing._propagate as P

    torch.manual_seed(1)
    v = torch.rand(2, 2, 37, 45)
    c = torch.rand(2, 1, 37, 45) ** 4 * 3
    g = torch.rand(2, 1, 37, 45).cumsum(-1) / 45
    kw = dict(smoothness=50.0, sigma=0.03, min_size=8, iters=3000, tol=1e-10)
    got = P.propagate(v, c, g, **kw)
    monkeypatch.setattr(P, "NUMBA_CG", False)
    want = P.propagate(v.double(), c.double(), g.double(), **kw)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, atol=2e-6, rtol=0)


def _colorization_like(h=96, w=128, seed=0):
    """Chroma votes over a guide with smooth shading and steps: confidences at the
    floor 0.05 mostly, weak votes a little above, 1% trusted (100), as colorize's."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    g = 0.4 + 0.25 * np.sin(xx / 9.0 + yy / 17.0) * np.cos(yy / 13.0)
    g = g + 0.3 * ((xx + yy // 2) % 48 < 20) + 0.01 * rng.random((h, w))
    c = 0.05 + 0.95 * rng.random((h, w)) ** 6
    c[rng.random((h, w)) < 0.01] = 100.0
    v = np.stack([np.sin(xx / 20.0), np.cos(yy / 15.0)]) * 0.2
    v = v + 0.1 * rng.standard_normal((2, h, w))
    return v[None], c[None, None], g[None, None]


def _relative_residual(u, v, c, g, lam=50.0, sigma=0.03):
    """``|c v - (c u + lam L_w u)| / |c v|``, in float64."""
    import psal.editing._propagate as P

    u, v, c, g = (torch.as_tensor(a).double() for a in (u, v, c, g))
    wx, wy = P._weights(g, sigma)
    r = c * v - (c * u + lam * P._laplacian(u, wx, wy))
    return float(r.norm() / (c * v).norm())


def test_the_finest_level_reaches_its_tolerance_with_the_default_cap(monkeypatch):
    """The result solves its system to ``tol`` (1e-4): 60 Jacobi steps per level, the
    old default, left 7e-4 here and 1e-3 to 3e-3 at the finest level of colorizations
    of 512x680 and 2000x1500 photos (they needed 90-170 steps)."""
    import warnings

    import psal.editing._propagate as P

    v, c, g = _colorization_like()
    for flag in (True, False):  # compiled (CPU), torch (other devices)
        monkeypatch.setattr(P, "NUMBA_CG", flag)
        for dtype, slack in ((torch.float64, 1.0), (torch.float32, 1.5)):
            args = [torch.from_numpy(a).to(dtype) for a in (v, c, g)]
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # and no warning that it stopped short
                out = propagate(*args, smoothness=50.0, sigma=0.03)
            assert out.dtype == dtype
            assert _relative_residual(out, v, c, g) <= 1e-4 * slack, (flag, dtype)
    out = propagate(v, c, g, smoothness=50.0, sigma=0.03)  # numpy arrays
    assert _relative_residual(out, v, c, g) <= 1e-4


def test_propagate_warns_once_when_the_finest_level_stops_short(monkeypatch):
    import pytest

    import psal.editing._propagate as P

    v, c, g = _colorization_like()
    for flag in (True, False):
        monkeypatch.setattr(P, "NUMBA_CG", flag)
        with pytest.warns(RuntimeWarning, match="propagate.* 3 steps.*psal.colorize") as record:
            propagate(v, c, g, smoothness=50.0, sigma=0.03, iters=3)
        assert len(record) == 1  # not once per level
        assert "relative residual" in str(record[0].message)


def test_tiny_confidence_is_not_scaled_towards_zero():
    # u = v solves (diag(c) + λ L) u = c v for constant v and any c > 0; the starts of
    # the pyramid (confidence-weighted means) once divided by the confidence clipped
    # at 1e-12 and gave ~0 below it. A uniform scale of c and λ leaves u unchanged.
    import numpy as np

    rng = np.random.default_rng(7)
    h, w = 70, 66  # two levels at min_size 32
    g = rng.random((1, 1, h, w)) * 0.02
    v = np.empty((1, 2, h, w))
    v[:, 0], v[:, 1] = 0.3, -0.2
    for scale in (1.0, 1e-14, 1e-20):
        c = np.full((1, 1, h, w), scale)
        for args in ((v, c, g), tuple(torch.from_numpy(a) for a in (v, c, g))):
            out = np.asarray(propagate(*args, smoothness=50.0, sigma=0.03))
            np.testing.assert_allclose(out, v, atol=1e-9, rtol=0, err_msg=str(scale))
    vr = rng.standard_normal((1, 1, 12, 10))
    cr = rng.random((1, 1, 12, 10))
    gr = rng.random((1, 1, 12, 10))
    kw = dict(sigma=0.3, iters=500, tol=1e-12)
    want = propagate(vr, cr, gr, smoothness=0.7, **kw)
    got = propagate(vr, cr * 1e-14, gr, smoothness=0.7e-14, **kw)
    np.testing.assert_allclose(got, want, atol=1e-7, rtol=0)


def test_a_tiny_sigma_cuts_at_every_edge_without_nan(monkeypatch):
    # 1 / (2 sigma²) overflowing the dtype made 0 * inf = NaN weights between equal
    # neighbours (NaN everywhere; sigma=1e-170: ZeroDivisionError). A guide of two flat
    # halves one apart: any sigma where exp(-1 / (2 sigma²)) underflows gives the same
    # solve, equal pixels coupled with weight 1, the halves not at all.
    import numpy as np

    import psal.editing._propagate as P

    rng = np.random.default_rng(3)
    g = np.zeros((1, 1, 10, 12))
    g[..., 6:] = 1.0
    v = rng.standard_normal((1, 2, 10, 12))
    c = rng.random((1, 1, 10, 12))
    kw = dict(iters=400, tol=1e-12)
    want = P.propagate(v, c, g, sigma=0.01, **kw)
    for sigma in (1e-20, 1e-160, 1e-170):
        np.testing.assert_allclose(P.propagate(v, c, g, sigma=sigma, **kw), want, atol=1e-9)
    monkeypatch.setattr(P, "NUMBA_CG", False)  # the torch solve of other devices, float32
    t = [torch.from_numpy(a).float() for a in (v, c, g)]
    want32 = P.propagate(*t, sigma=0.01, **kw)
    for sigma in (1e-20, 1e-170):
        torch.testing.assert_close(P.propagate(*t, sigma=sigma, **kw), want32)


def test_channels_on_threads_give_the_serial_bits(monkeypatch):
    """The compiled solve runs the chroma channels on the kernel threads on large
    images; each channel's sums are its own and added in channel order, so the result
    is the one of one thread, bit for bit, whatever the split or the finishing order."""
    import numpy as np

    import psal.editing._propagate as P
    import psal.utils.parallel as par

    v, c, g = _colorization_like(h=150, w=170, seed=3)
    kw = dict(smoothness=50.0, sigma=0.03, min_size=16)
    monkeypatch.setattr(P, "PARALLEL_MIN_PIXELS", 10**12)  # every level on one thread
    serial = P.propagate(v, c, g, **kw)
    monkeypatch.setattr(P, "PARALLEL_MIN_PIXELS", 0)  # every level threaded
    threaded = P.propagate(v, c, g, **kw)
    assert np.array_equal(threaded, serial)
    calls = []

    def one_item_each_backwards(kernel, n, *args, **_):
        calls.append(n)
        for i in reversed(range(n)):  # one channel per call, the last one first
            kernel(*args, i, i + 1)

    monkeypatch.setattr(par, "run_chunked", one_item_each_backwards)
    split = P.propagate(v, c, g, **kw)
    assert calls and set(calls) == {2}
    assert np.array_equal(split, serial)
    assert _relative_residual(serial, v, c, g) <= 1e-4


def test_a_short_solve_warns_at_the_callers_line(monkeypatch):
    """Through psal.colorize, the warning names the user's call (this file), not
    psal's colorize.py (where it pointed before)."""
    import functools
    import importlib
    import warnings

    import numpy as np

    import psal

    colorize_module = importlib.import_module("psal.editing.colorize")  # not the function

    monkeypatch.setattr(colorize_module, "propagate_values", functools.partial(propagate, iters=1))
    rng = np.random.default_rng(0)
    target = rng.random((40, 48)).astype(np.float32)
    reference = rng.random((40, 48, 3)).astype(np.float32)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        psal.colorize(target, reference, patch_size=5, seed=0)
    short = [w for w in record if "propagate:" in str(w.message)]
    assert short and {w.filename for w in short} == {__file__}

from __future__ import annotations

import numpy as np
import torch

from psal.editing._poisson import poisson_fill


def _dense_reference(img, hole, ys, xs, sy, sx):
    """The same least-squares problem written out pair by pair, solved with lstsq."""
    a = img[0].double().numpy()
    _, h, w = a.shape
    m = hole[0, 0].numpy()
    n = ys.numel()
    at = {(int(y), int(x)): i for i, (y, x) in enumerate(zip(ys, xs))}
    src = {i: (int(sy[i]), int(sx[i])) for i in range(n)}

    def read(y, x):
        return a[:, min(max(y, 0), h - 1), min(max(x, 0), w - 1)]

    rows, rhs = [], []
    for (y, x), i in at.items():
        for ey, ex in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            qy, qx = y + ey, x + ex
            if not (0 <= qy < h and 0 <= qx < w):
                continue
            if m[qy, qx] and (ey, ex) in ((0, -1), (-1, 0)):
                continue  # a hole-hole pair is written once
            py, px = src[i]
            g = read(py, px) - read(py + ey, px + ex)
            row = np.zeros(n)
            row[i] = 1.0
            if m[qy, qx]:
                j = at[(qy, qx)]
                qy_, qx_ = src[j]
                g = 0.5 * (g + read(qy_ - ey, qx_ - ex) - read(qy_, qx_))
                row[j] = -1.0
                rhs.append(g)
            else:
                rhs.append(g + a[:, qy, qx])
            rows.append(row)
    sol, *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    return torch.from_numpy(sol.T)


def test_poisson_fill_equals_the_dense_least_squares_solution():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 12, 14, generator=g, dtype=torch.float64)
    hole = torch.zeros(1, 1, 12, 14, dtype=torch.bool)
    hole[..., 3:8, 0:6] = True  # touches the image border
    hole[..., 9, 9:12] = True
    ys, xs = torch.nonzero(hole[0, 0], as_tuple=True)
    sy = torch.randint(0, 12, ys.shape, generator=g)
    sx = torch.randint(0, 14, xs.shape, generator=g)
    out = poisson_fill(img, hole, ys, xs, sy, sx, iters=500, tol=1e-12)
    ref = _dense_reference(img, hole, ys, xs, sy, sx)
    torch.testing.assert_close(out, ref, atol=1e-8, rtol=0)


def test_poisson_fill_removes_a_colour_offset_of_the_source():
    # the truth is a ramp; the fill is copied from a place 40 columns away (same
    # gradients, other values): the gradient-domain fill gives the truth back
    x = torch.arange(64, dtype=torch.float64)
    img = (x / 64).expand(1, 3, 32, 64).contiguous()
    hole = torch.zeros(1, 1, 32, 64, dtype=torch.bool)
    hole[..., 10:20, 5:15] = True
    ys, xs = torch.nonzero(hole[0, 0], as_tuple=True)
    truth = img[0][:, ys, xs].clone()
    img[0][:, ys, xs] = img[0][:, ys, xs + 40]  # the winner-takes-all copy: wrong level
    out = poisson_fill(img, hole, ys, xs, ys, xs + 40, iters=500, tol=1e-12)
    torch.testing.assert_close(out, truth, atol=1e-9, rtol=0)
    assert (img[0][:, ys, xs] - truth).abs().max() > 0.5


def test_poisson_compiled_solve_equals_the_torch_solve(monkeypatch):
    """The CPU solve (numba, float64, MIC(0)-preconditioned, per channel) against the
    plain PyTorch one other devices use: the same solution, in float32 and float64."""
    from psal.editing import _poisson

    g = torch.Generator().manual_seed(3)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        img = torch.rand(1, 3, 20, 23, generator=g, dtype=dtype)
        hole = torch.zeros(1, 1, 20, 23, dtype=torch.bool)
        hole[..., 4:15, 2:11] = True
        hole[..., 17:, 18:] = True  # a corner
        ys, xs = torch.nonzero(hole[0, 0], as_tuple=True)
        sy = torch.randint(0, 20, ys.shape, generator=g)
        sx = torch.randint(0, 23, xs.shape, generator=g)
        out = {}
        for flag in (True, False):
            monkeypatch.setattr(_poisson, "NUMBA_CG", flag)
            out[flag] = poisson_fill(img, hole, ys, xs, sy, sx, iters=500, tol=tol)
        assert out[True].dtype == dtype
        atol = 1e-9 if dtype == torch.float64 else 2e-5
        torch.testing.assert_close(out[True], out[False], atol=atol, rtol=0)


def _large_hole(seed=5, h=112, w=150):
    """A photo-like image and a 100x96 hole against its top border, filled
    winner-takes-all from two places of different brightness: the start is off by a
    level step of 0.3, the low-frequency error that conjugate gradients remove last."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    smooth = 0.3 + 0.2 * torch.sin(xx / 23.0) * torch.cos(yy / 31.0) + xx / (2 * w)
    img = (smooth + 0.05 * torch.rand(h, w, generator=g, dtype=torch.float64)).expand(1, 3, h, w)
    img = img.contiguous()
    hole = torch.zeros(1, 1, h, w, dtype=torch.bool)
    hole[..., 0:100, 4:100] = True
    ys, xs = torch.nonzero(hole[0, 0], as_tuple=True)
    sy = ys.clone()
    sx = torch.where(ys < 50, xs + 50, xs + 40).clamp(max=w - 1)  # two pieces
    img[0][:, ys, xs] = img[0][:, sy, sx] + torch.where(ys < 50, 0.0, 0.3)
    return img, hole, ys, xs, sy, sx


def test_poisson_fill_converges_on_a_large_hole_without_a_cap_argument(monkeypatch):
    """The default cap reaches the tolerance on a hole 100 pixels wide, on the CPU
    (preconditioned) and with the plain torch solve of other devices, float64 and
    float32: the old fixed cap of 100 plain steps left errors up to 0.12 here, a
    visible low-frequency offset in real holes (18/255 on a 300x300 hole)."""
    import warnings

    from psal.editing import _poisson

    img, hole, ys, xs, sy, sx = _large_hole()
    want = poisson_fill(img, hole, ys, xs, sy, sx, iters=20000, tol=1e-12)
    for flag in (True, False):
        monkeypatch.setattr(_poisson, "NUMBA_CG", flag)
        for dtype, atol in ((torch.float64, 2e-4), (torch.float32, 5e-4)):
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # and no warning that it stopped short
                got = poisson_fill(img.to(dtype), hole, ys, xs, sy, sx)
            assert got.dtype == dtype
            torch.testing.assert_close(got.double(), want, atol=atol, rtol=0)


def test_poisson_fill_warns_once_when_it_stops_short(monkeypatch):
    import pytest

    from psal.editing import _poisson

    img, hole, ys, xs, sy, sx = _large_hole()
    for flag in (True, False):
        monkeypatch.setattr(_poisson, "NUMBA_CG", flag)
        with pytest.warns(
            RuntimeWarning, match="poisson_fill.* 5 steps.*psal.inpaint: gradient_domain=False"
        ) as record:
            poisson_fill(img, hole, ys, xs, sy, sx, iters=5)
        assert len(record) == 1
        assert "relative residual" in str(record[0].message)


def test_poisson_fill_takes_the_hole_pixels_in_any_order():
    # the preconditioner sweeps row-major order: other orders are sorted and put back
    img, hole, ys, xs, sy, sx = _large_hole(h=40, w=150)
    keep = ys < 30
    ys, xs, sy, sx = ys[keep], xs[keep], sy[keep], sx[keep]
    hole[..., 30:, :] = False
    want = poisson_fill(img, hole, ys, xs, sy, sx, tol=1e-12)
    perm = torch.randperm(ys.numel(), generator=torch.Generator().manual_seed(0))
    got = poisson_fill(img, hole, ys[perm], xs[perm], sy[perm], sx[perm], tol=1e-12)
    torch.testing.assert_close(got, want[:, perm], atol=1e-9, rtol=0)


def test_poisson_fill_equals_the_dense_solve_on_awkward_holes():
    """Corners and borders, 1-pixel holes, disjoint holes, a hole 8 pixels deep (its
    centre has no known pixel within several steps); gray and colour, float64 and
    float32, tensors and numpy arrays."""
    import numpy as np

    g = torch.Generator().manual_seed(11)
    holes = {
        "corners": (9, 11, [(slice(0, 3), slice(0, 4)), (slice(6, None), slice(8, None))]),
        "pixels": (8, 8, [(3, 4), (0, 0), (7, 7), (5, 1), (0, 5)]),
        "deep": (20, 20, [(slice(2, 18), slice(2, 18))]),
        "column": (6, 10, [(slice(0, 6), 4)]),
    }
    for h, w, parts in holes.values():
        hole = torch.zeros(1, 1, h, w, dtype=torch.bool)
        for part in parts:
            hole[(..., *part)] = True
        ys, xs = torch.nonzero(hole[0, 0], as_tuple=True)
        sy = torch.randint(0, h, ys.shape, generator=g)
        sx = torch.randint(0, w, xs.shape, generator=g)
        for c in (1, 3):
            for dtype, atol in ((torch.float64, 1e-9), (torch.float32, 2e-6)):
                img = torch.rand(1, c, h, w, generator=g, dtype=dtype)
                ref = _dense_reference(img.double(), hole, ys, xs, sy, sx)
                tol = 1e-12 if dtype == torch.float64 else 1e-7
                out = poisson_fill(img, hole, ys, xs, sy, sx, iters=2000, tol=tol)
                assert out.dtype == dtype
                torch.testing.assert_close(out.double(), ref, atol=atol, rtol=0)
                args = (a.numpy() for a in (img, hole, ys, xs, sy, sx))
                out_np = poisson_fill(*args, iters=2000, tol=tol)
                np.testing.assert_allclose(out_np.astype(np.float64), ref.numpy(), atol=atol)


def test_a_short_solve_warns_at_the_callers_line(monkeypatch):
    """Through psal.inpaint, the warning names the user's call (this file), not the
    module of psal that called the solver (inpaint.py, where it pointed before)."""
    import importlib
    import warnings

    import psal

    inpaint_module = importlib.import_module("psal.editing.inpaint")  # not the function

    monkeypatch.setattr(inpaint_module, "POISSON_ITERS", 1)
    rng = np.random.default_rng(0)
    image = rng.random((48, 56, 3)).astype(np.float32)
    hole = np.zeros((48, 56), bool)
    hole[12:36, 16:40] = True
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        psal.inpaint(image, hole, patch_size=5, seed=0)
    short = [w for w in record if "poisson_fill" in str(w.message)]
    assert short and {w.filename for w in short} == {__file__}

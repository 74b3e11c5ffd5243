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


def test_numba_loop_equals_the_torch_loop():
    # the CPU kernel (one channel at a time) and the PyTorch loop of other devices
    g = torch.Generator().manual_seed(1)
    img = torch.rand(1, 3, 40, 50, generator=g, dtype=torch.float64)
    hole = torch.zeros(1, 1, 40, 50, dtype=torch.bool)
    hole[..., 5:30, 10:35] = True
    ys, xs = torch.nonzero(hole[0, 0], as_tuple=True)
    sy = torch.randint(0, 40, ys.shape, generator=g)
    sx = torch.randint(0, 50, xs.shape, generator=g)
    for iters in (0, 7, 300):
        a = poisson_fill(img, hole, ys, xs, sy, sx, iters=iters)
        b = poisson_fill(img, hole, ys, xs, sy, sx, iters=iters, use_numba=False)
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    assert (a - img[0][:, ys, xs]).abs().max() > 0.1  # the solve did change the fill

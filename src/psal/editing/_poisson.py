"""Gradient-domain reconstruction of a winner-takes-all fill (Pérez et al. 2003).

Winner-takes-all voting copies each hole pixel from one source pixel ``s(p)``; where
neighbouring pixels come from different places the copies meet at a seam, a colour step
that is in neither source, and a piece copied from a lighter or darker place keeps its
level. Here the fill keeps the *differences* of its sources instead of their values: the
hole pixels ``f`` minimise

    Σ over 4-neighbour pairs {p, q = p + e} with at least one of them in the hole, each
    pair once, of (f_p - f_q - g_pq)²

(a sum over every p in the hole and its 4 steps e would count each pair inside the
hole twice: another solution), with ``g_pq`` the difference the sources propose for
that pair: ``I(s(p)) - I(s(p) + e)`` where q is known (its value is the boundary
condition), the mean of that and ``I(s(q) - e) - I(s(q))`` where q is in the hole too
(source positions outside the image are clamped to it). The texture inside each copied
piece is kept; seams and level offsets are spread smoothly over the hole. Solved by
conjugate gradients on the hole pixels only (matrix-free), started from the
winner-takes-all fill; tested against a dense least-squares solve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from ..utils.arrays import Array, arange, astype, concat, copy, full, namespace
from ..utils.parallel import run_chunked

if TYPE_CHECKING:
    import torch
else:
    from ..utils.arrays import lazy_torch as torch  # for annotations (imports torch if resolved)

__all__ = ["poisson_fill"]

#: Solve with the compiled CPU conjugate gradients (float64, one channel per thread,
#: ~3 passes over the hole per step instead of a dozen tensor operations); tests switch
#: it off to compare with the PyTorch solve that other devices use.
NUMBA_CG = True

_STEPS = ((0, 1), (0, -1), (1, 0), (-1, 0))


def _read(image: Array, y: Array, x: Array) -> Array:
    """``image[0][:, y, x]`` with positions clamped to the image: (C, N)."""
    h, w = image.shape[-2:]
    return image[0][:, y.clip(0, h - 1), x.clip(0, w - 1)]


def poisson_fill(
    image: torch.Tensor,
    hole: torch.Tensor,
    ys: torch.Tensor,
    xs: torch.Tensor,
    sy: torch.Tensor,
    sx: torch.Tensor,
    *,
    iters: int = 100,
    tol: float = 1e-5,
) -> torch.Tensor:
    """Gradient-domain fill of the hole pixels from the pixels they were copied from.

    One code path for numpy arrays and torch tensors (:mod:`psal.utils.arrays`); the
    conjugate gradients run compiled on the CPU, with PyTorch on other devices.

    Args:
        image: (1, C, H, W) float; known pixels are the boundary condition, hole pixels
            hold the winner-takes-all fill (the start of the solve). Differences are
            read from it at the source positions.
        hole: (1, 1, H, W) bool, True = hole.
        ys: (N,) int64 rows of every hole pixel.
        xs: (N,) int64 their columns.
        sy: (N,) int64 row of the source pixel each hole pixel was copied from.
        sx: (N,) int64 its column.
        iters: at most this many conjugate-gradient steps.
        tol: stop when every channel's residual norm is below ``tol`` times the norm of
            its right-hand side.

    Returns:
        (C, N) the new values of the hole pixels, of the image's kind and dtype.
    """
    xp = namespace(image)
    c, h, w = image.shape[1:]
    n = ys.shape[0]
    at = full(ys, (h, w), n, "int64")  # hole pixel -> its number
    at[ys, xs] = arange(ys, n)
    src = _read(image, sy, sx)
    b = xp.zeros_like(src)
    deg = xp.zeros_like(src[0])
    nbr = []
    for ey, ex in _STEPS:
        qy, qx = ys + ey, xs + ex
        inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        qy, qx = qy.clip(0, h - 1), qx.clip(0, w - 1)
        j = xp.where(inside, at[qy, qx], n)  # n: no hole neighbour there
        in_hole = j < n
        own = src - _read(image, sy + ey, sx + ex)
        jj = j.clip(0, n - 1)
        theirs = _read(image, sy[jj] - ey, sx[jj] - ex) - _read(image, sy[jj], sx[jj])
        g = xp.where(in_hole, 0.5 * (own + theirs), own)
        known = inside & ~in_hole
        b += xp.where(inside, g, 0.0) + xp.where(known, image[0][:, qy, qx], 0.0)
        deg += astype(inside, src)
        nbr.append(j[None])
    nbr = concat(nbr, 0)  # (4, N)

    f = copy(image[0][:, ys, xs])
    on_numpy = isinstance(image, np.ndarray)
    if on_numpy or (image.device.type == "cpu" and NUMBA_CG):
        f, deg, nbr, b = (a if on_numpy else a.numpy() for a in (f, deg, nbr, b))
        out = np.ascontiguousarray(f, dtype=np.float64)  # the start, then the solution
        run_chunked(_cg_tasks, c, np.ascontiguousarray(deg, dtype=np.float64),
                    np.ascontiguousarray(nbr), np.ascontiguousarray(b, dtype=np.float64), out,
                    iters, tol)  # fmt: skip
        if on_numpy:
            return out.astype(image.dtype)
        import torch

        return torch.from_numpy(out).to(image.dtype)
    return _cg_torch(f, b, deg, nbr, iters, tol)


def _cg_torch(f, b, deg, nbr, iters, tol):
    """Conjugate gradients on every channel at once with PyTorch (any device)."""
    import torch

    c, dt, dev = f.shape[0], f.dtype, f.device

    def apply(f: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([f, torch.zeros((c, 1), dtype=dt, device=dev)], 1)
        return deg * f - padded[:, nbr].sum(1)

    r = b - apply(f)
    p = r.clone()
    rs = (r * r).sum(1)
    stop = tol**2 * (b * b).sum(1)
    for _ in range(iters):
        if bool((rs <= stop).all()):
            break
        ap = apply(p)
        alpha = rs / (p * ap).sum(1).clamp_min(1e-300)
        f = f + alpha[:, None] * p
        r = r - alpha[:, None] * ap
        rs_new = (r * r).sum(1)
        p = r + (rs_new / rs.clamp_min(1e-300))[:, None] * p
        rs = rs_new
    return f


@njit(nogil=True, cache=True)
def _cg_tasks(deg, nbr, b, f, iters, tol, lo, hi):  # pragma: no cover (compiled)
    """The same conjugate gradients, one channel per task, in float64, fused loops.

    ``deg`` (N,), ``nbr`` (4, N) neighbour numbers (N = none), ``b`` and ``f`` (C, N);
    ``f`` (the start) is overwritten with the solution of channels ``[lo, hi)``.
    """
    n = deg.shape[0]
    r = np.empty(n + 1)
    p = np.zeros(n + 1)  # p[n] = 0: the missing neighbour
    ap = np.empty(n)
    for ch in range(lo, hi):
        x = f[ch]
        p[n] = 0.0
        for i in range(n):  # r = b - A x (x read through p, which has the padding)
            p[i] = x[i]
        rs = 0.0
        bb = 0.0
        for i in range(n):
            a = deg[i] * p[i] - p[nbr[0, i]] - p[nbr[1, i]] - p[nbr[2, i]] - p[nbr[3, i]]
            r[i] = b[ch, i] - a
            rs += r[i] * r[i]
            bb += b[ch, i] * b[ch, i]
        for i in range(n):
            p[i] = r[i]
        stop = tol * tol * bb
        for _ in range(iters):
            if rs <= stop:
                break
            pap = 0.0
            for i in range(n):
                a = deg[i] * p[i] - p[nbr[0, i]] - p[nbr[1, i]] - p[nbr[2, i]] - p[nbr[3, i]]
                ap[i] = a
                pap += p[i] * a
            alpha = rs / max(pap, 1e-300)
            rs_new = 0.0
            for i in range(n):
                x[i] += alpha * p[i]
                r[i] -= alpha * ap[i]
                rs_new += r[i] * r[i]
            beta = rs_new / max(rs, 1e-300)
            for i in range(n):
                p[i] = r[i] + beta * p[i]
            rs = rs_new

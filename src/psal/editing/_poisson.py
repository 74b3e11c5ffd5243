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

The error of that start is mostly a low-frequency offset, which plain conjugate
gradients remove slowly: their steps grow with the width of the hole (a 160x220 hole
of a 512x680 photo took ~340 steps to the tolerance, a 300x300 one ~520, a 350x300 one
in a corner ~770; the old cap of 100 left offsets up to 18/255). On the CPU the solve is
preconditioned with the modified incomplete Cholesky factorisation MIC(0) of the
matrix (Gustafsson 1978; the grid form of Bridson's *Fluid Simulation*): 39, 55 and 85
steps on those holes, each about twice the cost of a plain one (the 160x220 hole: the
same time as the 100 capped plain steps). Other devices run plain conjugate gradients
(the triangular solves are sequential). The cap scales with the hole
(:func:`_default_iters`), and a solve that stops at it short of its tolerance warns.
"""

from __future__ import annotations

import math
import warnings
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

_STEPS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # nbr[0..3]: right, left, down, up

#: MIC(0): share of the dropped fill-in moved to the diagonal (1 would be the full
#: modified factorisation, 0 plain IC(0)); pivots below ``MIC_SAFETY`` times the
#: matrix's diagonal fall back to it (both as in Bridson's *Fluid Simulation*).
MIC_TAU = 0.99
MIC_SAFETY = 0.25


def _default_iters(ys: Array, xs: Array) -> int:
    """The cap of :func:`poisson_fill` with ``iters=None``: ``max(100, 2 (h + w))``.

    ``h x w`` is the hole's bounding box. Plain conjugate gradients (other devices)
    need up to ~1.2 (h + w) steps to the default tolerance on photo holes (770 for a
    350x300 hole in a corner, whose image border is no boundary condition); the
    preconditioned CPU solve far fewer. A thin stroke with a large box converges
    early, so the generous cap only bounds pathological solves.
    """
    if ys.shape[0] == 0:
        return 100
    h = int(ys.max()) - int(ys.min()) + 1
    w = int(xs.max()) - int(xs.min()) + 1
    return max(100, 2 * (h + w))


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
    iters: int | None = None,
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
        iters: at most this many conjugate-gradient steps; None: a cap that grows
            with the hole (:func:`_default_iters`).
        tol: stop when every channel's residual norm is below ``tol`` times the norm of
            its right-hand side.

    Returns:
        (C, N) the new values of the hole pixels, of the image's kind and dtype.

    Warns:
        RuntimeWarning: once, when the solve stopped at ``iters`` steps with a
            residual above ``tol`` (the fill may then keep part of the start's
            low-frequency offset).
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

    if iters is None:
        iters = _default_iters(ys, xs)
    f = copy(image[0][:, ys, xs])
    on_numpy = isinstance(image, np.ndarray)
    if on_numpy or (image.device.type == "cpu" and NUMBA_CG):
        f, deg, nbr, b, yx = (a if on_numpy else a.numpy() for a in (f, deg, nbr, b, ys * w + xs))
        # the preconditioner's sweeps take the left and upper neighbours as the earlier
        # unknowns: row-major order (that of nonzero(), the callers'), else sorted here
        order = None
        if n > 1 and not bool((np.diff(yx) > 0).all()):
            order = np.argsort(yx, kind="stable")
            rank = np.empty(n + 1, np.int64)
            rank[order], rank[n] = np.arange(n), n
            f, deg, b, nbr = f[:, order], deg[order], b[:, order], rank[nbr[:, order]]
        out = np.ascontiguousarray(f, dtype=np.float64)  # the start, then the solution
        stats = np.zeros((c, 2))  # per channel: steps, relative residual
        deg = np.ascontiguousarray(deg, dtype=np.float64)
        nbr = np.ascontiguousarray(nbr, dtype=np.int64)
        inv = _mic_inverse_pivots(deg, nbr, MIC_TAU, MIC_SAFETY)
        run_chunked(_pcg_tasks, c, deg, nbr, inv, np.ascontiguousarray(b, dtype=np.float64),
                    out, stats, int(iters), float(tol))  # fmt: skip
        if order is not None:
            out[:, order] = out.copy()
        _warn_if_short(int(stats[:, 0].max()), float(stats[:, 1].max()), int(iters), tol)
        if on_numpy:
            return out.astype(image.dtype)
        import torch

        return torch.from_numpy(out).to(image.dtype)
    return _cg_torch(f, b, deg, nbr, iters, tol)


def _warn_if_short(steps: int, rel: float, iters: int, tol: float) -> None:
    """One warning when the solve stopped at its cap above its tolerance.

    It points at the caller's line outside psal (``psal.inpaint(...)`` in their code),
    not at the module that called the solver.
    """
    if steps >= iters and not rel <= tol:
        from .._checks import user_stacklevel

        warnings.warn(
            f"poisson_fill: the conjugate gradients stopped at their cap of {iters} steps "
            f"with a relative residual of {rel:.2g} (tolerance {tol:.2g}); the fill may keep "
            "a low-frequency offset (psal.inpaint: gradient_domain=False skips this "
            "solve; poisson_fill: pass a larger iters)",
            RuntimeWarning,
            stacklevel=user_stacklevel(),
        )


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
    bb = (b * b).sum(1)
    stop = tol**2 * bb
    steps = 0
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
        steps += 1
    if steps >= iters:
        rel = float((rs / bb.clamp_min(1e-300)).max().sqrt())
        _warn_if_short(steps, rel, iters, tol)
    return f


@njit(nogil=True, cache=True)
def _mic_inverse_pivots(deg, nbr, tau, safety):  # pragma: no cover (compiled)
    """``1 / E``, the pivots of the MIC(0) factorisation ``(E - L) E^-1 (E - L^T)``.

    ``A = diag(deg) - adjacency`` on the hole pixels in row-major order (``L``: the
    couplings to the left and upper neighbours, ``nbr[1]`` and ``nbr[3]``). Each pivot
    is ``deg`` less, for each earlier neighbour ``j``, ``(1 + tau m_j) / E_j``, where
    ``m_j`` counts ``j``'s other later neighbours: the fill-in incomplete Cholesky drops,
    moved to the diagonal (row sums kept), which keeps the smooth error modes that
    slow plain conjugate gradients.
    """
    n = deg.shape[0]
    inv = np.empty(n + 1)
    inv[n] = 0.0
    for i in range(n):
        e = deg[i]
        for k in (1, 3):
            j = nbr[k, i]
            if j < n:  # later neighbours of j besides i: its right and lower ones
                m = (nbr[0, j] < n) + (nbr[2, j] < n) - 1.0
                e -= (1.0 + tau * m) * inv[j]
        if e < safety * deg[i]:
            e = deg[i]
        inv[i] = 1.0 / e
    return inv


@njit(nogil=True, cache=True)
def _pcg_tasks(deg, nbr, inv, b, f, stats, iters, tol, lo, hi):  # pragma: no cover (compiled)
    """MIC(0)-preconditioned conjugate gradients, one channel per task, in float64.

    ``deg`` (N,), ``nbr`` (4, N) neighbour numbers (N = none) of unknowns in row-major
    order, ``inv`` (N + 1,) from :func:`_mic_inverse_pivots`, ``b`` and ``f`` (C, N);
    ``f`` (the start) is overwritten with the solution of channels ``[lo, hi)``, and
    ``stats[ch]`` with the steps taken and the relative residual reached. Stops when
    ``|r| <= tol |b|``, as the torch solve. In row-major order a left neighbour in the
    hole is the previous unknown and a right one the next: the sweeps carry them in a
    register (the recurrence is one multiply-add per unknown), and the update of the
    residual is fused with the forward sweep of the next step.
    """
    n = deg.shape[0]
    r = np.empty(n)
    w = np.zeros(n + 1)  # w[n] = z[n] = p[n] = 0: the missing neighbour
    z = np.zeros(n + 1)
    p = np.zeros(n + 1)
    ap = np.empty(n)
    n0, n1, n2, n3 = nbr[0], nbr[1], nbr[2], nbr[3]
    left = np.empty(n)  # inv[i] where the left (right) neighbour is in the hole, else 0
    right = np.empty(n)
    for i in range(n):
        left[i] = inv[i] if n1[i] < n else 0.0
        right[i] = inv[i] if n0[i] < n else 0.0
    for ch in range(lo, hi):
        x = f[ch]
        for i in range(n):  # r = b - A x (x read through p, which has the padding)
            p[i] = x[i]
        rr = 0.0
        bb = 0.0
        prev = 0.0
        for i in range(n):
            a = deg[i] * p[i] - p[n0[i]] - p[n1[i]] - p[n2[i]] - p[n3[i]]
            ri = b[ch, i] - a
            r[i] = ri
            rr += ri * ri
            bb += b[ch, i] * b[ch, i]
            # M^-1 r, first half: (E - L) w = r, forwards
            prev = (ri + w[n3[i]]) * inv[i] + left[i] * prev
            w[i] = prev
        stop = tol * tol * bb
        rz = 1.0
        steps = 0
        while rr > stop and steps < iters:
            # second half: (E - L^T) z = E w, backwards
            rz_new = 0.0
            nxt = 0.0
            for i in range(n - 1, -1, -1):
                nxt = w[i] + z[n2[i]] * inv[i] + right[i] * nxt
                z[i] = nxt
                rz_new += r[i] * nxt
            beta = rz_new / rz if steps > 0 else 0.0
            rz = rz_new
            for i in range(n):
                p[i] = z[i] + beta * p[i]
            pap = 0.0
            for i in range(n):
                a = deg[i] * p[i] - p[n0[i]] - p[n1[i]] - p[n2[i]] - p[n3[i]]
                ap[i] = a
                pap += p[i] * a
            alpha = rz / max(pap, 1e-300)
            rr = 0.0
            prev = 0.0
            for i in range(n):
                x[i] += alpha * p[i]
                ri = r[i] - alpha * ap[i]
                r[i] = ri
                rr += ri * ri
                prev = (ri + w[n3[i]]) * inv[i] + left[i] * prev  # the next step's sweep
                w[i] = prev
            steps += 1
        stats[ch, 0] = steps
        stats[ch, 1] = math.sqrt(rr / bb) if bb > 0 else 0.0

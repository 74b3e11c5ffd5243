"""Edge-aware propagation of sparse, weighted values: a weighted least-squares solve.

Given values ``v`` (B, C, H, W) known with confidence ``c >= 0`` (B, 1, H, W) and a
guide image ``g`` (B, 1, H, W), :func:`propagate` returns the ``u`` minimising

    Σ_p c_p |u_p - v_p|²  +  λ Σ_{p~q} w_pq |u_p - u_q|²,   w_pq = exp(-(g_p - g_q)² / (2 σ²))

over 4-connected neighbours ``p ~ q``: colorization by optimisation (Levin, Lischinski and
Weiss, SIGGRAPH 2004) with the edge-stopping weights of weighted-least-squares smoothing
(Farbman et al. 2008). Values flow freely across flat regions of the guide and stop at
its edges. The system ``(diag(c) + λ L_w) u = c v`` is symmetric positive definite
(where some ``c > 0`` in each connected region); it is solved matrix-free by
preconditioned conjugate gradients, coarse to fine (the solution of a half-size
problem starts the next level), matrix-free: no sparse library. On the CPU the
conjugate gradients run compiled (:func:`_cg_solve`, float64), preconditioned with an
incomplete Cholesky factorisation (:func:`_mic_inverse_pivots`, two sweeps over the
image per step); on other devices, and as the reference the tests compare it with, in
torch with the Jacobi preconditioner (:func:`_cg_torch`). Numpy arrays take the compiled
solve without torch (``psal colorize`` on numpy and PIL images).

The Jacobi-preconditioned solve once ran on the CPU too, 60 steps per level: the
colorizations of 512x680 and 2000x1500 photos needed 90-170 steps per level to the
tolerance and stopped at relative residuals of 5e-4 to 3e-3, silently (chroma within
2-5/255 of the converged solution, mean 0.02-0.05/255: not visible). Incomplete
Cholesky takes 31-60 steps per level there, each about 1.9 times as dear; the finest
level, the result, has a larger cap (:data:`FINE_ITERS`) and warns if it stops short.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from ..utils.arrays import Array, astype, copy, dtype_name, full, namespace
from ..utils.parallel import FASTMATH

if TYPE_CHECKING:
    import torch
else:
    from ..utils.arrays import lazy_torch as torch  # for annotations (imports torch if resolved)

#: Solve with the compiled CPU conjugate gradients (a dozen tensor operations per step
#: with torch: 6.3 s of a 17.8 s colorization of a 512x480 photo, 0.6 s compiled);
#: tests switch it off to compare with the torch solve that other devices use.
NUMBA_CG = True

#: Conjugate-gradient steps (at most) of each coarser level of the pyramid, whose
#: solution only starts the next, and of the finest level, whose solution is the result
#: (``iters=None``). The finest level warns when it stops short of its tolerance.
COARSE_ITERS = 60
FINE_ITERS = 300

#: Preconditioner of the compiled solve: incomplete Cholesky, with this share of the
#: dropped fill-in moved to the diagonal (0: IC(0), 1: MIC(0); on colorizations of
#: 512x680 and 2000x1500 photos IC(0) took the fewest steps, 31-78 per level, against
#: 53-101 at 0.5 and 90-170 with the Jacobi preconditioner); pivots below
#: ``MIC_SAFETY`` times the diagonal fall back to it.
MIC_TAU = 0.0
MIC_SAFETY = 0.25


def _weights(g: Array, sigma: float) -> tuple[Array, Array]:
    """Horizontal (B, 1, H, W-1) and vertical (B, 1, H-1, W) affinities of the guide."""
    xp = namespace(g)
    two_var = 2.0 * sigma * sigma
    inv = 1.0 / two_var if two_var > 0 else math.inf

    def affinity(d: Array) -> Array:
        d2 = d**2
        if inv <= float(np.finfo(dtype_name(d)).max):
            return xp.exp(-d2 * inv)
        # 1 / (2 sigma²) overflows the dtype: equal neighbours 1, others 0 (0 * inf was
        # NaN and spread NaN over the image)
        return astype(d2 == 0, d)

    return affinity(g[..., :, 1:] - g[..., :, :-1]), affinity(g[..., 1:, :] - g[..., :-1, :])


def _laplacian(u: torch.Tensor, wx: torch.Tensor, wy: torch.Tensor) -> torch.Tensor:
    """``L_w u``: Σ_q w_pq (u_p - u_q) over the 4 neighbours of every pixel."""
    out = torch.zeros_like(u)
    dx = wx * (u[..., :, 1:] - u[..., :, :-1])
    dy = wy * (u[..., 1:, :] - u[..., :-1, :])
    out[..., :, :-1] -= dx
    out[..., :, 1:] += dx
    out[..., :-1, :] -= dy
    out[..., 1:, :] += dy
    return out


def _degree(wx: Array, wy: Array) -> Array:
    b, _, h, w = wx.shape[0], 1, wy.shape[-2] + 1, wx.shape[-1] + 1
    d = full(wx, (b, 1, h, w), 0.0, dtype_name(wx))
    d[..., :, :-1] += wx
    d[..., :, 1:] += wx
    d[..., :-1, :] += wy
    d[..., 1:, :] += wy
    return d


def _inv_diagonal(c: Array, wx: Array, wy: Array, lam: float) -> Array:
    """The Jacobi preconditioner: ``1 / diag(diag(c) + lam L_w)`` (B, 1, H, W)."""
    return 1.0 / (c + lam * _degree(wx, wy)).clip(1e-12)


def _cg_torch(
    u: torch.Tensor,
    v: torch.Tensor,
    c: torch.Tensor,
    g: torch.Tensor,
    lam: float,
    sigma: float,
    iters: int,
    tol: float,
) -> tuple[torch.Tensor, int, float]:
    """Jacobi-preconditioned conjugate gradients in torch (any device).

    Returns the solution, the steps taken and the largest relative residual of the batch.
    """
    wx, wy = _weights(g, sigma)

    def apply(x: torch.Tensor) -> torch.Tensor:
        return c * x + lam * _laplacian(x, wx, wy)

    inv_diag = _inv_diagonal(c, wx, wy, lam)
    b = c * v
    r = b - apply(u)
    z = inv_diag * r
    p = z.clone()
    rz = (r * z).sum((1, 2, 3), keepdim=True)
    b_norm = b.pow(2).sum((1, 2, 3), keepdim=True).sqrt().clamp_min(1e-30)
    steps = 0
    for _ in range(iters):
        ap = apply(p)
        alpha = rz / (p * ap).sum((1, 2, 3), keepdim=True).clamp_min(1e-30)
        u = u + alpha * p
        r = r - alpha * ap
        steps += 1
        if bool((r.pow(2).sum((1, 2, 3), keepdim=True).sqrt() <= tol * b_norm).all()):
            break
        z = inv_diag * r
        rz_new = (r * z).sum((1, 2, 3), keepdim=True)
        p = z + (rz_new / rz.clamp_min(1e-30)) * p
        rz = rz_new
    rel = float((r.pow(2).sum((1, 2, 3), keepdim=True).sqrt() / b_norm).max())
    return u, steps, rel


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _apply(p, c, wx, wy, lam, ap, dots, c0, c1):  # pragma: no cover (compiled)
    """``ap = c p + lam L_w p`` over channels ``[c0, c1)`` of (C, H, W).

    ``<p, ap>`` of each channel into ``dots``.
    """
    _, h, w = p.shape
    for ch in range(c0, c1):
        dot = 0.0
        for y in range(h):
            for x in range(w):
                v = p[ch, y, x]
                s = 0.0
                if x > 0:
                    s += wx[y, x - 1] * (v - p[ch, y, x - 1])
                if x < w - 1:
                    s += wx[y, x] * (v - p[ch, y, x + 1])
                if y > 0:
                    s += wy[y - 1, x] * (v - p[ch, y - 1, x])
                if y < h - 1:
                    s += wy[y, x] * (v - p[ch, y + 1, x])
                a = c[y, x] * v + lam * s
                ap[ch, y, x] = a
                dot += v * a
        dots[ch] = dot


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _direction_apply(z, p, beta, c, wx, wy, lam, ap, dots, c0, c1):  # pragma: no cover
    """``p = z + beta p``, then :func:`_apply` (``ap`` and ``<p, ap>``), channels ``[c0, c1)``."""
    _, h, w = p.shape
    for ch in range(c0, c1):
        for y in range(h):
            for x in range(w):
                p[ch, y, x] = z[ch, y, x] + beta * p[ch, y, x]
    _apply(p, c, wx, wy, lam, ap, dots, c0, c1)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _residual(u, v, c, wx, wy, lam, ap, r, sums, c0, c1):  # pragma: no cover (compiled)
    """``r = c v - (c u + lam L_w u)`` over channels ``[c0, c1)``.

    ``|c v|²`` of each channel into ``sums``.
    """
    _, h, w = u.shape
    _apply(u, c, wx, wy, lam, ap, sums, c0, c1)
    for ch in range(c0, c1):
        bb = 0.0
        for y in range(h):
            for x in range(w):
                b = c[y, x] * v[ch, y, x]
                bb += b * b
                r[ch, y, x] = b - ap[ch, y, x]
        sums[ch] = bb


@njit(cache=True, nogil=True)
def _mic_inverse_pivots(c, wx, wy, lam, tau, safety):  # pragma: no cover (compiled)
    """``1 / E``, the pivots of the incomplete Cholesky factorisation of ``diag(c) + lam L_w``.

    Row-major order; ``M = (E - L) E^-1 (E - L^T)`` with ``L`` the couplings to the
    left and upper neighbours. Each pivot is the diagonal less, for the left and the
    upper neighbour ``j``, ``(a_ij² + tau a_ij a_jk) / E_j``: ``a_jk`` the coupling of
    ``j`` to its other later neighbour (below the left one, right of the upper one),
    the fill-in incomplete Cholesky drops, moved to the diagonal. Pivots below
    ``safety`` times the diagonal fall back to it.
    """
    h, w = c.shape
    inv = np.empty((h, w))
    for y in range(h):
        for x in range(w):
            d = c[y, x]
            if x > 0:
                d += lam * wx[y, x - 1]
            if x < w - 1:
                d += lam * wx[y, x]
            if y > 0:
                d += lam * wy[y - 1, x]
            if y < h - 1:
                d += lam * wy[y, x]
            e = d
            if x > 0:
                a = lam * wx[y, x - 1]
                other = lam * wy[y, x - 1] if y < h - 1 else 0.0
                e -= a * (a + tau * other) * inv[y, x - 1]
            if y > 0:
                a = lam * wy[y - 1, x]
                other = lam * wx[y - 1, x] if x < w - 1 else 0.0
                e -= a * (a + tau * other) * inv[y - 1, x]
            if e < safety * d:
                e = d
            inv[y, x] = 1.0 / max(e, 1e-300)
    return inv


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _step_forward(u, r, p, ap, alpha, inv, fl, fu, z, sums, c0, c1):  # pragma: no cover
    """One pass: ``u += alpha p``, ``r -= alpha ap``, and the first half of ``M^-1 r``.

    Over channels ``[c0, c1)``. The half is ``(E - L) q = r`` in row-major order, into
    ``z``; ``fl``, ``fu`` (H, W): the couplings to the left and upper neighbours over
    the pivot (:func:`_sweep_factors`). ``|r|²`` per channel into ``sums``.
    """
    _, h, w = u.shape
    for ch in range(c0, c1):
        rr2 = 0.0
        for y in range(h):
            up = z[ch, max(y - 1, 0)]  # fu is 0 on the first row
            prev = 0.0  # fl is 0 on the first column
            for x in range(w):
                u[ch, y, x] += alpha * p[ch, y, x]
                rv = r[ch, y, x] - alpha * ap[ch, y, x]
                r[ch, y, x] = rv
                rr2 += rv * rv
                prev = rv * inv[y, x] + fu[y, x] * up[x] + fl[y, x] * prev
                z[ch, y, x] = prev
        sums[ch] = rr2


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _backward(r, br, bd, z, dots, c0, c1):  # pragma: no cover (compiled)
    """The backward half of ``z = M^-1 r``, ``(E - L^T) z = E q``, in place.

    Over channels ``[c0, c1)``; ``<r, z>`` of each channel into ``dots``.
    ``br``, ``bd`` (H, W): the couplings to the right and lower neighbours over the pivot.
    """
    _, h, w = r.shape
    for ch in range(c0, c1):
        dot = 0.0
        for y in range(h - 1, -1, -1):
            down = z[ch, min(y + 1, h - 1)]  # bd is 0 on the last row
            nxt = 0.0  # br is 0 on the last column
            for x in range(w - 1, -1, -1):
                nxt = z[ch, y, x] + br[y, x] * nxt + bd[y, x] * down[x]
                z[ch, y, x] = nxt
                dot += r[ch, y, x] * nxt
        dots[ch] = dot


def _sweep_factors(inv, wx, wy, lam):
    """The sweeps' factors ``fl, fu, br, bd`` (H, W).

    ``lam`` times the coupling to the left, upper, right and lower neighbour, times the
    inverse pivot (0 where there is no such neighbour).
    """
    fl, fu, br, bd = (np.zeros_like(inv) for _ in range(4))
    fl[:, 1:] = lam * wx * inv[:, 1:]
    fu[1:, :] = lam * wy * inv[1:, :]
    br[:, :-1] = lam * wx * inv[:, :-1]
    bd[:-1, :] = lam * wy * inv[:-1, :]
    return fl, fu, br, bd


#: Pixels per channel from which :func:`_cg_solve` runs the channels on the kernel
#: threads (:func:`psal.utils.parallel.run_chunked`, one channel per call); below it
#: the three thread hand-offs of a step (~0.15 ms each on the 2-core machine) cost
#: more than they save (a 128x170 level: 0.041 s threaded, 0.013 s on one thread).
#: Either way every channel is computed by the same compiled loop and its sums added
#: in channel order, so the result does not depend on the threads.
PARALLEL_MIN_PIXELS = 150_000


def _cg_solve(u, v, c, inv, wx, wy, lam, fl, fu, br, bd, iters, tol, threaded=None):
    """Incomplete-Cholesky-preconditioned CG on ``(diag(c) + lam L_w) u = c v``, in place.

    ``u``, ``v`` (C, H, W) float64. The stopping rule of :func:`_cg_torch` (the residual
    summed over every channel and pixel), in float64; ``inv`` from
    :func:`_mic_inverse_pivots`. Each pass is a compiled kernel over a range of channels
    whose sums are per channel: the channels run on the kernel threads when the image
    has at least :data:`PARALLEL_MIN_PIXELS` pixels (``threaded``: force either way),
    the same bits as on one thread. Returns the steps taken and the relative residual.
    """
    n_ch, h, w = u.shape
    if threaded is None:
        threaded = n_ch > 1 and h * w >= PARALLEL_MIN_PIXELS
    if threaded:
        from ..utils.parallel import run_chunked

        def run(kernel, *args):
            run_chunked(kernel, n_ch, *args)
    else:

        def run(kernel, *args):
            kernel(*args, 0, n_ch)

    def total(a):
        s = 0.0
        for x in a:  # channel order, whatever the threads
            s += float(x)
        return s

    sums = np.zeros(n_ch)
    ap = np.empty_like(u)
    r = np.empty_like(u)
    z = np.zeros_like(u)  # read (times 0) above the first row before it is written
    p = np.zeros_like(u)
    run(_residual, u, v, c, wx, wy, lam, ap, r, sums)
    b_norm = max(math.sqrt(total(sums)), 1e-30)
    # r and the forward half of M^-1 r (p = 0: u and r unchanged)
    run(_step_forward, u, r, p, ap, 0.0, inv, fl, fu, z, sums)
    rr2 = total(sums)
    steps = 0
    rz = 1.0
    while math.sqrt(rr2) > tol * b_norm and steps < iters:
        run(_backward, r, br, bd, z, sums)
        rz_new = total(sums)
        beta = rz_new / max(rz, 1e-300) if steps > 0 else 0.0
        rz = rz_new
        run(_direction_apply, z, p, beta, c, wx, wy, lam, ap, sums)
        alpha = rz / max(total(sums), 1e-300)
        run(_step_forward, u, r, p, ap, alpha, inv, fl, fu, z, sums)
        rr2 = total(sums)
        steps += 1
    return steps, math.sqrt(rr2) / b_norm


def _cg(u, v, c, g, lam, sigma, iters, tol):
    """The solve of :func:`_cg_torch`, compiled on the CPU (:data:`NUMBA_CG`).

    One compiled solve per batch element, in float64; torch on other devices. Numpy
    arrays in, numpy arrays out (no torch). Returns the solution, the most steps of a
    batch element and the largest relative residual reached.
    """
    if isinstance(u, np.ndarray):
        out, vn, cn, gn = (np.asarray(a, dtype=np.float64) for a in (u, v, c, g))
    elif not (NUMBA_CG and u.device.type == "cpu"):
        return _cg_torch(u, v, c, g, lam, sigma, iters, tol)
    else:
        import torch

        out, vn, cn, gn = (a.detach().to("cpu", torch.float64).numpy() for a in (u, v, c, g))
    out = out.copy()  # the solve updates it in place
    vn = np.ascontiguousarray(vn)
    wxn, wyn = _weights(gn, sigma)
    steps, rel = 0, 0.0
    for i in range(out.shape[0]):
        ci, wxi, wyi = (np.ascontiguousarray(a[i, 0]) for a in (cn, wxn, wyn))
        inv = _mic_inverse_pivots(ci, wxi, wyi, float(lam), MIC_TAU, MIC_SAFETY)
        factors = _sweep_factors(inv, wxi, wyi, float(lam))
        k, res = _cg_solve(out[i], vn[i], ci, inv, wxi, wyi, float(lam),
                           *factors, int(iters), float(tol))  # fmt: skip
        steps, rel = max(steps, int(k)), max(rel, float(res))
    if isinstance(u, np.ndarray):
        return out.astype(u.dtype), steps, rel
    import torch

    return torch.from_numpy(out).to(u.dtype), steps, rel


def _pool2(x: Array) -> Array:
    """Means of 2x2 blocks, the last row or column alone if odd.

    As ``avg_pool2d(x, 2, ceil_mode=True)``.
    """
    if not isinstance(x, np.ndarray):
        import torch.nn.functional as F

        return F.avg_pool2d(x, 2, ceil_mode=True)
    h, w = x.shape[-2:]
    xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, h % 2), (0, w % 2)])
    ones = np.pad(np.ones((h, w)), [(0, h % 2), (0, w % 2)])
    blocks = xp.reshape(*x.shape[:-2], (h + 1) // 2, 2, (w + 1) // 2, 2).sum((-3, -1))
    counts = ones.reshape((h + 1) // 2, 2, (w + 1) // 2, 2).sum((1, 3))
    return (blocks / counts).astype(x.dtype)


def _up2(x: Array, h: int, w: int) -> Array:
    """Bilinear 2x upsampling (``align_corners=False``) cropped to (h, w)."""
    if not isinstance(x, np.ndarray):
        import torch.nn.functional as F

        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)[..., :h, :w]
    from .upscale import resize_array

    hh, ww = x.shape[-2:]
    return resize_array(x, (2 * hh, 2 * ww), mode="bilinear")[..., :h, :w]


def _weighted_mean(num: Array, den: Array) -> Array:
    """``num / den`` where ``den > 0``, else 0: exact for any small confidence.

    (Dividing by ``den.clip(1e-12)`` scaled the means of confidences below 1e-12 towards
    0: with a uniform confidence of 1e-14 the start was 1% of the values, and the result
    stayed there after the steps of the fine level.)
    """
    xp = namespace(num)
    ok = den > 0
    return xp.where(ok, num / xp.where(ok, den, 1.0), 0.0)


def propagate(
    values: torch.Tensor,
    confidence: torch.Tensor,
    guide: torch.Tensor,
    *,
    smoothness: float = 1.0,
    sigma: float = 0.05,
    iters: int | None = None,
    tol: float = 1e-4,
    min_size: int = 32,
) -> torch.Tensor:
    """Spread ``values`` from confident pixels over ``guide``'s regions, stopping at edges.

    Args:
        values: (B, C, H, W) floating values (e.g. chroma) to propagate.
        confidence: (B, 1, H, W) weights >= 0 of those values (0: unknown).
        guide: (B, 1, H, W) guide image (e.g. luminance in [0, 1]).
        smoothness: λ, the weight of the smoothness term against the data term.
        sigma: edge scale of the guide: neighbours differing by much more than
            ``sigma`` are hardly coupled.
        iters: at most this many conjugate-gradient steps per level of the pyramid;
            None: :data:`COARSE_ITERS` at the coarser levels, whose solutions only
            start the next, and :data:`FINE_ITERS` at the finest.
        tol: relative residual at which a level stops.
        min_size: side below which the pyramid stops.

    Returns:
        (B, C, H, W) the propagated values, dtype and device of ``values``.

    Warns:
        RuntimeWarning: once, when the finest level stopped at its cap with a residual
            above ``tol``.
    """
    u, steps, rel, cap = _propagate(values, confidence, guide, smoothness, sigma, iters, tol,
                                    min_size, fine=True)  # fmt: skip
    if steps >= cap and not rel <= tol:
        from .._checks import user_stacklevel

        warnings.warn(
            f"propagate: the conjugate gradients of the finest level stopped at their cap "
            f"of {cap} steps with a relative residual of {rel:.2g} (tolerance {tol:.2g}); "
            "psal.colorize's colours may stray by a few levels along edges (propagate: "
            "pass a larger iters)",
            RuntimeWarning,
            stacklevel=user_stacklevel(),  # the caller's line outside psal
        )
    return u


def _propagate(values, confidence, guide, smoothness, sigma, iters, tol, min_size, fine):
    """:func:`propagate`'s pyramid; also returns the finest solve's steps, residual, cap."""
    h, w = values.shape[-2:]
    if min(h, w) >= 2 * min_size:
        # coarse level: confidence-weighted means of 2x2 blocks (pooled guide)
        c2 = _pool2(confidence)
        v2 = _weighted_mean(_pool2(values * confidence), c2)
        g2 = _pool2(guide)
        # the same λ: with mean-pooled confidences the coarse data term weighs a quarter
        # as much per unit of area (the smoothness term is scale-free), so the coarse
        # solution is smoother than the fine one; it only starts the fine solve
        u2 = _propagate(v2, c2, g2, smoothness, sigma, iters, tol, min_size, fine=False)[0]
        u = _up2(u2, h, w)
    else:
        total = confidence.sum((2, 3))[..., None, None]
        u = _weighted_mean((values * confidence).sum((2, 3))[..., None, None], total)
        u = copy(namespace(u).broadcast_to(u, values.shape))
    cap = iters if iters is not None else FINE_ITERS if fine else COARSE_ITERS
    return (*_cg(u, values, confidence, guide, smoothness, sigma, cap, tol), cap)

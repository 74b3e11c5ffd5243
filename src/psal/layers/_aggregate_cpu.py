"""The CPU fast path of :func:`psal.layers._aggregate.aggregate`: one autograd node.

The reference (:func:`~psal.layers._aggregate.aggregate` with ``FUSED = False``, and
every non-CPU device) chains a differentiable patch distance, the proposals' logits,
a softmax and a weighted gather of the values: about 30 torch operations forward and
backward, half of whose time at 128x128x64 went into layout changes (each compiled pass
wanted its own channels-last copy of its inputs and returned channels-first strided
gradients, which the reflection padding's backward then copied again), zero-filled
buffers and gradient sums (query, key and value are often one tensor).

Here each distinct input tensor is copied once into a reflection-padded channels-last
buffer (:func:`_pad_cl`); the forward is one compiled pass per centre of the
search (neighbour coordinates, shifted exponentials of the logits) and one per output
pixel (proposals, softmax, weighted sum of values); the backward is one pass per pixel
(the softmax's gradient), one per centre (the gradient of each searched distance), and
two channel-block scatters (distance and value gradients) into padded gradient
buffers (the query's, and the key's, shared with the value when they are one tensor),
which :func:`_fold_rows_kernel` and :func:`_unpad_cl_kernel` fold and sum into each
input's gradient (the adjoint of the reflection padding). The sums follow the
reference's formulas; results agree with it up to float rounding (tested in
``tests/layers/test_aggregate_cpu.py``). Every output value and gradient channel is
summed by one call in a fixed order, so results do not depend on the thread count.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit

from .._autograd import first_order_only
from ..patchmatch.cpu_numba import _rows
from ..patchmatch.distance import reflect1
from ..utils.parallel import FASTMATH, channel_blocks, num_threads, run_chunked
from ._aggregate import _dot

__all__ = ["aggregate_cpu", "supported"]

_TILE = 16  # pixels per tile of the channels-first writes of _unpad_cl_kernel


@njit(nogil=True, cache=True, _nrt=False)
def _fold_rows_kernel(g, r, h, w, start, stop):  # pragma: no cover (compiled)
    # g: (B, h + 2r, w + 2r, C) gradient of a padded map, folded in place: every border
    # row/column is added to the interior one it reflects (the adjoint of the padding),
    # rows first over the full width, then columns of the interior rows. Items: batch.
    c = g.shape[3]
    hp = h + 2 * r
    wp = w + 2 * r
    for b in range(start, stop):
        for y in range(hp):
            if y < r or y >= h + r:
                ty = reflect1(y - r, h) + r
                for xx in range(wp):
                    src = g[b, y, xx, 0:c]
                    dst = g[b, ty, xx, 0:c]
                    for ch in range(c):
                        dst[ch] += src[ch]
        for y in range(r, h + r):
            for xx in range(wp):
                if xx < r or xx >= w + r:
                    tx = reflect1(xx - r, w) + r
                    src = g[b, y, xx, 0:c]
                    dst = g[b, y, tx, 0:c]
                    for ch in range(c):
                        dst[ch] += src[ch]


@njit(nogil=True, cache=True, _nrt=False)
def _unpad_cl_kernel(g1, g2, g3, nsrc, r, out, start, stop):  # pragma: no cover (compiled)
    # g1, g2, g3: (B, H + 2r, W + 2r, C) channels last, the first ``nsrc`` of them
    # summed; out: (B, C, H, W) = the sum's interior, channels first. Items [start,
    # stop) of the flattened (B, H) output rows.
    _, c, h, w = out.shape
    for item in range(start, stop):
        b = item // h
        y = item - b * h
        for x0 in range(0, w, _TILE):
            x1 = min(w, x0 + _TILE)
            for ch in range(c):
                orow = out[b, ch, y, x0:x1]
                if nsrc == 1:
                    for xx in range(x1 - x0):
                        orow[xx] = g1[b, y + r, x0 + xx + r, ch]
                elif nsrc == 2:
                    for xx in range(x1 - x0):
                        orow[xx] = g1[b, y + r, x0 + xx + r, ch] + g2[b, y + r, x0 + xx + r, ch]
                else:
                    for xx in range(x1 - x0):
                        orow[xx] = (g1[b, y + r, x0 + xx + r, ch] + g2[b, y + r, x0 + xx + r, ch]
                                    + g3[b, y + r, x0 + xx + r, ch])  # fmt: skip


@njit(inline="always", cache=True)
def _centre_of(item, hc, wc):  # pragma: no cover (compiled)
    """(b, cy, cx) of a flattened (B, hc, wc) centre index."""
    b = item // (hc * wc)
    rest = item - b * hc * wc
    cy = rest // wc
    return b, cy, rest - cy * wc


@njit(nogil=True, cache=True, _nrt=False, fastmath=FASTMATH)
def _distance_kernel(q, k, idx, r, cy0, cx0, wk, dist, start, stop):  # pragma: no cover
    # q: (B, Hq + 2r, Wq + 2r, C), k: (B, Hk + 2r, Wk + 2r, C) padded channels last;
    # idx, dist: (B, k, hc, wc), the centre region starting at query (cy0, cx0).
    # Items: flattened (B, hc, wc) centres. inf where idx < 0.
    _, kk, hc, wc = idx.shape
    c = q.shape[3]
    p = 2 * r + 1
    for item in range(start, stop):
        b, cy, cx = _centre_of(item, hc, wc)
        for j in range(kk):
            t = idx[b, j, cy, cx]
            if t < 0:
                dist[b, j, cy, cx] = np.inf
                continue
            ky = t // wk
            kx = t - ky * wk
            acc = q[b, 0, 0, 0] * 0
            for dy in range(p):
                for dx in range(p):
                    qs = q[b, cy0 + cy + dy, cx0 + cx + dx, 0:c]
                    ks = k[b, ky + dy, kx + dx, 0:c]
                    for ch in range(c):
                        d = qs[ch] - ks[ch]
                        acc += d * d
            dist[b, j, cy, cx] = acc


@njit(nogil=True, cache=True, _nrt=False)
def _centre_kernel(idx, dist, inv_t, wk, ky, kx, cmax, cexp, start, stop):  # pragma: no cover
    # Per centre of the region (idx, dist, ky, kx, cexp: (B, k, hc, wc); cmax: (B, hc,
    # wc), float64): the neighbours' rows and columns (ky = -1: none), the largest
    # logit -d / T (-inf: none) and exp(logit - that largest) (0: none). Shared by the
    # (2 ra + 1)² output pixels the centre proposes to. Items: flattened (B, hc, wc).
    _, kk, hc, wc = idx.shape
    for item in range(start, stop):
        b, cy, cx = _centre_of(item, hc, wc)
        m = -np.inf
        for j in range(kk):
            t = idx[b, j, cy, cx]
            if t >= 0:
                ky[b, j, cy, cx] = t // wk
                kx[b, j, cy, cx] = t - (t // wk) * wk
                m = max(m, -float(dist[b, j, cy, cx]) * inv_t)
            else:
                ky[b, j, cy, cx] = -1
                kx[b, j, cy, cx] = 0
        cmax[b, cy, cx] = m
        for j in range(kk):
            if idx[b, j, cy, cx] >= 0:
                cexp[b, j, cy, cx] = math.exp(-float(dist[b, j, cy, cx]) * inv_t - m)
            else:
                cexp[b, j, cy, cx] = 0.0


@njit(nogil=True, cache=True, _nrt=False, fastmath=FASTMATH)
def _forward_kernel(v, ky, kx, cmax, cexp, ra, r, oy, ox, ww, hk, wk, pos, wgt, out, covered,
                    start, stop):  # fmt: skip  # pragma: no cover (compiled)
    # v: (B, Nkp, Cv) rows of the padded channels-last value ((Hk + 2r) x (Wk + 2r));
    # ky, kx, cmax, cexp: the centre region's, from _centre_kernel; pos (int), wgt:
    # (B, N, P) with P = (2 ra + 1)² k proposals in the order (dy, dx, j) of the
    # reference; out: (B, N, Cv); covered: (B, N). Output pixel n = (wy, wx) of the
    # window is centre (wy + oy, wx + ox) of the region. Writes each proposal's padded
    # value row and softmax weight (0 for a proposal that does not exist), and the
    # weighted sum of the rows in the proposal order (0 where no proposal exists).
    # The softmax: exp(logit - m) = cexp * exp(cmax - m), m the pixel's largest logit,
    # so one exp per covering centre. Items: (B, N) pixels.
    _, kk, hc, wc = ky.shape
    n_, npos = pos.shape[1:]
    cv = v.shape[2]
    side = 2 * ra + 1
    wkp = wk + 2 * r
    for item in range(start, stop):
        b = item // n_
        n = item - b * n_
        ly = n // ww + oy
        lx = n - (n // ww) * ww + ox
        m = -np.inf
        for s in range(side * side):
            sy = ly - (s // side - ra)
            sx = lx - (s - (s // side) * side - ra)
            if sy >= 0 and sy < hc and sx >= 0 and sx < wc:
                m = max(m, cmax[b, sy, sx])
        os_ = out[b, n, 0:cv]
        for ch in range(cv):
            os_[ch] = 0
        ws = wgt[b, n, 0:npos]
        ps = pos[b, n, 0:npos]
        if m == -np.inf:
            covered[b, n] = False
            for pp in range(npos):
                ws[pp] = 0
                ps[pp] = r * wkp + r
            continue
        covered[b, n] = True
        tot = 0.0
        for s in range(side * side):
            dy = s // side - ra
            dx = s - (s // side) * side - ra
            sy = ly - dy
            sx = lx - dx
            inside = sy >= 0 and sy < hc and sx >= 0 and sx < wc
            f = math.exp(cmax[b, sy, sx] - m) if inside and cmax[b, sy, sx] != -np.inf else 0.0
            for j in range(kk):
                pp = s * kk + j
                if f != 0.0 and ky[b, j, sy, sx] >= 0:
                    ps[pp] = (reflect1(ky[b, j, sy, sx] + dy, hk) + r) * wkp + (
                        reflect1(kx[b, j, sy, sx] + dx, wk) + r
                    )
                    e = cexp[b, j, sy, sx] * f
                    ws[pp] = e
                    tot += e
                else:
                    ps[pp] = r * wkp + r
                    ws[pp] = 0
        inv = 1.0 / tot
        for pp in range(npos):
            ws[pp] = ws[pp] * inv
            w = ws[pp]  # in the value dtype, as the reference's weights
            if w != 0:
                vs = v[b, ps[pp], 0:cv]
                for ch in range(cv):
                    os_[ch] += w * vs[ch]


@njit(nogil=True, cache=True, _nrt=False, fastmath=FASTMATH)
def _logit_grad_kernel(v, pos, wgt, g, glogit, start, stop):  # pragma: no cover (compiled)
    # The softmax's backward: glogit[p] = w_p (<v[pos_p], g> - sum_q w_q <v[pos_q], g>).
    # v: (B, Nkp, Cv); pos, wgt, glogit: (B, N, P); g: (B, N, Cv). Items: (B, N) pixels.
    n_, npos = pos.shape[1:]
    cv = v.shape[2]
    for item in range(start, stop):
        b = item // n_
        n = item - b * n_
        gs = g[b, n, 0:cv]
        tot = gs[0] * 0
        for pp in range(npos):
            w = wgt[b, n, pp]
            acc = _dot(v[b, pos[b, n, pp], 0:cv], gs) if w != 0 else gs[0] * 0
            glogit[b, n, pp] = acc
            tot += w * acc
        for pp in range(npos):
            glogit[b, n, pp] = wgt[b, n, pp] * (glogit[b, n, pp] - tot)


@njit(nogil=True, cache=True, _nrt=False)
def _centre_grad_kernel(idx, glogit, ra, oy, ox, hw, ww, glc, start, stop):  # pragma: no cover
    # The gradient of each centre's logits: the sum over the output pixels whose
    # proposals it made (pixel = centre + (dy, dx), proposal (dy, dx, j)). idx, glc:
    # (B, k, hc, wc); glogit: (B, hw * ww, P). Items: flattened (B, hc, wc) centres.
    _, kk, hc, wc = idx.shape
    side = 2 * ra + 1
    for item in range(start, stop):
        b, cy, cx = _centre_of(item, hc, wc)
        for j in range(kk):
            acc = glogit[b, 0, 0] * 0
            if idx[b, j, cy, cx] >= 0:
                for s in range(side * side):
                    wy = cy + s // side - ra - oy
                    wx = cx + s - (s // side) * side - ra - ox
                    if wy >= 0 and wy < hw and wx >= 0 and wx < ww:
                        acc += glogit[b, wy * ww + wx, s * kk + j]
            glc[b, j, cy, cx] = acc


@njit(nogil=True, cache=True, _nrt=False)
def _distance_backward_kernel(q, k, idx, g2, r, cy0, cx0, wk, gq, gk, need_q, need_k, block,
                              lo, hi):  # fmt: skip  # pragma: no cover (compiled)
    # q, gq: (B, Hq + 2r, Wq + 2r, C); k, gk: (B, Hk + 2r, Wk + 2r, C) padded channels
    # last (gq and gk are distinct arrays: aliased rows would stop the loops
    # vectorising; one not needed is a dummy, never indexed); g2 = 2 * the distances'
    # gradient, (B, k, hc, wc). Channel blocks [lo, hi) of ``block`` channels: each
    # channel is accumulated by one call in the serial order.
    nb, kk, hc, wc = idx.shape
    nc = q.shape[3]
    c0 = lo * block
    c1 = min(nc, hi * block)
    p = 2 * r + 1
    for b in range(nb):
        for cy in range(hc):
            for cx in range(wc):
                for j in range(kk):
                    s = g2[b, j, cy, cx]
                    t = idx[b, j, cy, cx]
                    if s == 0 or t < 0:
                        continue
                    ky = t // wk
                    kx = t - ky * wk
                    for dy in range(p):
                        for dx in range(p):
                            qy = cy0 + cy + dy
                            qx = cx0 + cx + dx
                            qs = q[b, qy, qx, c0:c1]
                            ks = k[b, ky + dy, kx + dx, c0:c1]
                            # one branch-free loop per case, so that each vectorises
                            if need_q and need_k:
                                gqs = gq[b, qy, qx, c0:c1]
                                gks = gk[b, ky + dy, kx + dx, c0:c1]
                                for c in range(c1 - c0):
                                    d = (qs[c] - ks[c]) * s
                                    gqs[c] += d
                                    gks[c] -= d
                            elif need_q:
                                gqs = gq[b, qy, qx, c0:c1]
                                for c in range(c1 - c0):
                                    gqs[c] += (qs[c] - ks[c]) * s
                            else:
                                gks = gk[b, ky + dy, kx + dx, c0:c1]
                                for c in range(c1 - c0):
                                    gks[c] -= (qs[c] - ks[c]) * s


@njit(nogil=True, cache=True, _nrt=False)
def _value_backward_kernel(pos, wgt, g, gv, block, lo, hi):  # pragma: no cover (compiled)
    # gv: (B, Nkp, Cv) padded channels last; g: (B, N, Cv); pos, wgt: (B, N, P).
    # Channel blocks [lo, hi) of ``block`` channels: every channel's scatter runs in one
    # call, in the serial order (b, n, p), so results never depend on the threads.
    nb, n_, npos = pos.shape
    cv = gv.shape[2]
    c0 = lo * block
    c1 = min(cv, hi * block)
    for b in range(nb):
        for n in range(n_):
            gs = g[b, n, c0:c1]  # slices: no negative-index checks, vectorised
            for pp in range(npos):
                w = wgt[b, n, pp]
                if w != 0:
                    gvs = gv[b, pos[b, n, pp], c0:c1]
                    for c in range(c1 - c0):
                        gvs[c] += gs[c] * w


def supported(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, temperature) -> bool:
    """Whether :func:`aggregate_cpu` handles these inputs (CPU, float32/64, one dtype)."""
    tensors = (query, key, value)
    return (
        all(t.device.type == "cpu" for t in tensors)
        and query.dtype in (torch.float32, torch.float64)
        and key.dtype == query.dtype == value.dtype
        and (not isinstance(temperature, torch.Tensor) or temperature.device.type == "cpu")
    )


def _pad_cl(x: torch.Tensor, r: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H + 2r, W + 2r, C), reflection-padded, channels last.

    The engine's padded rows (:func:`psal.patchmatch.cpu_numba._rows`: one compiled pass
    on the kernel threads, 64-byte aligned), viewed as a tensor.
    """
    b, c, h, w = x.shape
    x = x.detach().contiguous().numpy()
    return torch.from_numpy(_rows(x, r, x.dtype.type)).view(b, h + 2 * r, w + 2 * r, c)


def _unpad_cl(grads: list[torch.Tensor], r: int, fold: bool) -> torch.Tensor:
    """Sum of 1-3 (B, H + 2r, W + 2r, C) maps -> (B, C, H, W).

    ``fold``: add each map's border into its interior first (in place): the adjoint of
    the reflection padding.
    """
    b, hp, wp, c = grads[0].shape
    h, w = hp - 2 * r, wp - 2 * r
    arrays = [g.numpy() for g in grads]
    if fold and r > 0:
        for a in arrays:
            run_chunked(_fold_rows_kernel, b, a, r, h, w)
    out = torch.empty(b, c, h, w, dtype=grads[0].dtype)
    g1, g2, g3 = (arrays + arrays[:1] * 2)[:3]
    run_chunked(_unpad_cl_kernel, b * h, g1, g2, g3, len(arrays), r, out.numpy(),
                min_parallel=64)  # fmt: skip
    return out


class _Geometry:
    """The constants of one call (no tensors that need gradients)."""

    def __init__(self, idx, known, patch_size, ra, window, centre, roles, hk, wk, t_float):
        self.idx = idx  # (B, k, hc, wc) int64, contiguous
        self.known = known  # (B, k, hc, wc) or None
        self.r = patch_size // 2
        self.ra = ra
        self.window = window
        self.centre = centre
        self.roles = roles  # input number of query, key, value
        self.hk, self.wk = hk, wk
        self.t_float = t_float  # the temperature when it is not a tensor


class _FusedAggregate(torch.autograd.Function):
    """(geometry, temperature, *distinct inputs) -> (out (B, Cv, h, w), covered (B, 1, h, w))."""

    @staticmethod
    def forward(ctx, geo, temperature, *inputs):  # type: ignore[override]
        iq, ik, iv = geo.roles
        r, ra = geo.r, geo.ra
        y0, y1, x0, x1 = geo.window
        cy0, _, cx0, _ = geo.centre
        hw, ww = y1 - y0, x1 - x0
        n = hw * ww
        bufs = [_pad_cl(t, r) for t in inputs]
        q, k, v = bufs[iq], bufs[ik], bufs[iv]
        b, cv = v.shape[0], v.shape[3]
        idx = geo.idx
        kk, hc, wc = idx.shape[1:]
        dtype = v.dtype
        t_value = float(temperature) if temperature is not None else geo.t_float
        inv_t = 0.0 if math.isinf(t_value) else 1.0 / t_value
        if geo.known is not None:
            dist = geo.known.to(dtype).contiguous()
        else:
            dist = torch.empty(idx.shape, dtype=dtype)
            run_chunked(_distance_kernel, b * hc * wc, q.numpy(), k.numpy(), idx.numpy(), r,
                        cy0, cx0, geo.wk, dist.numpy(), min_parallel=4096)  # fmt: skip
        npos = (2 * ra + 1) ** 2 * kk
        pos = torch.empty(b, n, npos, dtype=torch.int64)
        wgt = torch.empty(b, n, npos, dtype=dtype)
        out_cl = torch.empty(b, n, cv, dtype=dtype)
        covered = torch.empty(b, n, dtype=torch.bool)
        v_rows = v.view(b, -1, cv)
        ky = torch.empty(idx.shape, dtype=torch.int64)
        kx = torch.empty_like(ky)
        cmax = torch.empty(b, hc, wc, dtype=torch.float64)
        cexp = torch.empty(idx.shape, dtype=torch.float64)
        run_chunked(_centre_kernel, b * hc * wc, idx.numpy(), dist.numpy(), inv_t, geo.wk,
                    ky.numpy(), kx.numpy(), cmax.numpy(), cexp.numpy(),
                    min_parallel=4096)  # fmt: skip
        run_chunked(_forward_kernel, b * n, v_rows.numpy(), ky.numpy(), kx.numpy(),
                    cmax.numpy(), cexp.numpy(), ra, r, y0 - cy0, x0 - cx0, ww, geo.hk, geo.wk,
                    pos.numpy(), wgt.numpy(), out_cl.numpy(), covered.numpy(),
                    min_parallel=4096)  # fmt: skip
        out = _unpad_cl([out_cl.view(b, hw, ww, cv)], 0, False)
        # the large buffers through save_for_backward, so that saved-tensor hooks
        # (activation checkpointing, offloading) can free and restore them
        ctx.save_for_backward(*bufs, pos, wgt, dist)
        ctx.geo, ctx.inv_t = geo, inv_t
        ctx.temperature = temperature
        covered = covered.view(b, 1, hw, ww)
        ctx.mark_non_differentiable(covered)
        return out, covered

    @staticmethod
    @first_order_only("psal attention (the fused CPU aggregation)")
    def backward(ctx, grad_out, _grad_covered):  # type: ignore[override]
        *bufs, pos, wgt, dist = ctx.saved_tensors
        geo = ctx.geo
        iq, ik, iv = geo.roles
        need = ctx.needs_input_grad[2:]
        need_q, need_k, need_v = need[iq], need[ik], need[iv]
        need_t = ctx.needs_input_grad[1]
        r, ra = geo.r, geo.ra
        y0, y1, x0, x1 = geo.window
        cy0, _, cx0, _ = geo.centre
        hw, ww = y1 - y0, x1 - x0
        q, k, v = bufs[iq], bufs[ik], bufs[iv]
        b, cv = v.shape[0], v.shape[3]
        dtype = v.dtype
        idx = geo.idx
        g_cl = _pad_cl(grad_out.to(dtype), 0).view(b, hw * ww, cv)
        v_rows = v.view(b, -1, cv)
        # one gradient buffer per role, but key and value share one when they are one
        # tensor (their passes are separate); the query never shares with the key (the
        # distance pass writes both: aliased rows would stop it vectorising)
        gq = torch.zeros_like(q) if need_q else None
        gk = torch.zeros_like(k) if need_k else None
        gv = (gk if iv == ik else None) if need_v else None
        if need_v and gv is None:
            gv = torch.zeros_like(v)
        grad_t = None
        if need_q or need_k or need_t:
            glogit = torch.empty_like(wgt)
            run_chunked(_logit_grad_kernel, glogit.shape[0] * glogit.shape[1], v_rows.numpy(),
                        pos.numpy(), wgt.numpy(), g_cl.numpy(), glogit.numpy(),
                        min_parallel=4096)  # fmt: skip
            glc = torch.empty(idx.shape, dtype=dtype)
            run_chunked(_centre_grad_kernel, b * idx.shape[2] * idx.shape[3], idx.numpy(),
                        glogit.numpy(), ra, y0 - cy0, x0 - cx0, hw, ww, glc.numpy(),
                        min_parallel=4096)  # fmt: skip
            if need_t:  # logits = -d / T: dL/dT = sum glc * d / T²
                # Each pixel's softmax gradient sums to 0, so d less a constant per
                # sample gives the same sum with far less cancellation (distances ~1e5
                # whose differences are ~1: a float32 sum of glc * d lost 3 digits).
                t = ctx.temperature
                valid = idx >= 0
                d = dist.to(torch.float64)
                low = torch.where(valid, d, torch.inf).flatten(1).amin(1).view(-1, 1, 1, 1)
                d = d - torch.where(torch.isfinite(low), low, 0.0)
                s = torch.where(valid, glc.to(torch.float64) * d, 0).sum()
                grad_t = (s / t.detach().to(torch.float64) ** 2).to(t.dtype).reshape(t.shape)
            if need_q or need_k:
                g2 = glc * (-2 * ctx.inv_t)
                dummy = torch.zeros(1, 1, 1, q.shape[3], dtype=dtype).numpy()
                small = idx.numel() * (2 * r + 1) ** 2 < 4096
                nblock, block = channel_blocks(q.shape[3], 1 if small else num_threads())
                run_chunked(_distance_backward_kernel, nblock, q.numpy(), k.numpy(),
                            idx.numpy(), g2.numpy(), r, cy0, cx0, geo.wk,
                            dummy if gq is None else gq.numpy(),
                            dummy if gk is None else gk.numpy(), need_q, need_k, block)  # fmt: skip
        if need_v:
            small = pos.numel() < 4096
            nblock, block = channel_blocks(cv, 1 if small else num_threads())
            run_chunked(_value_backward_kernel, nblock, pos.numpy(), wgt.numpy(),
                        g_cl.numpy(), gv.view(b, -1, cv).numpy(), block)  # fmt: skip
        out = []
        for i in range(len(bufs)):
            parts = []
            for role, g in zip((iq, ik, iv), (gq, gk, gv), strict=True):
                if role == i and g is not None and not any(g is u for u in parts):
                    parts.append(g)
            out.append(_unpad_cl(parts, r, True) if parts else None)
        return None, grad_t, *out


@torch.compiler.disable  # one opaque node of compiled kernels: eager under torch.compile
def aggregate_cpu(query, key, value, indices, patch_size, temperature, aggregation, window,
                  distances):  # fmt: skip
    """:func:`psal.layers._aggregate.aggregate` on CPU in one autograd node.

    Same arguments and results (``window`` resolved to a tuple); see
    :func:`supported` for the inputs it takes. Distinct tensors among query, key and
    value are copied (padded, channels last) once each, and a tensor passed in several
    roles gets one gradient (its roles' buffers summed while transposing back).
    """
    hq, wq = query.shape[-2:]
    hk, wk = key.shape[-2:]
    y0, y1, x0, x1 = window
    ra = patch_size // 2 if aggregation == "patch" else 0
    cy0, cy1, cx0, cx1 = max(0, y0 - ra), min(hq, y1 + ra), max(0, x0 - ra), min(wq, x1 + ra)
    idx = indices[..., cy0:cy1, cx0:cx1].to(torch.int64).contiguous()
    known = None if distances is None else distances[..., cy0:cy1, cx0:cx1].detach()
    inputs: list[torch.Tensor] = []
    roles = []
    for t in (query, key, value):
        for i, u in enumerate(inputs):
            if u is t:
                roles.append(i)
                break
        else:
            roles.append(len(inputs))
            inputs.append(t)
    t_tensor = temperature if isinstance(temperature, torch.Tensor) else None
    t_float = None if t_tensor is not None else float(temperature)
    geo = _Geometry(idx, known, patch_size, ra, (y0, y1, x0, x1), (cy0, cy1, cx0, cx1),
                    tuple(roles), hk, wk, t_float)  # fmt: skip
    return _FusedAggregate.apply(geo, t_tensor, *inputs)

"""Differentiable aggregation of values over a given neighbour field.

Shared by :func:`psal.layers.ps_attention` (neighbours from PatchMatch) and
:func:`psal.layers.patch_attention` with ``k`` (exact neighbours).
"""

from __future__ import annotations

import torch
from numba import njit

from .._autograd import first_order_only
from ..patchmatch.distance import _patch_distance, reflect1, reflect_index
from ..utils.parallel import FASTMATH, channel_blocks, num_threads, run_chunked
from .vote import shift_by_smallest


def _shift(x: torch.Tensor, dy: int, dx: int, fill: float | int) -> torch.Tensor:
    """``out[..., y, x] = x[..., y - dy, x - dx]``, ``fill`` where that is outside."""
    h, w = x.shape[-2:]
    out = torch.full_like(x, fill)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


#: Use the compiled CPU backward of :class:`_WeightedGather` (tests switch it off).
NUMBA_BACKWARD = True
#: Use the compiled CPU forward of :class:`_WeightedGather` (tests switch it off).
NUMBA_FORWARD = True
#: On CPU, run the whole aggregation as one autograd node of compiled passes
#: (:mod:`psal.layers._aggregate_cpu`); False: the torch graph below, the reference.
FUSED = True


@njit(nogil=True, cache=True, _nrt=False)  # allocates nothing: no refcounts
def _gather_forward_kernel(value, pos, weight, out, start, stop):  # pragma: no cover
    # value: (B, Nk, Cv) channels-last; pos, weight: (B, P, N); out: (B, N, Cv), zeros.
    # Items [start, stop) of the flattened (B, N) output pixels; each pixel's proposals
    # are summed in the order p = 0 .. P-1 (as the torch path), so results do not
    # depend on the thread split.
    npos, n = pos.shape[1:]
    cv = value.shape[2]
    for item in range(start, stop):
        b = item // n
        i = item - b * n
        os_ = out[b, i, 0:cv]  # contiguous slices: no negative-index checks, vectorised
        for p in range(npos):
            w = weight[b, p, i]
            vs = value[b, pos[b, p, i], 0:cv]
            for c in range(cv):
                os_[c] += w * vs[c]


@njit(nogil=True, cache=True)
def _patch_proposals_kernel(idx, r, oy, ox, hw, ww, hk, wk, src, pos):  # pragma: no cover
    # idx: (B, k, Hc, Wc) neighbours of the centre region; src, pos: (B, P, hw*ww) with
    # P = (2r+1)² k in the order (dy, dx, j) of the torch path. src: flat index into
    # idx's (k, Hc, Wc), or k*Hc*Wc (a "-inf" slot) where the centre is outside.
    nb, k, hc, wc = idx.shape
    side = 2 * r + 1
    sentinel = k * hc * wc
    for b in range(nb):
        for wy in range(hw):
            for wx in range(ww):
                n = wy * ww + wx
                ly, lx = wy + oy, wx + ox
                for s in range(side * side):
                    dy = s // side - r
                    dx = s % side - r
                    sy, sx = ly - dy, lx - dx
                    inside = sy >= 0 and sy < hc and sx >= 0 and sx < wc
                    for j in range(k):
                        ny, nx = 0, 0
                        if inside:
                            t = max(idx[b, j, sy, sx], 0)
                            ny = t // wk
                            nx = t - ny * wk
                            src[b, s * k + j, n] = (j * hc + sy) * wc + sx
                        else:
                            src[b, s * k + j, n] = sentinel
                        py = reflect1(ny + dy, hk)
                        px = reflect1(nx + dx, wk)
                        pos[b, s * k + j, n] = py * wk + px


@njit(nogil=True, cache=True, _nrt=False)  # allocates nothing: no refcounts
def _scatter_add_kernel(src, grad, out, start, stop):  # pragma: no cover
    # out[b, src[b, m]] += grad[b, m] for batch elements [start, stop), in the serial
    # order of m: deterministic, and no two threads write one batch element.
    n = src.shape[1]
    for b in range(start, stop):
        for m in range(n):
            out[b, src[b, m]] += grad[b, m]


class _GatherLogits(torch.autograd.Function):
    """``flat.gather(1, src)``: (B, M) float, (B, P) int64 -> (B, P).

    Its backward is one compiled serial scatter-add per batch element (torch's
    ``gather`` backward on CPU took ~19 ms for the 27 proposals of a 128x128 map, this
    ~1 ms).
    """

    @staticmethod
    def forward(ctx, flat, src):  # type: ignore[override]
        ctx.save_for_backward(src)
        ctx.m = flat.shape[1]
        return flat.gather(1, src)

    @staticmethod
    @first_order_only("psal attention (the softmax's gather)")
    def backward(ctx, grad):  # type: ignore[override]
        (src,) = ctx.saved_tensors
        out = torch.zeros(grad.shape[0], ctx.m, dtype=grad.dtype)
        run_chunked(_scatter_add_kernel, src.shape[0], src.contiguous().numpy(),
                    grad.contiguous().numpy(), out.numpy())  # fmt: skip
        return out, None


def _accumulate(value: torch.Tensor) -> torch.dtype:
    """The dtype the torch weighted gather sums in: float32 at least (float64 stays)."""
    return torch.promote_types(value.dtype, torch.float32)


def _use_numba(value: torch.Tensor, weight: torch.Tensor, *others: torch.Tensor) -> bool:
    return (
        value.device.type == "cpu"
        and value.dtype in (torch.float32, torch.float64)
        and all(t.dtype == value.dtype for t in (weight, *others))
    )


def _gather_forward_numba(value, pos, weight):
    b, cv, _ = value.shape
    n = pos.shape[2]
    v_cl = value.permute(0, 2, 1).contiguous()
    out = value.new_zeros(b, n, cv)
    run_chunked(
        _gather_forward_kernel,
        b * n,
        v_cl.numpy(),
        pos.contiguous().numpy(),
        weight.contiguous().numpy(),
        out.numpy(),
        min_parallel=4096,
    )
    return out.permute(0, 2, 1).contiguous()


@njit(inline="always", cache=True, fastmath=FASTMATH)
def _dot(a, b):  # pragma: no cover (compiled)
    """``<a, b>`` of two contiguous slices, in their dtype (vectorised)."""
    acc = a[0] * 0
    for c in range(a.shape[0]):
        acc += a[c] * b[c]
    return acc


@njit(nogil=True, cache=True, _nrt=False, fastmath=FASTMATH)  # allocates nothing
def _gather_backward_w_kernel(value, pos, grad, grad_w, start, stop):  # pragma: no cover
    # value: (B, Nk, Cv) channels-last; grad: (B, N, Cv); pos, grad_w: (B, P, N).
    # Items [start, stop) of the flattened (B, N) pixels; pure gathers, no races.
    # Each dot product is accumulated in the value dtype over contiguous channel slices
    # (no negative-index checks): vectorised, ~4x faster than a float64 scalar loop.
    npos, n = pos.shape[1:]
    cv = value.shape[2]
    for item in range(start, stop):
        b = item // n
        i = item - b * n
        gs = grad[b, i, 0:cv]
        for p in range(npos):
            grad_w[b, p, i] = _dot(value[b, pos[b, p, i], 0:cv], gs)


@njit(nogil=True, cache=True, _nrt=False)  # allocates nothing: no refcounts
def _gather_backward_v_kernel(pos, weight, grad, grad_v, block, start, stop):  # pragma: no cover
    # grad_v: (B, Nk, Cv) channels-last; grad: (B, N, Cv); pos, weight: (B, P, N).
    # Channel blocks [start, stop) of ``block`` channels: every channel's scatter runs in
    # one call, in the serial order (b, i, p), so results never depend on the threads.
    nb, npos, n = pos.shape
    cv = grad_v.shape[2]
    c0 = start * block
    c1 = min(cv, stop * block)
    for b in range(nb):
        for i in range(n):
            for p in range(npos):
                t = pos[b, p, i]
                w = weight[b, p, i]
                gs = grad[b, i, c0:c1]  # slices: no negative-index checks, vectorised
                gvs = grad_v[b, t, c0:c1]
                for c in range(c1 - c0):
                    gvs[c] += gs[c] * w


def _gather_backward_numba(value, pos, weight, grad, need_v=True, need_w=True):
    v_cl = value.permute(0, 2, 1).contiguous()
    g_cl = grad.to(value.dtype).permute(0, 2, 1).contiguous()
    grad_v = torch.zeros_like(v_cl)
    grad_w = torch.zeros_like(weight, dtype=value.dtype).contiguous()
    pos_np = pos.contiguous().numpy()
    b, npos, n = pos.shape
    if need_w:
        run_chunked(_gather_backward_w_kernel, b * n, v_cl.numpy(), pos_np, g_cl.numpy(),
                    grad_w.numpy(), min_parallel=4096)  # fmt: skip
    if need_v:
        serial = b * n * npos < 4096  # small: threads would cost more than the work
        nblock, block = channel_blocks(v_cl.shape[2], 1 if serial else num_threads())
        run_chunked(_gather_backward_v_kernel, nblock, pos_np,
                    weight.to(value.dtype).contiguous().numpy(), g_cl.numpy(), grad_v.numpy(),
                    block)  # fmt: skip
    return grad_v.permute(0, 2, 1), grad_w.to(weight.dtype)


def _numba_backward(value, pos, weight, grad) -> bool:
    """Whether :class:`_WeightedGather`'s backward takes its compiled branch."""
    return (
        NUMBA_BACKWARD
        and value.device.type == "cpu"
        and value.dtype in (torch.float32, torch.float64)
        and weight.dtype == value.dtype
        and grad.dtype == value.dtype
    )


class _WeightedGather(torch.autograd.Function):
    """``out[b, :, n] = sum_p weight[b, p, n] * value[b, :, pos[b, p, n]]``.

    Saves only ``value``, ``pos`` and ``weight`` (P scalars per pixel, no gathered
    copies of the values), so memory stays O(B * (Cv + P) * N); the gathers are
    redone in backward, and the value gradient is accumulated with ``scatter_add_``
    (on CPU: compiled channels-last passes on the thread pool, the weight gradient over
    pixels and the value gradient over blocks of channels, each channel summed in the
    serial order, so the result does not depend on the thread count:
    :func:`_gather_backward_w_kernel`, :func:`_gather_backward_v_kernel`).
    On CPU the forward is one compiled channels-last pass over the P proposals of each
    pixel on the thread pool (:func:`_gather_forward_kernel`), with no (B, Cv, N)
    expanded index or gathered copy per proposal. Elsewhere (other devices, float16 /
    bfloat16) the sums run in float32 at least (:func:`_accumulate`): the output comes
    back in that dtype, for the caller to round once, and the value gradient is rounded
    once to the value's dtype (summed in float16, a pixel's k·p² proposals were off by
    several units of its precision).
    """

    @staticmethod
    def forward(ctx, value, pos, weight):  # type: ignore[override]
        ctx.save_for_backward(value, pos, weight)
        if NUMBA_FORWARD and _use_numba(value, weight):
            return _gather_forward_numba(value.detach(), pos, weight.detach())
        b, cv, _ = value.shape
        n = pos.shape[2]
        acc = _accumulate(value)
        out = torch.zeros(b, cv, n, dtype=acc, device=value.device)
        for p in range(pos.shape[1]):
            idx = pos[:, p : p + 1].expand(b, cv, n)
            out.addcmul_(value.gather(2, idx).to(acc), weight[:, p : p + 1].to(acc))
        return out  # in ``acc``: the caller rounds to the value's dtype once

    @staticmethod
    @first_order_only(
        "psal attention (the weighted gather of values)",
        lambda ctx, grad: _numba_backward(*ctx.saved_tensors, grad),
    )
    def backward(ctx, grad):  # type: ignore[override]
        value, pos, weight = ctx.saved_tensors
        b, cv, _ = value.shape
        n = pos.shape[2]
        if _numba_backward(value, pos, weight, grad):
            need_v, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
            gv, gw = _gather_backward_numba(value.detach(), pos, weight.detach(), grad, need_v,
                                            need_w)  # fmt: skip
            return (gv if need_v else None), None, (gw if need_w else None)
        acc = _accumulate(value)
        grad = grad.to(acc)
        grad_v = torch.zeros_like(value, dtype=acc) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(weight) if ctx.needs_input_grad[2] else None
        for p in range(pos.shape[1]):
            idx = pos[:, p : p + 1].expand(b, cv, n)
            if grad_w is not None:
                grad_w[:, p] = (value.gather(2, idx).to(acc) * grad).sum(1)
            if grad_v is not None:
                grad_v.scatter_add_(2, idx, grad * weight[:, p : p + 1].to(acc))
        return (None if grad_v is None else grad_v.to(value.dtype)), None, grad_w


def aggregate(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    indices: torch.Tensor,
    patch_size: int,
    temperature: float | torch.Tensor,
    aggregation: str,
    window: tuple[int, int, int, int] | None = None,
    distances: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output over the neighbour field ``indices`` (see ps_attention's formulas).

    Args:
        query: (B, C, Hq, Wq).
        key: (B, C, Hk, Wk).
        value: (B, Cv, Hk, Wk).
        indices: (B, k, Hq, Wq) flat key positions, -1 = no neighbour.
        patch_size: odd patch side.
        temperature: T > 0.
        aggregation: ``"center"`` or ``"patch"``.
        window: ``(y0, y1, x0, x1)``: compute the output only for these query rows and
            columns (the rest of the query is only read by patches that reach into
            the window). None = the whole query.
        distances: optional (B, k, Hq, Wq) distances of ``indices`` as the search
            returned them; saves recomputing them in the forward pass.

    Returns:
        ``(out, covered)``: out (B, Cv, y1-y0, x1-x0) and covered (B, 1, y1-y0, x1-x0)
        bool, False where a pixel received no proposal (out is 0 there).
    """
    hq, wq = query.shape[-2:]
    hk, wk = key.shape[-2:]
    b, cv = value.shape[:2]
    y0, y1, x0, x1 = window if window is not None else (0, hq, 0, wq)
    if FUSED:
        from . import _aggregate_cpu  # imports this module: loaded on first use

        if _aggregate_cpu.supported(query, key, value, temperature):
            return _aggregate_cpu.aggregate_cpu(query, key, value, indices, patch_size,
                                                temperature, aggregation, (y0, y1, x0, x1),
                                                distances)  # fmt: skip
    r = patch_size // 2 if aggregation == "patch" else 0
    # centres whose patches reach the window
    cy0, cy1, cx0, cx1 = max(0, y0 - r), min(hq, y1 + r), max(0, x0 - r), min(wq, x1 + r)
    idx = indices[..., cy0:cy1, cx0:cx1]
    valid = idx >= 0
    # a finite placeholder before dividing, so a learnable temperature never sees inf*0
    window_c = (cy0, cy1, cx0, cx1)
    known = None if distances is None else distances[..., cy0:cy1, cx0:cx1]
    dist = _patch_distance(query, key, idx, patch_size, window_c, known)
    dist = dist.masked_fill(~valid, 0)
    if isinstance(temperature, torch.Tensor):
        temperature = temperature.to(dist.dtype)
    logits = (-shift_by_smallest(dist, valid) / temperature).masked_fill(~valid, float("-inf"))
    oy, ox = y0 - cy0, x0 - cx0
    if aggregation == "center":
        pos = idx.clamp_min(0)
    elif NUMBA_FORWARD and idx.device.type == "cpu":
        # the torch branch below in one compiled pass, already cropped to the window
        hw, ww = y1 - y0, x1 - x0
        npos = (2 * r + 1) ** 2 * idx.shape[1]
        src = torch.empty(b, npos, hw * ww, dtype=torch.int64)
        pos = torch.empty_like(src)
        idx_c = idx.to(torch.int64).contiguous()
        _patch_proposals_kernel(idx_c.numpy(), r, oy, ox, hw, ww, hk, wk, src.numpy(), pos.numpy())
        flat = torch.cat([logits.flatten(1), logits.new_full((b, 1), float("-inf"))], 1)
        if flat.dtype in (torch.float32, torch.float64):
            logits = _GatherLogits.apply(flat, src.view(b, -1)).view(b, npos, hw, ww)
        else:
            logits = flat.gather(1, src.view(b, -1)).view(b, npos, hw, ww)
        pos = pos.view(b, npos, hw, ww)
        oy = ox = 0  # already cropped to the window
    else:
        # every patch covering x proposes its k neighbours shifted by x's offset in it
        ny = torch.div(idx.clamp_min(0), wk, rounding_mode="floor")
        nx = idx.clamp_min(0) - ny * wk
        shifted_logits, shifted_pos = [], []
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                shifted_logits.append(_shift(logits, dy, dx, float("-inf")))
                py = reflect_index(_shift(ny, dy, dx, 0) + dy, hk)
                px = reflect_index(_shift(nx, dy, dx, 0) + dx, wk)
                shifted_pos.append(py * wk + px)
        logits = torch.cat(shifted_logits, 1)
        pos = torch.cat(shifted_pos, 1)
    # crop from the centre region back to the window
    logits = logits[..., oy : oy + y1 - y0, ox : ox + x1 - x0]
    pos = pos[..., oy : oy + y1 - y0, ox : ox + x1 - x0]
    covered = torch.isfinite(logits).any(1, keepdim=True)
    weights = torch.softmax(logits.masked_fill(~covered, 0.0), dim=1)
    n = (y1 - y0) * (x1 - x0)
    npos = pos.shape[1]
    out = _WeightedGather.apply(
        value.reshape(b, cv, hk * wk), pos.reshape(b, npos, n), weights.reshape(b, npos, n)
    )
    out = out.view(b, cv, y1 - y0, x1 - x0).to(value.dtype)
    return out.masked_fill(~covered, 0.0), covered

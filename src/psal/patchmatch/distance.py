"""Patch distances: the border rule, valid key positions, and a differentiable distance.

The border rule, used by every backend and layer in psal:

    A patch that crosses the image border is completed by **reflection** about the
    border pixel (``torch.nn.functional.pad(..., mode="reflect")``, numpy's
    ``"reflect"``: ``[a b c] -> [c b | a b c | b a]``), on the query and on the key.

So every pixel of an ``H x W`` map is the centre of one full ``p x p`` patch, every pixel
has real neighbours, and the distance between two patches is the plain sum of squared
differences over all ``C * p * p`` values, with no normalisation. Reflection needs
``patch_size <= H`` and ``patch_size <= W``.

Key validity with a hole mask: a key patch is valid when no hole pixel lies in its
window clipped to the image (the reflected pixels of a border patch come from that
window, so they are covered too). :func:`valid_key_positions` computes it.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from numba import njit

from .._autograd import first_order_only
from .._checks import (
    check_float_tensor,
    check_indices,
    check_not_transformed,
    check_patch_fits,
    check_patch_size,
    check_same_device,
    check_tensor,
)
from .._deprecation import keyword_only
from ..utils.filters import box_sum
from ..utils.parallel import channel_blocks, num_threads, run_chunked
from ._border import reflect1  # noqa: F401  (re-exported: the kernels' form of reflect_index)

__all__ = [
    "center_pair",
    "pad_reflect",
    "patch_distance",
    "reflect_index",
    "unfold_patches",
    "valid_key_positions",
]


def reflect_index(i: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect integer coordinates in ``[-(size-1), 2*size-2]`` into ``[0, size)``.

    The index form of :func:`pad_reflect`'s border rule (``-1 -> 1``, ``size -> size-2``).
    """
    i = torch.where(i < 0, -i, i)
    return torch.where(i >= size, 2 * (size - 1) - i, i)


def pad_reflect(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Pad the last two dimensions of a (B, C, H, W) tensor by reflection."""
    if radius == 0:
        return x
    return F.pad(x, (radius, radius, radius, radius), mode="reflect")


def center_pair(query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Subtract the key's per-sample, per-channel mean from both query and key.

    Patch distances do not change (the same constant is removed from both sides), but
    the matrix-product form ``|q|² + |k|² - 2 q·k`` no longer cancels catastrophically
    when features share a large offset (e.g. pixel values around 1000 in float32).
    The mean is detached: distances do not depend on it, so gradients are unchanged.

    Shape: (B, C, Hq, Wq), (B, C, Hk, Wk) -> the same shapes.
    """
    mu = key.detach().mean(dim=(2, 3), keepdim=True)
    return query - mu, key - mu


def unfold_patches(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """All ``p x p`` patches of a map under the reflection border rule.

    Args:
        x: (B, C, H, W).
        patch_size: odd p.

    Returns:
        (B, C * p * p, H * W): column ``y * W + x`` is the patch centred at (y, x),
        ordered channel-major like :func:`torch.nn.functional.unfold`.
    """
    r = patch_size // 2
    return F.unfold(pad_reflect(x, r), kernel_size=patch_size)


@keyword_only(2, (), {"key_mask": "hole"})
def valid_key_positions(hole: torch.Tensor | None, patch_size: int) -> torch.Tensor | None:
    """Key positions whose patch touches no hole pixel.

    Args:
        hole: (B, 1, H, W) bool, True = hole; or None (every position valid).
            (``key_mask=`` is the deprecated keyword.)
        patch_size: odd p.

    Returns:
        (B, 1, H, W) bool, True = the patch centred there may be returned; None if
        ``hole`` is None.

    Raises:
        ValueError / TypeError: ``patch_size`` is not a positive odd integer.
    """
    patch_size = check_patch_size(patch_size)
    if hole is None:
        return None
    return box_sum(hole, patch_size) == 0  # no hole pixel in the p x p window


def _accumulate_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _to_rows(x_pad: torch.Tensor) -> torch.Tensor:
    """(B, C, Hp, Wp) -> (B * Hp * Wp, C), channels last, rows contiguous."""
    b, c, h, w = x_pad.shape
    return x_pad.permute(0, 2, 3, 1).reshape(b * h * w, c)


#: Use the compiled CPU backward of :class:`_PatchSSD` (tests switch it off to compare).
NUMBA_BACKWARD = True


@njit(nogil=True, cache=True, _nrt=False)  # allocates nothing: no refcounts
def _ssd_backward_kernel(q, k_rows, gidx, g2, p, wkp, gq, gk, block, lo, hi):  # pragma: no cover
    # q, gq: (B, Hqp, Wqp, C) channels-last; k_rows, gk: (B * Hkp * Wkp, C);
    # gidx, g2: (B, k, Hq, Wq), g2 = 2 * grad (0 where invalid). Channel blocks
    # [lo, hi) of ``block`` channels: each channel is accumulated by one call in the
    # serial order, so results do not depend on the number of threads.
    nb, kk, hq, wq = gidx.shape
    nc = q.shape[3]
    c0 = lo * block
    c1 = min(nc, hi * block)
    for b in range(nb):
        for y in range(hq):
            for x in range(wq):
                for j in range(kk):
                    s = g2[b, j, y, x]
                    base = gidx[b, j, y, x]
                    for dy in range(p):
                        for dx in range(p):
                            row = base + dy * wkp + dx
                            # slices: no negative-index checks, so the loop vectorises
                            qs = q[b, y + dy, x + dx, c0:c1]
                            ks = k_rows[row, c0:c1]
                            gqs = gq[b, y + dy, x + dx, c0:c1]
                            gks = gk[row, c0:c1]
                            for c in range(c1 - c0):
                                d = (qs[c] - ks[c]) * s
                                gqs[c] += d
                                gks[c] -= d


def _ssd_backward_numba(q_pad, k_pad, gidx, g2, p):
    """CPU backward of :class:`_PatchSSD` (same sums as the torch loop, another order)."""
    b, c, hkp, wkp = k_pad.shape
    q_cl = q_pad.permute(0, 2, 3, 1).contiguous()
    k_rows = k_pad.permute(0, 2, 3, 1).reshape(b * hkp * wkp, c).contiguous()
    grad_q = torch.zeros_like(q_cl)
    grad_k = torch.zeros_like(k_rows)
    small = gidx.numel() * p * p < 4096  # threads would cost more than the work
    nblock, block = channel_blocks(c, 1 if small else num_threads())
    run_chunked(_ssd_backward_kernel, nblock, q_cl.numpy(), k_rows.numpy(),
                gidx.contiguous().numpy(), g2.to(q_pad.dtype).contiguous().numpy(), p, wkp,
                grad_q.numpy(), grad_k.numpy(), block)  # fmt: skip
    return grad_q.permute(0, 3, 1, 2), grad_k.view(b, hkp, wkp, c).permute(0, 3, 1, 2)


def _numba_ssd(q_pad: torch.Tensor, k_pad: torch.Tensor) -> bool:
    """Whether :class:`_PatchSSD`'s backward takes its compiled branch."""
    return (
        NUMBA_BACKWARD
        and q_pad.device.type == "cpu"
        and q_pad.dtype in (torch.float32, torch.float64)
        and k_pad.dtype == q_pad.dtype
    )


class _PatchSSD(torch.autograd.Function):
    """SSD between query patches and their gathered key patches.

    Saves only the padded inputs and the indices; the per-offset differences are
    recomputed in backward, so memory stays O(B * k * H * W * C) rather than p*p times
    that. Gradients for keys are accumulated with ``index_add_`` (deterministic on CPU;
    atomic adds on CUDA), never with an unsynchronised read-modify-write. On CPU the
    backward is a compiled channels-last pass (:func:`_ssd_backward_kernel`, about 9x
    faster at 128x128x64) run over blocks of channels on the thread pool (every channel
    summed in the serial order: deterministic); the torch loop serves other devices and
    is tested against it.
    """

    @staticmethod
    def forward(ctx, q_pad, k_pad, gidx, valid, patch_size, hq, wq, known=None):  # type: ignore[override]
        ctx.save_for_backward(q_pad, k_pad, gidx, valid)
        ctx.patch_size = patch_size
        if known is not None:  # the search already computed them: only the backward is needed
            return known.to(q_pad.dtype).masked_fill(~valid, float("inf"))
        b, c = q_pad.shape[:2]
        kk = gidx.shape[1]
        wkp = k_pad.shape[-1]
        k_rows = _to_rows(k_pad)
        q_cl = q_pad.permute(0, 2, 3, 1)  # (B, Hqp, Wqp, C) view
        out = torch.zeros(b, kk, hq, wq, dtype=q_pad.dtype, device=q_pad.device)
        for dy in range(patch_size):
            for dx in range(patch_size):
                rows = F.embedding((gidx + (dy * wkp + dx)).reshape(-1), k_rows)
                rows = rows.view(b, kk, hq, wq, c)
                q_o = q_cl[:, dy : dy + hq, dx : dx + wq, :].unsqueeze(1)
                out += (rows - q_o).square_().sum(-1)
        out.masked_fill_(~valid, float("inf"))
        return out

    @staticmethod
    @first_order_only(
        "psal.patchmatch.patch_distance", lambda ctx, grad: _numba_ssd(*ctx.saved_tensors[:2])
    )
    def backward(ctx, grad_out):  # type: ignore[override]
        q_pad, k_pad, gidx, valid = ctx.saved_tensors
        p = ctx.patch_size
        c = q_pad.shape[1]
        b, kk, hq, wq = gidx.shape
        wkp = k_pad.shape[-1]
        need_q, need_k = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if _numba_ssd(q_pad, k_pad):
            g2 = (2 * grad_out).masked_fill(~valid, 0)
            gq, gk = _ssd_backward_numba(q_pad.detach(), k_pad.detach(), gidx, g2, p)
            return (gq if need_q else None), (gk if need_k else None), *([None] * 6)
        g = grad_out.masked_fill(~valid, 0).unsqueeze(-1)  # (B, k, Hq, Wq, 1)
        k_rows = _to_rows(k_pad)
        q_cl = q_pad.permute(0, 2, 3, 1)
        grad_q = torch.zeros_like(q_cl) if need_q else None
        grad_k_rows = torch.zeros_like(k_rows) if need_k else None
        for dy in range(p):
            for dx in range(p):
                flat = (gidx + (dy * wkp + dx)).reshape(-1)
                rows = F.embedding(flat, k_rows).view(b, kk, hq, wq, c)
                q_o = q_cl[:, dy : dy + hq, dx : dx + wq, :].unsqueeze(1)
                gd = (q_o - rows).mul_(2 * g)  # d/dq of (q - k)^2, weighted
                if need_q:
                    grad_q[:, dy : dy + hq, dx : dx + wq, :] += gd.sum(1)
                if need_k:
                    grad_k_rows.index_add_(0, flat, gd.reshape(-1, c), alpha=-1)
        gq = grad_q.permute(0, 3, 1, 2) if need_q else None
        gk = None
        if need_k:
            gk = grad_k_rows.view(k_pad.shape[0], k_pad.shape[2], wkp, c).permute(0, 3, 1, 2)
        return gq, gk, None, None, None, None, None, None


def patch_distance(
    query: torch.Tensor,
    key: torch.Tensor,
    indices: torch.Tensor,
    patch_size: int,
    *,
    window: tuple[int, int, int, int] | None = None,
    known: torch.Tensor | None = None,
) -> torch.Tensor:
    """Distances between query patches and the key patches named by ``indices``.

    ``d[b, j, y, x] = sum_{c, dy, dx} (Q[b, c, y+dy, x+dx] - K[b, c, ky+dy, kx+dx])^2``
    with ``(ky, kx) = divmod(indices[b, j, y, x], Wk)``, offsets over the ``p x p``
    window and the reflection border rule of this module. Differentiable with respect
    to ``query`` and ``key`` (the indices are constants); memory O(B*k*Hq*Wq*C).

    Args:
        query: (B, C, Hq, Wq) float.
        key: (B, C, Hk, Wk) float.
        indices: (B, k, Hq, Wq) int64 flat key positions ``y * Wk + x``; entries ``-1``
            (unsearched pixels) give ``inf`` and no gradient. With ``window``, (B, k,
            y1 - y0, x1 - x0).
        patch_size: odd p, at most each spatial size.
        window: optional ``(y0, y1, x0, x1)``, four integers: the indices are for these
            query rows and columns only (patches still read the query around them).
        known: optional floating-point distances already computed for these indices
            (by :func:`psal.patchmatch`), of the indices' shape: returned as they are,
            and only the backward pass is computed. They must be the distances of these
            inputs.

    Returns:
        (B, k, Hq, Wq) distances (or the window's size), float32 (float64 if an input is
        float64).

    Example:
        >>> q = torch.rand(1, 3, 8, 8); k = torch.rand(1, 3, 8, 8)
        >>> idx = torch.zeros(1, 2, 8, 8, dtype=torch.long)
        >>> patch_distance(q, k, idx, 3).shape
        torch.Size([1, 2, 8, 8])
    """
    query = check_float_tensor(query, "query", ndim=4)
    key = check_float_tensor(key, "key", ndim=4)
    indices = check_tensor(indices, "indices", ndim=4)
    check_same_device({"query": query, "key": key, "indices": indices})
    check_not_transformed("psal.patchmatch.patch_distance", query, key)
    patch_size = check_patch_size(patch_size)
    b, c, hq, wq = query.shape
    if b < 1 or c < 1 or key.shape[:2] != (b, c):
        raise ValueError(
            f"query and key must have the same B >= 1 and C >= 1, got shapes "
            f"{tuple(query.shape)} and {tuple(key.shape)}"
        )
    check_patch_fits("query", query, patch_size)
    check_patch_fits("key", key, patch_size)
    y0, y1, x0, x1 = (0, hq, 0, wq) if window is None else _check_window(window)
    if not (0 <= y0 < y1 <= hq and 0 <= x0 < x1 <= wq):
        raise ValueError(
            f"window must be (y0, y1, x0, x1) with 0 <= y0 < y1 <= {hq} and "
            f"0 <= x0 < x1 <= {wq}, got {window}"
        )
    if indices.dtype != torch.int64 or indices.shape[0] != b or indices.shape[-2:] != (
        y1 - y0, x1 - x0
    ):  # fmt: skip
        raise ValueError(
            f"indices must be int64 of shape (B, k, {'y1 - y0, x1 - x0' if window else 'Hq, Wq'})"
            f" = ({b}, k, {y1 - y0}, {x1 - x0}), got {indices.dtype} {tuple(indices.shape)}"
        )
    check_indices(indices, key.shape[-2] * key.shape[-1])
    if known is not None and (not isinstance(known, torch.Tensor) or not known.is_floating_point()):
        raise TypeError(
            f"known must be a floating-point tensor of distances, got "
            f"{known.dtype if isinstance(known, torch.Tensor) else type(known).__name__}"
        )
    if known is not None and known.shape != indices.shape:
        raise ValueError(
            f"known must be a tensor of the indices' shape {tuple(indices.shape)}, got "
            f"{getattr(known, 'shape', type(known).__name__)}"
        )
    return _patch_distance(query, key, indices, patch_size, (y0, y1, x0, x1), known)


def _check_window(window) -> tuple[int, int, int, int]:
    """``window`` as four ints ``(y0, y1, x0, x1)``; floats are refused, not truncated."""
    try:
        values = tuple(window)
    except TypeError:
        raise TypeError(
            f"window must be four integers (y0, y1, x0, x1), got {type(window).__name__}"
        ) from None
    if len(values) != 4:
        raise ValueError(
            f"window must be four integers (y0, y1, x0, x1), got {len(values)} values: {window}"
        )
    out = []
    for v in values:
        try:
            out.append(operator.index(v))  # ints, numpy ints, integer 0-d tensors
        except TypeError:
            got = v.dtype if isinstance(v, torch.Tensor) else type(v).__name__
            raise TypeError(
                f"window must be four integers (y0, y1, x0, x1), got {got} in {window}"
            ) from None
    return out[0], out[1], out[2], out[3]


def _patch_distance(
    query: torch.Tensor,
    key: torch.Tensor,
    indices: torch.Tensor,
    patch_size: int,
    window: tuple[int, int, int, int] | None = None,
    known: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`patch_distance` without its argument checks (callers that made them)."""
    b, _, hq, wq = query.shape
    hk, wk = key.shape[-2:]
    y0, y1, x0, x1 = window if window is not None else (0, hq, 0, wq)
    r = patch_size // 2
    acc = _accumulate_dtype(query, key)
    q_pad = pad_reflect(query.to(acc), r)[..., y0 : y1 + 2 * r, x0 : x1 + 2 * r]
    k_pad = pad_reflect(key.to(acc), r)
    wkp = wk + 2 * r
    valid = indices >= 0
    safe = indices.clamp_min(0)
    ky = torch.div(safe, wk, rounding_mode="floor")
    kx = safe - ky * wk
    base = torch.arange(b, device=indices.device).view(b, 1, 1, 1) * ((hk + 2 * r) * wkp)
    gidx = base + ky * wkp + kx  # flat row of the patch's top-left corner in k_pad
    return _PatchSSD.apply(q_pad, k_pad, gidx, valid, patch_size, y1 - y0, x1 - x0, known)

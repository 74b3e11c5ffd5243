"""Cross-scale patch voting: small-scale matches paste their larger patches.

A query pixel ``y`` of an image ``L`` (H x W) matched a patch centred on ``u`` of a copy
``D`` of ``L`` shrunk by an integer factor ``s``. The patch of ``L`` around ``s * u``
shows, at ``s`` times the resolution, what the patch of ``D`` shows, so it is pasted
``s`` times larger into the output around ``s * y`` (the transposed-convolution paste
of cross-scale attention, Mei et al. 2020, here as a vote). For the output pixel
``Y`` (on the ``s*H x s*W`` grid), every query centre ``y'`` within ``r`` pixels of
``Y // s`` and each of its ``k`` matches ``u_j(y')`` propose the value at
``s * u_j(y') + (Y - s * y')`` on ``L``'s grid (reflected at the border); the output is
a softmax of ``-distance / T`` over those ``(2r+1)^2 k`` proposals (a plain mean for
``T = inf``).

:func:`cross_scale_vote` has a compiled CPU kernel and a vectorised PyTorch path (any
device), tested against each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from ..utils.parallel import run_chunked

if TYPE_CHECKING:
    import torch
else:
    from ..utils.arrays import lazy_torch as torch  # imported on first use

#: Below this many output rows the CPU kernel runs on the calling thread only.
_PARALLEL_MIN_ROWS = 32


@njit(nogil=True, cache=True)
def _xvote_kernel(value, idx, dist, s, r, wd, inv_t, uniform, out, lo, hi):
    # value (H, W, C) channels-last on L's grid; idx/dist (k, H, W); out (s*H, s*W, C)
    h, w, c = value.shape
    kk = idx.shape[0]
    wout = out.shape[1]
    for yy in range(lo, hi):
        yc = yy // s
        for xx in range(wout):
            xc = xx // s
            m = -np.inf
            if uniform:
                m = 0.0
            else:
                for yp in range(max(yc - r, 0), min(yc + r + 1, h)):
                    for xp in range(max(xc - r, 0), min(xc + r + 1, w)):
                        for j in range(kk):
                            lg = -np.float64(dist[j, yp, xp]) * inv_t
                            if lg > m:
                                m = lg
            den = 0.0
            for ch in range(c):
                out[yy, xx, ch] = 0.0
            for yp in range(max(yc - r, 0), min(yc + r + 1, h)):
                ty = yy - s * yp
                for xp in range(max(xc - r, 0), min(xc + r + 1, w)):
                    tx = xx - s * xp
                    for j in range(kk):
                        i = idx[j, yp, xp]
                        u = i // wd
                        py = s * u + ty
                        px = s * (i - u * wd) + tx
                        if py < 0:
                            py = -py
                        if py >= h:
                            py = max(2 * (h - 1) - py, 0)
                        if px < 0:
                            px = -px
                        if px >= w:
                            px = max(2 * (w - 1) - px, 0)
                        e = 1.0 if uniform else np.exp(-np.float64(dist[j, yp, xp]) * inv_t - m)
                        den += e
                        for ch in range(c):
                            out[yy, xx, ch] += e * value[py, px, ch]
            for ch in range(c):
                out[yy, xx, ch] /= den


def _reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    i = torch.where(i < 0, -i, i)
    return torch.where(i >= size, (2 * (size - 1) - i).clamp_min(0), i)


def _window_max(x: torch.Tensor, r: int) -> torch.Tensor:
    """Max over a (2r+1)^2 window (edges clipped) of a (1, 1, H, W) tensor."""
    return torch.nn.functional.max_pool2d(x, 2 * r + 1, stride=1, padding=r)


def _xvote_torch(value, idx, dist, s, r, wd, temperature):
    """Vectorised reference: loops over the (2r+1)^2 centres and s x s sub-pixels."""
    _, c, h, w = value.shape
    acc = torch.float64 if value.dtype == torch.float64 else torch.float32
    vflat = value[0].reshape(c, h * w).to(acc)
    uniform = temperature == float("inf")
    if uniform:
        logits = torch.zeros_like(dist[0], dtype=acc)
    else:
        from ..layers.vote import shift_by_smallest

        logits = -shift_by_smallest(dist.to(acc))[0] / temperature
    # the largest logit among each output pixel's proposals (LR grid, then repeated)
    lmax = logits.amax(0, keepdim=True)[None]
    lmax = _window_max(lmax, r)[0, 0]
    num = torch.zeros(c, h * s, w * s, dtype=acc, device=value.device)
    den = torch.zeros(h * s, w * s, dtype=acc, device=value.device)
    yc = torch.arange(h, device=value.device)
    xc = torch.arange(w, device=value.device)
    for dy in range(-r, r + 1):
        yp = yc + dy
        oky = (yp >= 0) & (yp < h)
        ypc = yp.clamp(0, h - 1)
        for dx in range(-r, r + 1):
            xp = xc + dx
            ok = oky[:, None] & ((xp >= 0) & (xp < w))[None, :]  # (H, W)
            xpc = xp.clamp(0, w - 1)
            i = idx[0][:, ypc][:, :, xpc]  # (k, H, W): the neighbours of centre y + d
            lg = logits[:, ypc][:, :, xpc]
            e = torch.exp(lg - lmax[None]) * ok[None]
            u, v = torch.div(i, wd, rounding_mode="floor"), i % wd
            for a in range(s):
                for b in range(s):
                    py = _reflect(s * u + a - s * dy, h)
                    px = _reflect(s * v + b - s * dx, w)
                    vals = vflat[:, py * w + px]  # (C, k, H, W)
                    num[:, a::s, b::s] += (vals * e[None]).sum(1)
                    den[a::s, b::s] += e.sum(0)
    return (num / den).to(value.dtype)[None]


def cross_scale_vote(
    value: torch.Tensor,
    indices: torch.Tensor,
    distances: torch.Tensor,
    scale: int,
    patch_size: int,
    key_width: int,
    temperature: float = float("inf"),
) -> torch.Tensor:
    """Paste the ``scale``-times larger patches of ``value`` found by a cross-scale search.

    Args:
        value: (1, C, H, W) float, on the query image's grid.
        indices: (1, k, H, W) int64 flat positions ``u * key_width + v`` on the shrunk
            copy (every entry valid).
        distances: (1, k, H, W) their patch distances.
        scale: the integer factor between the query grid and the key grid.
        patch_size: odd patch side of the search (on the query grid).
        key_width: width of the shrunk copy the indices point into.
        temperature: softmax temperature, ``inf`` for a plain mean.

    Returns:
        (1, C, scale*H, scale*W) float, the dtype of ``value``.
    """
    r = patch_size // 2
    if value.device.type != "cpu":
        return _xvote_torch(value, indices, distances, scale, r, key_width, temperature)
    acc = torch.float64 if value.dtype == torch.float64 else torch.float32
    out = cross_scale_vote_arrays(value.to(acc).numpy(), indices.numpy(),
                                  distances.to(acc).numpy(), scale, patch_size, key_width,
                                  temperature)  # fmt: skip
    return torch.from_numpy(out).to(value.dtype)


def cross_scale_vote_arrays(
    value: np.ndarray,
    indices: np.ndarray,
    distances: np.ndarray,
    scale: int,
    patch_size: int,
    key_width: int,
    temperature: float = float("inf"),
) -> np.ndarray:
    """:func:`cross_scale_vote` on numpy arrays (the compiled kernel; no torch).

    Same arguments and shapes; ``value`` float32 or float64 (the result's dtype).
    """
    r = patch_size // 2
    acc = np.float64 if value.dtype == np.float64 else np.float32
    v = np.ascontiguousarray(value[0].transpose(1, 2, 0), dtype=acc)
    idx = np.ascontiguousarray(indices[0])
    uniform = temperature == float("inf")
    dist = np.ascontiguousarray(distances[0], dtype=acc)
    h, w, c = v.shape
    out = np.empty((scale * h, scale * w, c), dtype=acc)
    # logits in float64: -d / T of float32 distances ~1e6 at T ~1e-2 rounds (steps of 8)
    # past the distances' differences
    inv_t = 0.0 if uniform else 1.0 / float(temperature)
    args = (v, idx, dist, scale, r, key_width, inv_t, uniform, out)
    run_chunked(_xvote_kernel, scale * h, *args, min_parallel=_PARALLEL_MIN_ROWS)
    return out.transpose(2, 0, 1)[None]

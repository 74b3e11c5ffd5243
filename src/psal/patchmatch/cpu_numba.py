"""Fast CPU backend: PatchMatch k-NN search compiled with numba.

The algorithm is the original sequential PatchMatch (Barnes et al. 2009) extended to k
neighbours per pixel:

* Initialisation: k distinct random valid key positions per pixel (or the given
  ``init`` field, its bad entries replaced at random).
* Propagation, in scan order (top-left to bottom-right on even iterations, the reverse
  on odd ones): each of the k matches of the previous pixel in the row and of the
  previous row's pixel, shifted by one, is a candidate.
* Random search: one uniform sample in windows of half-width ``max(Hk, Wk) / 2^i``
  around each of the current k neighbours, until the half-width is below one pixel
  (around the best only, as in the published code, finds the 2nd..k-th neighbours
  less well: on 256x256 photos with patch 7 the mean nearest distance was 5.0% above
  the exact one instead of 3.1%).
* A candidate enters the pixel's sorted k-list if it is valid, not already held, and
  nearer than the current k-th; its distance is summed row by row with an early exit
  once it exceeds the k-th distance.

Parallelism without races or thread-count dependence: the image is cut into bands of
``BAND_ROWS`` rows and the (batch element, band) pairs run in parallel on a pool of
Python threads (the kernels release the GIL; :mod:`psal.utils.parallel` says why not
``prange``).
Inside a band the scan is sequential; a pixel on the band's first row reads its
vertical neighbour from a snapshot taken at the start of the iteration. Random numbers
come from a counter-based hash of (seed, pixel, iteration), so a seed gives the same
result whatever the number of threads.

Kernels are compiled on first use and cached on disk by numba (``cache=True``), so a
second process starts without compiling.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from ..utils.parallel import run_chunked
from .distance import pad_reflect

#: Rows per parallel band; fixed so results do not depend on the thread count.
BAND_ROWS = 32

#: LLVM fast-math flags: reassociation lets the SSD loop vectorise; 'ninf'/'nnan' are
#: left out because inf is the 'no match yet' distance.
_FAST = {"reassoc", "contract", "nsz", "arcp"}

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)


@njit(inline="always", cache=True)
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always", cache=True)
def _state(seed, pixel, step):
    return _mix(seed ^ _mix(np.uint64(pixel) * _GOLDEN + np.uint64(step)))


@njit(inline="always", cache=True)
def _below(state, n):
    """Return (uniform integer in [0, n), next state)."""
    state = state + _GOLDEN
    z = _mix(state) >> _S11  # 53 random bits
    return np.int64(z % np.uint64(n)), state


@njit(inline="always", cache=True, fastmath=_FAST)
def _ssd(qp, kp, b, qy, qx, ky, kx, p, c, bound, zero):
    """Patch SSD with early exit once the partial sum reaches ``bound``."""
    s = zero
    qo = qx * c
    ko = kx * c
    n = p * c
    for dy in range(p):
        # contiguous slices (not offset indexing) let LLVM drop the negative-index
        # checks and vectorise the reduction: ~5x faster
        qs = qp[b, qy + dy, qo : qo + n]
        ks = kp[b, ky + dy, ko : ko + n]
        for i in range(n):
            t = qs[i] - ks[i]
            s += t * t
        if s >= bound:
            return s
    return s


@njit(inline="always", cache=True)
def _try(qp, kp, valid, idx, dist, b, y, x, cand, wk, p, c, kk, zero):
    """Insert key position ``cand`` into pixel (y, x)'s sorted k-list if it is better."""
    if valid[b, cand] == 0:
        return
    for j in range(kk):
        if idx[b, y, x, j] == cand:
            return
    ky = cand // wk
    kx = cand - ky * wk
    worst = dist[b, y, x, kk - 1]
    d = _ssd(qp, kp, b, y, x, ky, kx, p, c, worst, zero)
    if d < worst:
        j = kk - 1
        while j > 0 and dist[b, y, x, j - 1] > d:
            dist[b, y, x, j] = dist[b, y, x, j - 1]
            idx[b, y, x, j] = idx[b, y, x, j - 1]
            j -= 1
        dist[b, y, x, j] = d
        idx[b, y, x, j] = cand


@njit(nogil=True, cache=True, fastmath=_FAST)
def _init_tasks(qp, kp, valid, vlist, vcount, active, init, use_init, idx, dist,
                hk, wk, p, seed, band, zero, lo, hi):  # fmt: skip
    """Random (or ``init``) k-lists for the (batch element, band) tasks listed."""
    _, hq, wq, kk = idx.shape
    c = qp.shape[2] // (wq + p - 1)
    nk = hk * wk
    nbands = (hq + band - 1) // band
    inf = zero + np.inf
    useed = np.uint64(seed)
    for t in range(lo, hi):
        b = t // nbands
        y0 = (t % nbands) * band
        y1 = min(hq, y0 + band)
        for y in range(y0, y1):
            for x in range(wq):
                if active[b, y, x] == 0:
                    continue
                state = _state(useed, (b * hq + y) * wq + x, 0)
                n = 0
                if use_init:
                    for j in range(kk):
                        cand = init[b, y, x, j]
                        if cand < 0 or cand >= nk or valid[b, cand] == 0:
                            continue
                        dup = False
                        for i in range(n):
                            if idx[b, y, x, i] == cand:
                                dup = True
                        if not dup:
                            idx[b, y, x, n] = cand
                            n += 1
                while n < kk:
                    r, state = _below(state, vcount[b])
                    cand = vlist[b, r]
                    dup = False
                    for i in range(n):
                        if idx[b, y, x, i] == cand:
                            dup = True
                    if not dup:
                        idx[b, y, x, n] = cand
                        n += 1
                for j in range(kk):
                    cand = idx[b, y, x, j]
                    ky = cand // wk
                    dist[b, y, x, j] = _ssd(qp, kp, b, y, x, ky, cand - ky * wk, p, c, inf, zero)
                # insertion sort of the k-list
                for j in range(1, kk):
                    dj = dist[b, y, x, j]
                    ij = idx[b, y, x, j]
                    i = j - 1
                    while i >= 0 and dist[b, y, x, i] > dj:
                        dist[b, y, x, i + 1] = dist[b, y, x, i]
                        idx[b, y, x, i + 1] = idx[b, y, x, i]
                        i -= 1
                    dist[b, y, x, i + 1] = dj
                    idx[b, y, x, i + 1] = ij


@njit(nogil=True, cache=True, fastmath=_FAST)
def _iterate_tasks(qp, kp, valid, active, idx, dist, snap, hk, wk, p, it, seed, band, zero,
                   lo, hi):  # fmt: skip
    """One PatchMatch iteration (propagation + random search) over the tasks listed."""
    _, hq, wq, kk = idx.shape
    c = qp.shape[2] // (wq + p - 1)
    nbands = (hq + band - 1) // band
    useed = np.uint64(seed)
    radius0 = max(hk, wk)
    step = 1 if it % 2 == 0 else -1
    for t in range(lo, hi):
        b = t // nbands
        y0 = (t % nbands) * band
        y1 = min(hq, y0 + band)
        for yi in range(y1 - y0):
            y = y0 + yi if step == 1 else y1 - 1 - yi
            for xi in range(wq):
                x = xi if step == 1 else wq - 1 - xi
                if active[b, y, x] == 0:
                    continue
                # propagation from the previous pixel of the row
                nx = x - step
                if 0 <= nx < wq and active[b, y, nx] != 0:
                    for j in range(kk):
                        cand = idx[b, y, nx, j]
                        ky = cand // wk
                        kx = cand - ky * wk + step
                        if 0 <= kx < wk:
                            _try(qp, kp, valid, idx, dist, b, y, x, ky * wk + kx,
                                 wk, p, c, kk, zero)  # fmt: skip
                # propagation from the previous row (snapshot across band edges)
                ny = y - step
                if 0 <= ny < hq and active[b, ny, x] != 0:
                    inside = y0 <= ny < y1
                    for j in range(kk):
                        cand = idx[b, ny, x, j] if inside else snap[b, ny, x, j]
                        ky = cand // wk + step
                        kx = cand - (cand // wk) * wk
                        if 0 <= ky < hk:
                            _try(qp, kp, valid, idx, dist, b, y, x, ky * wk + kx,
                                 wk, p, c, kk, zero)  # fmt: skip
                # random search around each of the current k neighbours
                state = _state(useed, (b * hq + y) * wq + x, it + 1)
                for jj in range(kk):
                    best = idx[b, y, x, jj]
                    by = best // wk
                    bx = best - by * wk
                    w = radius0
                    while w >= 1:
                        lo_y = max(by - w, 0)
                        hi_y = min(by + w, hk - 1)
                        lo_x = max(bx - w, 0)
                        hi_x = min(bx + w, wk - 1)
                        ry, state = _below(state, hi_y - lo_y + 1)
                        rx, state = _below(state, hi_x - lo_x + 1)
                        _try(qp, kp, valid, idx, dist, b, y, x, (lo_y + ry) * wk + lo_x + rx,
                             wk, p, c, kk, zero)  # fmt: skip
                        w = w // 2


def _rows(x: torch.Tensor, r: int, dtype: torch.dtype) -> np.ndarray:
    """(B, C, H, W) -> reflect-padded (B, H + 2r, (W + 2r) * C) channels-last numpy."""
    xp = pad_reflect(x.to(device="cpu", dtype=dtype), r)
    b, c, h, w = xp.shape
    return xp.permute(0, 2, 3, 1).reshape(b, h, w * c).contiguous().numpy()


def search(
    query: torch.Tensor,
    key: torch.Tensor,
    *,
    k: int,
    patch_size: int,
    iters: int,
    query_mask: torch.Tensor | None,
    valid: torch.Tensor | None,
    seed: int,
    init: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Numba PatchMatch; see :func:`psal.patchmatch.patchmatch` for the contract."""
    device = query.device
    acc = torch.float64 if query.dtype == torch.float64 else torch.float32
    np_acc = np.float64 if acc == torch.float64 else np.float32
    b, _, hq, wq = query.shape
    hk, wk = key.shape[-2:]
    r = patch_size // 2
    qp = _rows(query, r, acc)
    kp = _rows(key, r, acc)
    if valid is None:
        valid_np = np.ones((b, hk * wk), dtype=np.uint8)
    else:
        valid_np = valid.reshape(b, hk * wk).to("cpu", torch.uint8).numpy()
    counts = valid_np.sum(1).astype(np.int64)
    vlist = np.zeros((b, max(1, int(counts.max()))), dtype=np.int64)
    for bi in range(b):
        pos = np.flatnonzero(valid_np[bi])
        vlist[bi, : pos.size] = pos
    if query_mask is None:
        active = np.ones((b, hq, wq), dtype=np.uint8)
    else:
        active = query_mask.reshape(b, hq, wq).to("cpu", torch.uint8).numpy()
    if init is None:
        init_np = np.zeros((1, 1, 1, 1), dtype=np.int64)
    else:
        init_np = init.to("cpu").permute(0, 2, 3, 1).contiguous().numpy()
    idx = np.full((b, hq, wq, k), -1, dtype=np.int64)
    dist = np.full((b, hq, wq, k), np.inf, dtype=np_acc)
    snap = np.empty_like(idx)
    seed &= 2**63 - 1
    ntask = b * ((hq + BAND_ROWS - 1) // BAND_ROWS)
    zero = np_acc(0)
    run_chunked(_init_tasks, ntask, qp, kp, valid_np, vlist, counts, active, init_np,
                init is not None, idx, dist, hk, wk, patch_size, seed, BAND_ROWS, zero)  # fmt: skip
    for it in range(iters):
        np.copyto(snap, idx)
        run_chunked(_iterate_tasks, ntask, qp, kp, valid_np, active, idx, dist, snap, hk, wk,
                    patch_size, it, seed, BAND_ROWS, zero)  # fmt: skip
    indices = torch.from_numpy(idx).permute(0, 3, 1, 2).contiguous().to(device)
    distances = torch.from_numpy(dist).permute(0, 3, 1, 2).contiguous().to(device)
    return indices, distances

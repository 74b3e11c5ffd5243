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
  nearer than the current k-th. Before its patch is read, a lower bound of its
  distance is checked: the distance between 16-dimensional projections of the two
  patches on an orthonormal basis (:func:`_projections`), one cache line per key
  position. Most random-search candidates are far and rejected there, without loading
  their ``C·p²`` values (a cache miss per row: the search was limited by memory
  latency, ~280 ns per far candidate against ~45 ns for a cached one at C=64, p=3).
  The remaining ones are summed row by row (channels-last rows, vectorised: AVX-512
  on this machine's Zen 4) with an early exit once the k-th distance is exceeded.
* When the projection bound is off (incoherent features, e.g. noise), 8-bit copies of
  the query and the key give another exact bound (:func:`_quantised`): ``sqrt`` of the
  distance between the two 8-bit patches is within the two patches' quantisation
  errors of the true one, so most candidates are rejected after an integer sum over a
  quarter of the bytes (``vpmaddwd``: 64 values in a few instructions).
* The random samples around one neighbour are drawn first; those at half-widths
  ``>= FAR_W`` (cache misses) are prefetched and tried after the near ones. The samples
  are those of the plain loop and the k-list after a batch of tries does not depend on
  their order, so the results are identical to it (the bounds only skip candidates
  that could not enter the list; a 32-bit multiply-shift draw instead of the modulo
  was tried: 0.8% higher mean distance on the CNN features with seed 0; not kept).

The kernels run without numba's reference counting (``_nrt=False``: they allocate
nothing): every array slice otherwise cost two atomic operations on a counter shared
by the threads (~14% of the time in a profile, 20-30% faster without).

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

from typing import TYPE_CHECKING

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..utils.filters import box_sum
from ..utils.parallel import FASTMATH, run_chunked
from ..utils.simd import sqdiff, sqdiff_rows, sqdiff_rows_i8
from ._border import reflect1

if TYPE_CHECKING:
    import torch
else:
    from ..utils.arrays import lazy_torch as torch  # for annotations (imports torch if resolved)

#: Rows per parallel band; fixed so results do not depend on the thread count.
BAND_ROWS = 32
#: Random samples at half-widths >= FAR_W are prefetched (they miss the cache) and tried
#: after the nearer ones.
FAR_W = 8
#: Use an 8-bit copy of the key to reject candidates when the projection bound is off.
QUANTISE = True
#: The initialisation prefetches the random patches of the pixel this far ahead.
INIT_AHEAD = 2
#: A patch distance checks its early exit after runs of rows of at least this many
#: values (one horizontal sum each): on this machine the exit never paid for itself
#: below (RGB 7x7 patches 20% faster summed whole than checked row by row; CNN
#: features 3x3x64 4%; 7x7x64 the same).
CHUNK_VALUES = 4096
#: Dimensions of the patch projections whose distance bounds the patch distance from
#: below (0 disables the bound; see :func:`_projections`).
PROJ_DIMS = 16
#: The bound is used only when the kept channel components hold at least this share of
#: the channel variance (for incoherent features such as noise it would reject nothing).
MIN_CAPTURED = 0.5
#: The bounds (projections, 8-bit key) cost a pass over the whole key; they are built
#: only when the searched query pixels times the iterations reach this many times the key
#: pixels. Below, they cost more than they save: e.g. an inpainting search (a hole of
#: 5-20% of the window, 2 iterations) took 17% less time without them; a full 256x256
#: search, 0.67x the time with them (features, patch 3; RGB patch 7 alike).
BOUND_MIN_WORK = 1.0

#: The projection bound rejects a candidate when bound * this >= the k-th distance
#: (float rounding may push the computed bound slightly above the true distance).
_LB_SAFETY = np.float32(0.9999)
#: The same slack for the 8-bit bound (float64 arithmetic on an exact integer sum).
_Q_SAFETY = 0.9999

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


@intrinsic
def _prefetch(typingctx, arr, i):
    """Hint the CPU to load ``arr[i]`` (1-D array) into cache; ``llvm.prefetch``."""
    if not isinstance(arr, types.Array) or arr.ndim != 1 or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), i8p)
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep in all levels, data
        return context.get_dummy_value()

    return types.void(arr, i), codegen


@njit(inline="always", cache=True, fastmath=FASTMATH)
def _ssd(qp, kp, b, qy, qx, ky, kx, p, c, bound, zero):
    """Patch SSD with early exit once the partial sum reaches ``bound``."""
    s = zero
    n = p * c
    qrow = qp.shape[2]
    krow = kp.shape[2]
    qo = (b * qp.shape[1] + qy) * qrow + qx * c
    ko = (b * kp.shape[1] + ky) * krow + kx * c
    dy = 0
    chunk = max(1, CHUNK_VALUES // max(n, 1))
    while dy < p:
        r = min(chunk, p - dy)
        s += sqdiff_rows(qp, qo + dy * qrow, qrow, kp, ko + dy * krow, krow, n, r)
        if s >= bound:
            return s
        dy += r
    return s


@njit(inline="always", cache=True, fastmath=FASTMATH)
def _try(qp, kp, qpr, kpr, lbfloor, qq, kq, qm, inv_s2, valid, idx, dist, b, y, x, cand, wk, p,
         c, kk, zero):  # fmt: skip
    """Insert key position ``cand`` into pixel (y, x)'s sorted k-list if it is better.

    ``qpr``/``kpr`` (B, H*W, m) are projections of the patches on an orthonormal basis:
    their squared distance is a lower bound of the patch distance, read from one cache
    line, that rejects most far candidates before their patch is loaded (m = 0: none).
    It is used only while the k-th distance is above ``lbfloor``: below, the bound's
    float rounding (absolute, about the patches' energy times float epsilon squared)
    could exceed its relative slack and reject a near-duplicate patch the full
    distance would keep.

    ``qq``/``kq`` are the 8-bit rows of the query and the key (``inv_s2 >= 0``; see
    :func:`_quantised`), ``qm`` (B, Hq*Wq) the bound's margin at each query pixel.
    """
    if valid[b, cand] == 0:
        return
    for j in range(kk):
        if idx[b, y, x, j] == cand:
            return
    worst = dist[b, y, x, kk - 1]
    m = kpr.shape[2]
    if m > 0 and worst > lbfloor:
        qi = y * idx.shape[2] + x  # qpr holds one row per query pixel
        lb = sqdiff(qpr, (b * qpr.shape[1] + qi) * m, kpr, (b * kpr.shape[1] + cand) * m, m)
        if lb * _LB_SAFETY >= worst:
            return
    ky = cand // wk
    kx = cand - ky * wk
    if inv_s2 >= 0 and worst < np.inf:
        # the 8-bit patches' distance, scale² * d8: sqrt of it is within qm (the two
        # patches' quantisation errors) of sqrt(d)
        qrow = qq.shape[2]
        krow = kq.shape[2]
        d8 = sqdiff_rows_i8(qq, (b * qq.shape[1] + y) * qrow + x * c, qrow,
                            kq, (b * kq.shape[1] + ky) * krow + kx * c, krow, p * c, p)  # fmt: skip
        thr = np.sqrt(np.float64(worst)) + qm[b, y * idx.shape[2] + x]
        if np.float64(d8) * _Q_SAFETY >= thr * thr * inv_s2:
            return
    d = _ssd(qp, kp, b, y, x, ky, kx, p, c, worst, zero)
    if d < worst:
        j = kk - 1
        while j > 0 and dist[b, y, x, j - 1] > d:
            dist[b, y, x, j] = dist[b, y, x, j - 1]
            idx[b, y, x, j] = idx[b, y, x, j - 1]
            j -= 1
        dist[b, y, x, j] = d
        idx[b, y, x, j] = cand


@njit(inline="always", cache=True)
def _prefetch_cand(kpf, kprf, b, cand, wk, m, nkpr, hkp, rowlen, c, p, step16):
    """Prefetch what a try of ``cand`` reads first: its bound's line, or its whole patch."""
    if m > 0:
        o = (b * nkpr + cand) * m
        _prefetch(kprf, o)
        _prefetch(kprf, o + m - 1)
    else:
        ky = cand // wk
        o = (b * hkp + ky) * rowlen + (cand - ky * wk) * c
        for dy in range(p):
            for i in range(o + dy * rowlen, o + dy * rowlen + p * c, step16):
                _prefetch(kpf, i)


@njit(nogil=True, cache=True, fastmath=FASTMATH, _nrt=False)
def _init_tasks(qp, kp, kpf, valid, vlist, vcount, active, init, use_init, idx, dist,
                hk, wk, p, seed, band, zero, lo, hi):  # fmt: skip
    """Random (or ``init``) k-lists for the (batch element, band) tasks listed.

    Row by row: the k candidates of every pixel are drawn first, then their distances
    computed with the patches of the pixel ``INIT_AHEAD`` further on prefetched (random
    key patches: cache misses).
    """
    _, hq, wq, kk = idx.shape
    c = qp.shape[2] // (wq + p - 1)
    nk = hk * wk
    nbands = (hq + band - 1) // band
    inf = zero + np.inf
    useed = np.uint64(seed)
    hkp = kp.shape[1]
    rowlen = kp.shape[2]
    step16 = 64 // kp.itemsize
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
            for x in range(wq):
                xa = x + INIT_AHEAD
                if xa < wq and active[b, y, xa] != 0:
                    for j in range(kk):
                        _prefetch_cand(kpf, kpf, b, idx[b, y, xa, j], wk, 0, 0, hkp, rowlen, c,
                                       p, step16)  # fmt: skip
                if active[b, y, x] == 0:
                    continue
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


@njit(nogil=True, cache=True, fastmath=FASTMATH, _nrt=False)
def _iterate_tasks(qp, kp, kpf, qpr, kpr, kprf, lbfloor, qq, kq, kqf, qm, inv_s2, valid, active,
                   idx, dist, snap, cbufs, hk, wk, p, it, seed, band, far_w, zero, lo,
                   hi):  # fmt: skip
    """One PatchMatch iteration (propagation + random search) over the tasks listed.

    Per pixel: propagation; then, around each of the k neighbours in turn, the random
    samples are drawn, those at half-widths >= ``far_w`` (cache misses) prefetched, and
    the near ones tried first (their patches are mostly cached) while the far ones
    arrive.
    """
    _, hq, wq, kk = idx.shape
    c = qp.shape[2] // (wq + p - 1)
    nbands = (hq + band - 1) // band
    useed = np.uint64(seed)
    radius0 = max(hk, wk)
    m = kpr.shape[2]
    nkpr = kpr.shape[1]
    hkp = kp.shape[1]
    rowlen = kp.shape[2]
    step16 = 64 // kp.itemsize  # values per cache line
    step = 1 if it % 2 == 0 else -1
    for t in range(lo, hi):
        b = t // nbands
        y0 = (t % nbands) * band
        y1 = min(hq, y0 + band)
        near = cbufs[t, 0]
        far = cbufs[t, 1]
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
                            _try(qp, kp, qpr, kpr, lbfloor, qq, kq, qm, inv_s2, valid, idx, dist, b,
                                 y, x, ky * wk + kx, wk, p, c, kk, zero)  # fmt: skip
                # propagation from the previous row (snapshot across band edges)
                ny = y - step
                if 0 <= ny < hq and active[b, ny, x] != 0:
                    inside = y0 <= ny < y1
                    for j in range(kk):
                        cand = idx[b, ny, x, j] if inside else snap[b, ny, x, j]
                        ky = cand // wk + step
                        kx = cand - (cand // wk) * wk
                        if 0 <= ky < hk:
                            _try(qp, kp, qpr, kpr, lbfloor, qq, kq, qm, inv_s2, valid, idx, dist, b,
                                 y, x, ky * wk + kx, wk, p, c, kk, zero)  # fmt: skip
                # random search around each of the k neighbours in turn: its samples drawn
                # first, the far ones prefetched and tried after the near ones (the list
                # after a batch does not depend on the order of its tries)
                state = _state(useed, (b * hq + y) * wq + x, it + 1)
                for jj in range(kk):
                    best = idx[b, y, x, jj]
                    by = best // wk
                    bx = best - by * wk
                    w = radius0
                    nn = 0
                    nf = 0
                    while w >= 1:
                        lo_y = max(by - w, 0)
                        hi_y = min(by + w, hk - 1)
                        lo_x = max(bx - w, 0)
                        hi_x = min(bx + w, wk - 1)
                        ry, state = _below(state, hi_y - lo_y + 1)
                        rx, state = _below(state, hi_x - lo_x + 1)
                        cand = (lo_y + ry) * wk + lo_x + rx
                        if w >= far_w:
                            far[nf] = cand
                            nf += 1
                            if inv_s2 >= 0:  # the 8-bit patch, read first
                                _prefetch_cand(kqf, kprf, b, cand, wk, 0, nkpr, hkp, rowlen, c,
                                               p, 64)  # fmt: skip
                            else:
                                _prefetch_cand(kpf, kprf, b, cand, wk, m, nkpr, hkp, rowlen, c,
                                               p, step16)  # fmt: skip
                        else:
                            near[nn] = cand
                            nn += 1
                        w = w // 2
                    for i in range(nn + nf):
                        cand = near[i] if i < nn else far[i - nn]
                        _try(qp, kp, qpr, kpr, lbfloor, qq, kq, qm, inv_s2, valid, idx, dist, b, y,
                             x, cand, wk, p, c, kk, zero)  # fmt: skip


def _np_dtype(dtype: object) -> type:
    """float64 for float64 inputs (numpy or torch dtype), else float32: the accumulation."""
    return np.float64 if str(dtype) in ("float64", "torch.float64") else np.float32


def _reflect_border(out: np.ndarray, r: int, axes: tuple[int, int]) -> np.ndarray:
    """Fill the ``r``-wide border of ``out`` along two axes by reflection, in place.

    ``out``'s interior (``r:-r`` on both axes) holds the image; the border becomes what
    ``np.pad(..., mode="reflect")`` would give (corners included: rows are reflected
    after columns, over the whole width). Slice copies: ``np.pad``'s reflect mode took
    3x as long on a 256x256x64 map.
    """
    if r == 0:
        return out
    ya, xa = axes

    def at(axis: int, sl: slice) -> tuple[slice, ...]:
        idx = [slice(None)] * out.ndim
        idx[axis] = sl
        return tuple(idx)

    for axis in (xa, ya):
        n = out.shape[axis] - 2 * r
        out[at(axis, slice(0, r))] = out[at(axis, slice(2 * r, r, -1))]
        out[at(axis, slice(r + n, 2 * r + n))] = out[at(axis, slice(r + n - 2, n - 2, -1))]
    return out


def _rows(x: np.ndarray, r: int, dtype: type) -> np.ndarray:
    """(B, C, H, W) -> reflect-padded (B, H + 2r, (W + 2r) * C) channels-last rows.

    A compiled pass over output rows (padding, transposition and cast together, on the
    kernel threads): numpy's pad and transposed copy took 19 ms for two 256x256x64 maps,
    torch's (threaded) 7 ms.
    """
    x = np.ascontiguousarray(x)
    b, c, h, w = x.shape
    out = _empty_aligned((b, h + 2 * r, (w + 2 * r) * c), dtype)
    run_chunked(_rows_tasks, b * (h + 2 * r), x, r, out)
    return out


def _empty_aligned(shape: tuple[int, ...], dtype: type, align: int = 64) -> np.ndarray:
    """``np.empty`` starting on a cache line.

    numpy aligns large arrays to 16 bytes only; the patch rows are read in 64-byte
    vectors from offsets that are multiples of 64 bytes (C = 16, 32, 64 channels), so a
    16-byte offset made every vector load straddle two cache lines (feature search
    ~10% slower than from torch's 64-byte aligned buffers).
    """
    dt = np.dtype(dtype)
    n = int(np.prod(shape)) * dt.itemsize
    buf = np.empty(n + align, dtype=np.uint8)
    start = (-buf.ctypes.data) % align
    return buf[start : start + n].view(dt).reshape(shape)


@njit(nogil=True, cache=True)
def _rows_tasks(x, r, out, t0, t1):  # pragma: no cover (compiled)
    """Output rows ``[t0, t1)`` of ``B * (H + 2r)`` of :func:`_rows`.

    Channel by channel: each reads one contiguous input row and writes every C-th value
    of the output row, which stays in cache.
    """
    _, c, h, w = x.shape
    hp = h + 2 * r
    wp = w + 2 * r
    for t in range(t0, t1):
        bi = t // hp
        yp = t - bi * hp
        y = reflect1(yp - r, h)
        row = out[bi, yp]
        for ch in range(c):
            src = x[bi, ch, y]
            for xp in range(wp):
                row[xp * c + ch] = src[reflect1(xp - r, w)]


def _no_projections(b: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """The projections of no bound: (B, 1, 0) arrays (the kernels then skip the check)."""
    empty = np.zeros((b, 1, 0), dtype=dtype)
    return empty, empty


def _row_sample(x: np.ndarray, n: int = 4096) -> np.ndarray:
    """(B, C, m) pixels of a (B, C, H, W) map: whole rows, evenly spaced, m ≈ n."""
    h, w = x.shape[-2:]
    step = max(1, h // max(1, n // w))  # rows apart
    return x[:, :, ::step, :].reshape(x.shape[0], x.shape[1], -1)


def _projections(
    query: np.ndarray, key: np.ndarray, p: int, dtype: type, same: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Patch projections (B, H*W, m) whose squared difference bounds the patch distance.

    The basis is orthonormal in patch space: the Kronecker products of ``s`` spatial
    functions of the p x p window (constant; for p >= 3 also the x and y ramps) with the
    leading principal directions of the channels (estimated on a pixel sample of query
    and key). The squared distance of two projections is the squared norm of the
    patch difference's component in that subspace, so it never exceeds the distance.
    ``query`` and ``key`` are (B, C, H, W) arrays; ``same``: they are one map (one
    projection is computed and returned twice).
    """
    b, c = query.shape[:2]
    if PROJ_DIMS <= 0:
        return _no_projections(b, dtype)
    q = np.asarray(query, dtype=dtype)
    k = np.asarray(key, dtype=dtype)
    # channel statistics on a sample of pixels (both maps; whole rows, every few rows,
    # ~4096 pixels: a strided pick of single pixels read a cache line per value, 7 ms
    # at 256²x64); centred for precision. Any basis gives an exact bound: the sample
    # only sets how tight it is.
    parts = [_row_sample(q)] if same else [_row_sample(q), _row_sample(k)]
    sample = np.concatenate(parts, 2).transpose(1, 0, 2).reshape(c, -1).astype(np.float64)
    mu = sample.mean(1)
    cov = _gram(sample - mu[:, None])  # (C, N): C-contiguous
    r = p // 2
    # spatial functions: the constant, and for p >= 3 the x and y ramps (their 1-D
    # profile ``ramp``; _moments_tasks applies them separably)
    s = 3 if p >= 3 else 1
    coords = np.arange(p, dtype=np.float64) - r
    ramp = coords / np.sqrt((coords**2).sum()) / p**0.5 if s == 3 else np.zeros(p)
    ramp = ramp.astype(dtype)
    mc = max(1, min(c, PROJ_DIMS // s))
    basis = _leading_subspace(cov, mc, SUBSPACE_ITERS)
    captured = float(np.einsum("ij,ik,kj->", basis, cov, basis))  # trace(V^T cov V)
    if captured < MIN_CAPTURED * max(float(np.trace(cov)), 1e-30):
        # incoherent channels (e.g. noise): the bound would reject nothing
        return _no_projections(b, dtype)
    v = np.ascontiguousarray(basis, dtype=dtype)  # (C, mc)
    proj = []
    for x in (q,) if same else (q, k):
        hh, ww = x.shape[-2:]
        xp = np.empty((b, v.shape[1], hh + 2 * r, ww + 2 * r), dtype=dtype)
        run_chunked(_project_tasks, b * hh, x, v, mu.astype(dtype), r, xp)
        _reflect_border(xp, r, (2, 3))
        out = _empty_aligned((b, hh * ww, mc * s), dtype)
        run_chunked(_moments_tasks, b * mc, xp, ramp, s, out)
        proj.append(out)
    return proj[0], proj[-1]


#: The projection bound is used while the k-th distance exceeds this share of a patch's
#: mean energy (sum of squared values); below, only near-duplicates compete, and the
#: bound's absolute float rounding (~1e-12 of that energy in float32) could reject one.
LB_FLOOR = 1e-9


def _lb_floor(query: np.ndarray, key: np.ndarray, p: int) -> float:
    """``LB_FLOOR`` times the mean patch energy of query and key (a pixel sample)."""
    energy = 0.0
    for x in (query, key):
        sample = _row_sample(x).astype(np.float64)
        energy = max(energy, float((sample * sample).sum(1).mean()) * p * p)
    return LB_FLOOR * energy


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors are views of the same memory with the same layout."""
    return (
        a.data_ptr() == b.data_ptr()
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.dtype == b.dtype
        and a.device == b.device
    )


#: Subspace iterations for the projections' channel basis (:func:`_leading_subspace`).
SUBSPACE_ITERS = 60


@njit(nogil=True, cache=True)
def _leading_subspace(cov, m, iters):  # pragma: no cover (compiled)
    """An orthonormal (C, m) basis of ``cov``'s leading m-dimensional subspace.

    Subspace iteration with modified Gram-Schmidt from a fixed start, on the calling
    thread. Not LAPACK's ``eigh``: OpenBLAS's threads keep spinning after it returns and
    slowed the search kernels that follow by a third (PSAttention forward at 128²x64:
    0.11 s instead of 0.075 s), and torch's took 115-140 ms on a loaded machine. Any
    orthonormal basis gives an exact lower bound; the leading subspace makes it tight.
    """
    c = cov.shape[0]
    v = np.empty((c, m))
    w = np.empty((c, m))
    for j in range(m):  # a fixed, well-spread start
        for i in range(c):
            v[i, j] = ((i * 7919 + j * 104729 + 17) % 1013) / 1013.0 - 0.5
    for _ in range(iters):
        for j in range(m):
            for i in range(c):
                t = 0.0
                for k in range(c):
                    t += cov[i, k] * v[k, j]
                w[i, j] = t
        _gram_schmidt(w, 1, 0.0)
        v, w = w, v
    # Orthonormal for sure: when cov has fewer than m non-zero directions (dead or
    # linearly dependent channels), the last columns are normalised rounding noise that
    # one Gram-Schmidt pass leaves far from orthogonal (a column could equal an earlier
    # one, and the projection distance then exceed the patch distance: the bound would
    # reject candidates the search needs). Two passes against the kept columns; a column
    # with almost nothing left (a direction cov does not have) is dropped (set to 0):
    # zero columns keep the projection a contraction.
    _gram_schmidt(v, 2, 1e-12)
    return v


@njit(inline="always", cache=True)
def _gram_schmidt(v, passes, rel):  # pragma: no cover (compiled)
    """Orthonormalise the columns of ``v`` (C, m) in place, in order.

    Each column is orthogonalised ``passes`` times against the columns before it, then
    normalised; one whose squared norm fell to ``rel`` times its squared norm before (or
    to 1e-300) is set to 0.
    """
    c, m = v.shape
    for j in range(m):
        before = 0.0
        for i in range(c):
            before += v[i, j] * v[i, j]
        for _ in range(passes):
            for jj in range(j):
                d = 0.0
                for i in range(c):
                    d += v[i, jj] * v[i, j]
                for i in range(c):
                    v[i, j] -= d * v[i, jj]
        nrm = 0.0
        for i in range(c):
            nrm += v[i, j] * v[i, j]
        keep = nrm > rel * before and nrm > 1e-300
        nrm = np.sqrt(nrm)
        for i in range(c):
            v[i, j] = v[i, j] / nrm if keep else 0.0


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def _gram(xt):  # pragma: no cover (compiled)
    """``xt @ xt.T`` of a (C, N) float64 array (channels by samples), on the calling thread.

    Dot products of contiguous channel rows (vectorised over the samples), the upper
    triangle then mirrored. Not numpy's matrix product: OpenBLAS's threads keep spinning
    after it returns and slowed the search kernels that follow by a third (PSAttention
    forward at 128²x64: 0.11 s instead of 0.072 s).
    """
    c, n = xt.shape
    g = np.zeros((c, c))
    for a in range(c):
        ra = xt[a]
        for b in range(a, c):
            rb = xt[b]
            acc = 0.0
            for i in range(n):
                acc += ra[i] * rb[i]
            g[a, b] = acc
            g[b, a] = acc
    return g


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def _project_tasks(x, v, mu, r, out, t0, t1):  # pragma: no cover (compiled)
    """``out[b, :, y + r, r:r + W] = v^T (x[b, :, y, :] - mu)``: the 1x1 channel projection.

    Tasks ``[t0, t1)`` of ``B * H`` rows of the (B, C, H, W) map ``x``; ``v`` (C, m),
    ``out`` (B, m, H + 2r, W + 2r), its border filled later. Not a BLAS product:
    OpenBLAS's threads spin after it returns (see :func:`_gram`).
    """
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    m = v.shape[1]
    for t in range(t0, t1):
        bi, y = t // h, t % h
        for j in range(m):
            dst = out[bi, j, y + r, r : r + w]  # uninitialised: written before it is read
            for i in range(w):
                dst[i] = 0
            for ch in range(c):
                vj = v[ch, j]
                mc = mu[ch]
                src = x[bi, ch, y]
                for i in range(w):
                    # centred value by value: v.x - v.mu in float32 cancelled catastrophically
                    # for features far from zero (values ~1e3 times their spread: errors
                    # above the bound's 1e-4 slack, and candidates wrongly rejected)
                    dst[i] += vj * (src[i] - mc)


@njit(nogil=True, cache=True)
def _moments_tasks(xp, ramp, s, out, t0, t1):
    """Spatial moments of a padded map's channels (tasks ``[t0, t1)`` of ``b * m``).

    Task ``t``: channel ``t % m`` of image ``t // m`` of the reflect-padded
    (B, m, H + p - 1, W + p - 1) map ``xp`` against the ``s`` spatial functions of
    :func:`_projections`, written to ``out[b, y * W + x, ch * s + j]``.

    The functions are separable (constant = 1 1^T / p, x ramp = 1 ramp^T, y ramp =
    ramp 1^T): a horizontal pass (sums and ramp-weighted sums of p values) then a
    vertical one, 5p multiply-adds per value instead of the 3p^2 of s p x p filters.
    """
    m, hp, wp = xp.shape[1], xp.shape[2], xp.shape[3]
    p = ramp.shape[0]
    h, w = hp - p + 1, wp - p + 1
    inv = 1.0 / p
    h1 = np.empty((hp, w), dtype=xp.dtype)
    hr = np.empty((hp, w), dtype=xp.dtype)
    for t in range(t0, t1):
        bi, ch = t // m, t % m
        img = xp[bi, ch]
        for y in range(hp):
            for x in range(w):
                a = img[y, x] * 0
                r = a
                for j in range(p):
                    v = img[y, x + j]
                    a += v
                    r += ramp[j] * v
                h1[y, x] = a
                hr[y, x] = r
        for y in range(h):
            for x in range(w):
                a = h1[y, x] * 0
                xr = a
                yr = a
                for i in range(p):
                    a += h1[y + i, x]
                    xr += hr[y + i, x]
                    yr += ramp[i] * h1[y + i, x]
                o = out[bi, y * w + x]
                o[ch * s] = a * inv
                if s == 3:
                    o[ch * s + 1] = xr
                    o[ch * s + 2] = yr


@njit(nogil=True, cache=True)
def _quantise_tasks(x, offset, scale, out, energy, t0, t1):  # pragma: no cover (compiled)
    """8-bit levels of ``x`` and the squared error they leave at each pixel.

    ``out[b, ch, y, :] = clip(round((x - offset[ch]) / scale), -127, 127)`` as int8,
    ``energy[b, y, :] = Σ_ch (x - offset[ch] - scale * out)²``, in float64, for the
    tasks ``[t0, t1)`` of ``B * H`` (one image row each).
    """
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    for t in range(t0, t1):
        bi, y = t // h, t % h
        e = energy[bi, y]
        for i in range(w):
            e[i] = 0.0
        for ch in range(c):
            o = offset[ch]
            src = x[bi, ch, y]
            dst = out[bi, ch, y]
            for i in range(w):
                v = np.float64(src[i]) - o
                q = min(127.0, max(-127.0, np.round(v / scale)))
                dst[i] = np.int8(q)
                r = v - scale * q
                e[i] += r * r


def _patch_errors(energy: np.ndarray, p: int) -> np.ndarray:
    """(B, H, W) squared errors per pixel -> (B, H*W) error norm of each patch.

    Summed over the reflect-padded p x p window, as in the padded rows the search reads.
    """
    r = p // 2
    b, h, w = energy.shape
    ep = _rows(energy[:, None], r, np.float64)  # (B, H + 2r, W + 2r), reflect-padded
    box = box_sum(ep, p)[:, r : r + h, r : r + w]  # the windows inside the padded map
    return np.sqrt(np.maximum(box, 0.0)).reshape(b, h * w)


def _quantised(query, key, p, use, same):
    """The 8-bit bound's arrays: (query rows, key rows, margins, 1 / scale²).

    Both maps are stored as ``x ≈ offset + scale * level`` with per-channel offsets, one
    scale for all channels (so the levels' squared differences sum to the distance of
    the two 8-bit patches over ``scale²``) and levels in [-127, 127] (int8), in the same
    reflect-padded channels-last rows as the search's. By the triangle inequality,
    ``sqrt(d) >= scale * sqrt(d8) - e_q - e_k`` with ``e_q``, ``e_k`` the norms of the
    two patches' rounding errors (measured, not the worst case): the margin of a query
    pixel is its ``e_q`` plus the largest ``e_k`` (with 1e-6 relative slack). Used when
    the projection bound is off (incoherent features): a rejection then costs an
    integer sum over a quarter of the bytes. ``inv_s2 = -1``: off. ``query``, ``key``:
    (B, C, H, W) arrays (the same object for a self-search).
    """
    if not use or not QUANTISE:
        z8 = np.zeros((1, 1, 1), dtype=np.int8)
        return z8, z8, np.zeros((1, 1)), -1.0
    r = p // 2
    both = (query,) if same else (query, key)
    lo = np.min([x.min(axis=(0, 2, 3)) for x in both], axis=0).astype(np.float64)
    hi = np.max([x.max(axis=(0, 2, 3)) for x in both], axis=0).astype(np.float64)
    offset = (hi + lo) / 2
    scale = max(float((hi - lo).max()) / 254, 1e-30)
    rows, errs = [], []
    for x in both:
        x = np.ascontiguousarray(x)
        b, _, h, w = x.shape
        levels = np.empty(x.shape, dtype=np.int8)
        energy = np.empty((b, h, w))
        run_chunked(_quantise_tasks, b * h, x, offset, scale, levels, energy)
        rows.append(_rows(levels, r, np.int8))
        errs.append(_patch_errors(energy, p))
    qq, kq = rows[0], rows[-1]
    margin = (errs[0] + errs[-1].max()) * (1 + 1e-6) + 1e-300
    return qq, kq, margin, 1.0 / (scale * scale)


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
    """Numba PatchMatch; see :func:`psal.patchmatch.patchmatch` for the contract.

    The tensors' wrapper of :func:`search_arrays` (CPU copies in, results back on the
    query's device).
    """
    import torch

    device = query.device

    def cpu(x: torch.Tensor | None) -> np.ndarray | None:
        return None if x is None else x.detach().to("cpu").numpy()

    acc = torch.float64 if query.dtype == torch.float64 else torch.float32
    q = query.detach().to("cpu", acc).numpy()
    kk = q if _same(query, key) else key.detach().to("cpu", acc).numpy()
    idx, dist = search_arrays(q, kk, k=k, patch_size=patch_size, iters=iters,
                              query_valid=cpu(query_mask), key_ok=cpu(valid), seed=seed,
                              init=cpu(init))  # fmt: skip
    return torch.from_numpy(idx).to(device), torch.from_numpy(dist).to(device)


def search_arrays(
    query: np.ndarray,
    key: np.ndarray,
    *,
    k: int,
    patch_size: int,
    iters: int,
    query_valid: np.ndarray | None,
    key_ok: np.ndarray | None,
    seed: int,
    init: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The search on numpy arrays, checked by the caller (no torch needed).

    Args:
        query: (B, C, Hq, Wq) float32 or float64 (other floats are searched in float32).
        key: (B, C, Hk, Wk), same dtype; the same array object as ``query`` for a
            self-search (one padded copy).
        k: neighbours per pixel (at most the valid key positions of every element).
        patch_size: odd patch side.
        iters: PatchMatch iterations.
        query_valid: (B, 1, Hq, Wq) bool, True = search this pixel; None = all.
        key_ok: (B, 1, Hk, Wk) bool, True = the patch centred there may be returned
            (:func:`psal.patchmatch.distance.valid_key_positions`); None = all.
        seed: int in [0, 2**63).
        init: optional (B, k, Hq, Wq) int64 initial field.

    Returns:
        ``(indices, distances)``: (B, k, Hq, Wq) int64 and float32 (float64 for float64
        inputs), nearest first; -1 / inf at pixels not searched.
    """
    np_acc = _np_dtype(query.dtype)
    b, _, hq, wq = query.shape
    hk, wk = key.shape[-2:]
    r = patch_size // 2
    same = key is query
    qp = _rows(query, r, np_acc)
    kp = qp if same else _rows(key, r, np_acc)  # self-attention: one copy
    if key_ok is None:
        valid_np = np.ones((b, hk * wk), dtype=np.uint8)
    else:
        valid_np = np.ascontiguousarray(key_ok.reshape(b, hk * wk), dtype=np.uint8)
    counts = valid_np.sum(1).astype(np.int64)
    if int(counts.min()) < k:  # the random initialisation would never find k distinct keys
        raise ValueError(f"k={k} is more than the {int(counts.min())} valid key positions of "
                         "a batch element")  # fmt: skip
    vlist = np.zeros((b, max(1, int(counts.max()))), dtype=np.int64)
    for bi in range(b):
        pos = np.flatnonzero(valid_np[bi])
        vlist[bi, : pos.size] = pos
    if query_valid is None:
        active = np.ones((b, hq, wq), dtype=np.uint8)
    else:
        active = np.ascontiguousarray(query_valid.reshape(b, hq, wq), dtype=np.uint8)
    if init is None:
        init_np = np.zeros((1, 1, 1, 1), dtype=np.int64)
    else:
        init_np = np.ascontiguousarray(init.transpose(0, 2, 3, 1), dtype=np.int64)
    bounds = int(active.sum()) * iters >= BOUND_MIN_WORK * b * hk * wk
    if bounds:
        qpr, kpr = _projections(query, key, patch_size, np_acc, same)
    else:
        qpr, kpr = _no_projections(b, np_acc)
    lbfloor = np_acc(_lb_floor(query, key, patch_size) if kpr.shape[2] > 0 else 0.0)
    qq, kq, qm, inv_s2 = _quantised(query, key, patch_size, bounds and kpr.shape[2] == 0, same)
    idx = np.full((b, hq, wq, k), -1, dtype=np.int64)
    dist = np.full((b, hq, wq, k), np.inf, dtype=np_acc)
    snap = np.empty_like(idx)
    seed &= 2**63 - 1
    ntask = b * ((hq + BAND_ROWS - 1) // BAND_ROWS)
    zero = np_acc(0)
    run_chunked(_init_tasks, ntask, qp, kp, kp.reshape(-1), valid_np, vlist, counts, active,
                init_np, init is not None, idx, dist, hk, wk, patch_size, seed, BAND_ROWS,
                zero)  # fmt: skip
    nlev = int(max(hk, wk)).bit_length()
    cbufs = np.empty((ntask, 2, k * nlev), dtype=np.int64)
    for it in range(iters):
        np.copyto(snap, idx)
        run_chunked(_iterate_tasks, ntask, qp, kp, kp.reshape(-1), qpr, kpr, kpr.reshape(-1),
                    lbfloor, qq, kq, kq.reshape(-1), qm, inv_s2, valid_np, active, idx, dist, snap,
                    cbufs, hk, wk, patch_size, it, seed, BAND_ROWS, FAR_W, zero)  # fmt: skip
    if query_valid is not None:  # pixels not searched: -1 and inf (whatever init said)
        off = active == 0
        idx[off] = -1
        dist[off] = np.inf
    return (np.ascontiguousarray(idx.transpose(0, 3, 1, 2)),
            np.ascontiguousarray(dist.transpose(0, 3, 1, 2)))  # fmt: skip

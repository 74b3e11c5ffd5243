"""Vectorised PatchMatch in pure PyTorch: runs on any device, nothing to compile.

All searched pixels are updated in parallel from the field of the previous step
(Jacobi style, like the published GPU code), so the work maps onto wide devices:

* Initialisation: k distinct random valid key positions (or ``init``, repaired).
* Propagation ("jump flooding"): for each of the 4 directions and steps 1, 2, 4, 8,
  the k matches of the pixel that far away, shifted back by the step, are
  candidates (16 k candidates).
* Random search: one uniform sample in windows of half-width ``max(Hk, Wk) / 2^i``
  around each of the k current neighbours, until the half-width is below one.
* Merge: current list and candidates are de-duplicated and the k nearest kept.

Distances are computed on channels-last, reflect-padded copies of the inputs with one
row gather per patch offset; searched pixels are processed in chunks so that the
candidate buffers stay under ``MAX_CHUNK_BYTES`` (larger on accelerators:
``ACCEL_CHUNK_BYTES``). Random numbers come from a
counter-based hash of (seed, pixel, step, draw), with the numba backend's global pixel
index ``(b * Hq + y) * Wq + x``: a batch element's field depends on the seed, its index
and its own inputs only (not on the other elements' content, masks or ``init``, nor on
the chunking), and every draw is computed where it is used, on any device. (One
exception: whether patches are cached, ``PATCH_CACHE_BYTES``, depends on the batch's
total size, and the two ways of summing a distance may differ in the last bit.)

For accelerators: the 16 propagation shifts and the random-search radii are each one
batched tensor operation, and nothing in the iteration loop waits for the device (on
the CPU, candidate pairs are compacted with ``nonzero``, a sync that saves work there;
elsewhere every pair is computed and the skipped ones masked: ``COMPACT_PAIRS``). The
set-up syncs once (masked pixel list, valid-key list size, initial duplicate repair).
"""

from __future__ import annotations

import torch

from .distance import pad_reflect, unfold_patches

#: Upper bound for one chunk's candidate feature buffer on the CPU, in bytes.
MAX_CHUNK_BYTES = 64 * 2**20
#: The same on accelerators, where each chunk costs a few dozen kernel launches per
#: step whatever its size (64 MB is ~2,700 pixels of a 1024² map at 64 channels: ~380
#: chunks per propagation step). None: a sixteenth of the device's free memory at the
#: start of the search, between ``MAX_CHUNK_BYTES`` and 1 GiB. Results do not depend
#: on the chunking.
ACCEL_CHUNK_BYTES: int | None = None
#: Whole patches of key and searched query pixels are unfolded once when they fit in
#: this many bytes (one gather of C*p*p values per candidate); otherwise each patch
#: offset is gathered separately (C values per gather, no extra memory).
PATCH_CACHE_BYTES = 1024 * 2**20
#: Compute only the candidate pairs that need it (``nonzero``: a host-device sync per
#: call) or every pair (no sync, more arithmetic); None: compact on the CPU only.
COMPACT_PAIRS: bool | None = None
#: Propagation step lengths (the published code's 1, 2, 4, 8).
STEPS = (1, 2, 4, 8)
_DIRS = ((0, 1), (0, -1), (1, 0), (-1, 0))
#: Hash steps: the initialisation, its duplicate repairs, the fallback, the iterations.
_STEP_INIT, _STEP_REPAIR, _STEP_FALLBACK, _STEP_ITER = 0, 1, 31, 32
_REPAIR_ROUNDS = 16
_M32 = 0xFFFFFFFF
_GOLDEN32 = 0x9E3779B9


def _hash32(h: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit integer hash (Wellons' lowbias32) on int64 values in [0, 2^32).

    Both multipliers are below 2^31, so no int64 product overflows; ``h`` is overwritten.
    """
    h ^= h >> 16
    h.mul_(0x21F0AAAD).bitwise_and_(_M32)
    h ^= h >> 15
    h.mul_(0x735A2D97).bitwise_and_(_M32)
    h ^= h >> 15
    return h


def _hash32_int(h: int) -> int:
    """:func:`_hash32` of a Python int in [0, 2^32)."""
    h ^= h >> 16
    h = (h * 0x21F0AAAD) & _M32
    h ^= h >> 15
    h = (h * 0x735A2D97) & _M32
    return h ^ (h >> 15)


def chunk_budget(device: torch.device) -> int:
    """Bytes of candidate buffers per chunk on ``device``.

    ``MAX_CHUNK_BYTES`` on the CPU, ``ACCEL_CHUNK_BYTES`` (or its free-memory rule)
    elsewhere.
    """
    if device.type == "cpu":
        return MAX_CHUNK_BYTES
    if ACCEL_CHUNK_BYTES is not None:
        return ACCEL_CHUNK_BYTES
    free = None
    if device.type == "cuda":
        try:
            free = torch.cuda.mem_get_info(device)[0]
        except RuntimeError:  # pragma: no cover (a device that cannot say)
            free = None
    if free is None:
        return MAX_CHUNK_BYTES
    return int(min(2**30, max(MAX_CHUNK_BYTES, free // 16)))


def _rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``table[idx]``: the embedding gather, about twice as fast on CPU as indexing."""
    return torch.nn.functional.embedding(idx, table)


class _Problem:
    """Padded inputs, searched pixels and helpers shared by the steps of one search."""

    def __init__(self, query, key, patch_size, query_mask, valid, seed):
        acc = torch.float64 if query.dtype == torch.float64 else torch.float32
        self.device = query.device
        self.p = patch_size
        r = patch_size // 2
        b, c, hq, wq = query.shape
        hk, wk = key.shape[-2:]
        self.b, self.c, self.hq, self.wq, self.hk, self.wk = b, c, hq, wq, hk, wk
        self.wqp, self.wkp = wq + 2 * r, wk + 2 * r
        self.nqp, self.nkp = (hq + 2 * r) * self.wqp, (hk + 2 * r) * self.wkp
        self.qrows = pad_reflect(query.to(acc), r).permute(0, 2, 3, 1).reshape(-1, c)
        self.krows = pad_reflect(key.to(acc), r).permute(0, 2, 3, 1).reshape(-1, c)
        self.acc = acc
        n = hq * wq
        if query_mask is None:
            self.act = torch.arange(b * n, device=self.device)
        else:
            self.act = query_mask.reshape(-1).nonzero().squeeze(1)
        self.ab = torch.div(self.act, n, rounding_mode="floor")
        rem = self.act - self.ab * n
        self.ay = torch.div(rem, wq, rounding_mode="floor")
        self.ax = rem - self.ay * wq
        nk = hk * wk
        if valid is None:
            self.valid = torch.ones(b, nk, dtype=torch.bool, device=self.device)
        else:
            self.valid = valid.reshape(b, nk)
        self.counts = self.valid.sum(1)
        # per-batch sorted list of valid key positions, padded: (B, max count)
        order = torch.argsort((~self.valid).to(torch.int8), dim=1, stable=True)
        self.vlist = order[:, : int(self.counts.max())]
        # per searched pixel, a 32-bit key of (seed, global pixel index): the random
        # streams of a pixel depend on nothing else
        seed &= 2**64 - 1
        skey = _hash32_int(_hash32_int(seed & _M32) ^ (seed >> 32))
        self.pix_key = _hash32(_hash32(self.act & _M32) ^ skey) ^ (self.act >> 32)
        offs = [(dy, dx) for dy in range(patch_size) for dx in range(patch_size)]
        self.q_off = [dy * self.wqp + dx for dy, dx in offs]
        self.k_off = [dy * self.wkp + dx for dy, dx in offs]
        elem = torch.finfo(acc).bits // 8
        self.elem = elem
        d = c * patch_size**2
        self.kpatch = self.qpatch = None
        if (b * nk + self.act.numel()) * d * elem <= PATCH_CACHE_BYTES:
            kp = unfold_patches(key.to(acc), patch_size)  # (B, D, Nk)
            self.kpatch = kp.transpose(1, 2).reshape(b * nk, d)
            qp = unfold_patches(query.to(acc), patch_size).transpose(1, 2).reshape(b * n, d)
            self.qpatch = qp[self.act]
            self.c_eff = d
        else:
            self.c_eff = c
        self.chunk_bytes = chunk_budget(self.device)

    def chunk_size(self, m: int) -> int:
        return max(1, self.chunk_bytes // (m * self.c_eff * self.elem * 2))

    def random_bits(self, sel, step: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Random 32-bit integers (int64 in [0, 2^32)) for searched pixels ``sel``.

        ``sel``: a slice or 1-D long tensor of searched pixels; returns (n, *shape). Entry
        ``[i, j...]`` is a hash of (seed, pixel, ``step``, flat draw number ``j``).
        """
        row = _hash32(self.pix_key[sel] ^ _hash32_int(step))  # (n,)
        m = 1
        for s in shape:
            m *= s
        draw = torch.arange(m, device=self.device).mul_(_GOLDEN32)
        return _hash32((row.unsqueeze(1) + draw).bitwise_and_(_M32)).view(-1, *shape)

    def random_valid(self, sel: torch.Tensor, step: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Uniform valid key positions for searched pixels ``sel`` (1-D long).

        Returns (len(sel), *shape).
        """
        ab = self.ab[sel].view(-1, *([1] * len(shape)))
        cnt = self.counts[ab]
        r = (self.random_bits(sel, step, shape) * cnt) >> 32  # uniform in [0, cnt)
        return self.vlist.reshape(-1)[ab * self.vlist.shape[1] + r]

    def distances(
        self, sel: slice, cand: torch.Tensor, cur: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Patch distances of candidates ``cand`` (n, M) for searched pixels ``sel``.

        Invalid candidates (-1, out of range, masked), candidates already in ``cur``
        (n, k) and repeats of an earlier candidate of the same pixel get ``inf`` without
        being computed: after a few iterations most candidates are such repeats, so
        this skips most of the work.
        """
        n, m = cand.shape
        ab = self.ab[sel]  # sel is a slice: views, no copies
        ok = cand >= 0
        flat = ab.unsqueeze(1) * (self.hk * self.wk) + cand.clamp_min(0)  # (n, M)
        ok &= self.valid.reshape(-1).index_select(0, flat.reshape(-1)).view(n, m)
        if cur is not None:
            ok &= ~(cand.unsqueeze(2) == cur.unsqueeze(1)).any(2)
        # stable: the first occurrence is computed, as _merge's stable sort keeps it
        srt, order = cand.sort(dim=1, stable=True)
        rep = torch.zeros_like(ok)
        rep[:, 1:] = srt[:, 1:] == srt[:, :-1]
        ok &= ~torch.zeros_like(ok).scatter_(1, order, rep)
        out = torch.full((n, m), float("inf"), dtype=self.acc, device=self.device)
        if COMPACT_PAIRS if COMPACT_PAIRS is not None else self.device.type == "cpu":
            # compact the pairs to compute (a host sync, free on the CPU): most are skipped
            pairs = ok.reshape(-1).nonzero().squeeze(1)  # (P,) flat (pixel, candidate)
            if pairs.numel() == 0:
                return out
        else:
            # accelerators: every pair, no data-dependent shape, so no host-device sync
            pairs = torch.arange(n * m, device=self.device)
        rows = torch.div(pairs, m, rounding_mode="floor")
        kpos = flat.reshape(-1).index_select(0, pairs)  # batch-offset key positions
        if self.kpatch is not None:
            qv = _rows(self.qpatch[sel], rows)  # (P, D)
            d = (_rows(self.kpatch, kpos) - qv).square_().sum(-1)
        else:
            nk = self.hk * self.wk
            pb = torch.div(kpos, nk, rounding_mode="floor")
            ky = torch.div(kpos - pb * nk, self.wk, rounding_mode="floor")
            kx = kpos - pb * nk - ky * self.wk
            kbase = pb * self.nkp + ky * self.wkp + kx
            qbase = (ab * self.nqp + self.ay[sel] * self.wqp + self.ax[sel]).index_select(0, rows)
            d = torch.zeros(pairs.numel(), dtype=self.acc, device=self.device)
            for qo, ko in zip(self.q_off, self.k_off):
                qv = _rows(self.qrows, qbase + qo)
                kv = _rows(self.krows, kbase + ko)
                d += (kv - qv).square_().sum(-1)
        out = out.view(-1).index_copy_(0, pairs, d).view(n, m)
        return out.masked_fill_(~ok, float("inf"))


def _merge(idx, dist, cand, cdist, k):
    """Keep the k nearest distinct entries of [idx | cand]; returns sorted (idx, dist)."""
    all_i = torch.cat([idx, cand], 1)
    all_d = torch.cat([dist, cdist], 1)
    order = torch.argsort(all_i, dim=1, stable=True)
    si = all_i.gather(1, order)
    sd = all_d.gather(1, order)
    dup = torch.zeros_like(si, dtype=torch.bool)
    dup[:, 1:] = si[:, 1:] == si[:, :-1]
    drop = dup | (si < 0)
    # dropped entries rank after every kept one: a kept distance may itself be inf (an
    # overflow), so kept ones are ranked at most at the largest finite value and the
    # dropped ones at inf (an inf stand-in alone would tie and let a duplicate in)
    rank = sd.clamp_max(torch.finfo(sd.dtype).max).masked_fill_(drop, float("inf"))
    _, pos = rank.topk(k, dim=1, largest=False, sorted=True)
    return si.gather(1, pos), sd.gather(1, pos).masked_fill_(drop.gather(1, pos), float("inf"))


def _initial(pb: _Problem, k: int, init: torch.Tensor | None) -> torch.Tensor:
    """Initial (Na, k) field of distinct valid positions."""
    na = pb.act.numel()
    nk = pb.hk * pb.wk
    allsel = torch.arange(na, device=pb.device)
    if init is None:
        f = pb.random_valid(allsel, _STEP_INIT, (k,))
        bad = torch.zeros(na, k, dtype=torch.bool, device=pb.device)
    else:
        f = init.permute(0, 2, 3, 1).reshape(-1, k)[pb.act].clone()
        bad = (f < 0) | (f >= nk)
        f = f.clamp(0, nk - 1)
        bad |= ~pb.valid[pb.ab.unsqueeze(1).expand(na, k), f]
    for rnd in range(_REPAIR_ROUNDS):
        srt, order = f.sort(1)
        dup_sorted = torch.zeros_like(bad)
        dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
        dup = torch.zeros_like(bad).scatter_(1, order, dup_sorted)
        bad |= dup
        if not bool(bad.any()):
            return f
        rows = bad.any(1).nonzero().squeeze(1)
        fresh = pb.random_valid(rows, _STEP_REPAIR + rnd, (k,))
        f[rows] = torch.where(bad[rows], fresh, f[rows])
        bad = torch.zeros_like(bad)
    # rare (few valid keys): consecutive entries of the valid list from a random start
    srt, _ = f.sort(1)
    rows = ((srt[:, 1:] == srt[:, :-1]).any(1)).nonzero().squeeze(1)
    if rows.numel():
        cnt = pb.counts[pb.ab[rows]].unsqueeze(1)
        start = (pb.random_bits(rows, _STEP_FALLBACK, (1,)) * cnt) >> 32
        pos = (start + torch.arange(k, device=pb.device)) % cnt
        f[rows] = pb.vlist[pb.ab[rows]].gather(1, pos)
    return f


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
    """Vectorised PatchMatch; see :func:`psal.patchmatch.patchmatch` for the contract."""
    device = query.device
    pb = _Problem(query, key, patch_size, query_mask, valid, seed)
    b, hq, wq, hk, wk = pb.b, pb.hq, pb.wq, pb.hk, pb.wk
    na = pb.act.numel()
    idx = _initial(pb, k, init)
    dist = torch.empty(na, k, dtype=pb.acc, device=device)
    for s in range(0, na, pb.chunk_size(k)):
        sel = slice(s, min(na, s + pb.chunk_size(k)))
        dist[sel] = pb.distances(sel, idx[sel])
    dist, order = dist.sort(1)
    idx = idx.gather(1, order)

    # field over all pixels (-1 where not searched), for neighbour look-ups
    full = torch.full((b * hq * wq, k), -1, dtype=torch.long, device=device)
    levels = []
    w = max(hk, wk)
    while w >= 1:
        levels.append(w)
        w //= 2
    n_prop = len(_DIRS) * len(STEPS) * k
    shifts = [(dy * st, dx * st) for dy, dx in _DIRS for st in STEPS]
    sdy = torch.tensor([s[0] for s in shifts], device=device)
    sdx = torch.tensor([s[1] for s in shifts], device=device)
    n_rand = len(levels) * k
    lev = torch.tensor(levels, device=device).view(1, -1, 1)
    for it in range(iters):
        # --- propagation from the field at the start of the step
        full[pb.act] = idx
        step_c = pb.chunk_size(n_prop)
        new_idx, new_dist = torch.empty_like(idx), torch.empty_like(dist)
        for s in range(0, na, step_c):
            sel = slice(s, min(na, s + step_c))
            ab, ay, ax = pb.ab[sel], pb.ay[sel], pb.ax[sel]
            # all 16 (direction, step) shifts at once: (n, 16, k)
            ny = ay.unsqueeze(1) - sdy  # (n, 16)
            nx = ax.unsqueeze(1) - sdx
            inside = (ny >= 0) & (ny < hq) & (nx >= 0) & (nx < wq)
            src = (ab.unsqueeze(1) * hq + ny.clamp(0, hq - 1)) * wq + nx.clamp(0, wq - 1)
            f = full.index_select(0, src.reshape(-1)).view(-1, sdy.numel(), k)
            fy = torch.div(f, wk, rounding_mode="floor")
            fx = f - fy * wk + sdx.view(1, -1, 1)
            fy = fy + sdy.view(1, -1, 1)
            ok = inside.unsqueeze(2) & (f >= 0)
            ok &= (fy >= 0) & (fy < hk) & (fx >= 0) & (fx < wk)
            cands = [torch.where(ok, fy * wk + fx, -1).reshape(f.shape[0], -1)]
            cand = torch.cat(cands, 1)
            cur = idx[sel]
            new_idx[sel], new_dist[sel] = _merge(
                cur, dist[sel], cand, pb.distances(sel, cand, cur), k
            )
        idx, dist = new_idx, new_dist
        # --- random search around each current neighbour
        step_c = pb.chunk_size(n_rand)
        new_idx, new_dist = torch.empty_like(idx), torch.empty_like(dist)
        for s in range(0, na, step_c):
            sel = slice(s, min(na, s + step_c))
            cur = idx[sel]
            cy = torch.div(cur, wk, rounding_mode="floor")
            cx = cur - cy * wk
            # one sample per level and neighbour at once: (n, L, k)
            lo_y = (cy.unsqueeze(1) - lev).clamp_min(0)
            hi_y = (cy.unsqueeze(1) + lev).clamp_max(hk - 1)
            lo_x = (cx.unsqueeze(1) - lev).clamp_min(0)
            hi_x = (cx.unsqueeze(1) + lev).clamp_max(wk - 1)
            u = pb.random_bits(sel, _STEP_ITER + it, (len(levels), k, 2))
            ry = lo_y + ((u[..., 0] * (hi_y - lo_y + 1)) >> 32)  # uniform in [lo, hi]
            rx = lo_x + ((u[..., 1] * (hi_x - lo_x + 1)) >> 32)
            cands = [(ry * wk + rx).reshape(cur.shape[0], -1)]
            cand = torch.cat(cands, 1)
            new_idx[sel], new_dist[sel] = _merge(
                cur, dist[sel], cand, pb.distances(sel, cand, cur), k
            )
        idx, dist = new_idx, new_dist

    out_i = torch.full((b * hq * wq, k), -1, dtype=torch.long, device=device)
    out_d = torch.full((b * hq * wq, k), float("inf"), dtype=pb.acc, device=device)
    out_i[pb.act] = idx
    out_d[pb.act] = dist
    out_i = out_i.view(b, hq, wq, k).permute(0, 3, 1, 2).contiguous()
    out_d = out_d.view(b, hq, wq, k).permute(0, 3, 1, 2).contiguous()
    return out_i, out_d

"""Exact (brute-force) k-nearest-patch search: the reference backend.

Scores every valid key patch for every searched query pixel with one matrix product
per chunk (``|k|^2 - 2 q.k``; ``|q|^2`` does not change the ranking), keeps a few more
candidates than k, then recomputes their distances directly (no cancellation error)
and sorts. Query pixels are processed in chunks sized so that a chunk's score matrix
stays under ``MAX_CHUNK_BYTES``; memory is O(Nk * C * p^2 + chunk * Nk).

The float32 scores carry a rounding error of up to about ``(C p^2) u (|k|^2 + 2|q||k|)``
(``u = 2^-24``), which can exceed the gaps between the nearest distances (features far
from their mean, near-duplicate patches). So the ranking of each query pixel is
certified: with the (k+8+1)-th score ``s`` and that error bound ``E``, no key left out can
be nearer than the k-th re-scored distance ``d_k`` when ``d_k <= s + |q|^2 - E``. The
pixels where this does not hold are ranked again in float64 (their products of float32
values are exact there, the error about 2^-29 times smaller). Under a reduced float32
matrix-product precision (TF32, bfloat16: ``torch.set_float32_matmul_precision``) every
pixel is ranked in float64.
"""

from __future__ import annotations

import torch

from .distance import unfold_patches

#: Upper bound for one chunk's score matrix and candidate buffer, in bytes.
MAX_CHUNK_BYTES = 256 * 2**20
#: Candidates kept from the matrix-product ranking beyond k, re-scored exactly.
EXTRA_CANDIDATES = 8
#: Unit roundoff of a full-precision float32 matrix product.
_U32 = 2.0**-24


def _center(query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Subtract, per sample and channel, the key value nearest the key's mean from both.

    As :func:`psal.patchmatch.distance.center_pair` (the scores cancel less), but with a
    value of the data instead of the mean, differences of values of few significant bits
    (integers, 8-bit images, values close to it) stay exact, so equal patch distances
    stay equal and ties go to the lowest key index.
    """
    flat = key.flatten(2)
    near = (flat - flat.mean(-1, keepdim=True)).abs().argmin(-1, keepdim=True)
    mu = flat.gather(-1, near).unsqueeze(-1)  # (B, C, 1, 1)
    return query - mu, key - mu


def _float32_gemm_is_exact_rounding(device: torch.device) -> bool:
    """Whether float32 matrix products on ``device`` round like float32 (no TF32/bf16)."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    return not (device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)


def _smallest(scores, top, m):
    """Positions of the ``m`` smallest ``scores`` of each row, ascending (n, m).

    ``top``: ``scores.topk(>= m, largest=False)``. Equal scores at the cut go to the
    lowest positions (``topk`` picks among them arbitrarily), so that, with positions in
    ascending key order, ties are won by the lowest flat key index.
    """
    pos = top.indices[:, :m]
    cut = top.values[:, m - 1 : m]  # the m-th smallest score
    # rows where keys scoring the cut were left out: choose the lowest positions there
    # (not at an infinite cut: invalid keys, never returned)
    tied = (((scores <= cut).sum(1) > m) & torch.isfinite(cut[:, 0])).nonzero().squeeze(1)
    if tied.numel():
        pos = pos.clone()
        rows = max(1, scores.shape[0] // 8)  # memory: the int64 counts of a few rows at once
        for t in tied.split(rows):
            s, c = scores[t], cut[t]
            eq = s == c
            need = m - (s < c).sum(1, keepdim=True)
            keep = (s < c) | (eq & (eq.cumsum(1) <= need))
            pos[t] = keep.nonzero()[:, 1].view(-1, m)
    return pos.sort(dim=1).values


def _rescore(kb, kn, qc, cand, k):
    """Direct distances of candidates ``cand`` (n, m): the k nearest, sorted.

    Equal distances keep the order of ``cand`` (ascending key index: the lowest wins).
    """
    exact = (kb[cand] - qc.unsqueeze(1)).square().sum(-1)  # (n, m)
    exact = exact.masked_fill(~torch.isfinite(kn[cand]), float("inf"))
    best, order = exact.sort(dim=1, stable=True)
    return cand.gather(1, order[:, :k]), best[:, :k]


def _rank64(kb, valid, qc, n_cand, block):
    """The ``n_cand`` best-scoring keys of each row of ``qc``, scored in float64.

    Keys are converted ``block`` at a time, keeping a running top list, so no float64
    copy of all keys is made. Returns (n, n_cand) key indices.
    """
    best_s = best_i = None
    for s in range(0, kb.shape[0], block):
        kblk = kb[s : s + block].double()
        kn = kblk.square().sum(1)
        if valid is not None:
            kn = kn.masked_fill(~valid[s : s + block], float("inf"))
        scores = torch.addmm(kn.unsqueeze(0), qc, kblk.t(), alpha=-2.0)  # (n, block)
        ids = torch.arange(s, s + kblk.shape[0], device=kb.device).expand_as(scores)
        if best_s is not None:
            scores, ids = torch.cat([best_s, scores], 1), torch.cat([best_i, ids], 1)
        m = min(n_cand, scores.shape[1])
        pos = _smallest(scores, scores.topk(m, dim=1, largest=False), m)
        best_s, best_i = scores.gather(1, pos), ids.gather(1, pos)  # ascending ids
    return best_i


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
    """Exhaustive search; see :func:`psal.patchmatch.patchmatch` for the contract.

    ``iters``, ``seed`` and ``init`` are accepted for a uniform interface and unused.
    """
    del iters, seed, init
    acc = torch.float64 if query.dtype == torch.float64 else torch.float32
    dev = query.device
    b, _, hq, wq = query.shape
    nq = hq * wq
    query, key = _center(query.to(acc), key.to(acc))  # the scores cancel less
    qf = unfold_patches(query, patch_size)  # (B, D, Nq)
    kf = unfold_patches(key, patch_size)  # (B, D, Nk)
    d, nk = kf.shape[1], kf.shape[2]
    indices = torch.full((b, k, nq), -1, dtype=torch.long, device=dev)
    dists = torch.full((b, k, nq), float("inf"), dtype=acc, device=dev)
    elem = torch.finfo(acc).bits // 8
    # float32: rank in float32 and certify, or straight in float64 when products round worse
    certify = acc == torch.float32 and _float32_gemm_is_exact_rounding(dev)
    rank64 = acc == torch.float32 and not certify
    gamma = 2 * (d + 2) * _U32  # relative error bound of a float32 score (see module doc)
    n_cand = min(nk, k + EXTRA_CANDIDATES)
    m = min(nk, n_cand + 1) if certify else n_cand  # one more: the best key left out
    rescore_bytes = n_cand * d * elem
    chunk = max(1, MAX_CHUNK_BYTES // max(nk * elem, rescore_bytes))
    # float64 ranking: half the budget for a block of keys, half for the rows' scores
    block = max(1, min(nk, MAX_CHUNK_BYTES // 2 // (d * 8)))
    chunk64 = max(1, MAX_CHUNK_BYTES // 2 // max((block + n_cand) * 8, rescore_bytes))
    for bi in range(b):
        kb = kf[bi].t().contiguous()  # (Nk, D)
        kn = kb.square().sum(1)  # (Nk,)
        vb = None if valid is None else valid[bi].reshape(nk)
        if vb is not None:
            kn = kn.masked_fill(~vb, float("inf"))
        if query_mask is None:
            cols = torch.arange(nq, device=dev)
        else:
            cols = query_mask[bi].reshape(nq).nonzero().squeeze(1)
        # largest |k|^2 of a valid key (an upper bound), for the error bound
        kn_max = float(kn.masked_fill(torch.isinf(kn), 0).max()) * (1 + gamma)
        redo = [cols] if rank64 else []  # query pixels to rank in float64
        for s in range(0, 0 if rank64 else cols.numel(), chunk):
            c = cols[s : s + chunk]
            qc = qf[bi][:, c].t()  # (n, D)
            scores = torch.addmm(kn.unsqueeze(0), qc, kb.t(), alpha=-2.0)  # (n, Nk)
            top = scores.topk(m, dim=1, largest=False)  # sorted
            cand = _smallest(scores, top, n_cand)
            del scores
            cand, best = _rescore(kb, kn, qc, cand, k)
            indices[bi][:, c] = cand.t()
            dists[bi][:, c] = best.t()
            if certify and m > n_cand:
                # a key left out has a true distance >= its score - err + |q|^2
                out_s = top.values[:, n_cand].double()  # the best score left out
                left_invalid = torch.isinf(kn[top.indices[:, n_cand]])
                qn = qc.square().sum(1).double()
                err = gamma * (kn_max + 2 * (qn * (1 + gamma) * kn_max).sqrt())
                dk = best[:, k - 1].double() * (1 + gamma)  # >= the true k-th distance
                # strict: a key left out at exactly d_k may have the lower index
                sure = (dk < out_s + qn * (1 - gamma) - err) | left_invalid
                if not bool(sure.all()):
                    redo.append(c[~sure])
        redo = torch.cat(redo) if redo else cols[:0]
        for s in range(0, redo.numel(), chunk64):
            c = redo[s : s + chunk64]
            qc = qf[bi][:, c].t()
            top = _rank64(kb, vb, qc.double(), n_cand, block)
            cand, best = _rescore(kb, kn, qc, top, k)
            indices[bi][:, c] = cand.t()
            dists[bi][:, c] = best.t()
    return indices.view(b, k, hq, wq), dists.view(b, k, hq, wq)

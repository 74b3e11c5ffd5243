"""Exact (brute-force) k-nearest-patch search: the reference backend.

Scores every valid key patch for every searched query pixel with one matrix product
per chunk (``|k|^2 - 2 q.k``; ``|q|^2`` does not change the ranking), keeps a few more
candidates than k, then recomputes their distances directly (no cancellation error)
and sorts. Query pixels are processed in chunks sized so that a chunk's score matrix
stays under ``MAX_CHUNK_BYTES``; memory is O(Nk * C * p^2 + chunk * Nk).
"""

from __future__ import annotations

import torch

from .distance import center_pair, unfold_patches

#: Upper bound for one chunk's score matrix and candidate buffer, in bytes.
MAX_CHUNK_BYTES = 256 * 2**20
#: Candidates kept from the matrix-product ranking beyond k, re-scored exactly.
EXTRA_CANDIDATES = 8


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
    b, _, hq, wq = query.shape
    nq = hq * wq
    query, key = center_pair(query.to(acc), key.to(acc))  # the scores cancel less
    qf = unfold_patches(query, patch_size)  # (B, D, Nq)
    kf = unfold_patches(key, patch_size)  # (B, D, Nk)
    d, nk = kf.shape[1], kf.shape[2]
    indices = torch.full((b, k, nq), -1, dtype=torch.long, device=query.device)
    dists = torch.full((b, k, nq), float("inf"), dtype=acc, device=query.device)
    elem = torch.finfo(acc).bits // 8
    for bi in range(b):
        kb = kf[bi].t().contiguous()  # (Nk, D)
        kn = kb.square().sum(1)  # (Nk,)
        if valid is not None:
            kn = kn.masked_fill(~valid[bi].reshape(nk), float("inf"))
        n_cand = min(nk, k + EXTRA_CANDIDATES)
        if query_mask is None:
            cols = torch.arange(nq, device=query.device)
        else:
            cols = query_mask[bi].reshape(nq).nonzero().squeeze(1)
        per_col = max(nk, n_cand * d) * elem
        chunk = max(1, MAX_CHUNK_BYTES // per_col)
        for s in range(0, cols.numel(), chunk):
            c = cols[s : s + chunk]
            qc = qf[bi][:, c].t()  # (n, D)
            scores = torch.addmm(kn.unsqueeze(0), qc, kb.t(), alpha=-2.0)  # (n, Nk)
            cand = scores.topk(n_cand, dim=1, largest=False).indices  # (n, n_cand)
            exact = (kb[cand] - qc.unsqueeze(1)).square().sum(-1)  # (n, n_cand)
            exact = exact.masked_fill(~torch.isfinite(kn[cand]), float("inf"))
            best, order = exact.sort(dim=1)
            indices[bi][:, c] = cand.gather(1, order[:, :k]).t()
            dists[bi][:, c] = best[:, :k].t()
    return indices.view(b, k, hq, wq), dists.view(b, k, hq, wq)

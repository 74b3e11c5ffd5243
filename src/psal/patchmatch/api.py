"""``psal.patchmatch``: approximate k-nearest-neighbour search between patches."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._checks import (
    check_finite,
    check_float_tensor,
    check_int,
    check_mask,
    check_not_transformed,
    check_patch_fits,
    check_patch_size,
    check_seed,
    check_tensor,
)
from .._deprecation import warn_deprecated
from .backends import get_backend, resolve_backend
from .distance import valid_key_positions

__all__ = ["PatchMatchResult", "patchmatch"]


class PatchMatchResult(NamedTuple):
    """Result of :func:`patchmatch`.

    Attributes:
        indices: (B, k, Hq, Wq) int64, flat key positions ``y * Wk + x``, nearest first;
            ``-1`` at query pixels where ``query_valid`` is False.
        distances: (B, k, Hq, Wq) patch distances, ascending along dim 1; float32
            (float64 for float64 inputs); ``inf`` at query pixels where ``query_valid``
            is False.
    """

    indices: torch.Tensor
    distances: torch.Tensor


# compiled kernels, no gradient, shape-dependent Python: eager under torch.compile (a
# graph break), which traced it into 'slice start must be int or None, got SymInt' as
# soon as a second input size made the shapes symbolic
@torch.compiler.disable
def patchmatch(
    query: torch.Tensor,
    key: torch.Tensor,
    k: int = 3,
    patch_size: int = 3,
    iters: int = 5,
    *,
    query_valid: torch.Tensor | None = None,
    key_valid: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
    seed: int | None = None,
    backend: str = "auto",
    init: torch.Tensor | None = None,
) -> PatchMatchResult:
    """Find, for every query pixel, its k nearest key patches with PatchMatch.

    The distance between the patch centred at query pixel (y, x) and the key patch
    centred at (ky, kx) is the sum of squared differences over all channels and the
    ``patch_size x patch_size`` window; patches that cross the border are completed by
    reflection (see :mod:`psal.patchmatch.distance`), so every pixel has k real
    neighbours. The search is randomized (Barnes et al. 2009): random initialisation,
    propagation of good matches from neighbouring pixels and random search around the
    current best, repeated ``iters`` times. ``backend="exact"`` searches exhaustively.

    Args:
        query: (B, C, Hq, Wq) float16, bfloat16, float32 or float64.
        key: (B, C, Hk, Wk), same B, C, dtype and device as ``query``; the spatial size
            may differ (cross-matching).
        k: number of distinct neighbours per pixel, >= 1, at most the number of valid
            key patches.
        patch_size: odd patch side, 1 <= patch_size <= every spatial size.
        iters: PatchMatch iterations (ignored by the exact backend), >= 0.
        query_valid: (B, 1, Hq, Wq) bool, True = search this query pixel; only those
            are searched, so the work scales with their number. The others get index -1
            and distance inf. None: every pixel.
        key_valid: (B, 1, Hk, Wk) bool, True = this key pixel may be matched; a key
            patch touching a False pixel (a hole) is never returned. None: every pixel.
        query_mask: deprecated name of ``query_valid`` (same meaning).
        key_mask: deprecated; True = hole, i.e. ``key_valid = ~key_mask``.
        seed: makes the run reproducible on a given backend; None draws one from
            torch's global generator (so ``torch.manual_seed`` also fixes it).
        backend: ``"auto"``, ``"exact"``, ``"numba"`` or ``"torch"`` (see
            :mod:`psal.patchmatch.backends`).
        init: optional (B, k, Hq, Wq) int64 initial neighbour field (for instance a
            field upsampled from a coarser scale). Entries that are out of range,
            invalid under ``key_valid`` or repeated are replaced at random.

    Returns:
        :class:`PatchMatchResult` ``(indices, distances)``, both (B, k, Hq, Wq), on the
        input's device, sorted nearest first. Distances are the exact patch distances of
        the returned neighbours. No gradient flows through the search; use
        :func:`psal.patchmatch.patch_distance` to get differentiable distances.

    Raises:
        TypeError: a non-tensor, an integer dtype, or mismatched dtypes.
        ValueError: wrong dimensions, mismatched batch or channels, a bad patch size, k
            larger than the number of valid key patches, NaN/Inf values, bad masks.

    Example:
        >>> import torch, psal
        >>> img = torch.rand(1, 3, 32, 32)
        >>> res = psal.patchmatch(img, img, k=2, patch_size=3, iters=4, seed=0)
        >>> res.indices.shape, res.distances.shape
        (torch.Size([1, 2, 32, 32]), torch.Size([1, 2, 32, 32]))
    """
    query = check_float_tensor(query, "query", ndim=4)
    key = check_float_tensor(key, "key", ndim=4)
    check_not_transformed("psal.patchmatch", query, key)
    if query.dtype != key.dtype:
        raise TypeError(f"query and key must share a dtype, got {query.dtype} and {key.dtype}")
    if query.device != key.device:
        raise ValueError(f"query is on {query.device} but key is on {key.device}")
    bq, cq, hq, wq = query.shape
    bk, ck, hk, wk = key.shape
    if bq != bk:
        raise ValueError(f"query and key must have the same batch size B, got {bq} and {bk}")
    if cq != ck:
        raise ValueError(f"query and key must have the same channels C, got {cq} and {ck}")
    if bq == 0 or cq == 0:
        raise ValueError(f"query must have B >= 1 and C >= 1, got shape {tuple(query.shape)}")
    k = check_int(k, "k", minimum=1)
    patch_size = check_patch_size(patch_size)
    iters = check_int(iters, "iters", minimum=0)
    check_patch_fits("key", key, patch_size)
    check_patch_fits("query", query, patch_size)
    if seed is not None:
        seed = check_seed(seed)
    name = resolve_backend(backend, query.device)
    device = query.device

    if query_mask is not None:
        if query_valid is not None:
            raise TypeError("patchmatch() got both query_mask (deprecated) and query_valid")
        warn_deprecated("patchmatch(query_mask=...) is deprecated; use query_valid= (same meaning)")
        query_valid, query_name = query_mask, "query_mask"
    else:
        query_name = "query_valid"
    qmask = None
    if query_valid is not None:
        qmask = check_mask(query_valid, query_name, bq, hq, wq, device)
    kmask = None  # True = hole, as the backends take it
    if key_mask is not None:
        if key_valid is not None:
            raise TypeError("patchmatch() got both key_mask (deprecated) and key_valid")
        warn_deprecated("patchmatch(key_mask=...) is deprecated; use key_valid=~key_mask")
        kmask = check_mask(key_mask, "key_mask", bk, hk, wk, device)
    elif key_valid is not None:
        kmask = ~check_mask(key_valid, "key_valid", bk, hk, wk, device)
    if init is not None:
        check_tensor(init, "init", ndim=4)
        if init.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"init must be an int64 tensor, got dtype {init.dtype}")
        if tuple(init.shape) != (bq, k, hq, wq):
            raise ValueError(
                f"init must have shape {(bq, k, hq, wq)} (B, k, Hq, Wq), got {tuple(init.shape)}"
            )
        init = init.to(device=device, dtype=torch.int64)
    check_finite(query, "query")
    check_finite(key, "key")

    valid = valid_key_positions(kmask, patch_size)
    n_valid = (
        torch.full((bq,), hk * wk, dtype=torch.long)
        if valid is None
        else valid.flatten(1).sum(1).cpu()
    )
    for b in range(bq):
        nb = int(n_valid[b])
        if nb == 0:
            raise ValueError(
                f"key_valid leaves no valid key patch in batch element {b}: every "
                f"{patch_size}x{patch_size} key patch touches a pixel where key_valid is False"
            )
        if nb < k:
            raise ValueError(
                f"k={k} is larger than the number of valid key patches ({nb}) in batch element {b}"
            )
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())

    search = get_backend(name)
    with torch.no_grad():
        indices, distances = search(
            query.detach(),
            key.detach(),
            k=k,
            patch_size=patch_size,
            iters=iters,
            query_mask=qmask,
            valid=valid,
            seed=seed,
            init=init,
        )
    if qmask is not None:
        off = ~qmask.expand_as(indices)
        indices = indices.masked_fill(off, -1)
        distances = distances.masked_fill(off, float("inf"))
    return PatchMatchResult(indices, distances)

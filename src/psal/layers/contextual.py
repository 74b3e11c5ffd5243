"""Contextual attention, the attention layer of DeepFill v1 (Yu et al., CVPR 2018).

Every foreground pixel is compared with every background patch (dense attention, so
memory grows with the square of the pixel count), the scores are smoothed along
coherent shifts ("attention propagation"), and background patches are pasted back with
a transposed convolution. The procedure follows the authors' TensorFlow code (tag
v1.0.0) step by step; the few places where psal differs are listed in the docstring of
:func:`contextual_attention`.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import (
    check_finite,
    check_float_tensor,
    check_int,
    check_mask,
    check_patch_size,
    check_positive_float,
    check_same_device,
    check_tensor,
)
from .._deprecation import keyword_only, warn_deprecated

__all__ = ["ContextualAttention", "contextual_attention"]

# Floor of the background patch norm, as in the reference (max(||w||, 1e-4)).
_NORM_EPS = 1e-4

#: Environment variable: the memory (GiB) that the score matrices of one call may take
#: before :func:`contextual_attention` refuses the call (default 8).
MAX_SCORE_GB_ENV = "PSAL_ATTENTION_MAX_GB"
_DEFAULT_MAX_SCORE_GB = 8.0
# float32 score matrices alive at the peak: the scores, the fused copy being built, the
# softmax output and the masked copy of the offsets' argmax
_SCORE_COPIES = 4


def _score_limit_bytes() -> float:
    text = os.environ.get(MAX_SCORE_GB_ENV, "").strip()
    if not text:
        return _DEFAULT_MAX_SCORE_GB * 2**30
    try:
        gb = float(text)
    except ValueError:
        gb = float("nan")
    if not gb > 0 or gb == float("inf"):
        raise ValueError(f"{MAX_SCORE_GB_ENV} must be a number of GiB > 0, got {text!r}")
    return gb * 2**30


def _check_score_memory(bsz: int, n_bg: int, n_fg: int, rate: int, stride: int) -> None:
    """Refuse a call whose dense score matrices would need more than the limit."""
    need = float(bsz) * n_bg * n_fg * 4 * _SCORE_COPIES
    limit = _score_limit_bytes()
    if need > limit:
        raise ValueError(
            f"contextual attention would need about {need / 2**30:.1f} GiB for its score "
            f"matrices ({bsz} x {n_bg} background patches x {n_fg} pixels at rate={rate}, "
            f"stride={stride}), above the limit of {limit / 2**30:.1f} GiB: raise rate or "
            f"stride, attend on a smaller map, or set {MAX_SCORE_GB_ENV}"
        )


def _check_params(
    patch_size: object, stride: object, rate: object, fuse_k: object, softmax_scale: object
) -> tuple[int, int, int, int, float]:
    return (
        check_patch_size(patch_size),
        check_int(stride, "stride", minimum=1),
        check_int(rate, "rate", minimum=1),
        check_int(fuse_k, "fuse_k", minimum=1),
        check_positive_float(softmax_scale, "softmax_scale"),
    )


def _check_fuse(fuse: object) -> bool:
    if not isinstance(fuse, bool):
        raise TypeError(f"fuse must be a bool, got {fuse!r} ({type(fuse).__name__})")
    return fuse


def _fit(x: torch.Tensor, before: int, height: int, width: int) -> torch.Tensor:
    """Zero-pad (or crop) ``x`` by ``before`` on the top and left, then to height x width."""
    h, w = x.shape[-2:]
    return F.pad(x, (before, width - w - before, before, height - h - before))


def _diagonal_fuse(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Convolve each (N, M) score matrix with the k x k identity kernel ('SAME' zero padding).

    ``out[i, j] = sum_{a=0}^{k-1} s[i + a - c, j + a - c]`` with ``c = (k - 1) // 2`` and
    zeros outside the matrix: exactly TensorFlow's ``conv2d(s, eye(k), padding="SAME")``,
    computed as k shifted slices instead of a mostly-zero k x k convolution.
    """
    n, m = scores.shape[-2:]
    c = (k - 1) // 2
    padded = F.pad(scores, (c, k - 1 - c, c, k - 1 - c))
    out = padded[..., 0:n, 0:m]
    for a in range(1, k):
        out = out + padded[..., a : a + n, a : a + m]
    return out


_OPTIONS = ("patch_size", "stride", "rate", "fuse_k", "softmax_scale", "fuse")


def _zeros_and_ones(t: torch.Tensor) -> bool:
    """For the error message only: does an inferred old mask look like one?"""
    if t.device.type == "meta":  # no values to read; the hole check decides later
        return True
    with torch.no_grad():
        return bool(((t == 0) | (t == 1)).all())


def _legacy_call(name: str, args: tuple, kwargs: dict) -> tuple[tuple, dict, bool]:
    """Translate the old spelling ``(foreground, background, mask, *options)``.

    Old calls are recognised by: a keyword ``foreground`` / ``background`` / ``mask``,
    only two positional tensors, a bool or one-channel third positional argument (the
    old mask; a one-channel *value* must then be passed as ``value=``), or options given
    by position. They return ``(output, offsets)`` as before, with a DeprecationWarning.
    The rule reads dtypes and shapes only, never values. In a call that names ``hole``
    or ``return_field`` (keywords the old spelling did not have) a third positional
    tensor is the value, whatever its channels, and a call with two tensors lacks its
    value (a TypeError, not the old spelling's tuple).
    """
    kwargs = dict(kwargs)
    new_style = "hole" in kwargs or "return_field" in kwargs
    legacy = any(n in kwargs for n in ("foreground", "background", "mask"))
    for old, new in (("foreground", "query"), ("background", "key"), ("mask", "hole")):
        if old in kwargs:
            if new in kwargs:
                raise TypeError(f"{name}() got both {old!r} (deprecated) and {new!r}")
            kwargs[new] = kwargs.pop(old)
    args = list(args)
    n_tensors = 2 - ("query" in kwargs) - ("key" in kwargs)
    if "value" not in kwargs and len(args) >= n_tensors:
        given = len(args) > n_tensors
        third = args[n_tensors] if given else None
        key = args[1] if n_tensors == 2 else kwargs.get("key")
        # two tensors and no value: the old (foreground, background) call, unless a
        # keyword of the new spelling says otherwise (then ``value`` is missing)
        if third is None and new_style and not legacy:  # (old keywords: the old call)
            raise TypeError(
                f"{name}() missing its value: call it as (query, key, value, hole=...); "
                "in DeepFill's self-attention the value is the key again"
            )
        old_mask = third is None or (
            not new_style
            and isinstance(third, torch.Tensor)
            and (
                third.dtype == torch.bool
                or (third.dim() == 4 and third.shape[1] == 1 and isinstance(key, torch.Tensor)
                    and key.dim() == 4 and key.shape[1] != 1)
            )
        )  # fmt: skip
        if old_mask:
            legacy = True
            if given:
                if "hole" in kwargs:
                    raise TypeError(f"{name}() got multiple values for 'hole'")
                if third.dtype != torch.bool and not _zeros_and_ones(third):
                    raise TypeError(
                        f"{name}(): a one-channel third argument is read as the old mask "
                        "(deprecated spelling), but it holds values other than 0 and 1; "
                        "pass a one-channel value as value=... (or name hole= or "
                        "return_field=)"
                    )
                kwargs["hole"] = args.pop(n_tensors)
            kwargs["value"] = args[1] if n_tensors == 2 else kwargs.get("key")
    n_fixed = n_tensors + ("value" not in kwargs)
    if len(args) > n_fixed:
        extra, args = args[n_fixed:], args[:n_fixed]
        if len(extra) > len(_OPTIONS):
            raise TypeError(
                f"{name}() takes at most {n_fixed + len(_OPTIONS)} positional arguments"
            )
        legacy = True
        for opt, val in zip(_OPTIONS, extra):
            if opt in kwargs:
                raise TypeError(f"{name}() got multiple values for {opt!r}")
            kwargs[opt] = val
    if legacy:
        warn_deprecated(
            f"{name}(foreground, background, mask, ...) is deprecated; call "
            f"{name}(query, key, value, hole=..., return_field=True) with options by keyword",
            stacklevel=4,
        )
        kwargs.setdefault("return_field", True)
    return tuple(args), kwargs, legacy


def _accept_legacy(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        offset = 1 if fn.__name__ == "forward" else 0  # the module's self
        name = "ContextualAttention.forward" if offset else fn.__name__
        rest, kwargs, _ = _legacy_call(name, args[offset:], kwargs)
        return fn(*args[:offset], *rest, **kwargs)

    return wrapper


@_accept_legacy
def contextual_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    hole: torch.Tensor | None = None,
    patch_size: int = 3,
    stride: int = 1,
    rate: int = 2,
    fuse_k: int = 3,
    softmax_scale: float = 10.0,
    fuse: bool = True,
    return_field: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Contextual attention of DeepFill v1: fill every query pixel with attended key patches.

    In the reference, ``query`` is the *foreground* and ``key`` = ``value`` the
    *background* (the same tensor in DeepFill). psal also accepts a ``value`` with another
    channel count than the key, and a key of another spatial size than the query
    (cross-attention between two images); with ``hole``, query and key must have the same
    size.

    With ``r = rate``, ``s = stride``, ``p = patch_size``, per batch element:

    1. **Downsample** (nearest): ``f[y, x] = foreground[r*y, r*x]``, same for the
       background ``b`` and the mask ``m``; the grid is ``Hd x Wd = ceil(H/r) x ceil(W/r)``.
    2. **Background patches** ``w_l``: the p x p patches of ``b`` (zero padding) centred at
       ``(s*i, s*j)``, ``l = i*Ws + j`` on a ``Hs x Ws = ceil(Hd/s) x ceil(Wd/s)`` grid,
       divided by ``max(||w_l||, 1e-4)``.
    3. **Scores**: ``S[q, l] = <f patch at q, w_l>``, i.e. a convolution of ``f`` with the
       normalised background patches as filters (zero padding). As in the reference, only
       the background side is normalised (cosine similarity up to the foreground patch
       norm, which is constant per pixel).
    4. **Attention propagation** (``fuse=True``): with ``q = y*Wd + x`` and ``l`` row-major,
       ``S`` is seen as an ``(Hd*Wd) x (Hs*Ws)`` image and convolved with a ``fuse_k x
       fuse_k`` identity kernel ('SAME' zero padding), so a score adds those of the
       left/right neighbours shifted alike; then both flat orders are switched to
       column-major (``x*Hd + y``) and the same is done, which adds top/bottom neighbours.
       This is the reference's reshape/transpose procedure, including its behaviour at
       row (column) ends, where the flat index wraps to the next row (column).
    5. **Masked softmax**: ``valid[l]`` is False when background patch l touches the hole
       (see below). ``A[q, l] = softmax_l(softmax_scale * S[q, l] * valid[l]) * valid[l]``:
       invalid scores are set to 0 before the softmax and their weights to 0 after it, as
       in the reference (so the weights of a pixel sum to less than 1 when holes exist).
    6. **Paste**: the raw (full-resolution) ``2r x 2r`` background patch of l, rows
       ``r*s*i - r//2 ... r*s*i - r//2 + 2r - 1`` (zero padding), is added with weight
       ``A[q, l] / 4`` at rows ``r*y - r//2 ...`` of the output (likewise for columns): a
       transposed convolution of stride r. A pixel is covered by 2 x 2 pasted patches,
       hence the 4 (pixels on the image border by fewer, as in the reference).

    Each sample uses its own mask and its own background. The output is computed at every
    pixel, inside the hole and outside it (the DeepFill generator uses it everywhere); paste
    it into the hole yourself if that is what you need.

    A background patch is valid when no hole pixel lies in its p x p matching window of the
    downsampled mask (the reference's rule) **and** none lies in its raw ``2r x 2r`` paste
    window. The second condition is psal's: the reference checks the downsampled mask
    only, which misses hole pixels that the nearest downsampling skips (thin or
    odd-aligned holes), letting hole content leak into the output. With ``rate <= 2``,
    ``patch_size >= 3`` and holes whose every row and column run is at least ``rate``
    pixels long (the box holes of DeepFill, for instance) the two rules agree. With a mask,
    no pixel ever receives content from a hole pixel, and ``offsets`` always point to a
    non-hole pixel. A sample without any valid patch gets an output of 0 and zero offsets.

    Other differences from the reference: the reference downsamples with TensorFlow's
    ``align_corners=True`` nearest resize, whose sample grid is not the stride-r grid of the
    pasted patches; psal samples ``[r*y, r*x]`` so matching and pasting line up. Sizes not
    divisible by ``rate`` work (the reference requires divisible sizes), ``stride > 1``
    works with fusion (the reference crashes), and the offsets are taken as the argmax of
    the masked scores (the reference takes the argmax of the weights, which can pick a hole
    patch when every valid weight underflows to 0).

    Memory: the score matrix has ``Hd*Wd x Hs*Ws`` entries per sample, i.e. grows with the
    square of the pixel count (``(H*W)^2 / (r^4 s^2)``); that is inherent to dense
    attention, and the reason DeepFill applies it on 1/4-resolution features with rate 2.
    A call whose float32 score matrices would take more than 8 GiB (about 4 copies of
    ``B x Hd*Wd x Hs*Ws`` entries at the peak) is refused with a ValueError naming the
    need; the environment variable ``PSAL_ATTENTION_MAX_GB`` changes the limit.

    Precision: the scores, their fusion and the softmax are computed in float32 for
    float16 / bfloat16 inputs (a float16 score times ``softmax_scale`` overflows for
    features of moderate size); the output has the inputs' dtype.

    Args:
        query: (B, C, H, W) float features to fill (the reference's foreground).
        key: (B, C, Hk, Wk) float features matched against (the reference's background);
            same B, C, dtype and device as ``query``. In DeepFill, query = key = value.
        value: (B, Cv, Hk, Wk) features pasted (the reference pastes the background).
            A one-channel value given by position, in a call that names neither
            ``hole=`` nor ``return_field=``, is read as the deprecated spelling's mask
            (``(foreground, background, mask)``; a TypeError if it holds values other
            than 0 and 1): pass it as ``value=``, or name ``hole=``.
        hole: optional (B, 1, H, W) hole mask of the key, bool or float/int holding only
            0 and 1; True / 1 = hole (self-attention: query and key of one size). A
            (1, 1, H, W) mask is used for every sample. None: every key patch is valid.
        patch_size: odd side p of the matching patches (3 in DeepFill).
        stride: step s between background patches on the downsampled grid, >= 1.
        rate: downsampling factor r for matching; pasted patches are ``2r x 2r``, >= 1.
        fuse_k: side of the identity kernel of attention propagation, >= 1.
        softmax_scale: multiplies the scores before the softmax (10 in DeepFill), > 0.
        fuse: apply attention propagation (step 4).
        return_field: also return the neighbour field ``offsets``.

    Returns:
        ``output``, or ``(output, offsets)`` with ``return_field=True``:

        - ``output``: (B, Cv, H, W), same dtype as the inputs; differentiable with respect
          to query, key and value.
        - ``offsets``: (B, 2, H, W) int64, ``(dy, dx)`` at the input resolution from each
          pixel's block ``(r*(y//r), r*(x//r))`` to the centre ``(r*s*i, r*s*j)`` of the
          background patch it attends most (argmax of the masked scores); that patch pastes
          the content of ``(y + dy, x + dx)`` onto ``(y, x)``. With a mask, the block
          corner plus the offset is never a hole pixel. Visualise the offsets with
          :func:`psal.viz.flow_to_color`.

    Raises:
        TypeError: non-tensor inputs, integer dtypes, mismatched dtypes, bad parameter
            types.
        ValueError: wrong dimensions, mismatched shapes or devices, empty inputs, NaN or
            Inf in the inputs, bad mask shape or values, out-of-range parameters, score
            matrices above the memory limit.

    Example:
        >>> import torch
        >>> from psal.layers import contextual_attention
        >>> x = torch.rand(2, 8, 13, 16)              # any size, not only multiples of rate
        >>> hole = torch.zeros(2, 1, 13, 16, dtype=torch.bool)
        >>> hole[0, :, 4:9, 5:11] = True              # each sample has its own hole
        >>> hole[1, :, 0:6, 0:6] = True
        >>> out, offsets = contextual_attention(x, x, x, hole=hole, rate=2, return_field=True)
        >>> out.shape, offsets.shape, offsets.dtype
        (torch.Size([2, 8, 13, 16]), torch.Size([2, 2, 13, 16]), torch.int64)
        >>> ys, xs = torch.meshgrid(torch.arange(13), torch.arange(16), indexing="ij")
        >>> ty = 2 * (ys // 2) + offsets[:, 0]        # attended pixel = block corner + offset
        >>> tx = 2 * (xs // 2) + offsets[:, 1]
        >>> bool(hole[0, 0, ty[0], tx[0]].any() | hole[1, 0, ty[1], tx[1]].any())
        False
    """
    query = check_float_tensor(query, "query", ndim=4)
    key = check_float_tensor(key, "key", ndim=4)
    value = check_float_tensor(value, "value", ndim=4)
    device = check_same_device({"query": query, "key": key, "value": value})
    if not (query.dtype == key.dtype == value.dtype):
        raise TypeError(
            f"query, key and value must share a dtype, got {query.dtype}, {key.dtype} and "
            f"{value.dtype}"
        )
    if query.shape[:2] != key.shape[:2]:
        raise ValueError(
            f"query and key must have the same batch size B and channels C, got shapes "
            f"{tuple(query.shape)} and {tuple(key.shape)}"
        )
    if value.shape[0] != key.shape[0] or value.shape[-2:] != key.shape[-2:]:
        raise ValueError(
            f"value must have the key's batch size and spatial size (B, Cv, Hk, Wk) = "
            f"({key.shape[0]}, Cv, {key.shape[2]}, {key.shape[3]}), got {tuple(value.shape)}"
        )
    for name, t in (("query", query), ("value", value)):
        if t.numel() == 0:
            raise ValueError(f"{name} must have B, C, H, W >= 1, got shape {tuple(t.shape)}")
    p, s, r, fuse_k, softmax_scale = _check_params(patch_size, stride, rate, fuse_k, softmax_scale)
    fuse = _check_fuse(fuse)
    for name, t in (("query", query), ("key", key), ("value", value)):
        check_finite(t, name)
    bsz, c, h, w = query.shape
    hk, wk = key.shape[-2:]
    cv = value.shape[1]
    hd_, wd_ = -(-h // r), -(-w // r)
    hkd_, wkd_ = -(-hk // r), -(-wk // r)
    _check_score_memory(bsz, -(-hkd_ // s) * -(-wkd_ // s), hd_ * wd_, r, s)
    mask = None
    if hole is not None:
        if (hk, wk) != (h, w):
            raise ValueError(
                f"hole is for self-attention: query and key must have the same spatial "
                f"size, got {h}x{w} and {hk}x{wk}"
            )
        m = check_tensor(hole, "hole", ndim=4, layout="(B, 1, H, W)")
        if m.shape[0] == 1 and bsz > 1:
            m = m.expand(bsz, *m.shape[1:])
        mask = check_mask(m, "hole", bsz, h, w, device)

    # 1. Nearest downsampling on the stride-r grid (ceil(H / r) rows).
    f = query[:, :, ::r, ::r]
    b = key[:, :, ::r, ::r]
    hd, wd = f.shape[-2:]
    hs, ws = -(-b.shape[-2] // s), -(-b.shape[-1] // s)
    n_bg = hs * ws

    # 2. Background patches as filters, normalised by max(||w||, 1e-4). sqrt(max(ss, eps^2))
    # has the same value and a finite gradient at all-zero patches (max(sqrt(ss), eps) has
    # 0 * inf = NaN there). The norm is taken in float32 at least: in float16 the sum of
    # squares overflows easily and eps^2 = 1e-8 rounds to 0.
    patches = F.unfold(b, p, padding=p // 2, stride=s)  # (B, C*p*p, L)
    patches = patches.transpose(1, 2).reshape(bsz * n_bg, c, p, p)
    acc = torch.float64 if patches.dtype == torch.float64 else torch.float32
    norm = patches.to(acc).square().sum(dim=(1, 2, 3), keepdim=True)
    norm = norm.clamp_min(_NORM_EPS**2).sqrt()
    patches = patches.to(acc) / norm

    # 3. Scores: one grouped convolution, each sample with its own filters. Layout (B, L, Nf):
    # background patch first, so the softmax runs over dim 1 and the paste needs no copy.
    # Scores, fusion and softmax run in float32 at least: in float16 a score (a sum of C*p*p
    # products) times softmax_scale overflows easily and the softmax turns it into NaN.
    f = f.to(acc).reshape(1, bsz * c, hd, wd)
    scores = F.conv2d(f, patches, padding=p // 2, groups=bsz)
    scores = scores.reshape(bsz, n_bg, hd * wd)

    # 4. Attention propagation: identity-kernel convolution along x, then along y. The
    # diagonal sum treats both axes alike, so it runs on the (L, Nf) transpose of the
    # reference's (Nf, L) matrix unchanged.
    if fuse and fuse_k > 1:
        scores = _diagonal_fuse(scores, fuse_k)
        scores = scores.reshape(bsz, hs, ws, hd, wd).permute(0, 2, 1, 4, 3)
        scores = _diagonal_fuse(scores.reshape(bsz, n_bg, hd * wd), fuse_k)
        scores = scores.reshape(bsz, ws, hs, wd, hd).permute(0, 2, 1, 4, 3)
        scores = scores.reshape(bsz, n_bg, hd * wd)

    # 5. Masked softmax over the background patches.
    valid = None
    if mask is not None:
        hole = mask.to(torch.float32)
        # p x p matching window on the downsampled mask (the reference's rule)
        in_window = F.max_pool2d(hole[:, :, ::r, ::r], p, stride=s, padding=p // 2)
        # 2r x 2r paste window on the full-resolution mask
        in_raw = F.max_pool2d(
            _fit(hole, r // 2, r * s * (hs - 1) + 2 * r, r * s * (ws - 1) + 2 * r),
            2 * r,
            stride=r * s,
        )
        valid = ((in_window == 0) & (in_raw == 0)).reshape(bsz, n_bg, 1)
        keep = valid.to(scores.dtype)
        attn = torch.softmax(scores * (keep * softmax_scale), dim=1) * keep
    else:
        attn = torch.softmax(scores * softmax_scale, dim=1)

    # 6. Paste the raw 2r x 2r value patches: grouped transposed convolution, stride r.
    k2 = 2 * r
    raw = F.unfold(
        _fit(value, r // 2, r * s * (hs - 1) + k2, r * s * (ws - 1) + k2), k2, stride=r * s
    )  # (B, Cv*2r*2r, L)
    raw = raw.transpose(1, 2).reshape(bsz * n_bg, cv, k2, k2)
    out = F.conv_transpose2d(
        attn.to(raw.dtype).reshape(1, bsz * n_bg, hd, wd), raw, stride=r, groups=bsz
    )  # (1, B*C, (Hd+1)*r, (Wd+1)*r)
    out = out.reshape(bsz, cv, out.shape[-2], out.shape[-1])
    out = out[:, :, r // 2 : r // 2 + h, r // 2 : r // 2 + w] / 4.0

    # Offsets of the strongest match, at the input resolution.
    with torch.no_grad():
        best_scores = scores if valid is None else scores.masked_fill(~valid, float("-inf"))
        best = best_scores.argmax(dim=1).reshape(bsz, hd, wd)  # (B, Hd, Wd)
        ys = torch.arange(hd, device=device).view(1, hd, 1)
        xs = torch.arange(wd, device=device).view(1, 1, wd)
        offsets = torch.stack(
            (r * (s * torch.div(best, ws, rounding_mode="floor") - ys), r * (s * (best % ws) - xs)),
            dim=1,
        )
        if valid is not None:
            offsets = offsets * valid.any(dim=1).view(bsz, 1, 1, 1)
        offsets = offsets.repeat_interleave(r, dim=2).repeat_interleave(r, dim=3)[:, :, :h, :w]
    return (out, offsets.contiguous()) if return_field else out


class ContextualAttention(nn.Module):
    """Contextual attention of DeepFill v1 as a module (no parameters).

    ``forward(query, key, value, *, hole=None, return_field=False)`` calls
    :func:`contextual_attention` with the settings given here; see that function for the
    shapes and the formula.

    Args:
        patch_size: odd side of the matching patches.
        stride: step between key patches on the downsampled grid.
        rate: downsampling factor for matching; pasted patches are ``2 * rate`` wide.
        fuse_k: side of the identity kernel of attention propagation.
        softmax_scale: multiplies the scores before the softmax.
        fuse: apply attention propagation.

    Shape:
        - query: (B, C, H, W); key: (B, C, Hk, Wk); value: (B, Cv, Hk, Wk)
        - hole: optional (B, 1, H, W), True = hole (self-attention, Hk x Wk = H x W)
        - output: (B, Cv, H, W); with ``return_field=True`` also offsets (B, 2, H, W)

    Example:
        >>> import torch
        >>> from psal.layers import ContextualAttention
        >>> layer = ContextualAttention(rate=2)
        >>> x = torch.rand(1, 16, 24, 24)
        >>> hole = torch.zeros(1, 1, 24, 24, dtype=torch.bool)
        >>> hole[..., 8:16, 8:16] = True
        >>> out, offsets = layer(x, x, x, hole=hole, return_field=True)
        >>> out.shape, offsets.shape
        (torch.Size([1, 16, 24, 24]), torch.Size([1, 2, 24, 24]))
    """

    @keyword_only(1, _OPTIONS)
    def __init__(
        self,
        *,
        patch_size: int = 3,
        stride: int = 1,
        rate: int = 2,
        fuse_k: int = 3,
        softmax_scale: float = 10.0,
        fuse: bool = True,
    ) -> None:
        super().__init__()
        p, s, r, k, scale = _check_params(patch_size, stride, rate, fuse_k, softmax_scale)
        self.patch_size = p
        self.stride = s
        self.rate = r
        self.fuse_k = k
        self.softmax_scale = scale
        self.fuse = _check_fuse(fuse)

    @_accept_legacy
    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        *,
        hole: torch.Tensor | None = None,
        return_field: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attend; see :func:`contextual_attention`."""
        return contextual_attention(
            query,
            key,
            value,
            hole=hole,
            patch_size=self.patch_size,
            stride=self.stride,
            rate=self.rate,
            fuse_k=self.fuse_k,
            softmax_scale=self.softmax_scale,
            fuse=self.fuse,
            return_field=return_field,
        )

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return (
            f"patch_size={self.patch_size}, stride={self.stride}, rate={self.rate}, "
            f"fuse_k={self.fuse_k}, softmax_scale={self.softmax_scale}, fuse={self.fuse}"
        )

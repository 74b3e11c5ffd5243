"""Image pyramids with holes, hole geometry, and nearest-neighbour field upsampling.

Conventions: level 0 is the full image; level l+1 has size ``ceil(H/2) x ceil(W/2)`` of
level l, and fine pixel (y, x) lies under coarse pixel (y // 2, x // 2). Coarse values
are a normalised (masked) binomial average of the known fine pixels only, so hole
content never leaks into them; a coarse pixel is known when enough of its filter's
weight is known (a quarter by default; inpainting uses a tenth). Requiring all of it
(the hole grows by a pixel per level) leaves too few source patches between thin brush
strokes at coarse scales and, on the benchmark of ``benchmarks/inpaint.py``, cost about
1.5 dB; a tenth makes thin holes vanish sooner (+0.5 dB against a quarter).

Every function takes numpy arrays or torch tensors (one code path, the same bits on the
CPU; see :mod:`psal.utils.arrays`).
"""

from __future__ import annotations

from ..utils.arrays import Array, arange, astype, concat, copy, namespace, nonzero, pad2d
from ..utils.filters import box_sum

#: 1-D binomial filter [1, 3, 3, 1] / 8 of the 2x decimation.
_BINOMIAL = (1.0, 3.0, 3.0, 1.0)


def _decimate(x: Array, axis: int) -> Array:
    """Binomial [1, 3, 3, 1] / 8 filter along ``axis`` (-1 or -2), every other sample.

    ``x`` is padded: ``n`` samples give ``(n - 2) // 2`` outputs.
    """
    n = x.shape[axis]
    o = (n - 2) // 2

    def tap(i: int) -> Array:
        sl = slice(i, i + 2 * o - 1, 2)
        return x[..., sl] if axis == -1 else x[..., sl, :]

    a, b, c, d = _BINOMIAL
    return (tap(0) * a + tap(1) * b + tap(2) * c + tap(3) * d) / 8.0


def downsample(image: Array, hole: Array, known_fraction: float = 0.25) -> tuple[Array, Array]:
    """Halve an image with a hole: masked binomial average of the known pixels.

    Args:
        image: (1, C, H, W) float.
        hole: (1, 1, H, W) bool, True = hole.
        known_fraction: a coarse pixel is known when at least this fraction of its
            4x4 binomial filter's weight inside the image falls on known fine pixels
            (its value is then their weighted average, so it holds real data only).

    Returns:
        ``(image_c, hole_c)`` of size ``ceil(H/2) x ceil(W/2)``. Hole pixels of
        ``image_c`` hold the masked average of whatever known pixels are near (or 0).
    """
    h, w = image.shape[-2:]
    known = astype(~hole, image)
    # pad so that the output is ceil(H/2) x ceil(W/2); zero weights outside the image
    pad = (1, 1 + w % 2, 1, 1 + h % 2)
    # the 4x4 filter is separable: rows, then columns
    num = _decimate(_decimate(pad2d(image * known, pad), -1), -2)
    den = _decimate(_decimate(pad2d(known, pad), -1), -2)
    # the filter's weight inside the image (1 away from the border; 1/4 at the last
    # corner of an odd-sized image): the fraction is of that, as the average is, so a
    # fully known image has no coarse hole whatever its size and ``known_fraction``
    inside = _decimate(_decimate(pad2d(namespace(known).ones_like(known), pad), -1), -2)
    image_c = num / den.clip(1e-12)
    hole_c = den < known_fraction * inside
    return image_c, hole_c


def texture_features(image: Array, hole: Array, window: int = 5) -> Array:
    """Texture features of Newson et al. (2014), from the known pixels only.

    The absolute horizontal and vertical differences of the luma (mean of the channels),
    each averaged over a ``window x window`` square among the pixel pairs that are both
    known, so the hole's content never leaks in (where a window holds no known pair the
    feature is 0; inside the hole it is later filled like the colours).

    Args:
        image: (1, C, H, W) float.
        hole: (1, 1, H, W) bool, True = hole.
        window: odd side of the averaging square.

    Returns:
        (1, 2, H, W): mean |d/dx|, mean |d/dy|.
    """
    lum = image[:, 0:1]
    for i in range(1, image.shape[1]):
        lum = lum + image[:, i : i + 1]
    lum = lum / float(image.shape[1])
    known = astype(~hole, image)
    vx = known[..., :, 1:] * known[..., :, :-1]
    vy = known[..., 1:, :] * known[..., :-1, :]
    dx = abs(lum[..., :, 1:] - lum[..., :, :-1]) * vx
    dy = abs(lum[..., 1:, :] - lum[..., :-1, :]) * vy
    # a difference belongs to its left / upper pixel; the last column / row has none
    num = concat([pad2d(dx, (0, 1, 0, 0)), pad2d(dy, (0, 0, 0, 1))], 1)
    den = concat([pad2d(vx, (0, 1, 0, 0)), pad2d(vy, (0, 0, 0, 1))], 1)
    # the ratio of the window means over the image = the ratio of the window sums
    num, den = box_sum(num, window), box_sum(den, window)
    return namespace(num).where(den > 0, num / den.clip(1e-12), 0.0)


def dilate(mask: Array, radius: int) -> Array:
    """Dilate a (B, 1, H, W) bool mask by a square of half-width ``radius``.

    The same as a ``(2r+1) x (2r+1)`` max filter (tested equal), computed as a window
    count (:func:`psal.utils.filters.box_sum`) inside the mask's bounding box grown by
    ``radius``: the cost follows the mask, not the radius or the image.
    """
    if radius <= 0 or not bool(mask.any()):
        return mask
    any_b = mask.any(0)[None]
    y0, y1, x0, x1 = bbox(any_b, radius)
    crop = mask[..., y0:y1, x0:x1]
    grown = box_sum(crop, 2 * radius + 1) > 0
    out = copy(mask)
    out[..., y0:y1, x0:x1] = grown
    return out


def bbox(mask: Array, margin: int = 0) -> tuple[int, int, int, int]:
    """Bounding box ``(y0, y1, x0, x1)`` (end-exclusive) of a non-empty (1, 1, H, W) mask.

    The box is grown by ``margin`` on each side and clipped to the image.
    """
    h, w = mask.shape[-2:]
    (rows,) = nonzero(mask[0, 0].any(1))
    (cols,) = nonzero(mask[0, 0].any(0))
    y0 = max(int(rows[0]) - margin, 0)
    y1 = min(int(rows[-1]) + 1 + margin, h)
    x0 = max(int(cols[0]) - margin, 0)
    x1 = min(int(cols[-1]) + 1 + margin, w)
    return y0, y1, x0, x1


def hole_radius(hole: Array, limit: int) -> int:
    """Largest chessboard distance from a hole pixel to the nearest known pixel.

    Counted by eroding the hole inside its bounding box; stops at ``limit`` (returns
    ``limit`` when the hole is at least that thick). Pixels outside the image count as
    unknown, so a hole touching the border is as thick as its extent inside.
    """
    if not bool(hole.any()):
        return 0
    y0, y1, x0, x1 = bbox(hole, 1)
    h = hole[..., y0:y1, x0:x1]
    steps = 0
    while steps < limit and bool(h.any()):
        # erosion: a pixel stays hole when no known pixel lies in its 3x3 square (the
        # count is 0 outside the box: the image border is not known)
        h = h & (box_sum(~h, 3) == 0)
        steps += 1
    return steps


def fill_smooth(image: Array, hole: Array) -> Array:
    """Fill a hole from its border inwards with the mean of already-filled neighbours.

    An onion-peel initialisation for the coarsest scale of a pyramid: each pass fills
    the hole pixels that touch filled ones with the average of those (3x3) neighbours.
    Known pixels are unchanged; whatever the hole held (even NaN) is ignored.
    ``image`` (1, C, H, W), ``hole`` (1, 1, H, W) bool.
    """
    out = copy(image)
    if not bool(hole.any()):
        return out
    # only the hole's box grown by one pixel takes part (3x3 neighbours): the work
    # follows the hole, not the image
    y0, y1, x0, x1 = bbox(hole, 1)
    out[..., y0:y1, x0:x1] = _fill_rings(image[..., y0:y1, x0:x1], hole[..., y0:y1, x0:x1])
    return out


def _box3(x: Array) -> Array:
    """Sum over each pixel's 3x3 neighbourhood (zeros outside), as nine shifted adds."""
    h, w = x.shape[-2:]
    p = pad2d(x, (1, 1, 1, 1))
    rows = p[..., :, 0:w] + p[..., :, 1 : w + 1] + p[..., :, 2 : w + 2]
    return rows[..., 0:h, :] + rows[..., 1 : h + 1, :] + rows[..., 2 : h + 2, :]


def _fill_rings(image: Array, hole: Array) -> Array:
    xp = namespace(image)
    out = copy(image)
    filled = astype(~hole, image)
    todo = copy(hole)
    while bool(todo.any()):
        num = _box3(xp.where(filled > 0, out, 0.0))
        den = _box3(filled)
        front = todo & (den > 0)
        if not bool(front.any()):  # pragma: no cover - only if nothing is known at all
            break
        out = xp.where(front, num / den.clip(1e-12), out)
        filled = xp.where(front, 1.0, filled)
        todo = todo & ~front
    return out


def upsample_field(
    indices: Array,
    origin: tuple[int, int],
    coarse_key_hw: tuple[int, int],
    fine_origin: tuple[int, int],
    fine_query_hw: tuple[int, int],
    fine_key_hw: tuple[int, int],
) -> Array:
    """Carry a nearest-neighbour field one level down the pyramid (x2).

    Fields are stored for a query crop whose top-left pixel is ``origin`` in the
    level's image. Fine query pixel (y, x) takes the matches of its coarse parent
    (y // 2, x // 2) and maps each match (cy, cx) to (2 cy + y % 2, 2 cx + x % 2),
    clipped to the fine key. Pixels whose parent lies outside the coarse crop or has
    no match get -1 (the search then draws them at random).

    Args:
        indices: (1, k, hc, wc) coarse field over the crop at ``origin``.
        origin: (oy, ox) of the coarse crop.
        coarse_key_hw: (Hk, Wk) of the coarse key image.
        fine_origin: (oy, ox) of the fine crop.
        fine_query_hw: (h, w) of the fine crop.
        fine_key_hw: (Hk, Wk) of the fine key image.

    Returns:
        (1, k, h, w) int64 fine field.
    """
    xp = namespace(indices)
    hc, wc = indices.shape[-2:]
    h, w = fine_query_hw
    gy = arange(indices, h) + fine_origin[0]
    gx = arange(indices, w) + fine_origin[1]
    py = gy // 2 - origin[0]
    px = gx // 2 - origin[1]
    iny = (py >= 0) & (py < hc)
    inx = (px >= 0) & (px < wc)
    parent = indices[0][:, py.clip(0, hc - 1)][:, :, px.clip(0, wc - 1)]  # (k, h, w)
    ok = (parent >= 0) & iny.reshape(1, h, 1) & inx.reshape(1, 1, w)
    wkc = coarse_key_hw[1]
    cy = parent.clip(0) // wkc
    cx = parent.clip(0) - cy * wkc
    fy = (2 * cy + (gy % 2).reshape(1, h, 1)).clip(0, fine_key_hw[0] - 1)
    fx = (2 * cx + (gx % 2).reshape(1, 1, w)).clip(0, fine_key_hw[1] - 1)
    out = xp.where(ok, fy * fine_key_hw[1] + fx, -1)
    return out[None]


def block_any(mask: Array) -> Array:
    """(1, 1, H, W) bool -> (1, 1, ceil(H/2), ceil(W/2)): any of each 2x2 block."""
    h, w = mask.shape[-2:]
    m = pad2d(mask, (0, w % 2, 0, h % 2))
    return m[..., 0::2, 0::2] | m[..., 0::2, 1::2] | m[..., 1::2, 0::2] | m[..., 1::2, 1::2]

from __future__ import annotations

import torch

from psal.editing._pyramid import bbox, downsample, fill_smooth, hole_radius, upsample_field


def test_downsample_sizes_and_known_values_ignore_the_hole():
    img = torch.rand(1, 3, 9, 12)
    hole = torch.zeros(1, 1, 9, 12, dtype=torch.bool)
    hole[..., 2:5, 3:7] = True
    img_hole = img.clone()
    img_hole[..., 2:5, 3:7] = 1e6  # garbage in the hole must not leak into coarse values
    a, ha = downsample(img, hole)
    b, hb = downsample(img_hole, hole)
    assert a.shape == (1, 3, 5, 6) and ha.shape == (1, 1, 5, 6)
    assert torch.equal(ha, hb)
    torch.testing.assert_close(a[~ha.expand_as(a)], b[~hb.expand_as(b)])
    assert ha.any() and not ha.all()


def test_hole_radius_and_bbox():
    hole = torch.zeros(1, 1, 30, 40, dtype=torch.bool)
    hole[..., 10:20, 5:25] = True  # 10 rows thick: 5 erosions to vanish
    assert hole_radius(hole, 100) == 5
    assert hole_radius(hole, 3) == 3
    assert bbox(hole, 2) == (8, 22, 3, 27)
    border = torch.zeros(1, 1, 30, 40, dtype=torch.bool)
    border[..., :4, :] = True  # touching the border: as thick as its extent
    assert hole_radius(border, 100) == 4


def test_fill_smooth_keeps_known_and_fills_all():
    img = torch.rand(1, 2, 12, 12)
    hole = torch.zeros(1, 1, 12, 12, dtype=torch.bool)
    hole[..., 3:9, 2:10] = True
    out = fill_smooth(img.masked_fill(hole, float("nan")), hole)
    assert torch.isfinite(out).all()
    assert torch.equal(out[~hole.expand_as(out)], img[~hole.expand_as(img)])


def test_upsample_field_maps_parents_to_children():
    # an identity field at the coarse level stays the identity at the fine level
    hc, wc = 6, 8
    ident = torch.arange(hc * wc).view(1, 1, hc, wc)
    fine = upsample_field(ident, (0, 0), (hc, wc), (0, 0), (12, 16), (12, 16))
    assert torch.equal(fine, torch.arange(12 * 16).view(1, 1, 12, 16))
    # crops: the fine crop at (2, 4) under a coarse crop at (1, 2)
    crop = ident[..., 1:4, 2:6]
    fine_c = upsample_field(crop, (1, 2), (hc, wc), (2, 4), (6, 8), (12, 16))
    assert torch.equal(fine_c, torch.arange(12 * 16).view(1, 1, 12, 16)[..., 2:8, 4:12])
    # parents outside the coarse crop give -1
    out = upsample_field(crop, (1, 2), (hc, wc), (0, 0), (4, 4), (12, 16))
    assert (out[..., :2, :] == -1).all()


def test_dilate_equals_the_square_max_filter():
    import torch.nn.functional as F

    from psal.editing._pyramid import dilate

    g = torch.Generator().manual_seed(0)
    for r in (1, 2, 5, 30):
        for shape in ((1, 1, 40, 57), (2, 1, 13, 9), (1, 1, 90, 70)):
            m = torch.rand(shape, generator=g) > 0.99
            m[0, 0, 0, 0] = True  # a pixel on the border
            ref = F.max_pool2d(m.float(), 2 * r + 1, stride=1, padding=r) > 0
            assert torch.equal(dilate(m, r), ref), (r, shape)
    empty = torch.zeros(1, 1, 5, 5, dtype=torch.bool)
    assert torch.equal(dilate(empty, 3), empty)


def test_dilate_is_the_touching_patches_of_the_engine():
    from psal.editing._pyramid import dilate
    from psal.patchmatch.distance import valid_key_positions

    g = torch.Generator().manual_seed(1)
    for p in (3, 5, 7):
        m = torch.rand(1, 1, 23, 31, generator=g) > 0.97
        m[..., 0, 5] = m[..., 22, 30] = True  # holes on the border (reflection)
        assert torch.equal(dilate(m, p // 2), ~valid_key_positions(m, p))


def _texture_reference(img, hole, window):
    """Direct loops: mean |luma difference| over the known pairs in each window."""
    import numpy as np

    lum = img[0].mean(0).double().numpy()
    known = ~hole[0, 0].numpy()
    h, w = lum.shape
    r = window // 2
    out = np.zeros((2, h, w))
    for y in range(h):
        for x in range(w):
            for c, (ey, ex) in enumerate(((0, 1), (1, 0))):
                vals = [
                    abs(lum[v + ey, u + ex] - lum[v, u])
                    for v in range(max(y - r, 0), min(y + r + 1, h - ey))
                    for u in range(max(x - r, 0), min(x + r + 1, w - ex))
                    if known[v, u] and known[v + ey, u + ex]
                ]
                out[c, y, x] = np.mean(vals) if vals else 0.0
    return torch.from_numpy(out)[None]


def test_texture_features_equal_the_direct_loops_and_ignore_the_hole():
    from psal.editing._pyramid import texture_features

    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 11, 13, generator=g, dtype=torch.float64)
    hole = torch.zeros(1, 1, 11, 13, dtype=torch.bool)
    hole[..., 3:7, 4:9] = True
    hole[..., 0, 12] = True
    feats = texture_features(img, hole, 5)
    assert feats.shape == (1, 2, 11, 13)
    torch.testing.assert_close(feats, _texture_reference(img, hole, 5), atol=1e-12, rtol=0)
    garbage = img.clone()
    garbage[hole.expand_as(img)] = 1e6  # the hole's content never leaks in
    assert torch.equal(texture_features(garbage, hole, 5), feats)


def _rings_reference(image, hole):
    """Onion peel over the whole image with 3x3 convolutions."""
    import torch.nn.functional as F

    out, filled, todo = image.clone(), (~hole).to(image.dtype), hole.clone()
    c = image.shape[1]
    ones = torch.ones(c, 1, 3, 3, dtype=image.dtype)
    while bool(todo.any()):
        num = F.conv2d(torch.where(filled > 0, out, 0.0), ones, padding=1, groups=c)
        den = F.conv2d(filled, ones[:1], padding=1)
        front = todo & (den > 0)
        out = torch.where(front, num / den, out)
        filled = torch.where(front, torch.ones_like(filled), filled)
        todo = todo & ~front
    return out


def test_fill_smooth_on_the_hole_box_equals_the_whole_image_rings():
    g = torch.Generator().manual_seed(1)
    img = torch.rand(1, 5, 30, 40, generator=g, dtype=torch.float64)
    hole = torch.zeros(1, 1, 30, 40, dtype=torch.bool)
    hole[..., 8:19, 0:9] = True  # touches the border
    hole[..., 20:25, 30:33] = True
    torch.testing.assert_close(
        fill_smooth(img, hole), _rings_reference(img, hole), atol=1e-12, rtol=0
    )


def _known_weight_fractions(hole):
    """Per coarse pixel, the known fraction of its [1, 3, 3, 1]² weight inside the image,
    written out pixel by pixel (fine pixels 2c - 1 ... 2c + 2 under coarse pixel c)."""
    import numpy as np

    m = hole[0, 0].numpy()
    h, w = m.shape
    taps = {-1: 1.0, 0: 3.0, 1: 3.0, 2: 1.0}
    out = np.zeros(((h + 1) // 2, (w + 1) // 2))
    for cy in range(out.shape[0]):
        for cx in range(out.shape[1]):
            known = inside = 0.0
            for dy, a in taps.items():
                for dx, b in taps.items():
                    y, x = 2 * cy + dy, 2 * cx + dx
                    if 0 <= y < h and 0 <= x < w:
                        inside += a * b
                        known += a * b * (not m[y, x])
            out[cy, cx] = known / inside
    return out


def test_downsample_known_fraction_is_of_the_weight_inside_the_image():
    # the rule of the docs (a coarse pixel is known when that fraction of its filter
    # weight is known) at odd sizes, tiny images and the border, where part of the
    # filter lies outside the image: a fully known image has no coarse hole
    import numpy as np

    g = torch.Generator().manual_seed(5)
    for h, w in ((1, 1), (1, 3), (2, 5), (3, 3), (7, 9), (8, 10), (11, 6)):
        img = torch.rand(1, 2, h, w, generator=g, dtype=torch.float64)
        for fraction in (0.1, 0.25, 0.6, 1.0):
            _, hc = downsample(img, torch.zeros(1, 1, h, w, dtype=torch.bool), fraction)
            assert not hc.any(), (h, w, fraction)
            for _ in range(3):
                hole = torch.rand(1, 1, h, w, generator=g) < 0.4
                _, hc = downsample(img, hole, fraction)
                want = _known_weight_fractions(hole) < fraction
                assert np.array_equal(hc[0, 0].numpy(), want), (h, w, fraction)

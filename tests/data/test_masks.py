import numpy as np
import pytest

from psal.data import Box, MaskGenerator, box_mask, brush_stroke_mask, random_box


def test_rect_mask_inside_box_and_shrunk_within_delta():
    gen = MaskGenerator("rect", image_size=64)  # hole box 32, max_delta 8
    assert gen.hole_size == (32, 32) and gen.max_delta == 8
    for seed in range(30):
        mask, box = gen(np.random.default_rng(seed))
        assert mask.shape == (64, 64) and mask.dtype == bool
        assert (box.height, box.width) == (32, 32)
        ys, xs = np.nonzero(mask)
        # the hole is a rectangle inside the box, each side length shrunk by an even
        # amount of at most max_delta, centred
        assert mask.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        assert ys.min() >= box.top and ys.max() < box.top + 32
        assert xs.min() >= box.left and xs.max() < box.left + 32
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert 32 - 8 <= h <= 32 and 32 - 8 <= w <= 32
        assert ys.min() - box.top == box.top + 32 - 1 - ys.max()


def test_rect_masks_vary_and_repeat_by_seed():
    gen = MaskGenerator("rect", image_size=64)
    a, box_a = gen(np.random.default_rng(1))
    b, box_b = gen(np.random.default_rng(1))
    assert (a == b).all() and box_a == box_b
    masks = [gen(np.random.default_rng(s))[0] for s in range(10)]
    assert len({m.tobytes() for m in masks}) > 5


def test_shrink_covers_its_range():
    box = Box(0, 0, 32, 32)
    sizes = {int(box_mask(np.random.default_rng(s), 64, box, 8).sum(0).max()) for s in range(200)}
    assert sizes == {24, 26, 28, 30, 32}


def test_brush_strokes_are_free_form():
    for seed in range(10):
        mask = brush_stroke_mask(np.random.default_rng(seed), (64, 48))
        assert mask.shape == (64, 48) and mask.dtype == bool
        assert 0 < mask.mean() < 1
    gen = MaskGenerator("free-form", image_size=64)
    mask, box = gen(np.random.default_rng(3))
    assert (box.height, box.width) == (32, 32)
    assert 0 <= box.top <= 32 and 0 <= box.left <= 32
    # free-form masks are not rectangles
    ys, xs = np.nonzero(mask)
    assert mask.sum() < (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)


def test_mixed_draws_both_kinds():
    gen = MaskGenerator("mixed", image_size=64)
    rect = 0
    for s in range(20):
        m, _ = gen(np.random.default_rng(s))
        ys, xs = np.nonzero(m)
        rect += int(m.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
    assert 0 < rect < 20


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        MaskGenerator("circle", 64)
    with pytest.raises(ValueError, match="hole_size"):
        MaskGenerator("rect", 64, hole_size=80)
    with pytest.raises(ValueError, match="box_size"):
        random_box(np.random.default_rng(0), 16, 32)
    with pytest.raises(ValueError, match="max_delta"):
        MaskGenerator("rect", 64, max_delta=-1)


@pytest.mark.parametrize("hole_size", [0, -4, (0, 0)])
def test_a_zero_or_negative_hole_size_is_refused_not_replaced_by_the_default(hole_size):
    # hole_size=0 was taken as "not given" and silently became image_size // 2
    with pytest.raises(ValueError, match="hole_size"):
        MaskGenerator("rect", 64, hole_size=hole_size)
    assert MaskGenerator("rect", 64, hole_size=None).hole_size == (32, 32)

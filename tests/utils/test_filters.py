import numpy as np
import pytest
import torch
import torch.nn.functional as F

from psal.utils.filters import box_sum


@pytest.mark.parametrize("size", [1, 3, 5, 9])
def test_box_sum_matches_pooling(size):
    g = torch.Generator().manual_seed(size)
    x = torch.rand(2, 3, 11, 14, generator=g, dtype=torch.float64)
    ref = F.avg_pool2d(x, size, 1, size // 2, count_include_pad=True) * size * size
    torch.testing.assert_close(box_sum(x, size), ref)
    mask = torch.rand(1, 1, 11, 14, generator=g) > 0.85
    dilated = F.max_pool2d(mask.float(), size, 1, size // 2) > 0
    counts = box_sum(mask, size)
    assert counts.dtype == torch.int64 and torch.equal(counts > 0, dilated)


def test_box_sum_keeps_float32_and_window_larger_than_map():
    x = torch.ones(1, 1, 3, 4)
    out = box_sum(x, 7)  # the window covers the whole map from every pixel
    assert out.dtype == torch.float32 and torch.equal(out, torch.full((1, 1, 3, 4), 12.0))


@pytest.mark.parametrize("size", [0, 2, -3])
def test_box_sum_rejects_even_or_small_sizes(size):
    with pytest.raises(ValueError, match="size must be an odd integer"):
        box_sum(torch.zeros(2, 2), size)


@pytest.mark.parametrize("shape", [(5, 7), (1, 9), (6, 1), (1, 1)])
def test_box_sum_of_a_huge_window_is_the_whole_map_without_padding_to_it(shape):
    # a window of 2 * 10**6 + 1 used to pad the map by 10**6 on each side (4e12 values:
    # an allocation error); each sum is the whole map's
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, *shape, generator=g, dtype=torch.float64)
    big = box_sum(x, 2 * 10**6 + 1)
    torch.testing.assert_close(big, x.sum((-2, -1), keepdim=True).expand_as(x))
    mask = x.numpy() > 0.5
    counts = box_sum(mask, 2 * 10**6 + 1)
    assert counts.dtype == np.int64 and (counts == mask.sum((-2, -1), keepdims=True)).all()


@pytest.mark.parametrize("size", [7, 9, 11, 13])
def test_box_sum_of_a_window_larger_than_one_side(size):
    # cut to the map's height but not its width (5x12 map), or to both
    x = torch.rand(1, 1, 5, 12, generator=torch.Generator().manual_seed(size))
    ref = F.avg_pool2d(x.double(), size, 1, size // 2, count_include_pad=True) * size * size
    torch.testing.assert_close(box_sum(x, size), ref.float())

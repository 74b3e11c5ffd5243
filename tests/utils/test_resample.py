from __future__ import annotations

import itertools

import pytest
import torch

from psal.editing.upscale import resize_array
from psal.utils.resample import interpolate


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_interpolate_equals_the_separable_filter_at_every_size(mode, dtype):
    g = torch.Generator().manual_seed(0)
    for h, w in [(6, 4), (5, 7), (3, 1), (1, 5), (2, 1), (1, 1)]:
        x = torch.rand(2, 3, h, w, generator=g, dtype=dtype)
        for size in itertools.product([1, 2, 3, 5, 8], repeat=2):
            shrink = size[0] < h or size[1] < w
            out = interpolate(x, size, mode=mode, antialias=shrink)
            ref = torch.from_numpy(resize_array(x.numpy(), size, mode))
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=0, msg=f"{(h, w)} -> {size}")


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_one_column_of_constant_rows_is_the_two_column_result(mode):
    # rows constant along x: shrinking the width changes nothing, so the one-column
    # result is either column of the two-column one (a shape torch gets right)
    col = torch.rand(1, 2, 9, 1, generator=torch.Generator().manual_seed(1))
    x = col.expand(1, 2, 9, 6).contiguous()
    one = interpolate(x, (4, 1), mode=mode, antialias=True)
    two = interpolate(x, (4, 2), mode=mode, antialias=True)
    torch.testing.assert_close(one, two[..., :1])
    torch.testing.assert_close(two[..., :1], two[..., 1:])

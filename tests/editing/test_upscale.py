from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from psal.editing import upscale


def _psnr(a, b):
    return 10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_size_and_type(scale):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (21, 23, 3), dtype=np.uint8)
    out = upscale(img, scale, seed=0)
    assert out.shape == (21 * scale, 23 * scale, 3) and out.dtype == np.uint8


def test_modes_kept():
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 255, (20, 24, 4), dtype=np.uint8))
    out = upscale(rgba, 2, seed=0)
    assert out.mode == "RGBA" and out.size == (48, 40)
    gray = upscale(rgba.convert("L"), 3, seed=0)
    assert gray.mode == "L" and gray.size == (72, 60)
    t = torch.rand(1, 20, 24)
    out_t = upscale(t, 2, seed=0)
    assert out_t.shape == (1, 40, 48) and out_t.dtype == torch.float32
    assert 0 <= float(out_t.min()) and float(out_t.max()) <= 1


def test_beats_nearest_neighbour_on_a_photo(photo_u8):
    hr = photo_u8("astronaut", (96, 96))
    lr = np.asarray(Image.fromarray(hr).resize((48, 48), Image.Resampling.BICUBIC))
    out = upscale(lr, 2, seed=0)
    nearest = np.asarray(Image.fromarray(lr).resize((96, 96), Image.Resampling.NEAREST))
    assert _psnr(out, hr) > _psnr(nearest, hr) + 1.0
    # downscaling the result gives the input back closely (back-projection)
    back = np.asarray(Image.fromarray(out).resize((48, 48), Image.Resampling.BICUBIC))
    assert np.abs(back.astype(int) - lr.astype(int)).mean() < 1.5


def test_deterministic_and_bad_scale():
    img = np.random.default_rng(0).integers(0, 255, (24, 24), dtype=np.uint8)
    assert np.array_equal(upscale(img, 2, seed=4), upscale(img, 2, seed=4))
    for bad in (1, 5, 2.5, "2", True):
        with pytest.raises(ValueError, match="scale"):
            upscale(img, bad)
    with pytest.raises(ValueError, match="needs"):
        upscale(img[:6, :6], 2)

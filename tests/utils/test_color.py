"""psal.utils.color against the published BT.601 full-range (JPEG) definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from psal.utils.color import luma, luma_chroma_to_rgb, rgb_to_luma_chroma


def _rgb(seed=0, n=4096):
    """Random colours plus the corners of the RGB cube, as (1, 3, n, 1) float64."""
    g = np.random.default_rng(seed)
    corners = np.array([[r, gg, b] for r in (0, 1) for gg in (0, 1) for b in (0, 1)], float)
    rgb = np.concatenate([g.random((n, 3)), corners])
    return torch.from_numpy(rgb.T.reshape(1, 3, -1, 1).copy())


def test_luma_chroma_is_scikit_images_ypbpr():
    from skimage.color import rgb2ypbpr

    x = _rgb()
    y, c = rgb_to_luma_chroma(x)
    ref = rgb2ypbpr(x[0, :, :, 0].T.numpy()[None])[0]  # (n, 3): Y, Pb, Pr (BT.601)
    np.testing.assert_allclose(y[0, 0, :, 0].numpy(), ref[:, 0], atol=1e-12)
    # skimage's matrix rounds the chroma coefficients to 6 digits
    np.testing.assert_allclose(c[0, :, :, 0].numpy().T, ref[:, 1:], atol=1e-6)


def test_luma_chroma_is_jpegs_ycbcr():
    """Pillow's RGB -> YCbCr is JPEG's (JFIF): Y, Cb + 128, Cr + 128 on 0..255."""
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    arr[0, :8] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                  [255, 255, 0], [0, 255, 255], [255, 0, 255]]  # fmt: skip
    pil = np.asarray(Image.fromarray(arr).convert("YCbCr"), float)
    x = torch.from_numpy(arr.astype(np.float64) / 255).permute(2, 0, 1)[None]
    y, c = rgb_to_luma_chroma(x)
    ours = torch.cat([y * 255, c * 255 + 128], 1)[0].permute(1, 2, 0).numpy()
    d = ours - pil  # Pillow's 8-bit fixed point truncates: d in [0, 1), up to its rounding
    assert d.min() > -0.05 and d.max() < 1.01 and abs(d.mean() - 0.5) < 0.1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_float_numpy_and_torch(dtype):
    x = _rgb(2).to(dtype)
    y, c = rgb_to_luma_chroma(x)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(luma_chroma_to_rgb(y, c), x, atol=tol, rtol=0)
    yn, cn = rgb_to_luma_chroma(x.numpy())
    np.testing.assert_array_equal(yn, y.numpy())
    np.testing.assert_array_equal(luma_chroma_to_rgb(yn, cn), luma_chroma_to_rgb(y, c).numpy())


def test_round_trip_of_every_8_bit_colour_step():
    v = np.arange(0, 256, 3)
    rgb = np.stack(np.meshgrid(v, v, v, indexing="ij"), 0).reshape(1, 3, -1, 1) / 255.0
    x = torch.from_numpy(rgb).float()
    back = luma_chroma_to_rgb(*rgb_to_luma_chroma(x))
    assert torch.equal((back * 255).round(), (x * 255).round())


def test_out_of_gamut_chroma_keeps_luma_and_hue_and_stays_in_the_cube():
    g = torch.Generator().manual_seed(3)
    y = torch.rand(1, 1, 64, 64, generator=g, dtype=torch.float64)
    y[..., 0, :4] = torch.tensor([0.0, 1.0, 1e-9, 1 - 1e-9], dtype=torch.float64)
    c = (torch.rand(1, 2, 64, 64, generator=g, dtype=torch.float64) - 0.5) * 3  # far out
    out = luma_chroma_to_rgb(y, c)
    assert out.min() >= -1e-12 and out.max() <= 1 + 1e-12
    torch.testing.assert_close(luma(out), y, atol=1e-12, rtol=0)
    _, c2 = rgb_to_luma_chroma(out)
    # chroma scaled towards grey by one factor s in [0, 1]: the hue is kept
    s = (c2 * c).sum(1) / (c * c).sum(1)
    assert s.min() >= -1e-9 and s.max() <= 1 + 1e-9
    torch.testing.assert_close(c2, s[:, None] * c, atol=1e-9, rtol=0)
    # in-gamut chroma is left alone
    grey = torch.full((1, 1, 1, 1), 0.5, dtype=torch.float64)
    small = torch.tensor([0.05, -0.03], dtype=torch.float64).view(1, 2, 1, 1)
    torch.testing.assert_close(rgb_to_luma_chroma(luma_chroma_to_rgb(grey, small))[1], small)

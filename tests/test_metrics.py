import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from psal import metrics


def photo(name, size):
    from skimage import data, transform

    im = transform.resize(getattr(data, name)()[..., :3], (size, size), anti_aliasing=True)
    return torch.from_numpy(im).permute(2, 0, 1)[None].float()


@pytest.fixture
def pair():
    x = photo("astronaut", 48)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    return x, y


def _np(t):
    return t[0].permute(1, 2, 0).double().numpy()


def test_l1_l2_values(pair):
    x, y = pair
    assert torch.allclose(metrics.l1(x, y), (x - y).abs().mean().reshape(1))
    assert torch.allclose(metrics.l2(x, y), ((x - y) ** 2).mean().reshape(1))


def test_masked_mean_only_counts_mask():
    x = torch.zeros(2, 3, 8, 8)
    y = torch.zeros(2, 3, 8, 8)
    y[:, :, :4] = 1.0  # differ only in the top half
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[0, :, :4] = True  # image 0: mask = differing half
    mask[1, :, 4:] = True  # image 1: mask = equal half
    out = metrics.l1(x, y, mask=mask)
    assert out.tolist() == [1.0, 0.0]
    assert float(metrics.l1(x, y, mask=mask, reduction="mean")) == 0.5


def test_psnr_matches_skimage(pair):
    x, y = pair
    ours = float(metrics.psnr(x, y))
    ref = peak_signal_noise_ratio(_np(x), _np(y), data_range=1.0)
    assert ours == pytest.approx(ref, abs=1e-3)
    assert float(metrics.psnr(x, x)) == float("inf")


def test_ssim_matches_skimage(pair):
    x, y = pair
    ours = float(metrics.ssim(x.double(), y.double()))
    ref = structural_similarity(
        _np(x),
        _np(y),
        data_range=1.0,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ours == pytest.approx(ref, abs=1e-6)
    assert float(metrics.ssim(x, x)) == pytest.approx(1.0, abs=1e-5)


def test_total_variation_value():
    x = torch.zeros(1, 1, 4, 4)
    x[..., 2:] = 1.0  # one vertical edge: |dx| = 1 on 4 pixels
    assert float(metrics.total_variation(x)) == pytest.approx(4 / 16)


def test_batch_reduction_and_dtype(pair):
    x, y = pair
    xb, yb = torch.cat([x, x]), torch.cat([y, x])
    per = metrics.psnr(xb, yb)
    assert per.shape == (2,)
    assert torch.isinf(per[1])
    assert metrics.l1(xb.half(), yb.half()).dtype == torch.float32


def test_bad_inputs():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        metrics.l1(x, torch.rand(1, 3, 8, 8))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        metrics.l2(x.to(torch.uint8), x)
    with pytest.raises(ValueError, match="window_size"):
        metrics.ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="reduction"):
        metrics.l1(x, x, reduction="sum")
    with pytest.raises(ValueError, match="mask must have shape"):
        metrics.l1(x, x, mask=torch.ones(1, 1, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="data_range"):
        metrics.psnr(x, x, data_range=0)


def test_numpy_agrees_on_masked_psnr(pair):
    x, y = pair
    mask = torch.zeros(1, 1, 48, 48, dtype=torch.bool)
    mask[..., 10:30, 5:40] = True
    ours = float(metrics.psnr(x, y, mask=mask))
    m = mask[0, 0].numpy()
    mse = ((_np(x) - _np(y)) ** 2)[m].mean()
    assert ours == pytest.approx(10 * np.log10(1 / mse), abs=1e-3)


def test_ssim_float32_on_a_bright_flat_image_matches_skimage():
    # float32 images in [0, 255] around 200: blur(x * x) - mu² cancels ~4e4 against ~4e4,
    # and the variance lost to rounding is larger than the true one (SSIM came out 1.0001)
    rng = np.random.default_rng(0)
    a = np.full((20, 20, 3), 200.0, np.float32)
    b = a + (rng.random(a.shape) * 0.01).astype(np.float32)
    c = np.full((20, 20, 3), 70.0, np.float32)  # and two flat images (rounding only)
    for u, v in ((a, b), (a, c)):
        ref = structural_similarity(
            u.astype(np.float64), v.astype(np.float64), data_range=255.0, channel_axis=-1,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )  # fmt: skip
        tu, tv = (torch.from_numpy(t).permute(2, 0, 1)[None] for t in (u, v))
        ours = metrics.ssim(tu, tv, data_range=255.0)
        assert ours.dtype == torch.float32
        assert float(ours) <= 1.0
        assert float(ours) == pytest.approx(ref, abs=1e-6)

"""The tasks' metrics against their definitions, computed here independently (numpy,
scikit-image): Y-PSNR / SSIM with the scale shaved (upscale), chroma PSNR on the 8-bit
scale and colourfulness (colorize), each a mean over images, not over pooled pixels."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from psal.training import format_table
from psal.training.tasks.colorize.task import colorize_metrics, colourfulness
from psal.training.tasks.upscale.task import sr_metrics
from psal.utils.color import rgb_to_luma_chroma


def _y_bt601(rgb8: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr's Y of 0..255 RGB (BT.601, 16..235)."""
    return 16 + (65.481 * rgb8[..., 0] + 128.553 * rgb8[..., 1] + 24.966 * rgb8[..., 2]) / 255


@pytest.mark.parametrize("scale", [2, 3])
def test_sr_metrics_are_the_literatures(scale):
    hr = torch.from_numpy(data.astronaut()[100:164, 180:260]).permute(2, 0, 1)[None].double() / 255
    noise = np.random.default_rng(scale).normal(0, 0.04, hr.shape)
    out = (hr + torch.from_numpy(noise)).clamp(0, 1)
    got = sr_metrics(out, hr, scale)
    o8 = np.round(out[0].permute(1, 2, 0).numpy() * 255)  # the output as an 8-bit file
    h8 = hr[0].permute(1, 2, 0).numpy() * 255
    s = scale
    yo, yh = _y_bt601(o8)[s:-s, s:-s], _y_bt601(h8)[s:-s, s:-s]
    assert got["y_psnr"] == pytest.approx(peak_signal_noise_ratio(yh, yo, data_range=255))
    ssim = structural_similarity(yh, yo, data_range=255, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)  # fmt: skip
    assert got["y_ssim"] == pytest.approx(ssim, abs=1e-9)
    rgb = peak_signal_noise_ratio(h8[s:-s, s:-s], o8[s:-s, s:-s], data_range=255)
    assert got["rgb_psnr"] == pytest.approx(rgb)
    # the shave matters: an error on the border only leaves the scores perfect
    border = hr.clone()
    border[..., :s, :] = 0
    assert sr_metrics(border, hr, s)["y_psnr"] == float("inf")


def test_colourfulness_of_hasler_and_suesstrunk():
    rgb = np.stack([data.astronaut()[:400], data.coffee()[:, :512]]).astype(np.float64)
    got = colourfulness(torch.from_numpy(rgb).permute(0, 3, 1, 2) / 255)
    for i, x in enumerate(rgb):
        rg = x[..., 0] - x[..., 1]
        yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
        m = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
        assert float(got[i]) == pytest.approx(m)


def test_colorize_metrics_mean_over_pairs_of_8_bit_chroma_psnr():
    rng = np.random.default_rng(0)
    items = []
    for scale in (0.01, 0.1):  # one good pair, one bad: a per-pair mean, not pooled
        rgb = torch.from_numpy(rng.random((1, 3, 16, 16)))
        y, c = rgb_to_luma_chroma(rgb)
        items.append({"y": y[0], "chroma": c[0], "reference": rgb[0],
                      "noise": torch.from_numpy(rng.normal(0, scale, c.shape[1:]))})  # fmt: skip

    def model(y, ref):
        return SimpleNamespace(chroma=rgb_to_luma_chroma(ref)[1] + noise[: y.shape[0]])

    noise = torch.stack([it["noise"] for it in items])
    out = colorize_metrics(model, items, "cpu", batch_size=2)
    expected = []
    for it in items:
        truth = it["chroma"].numpy() * 255
        pred = (it["chroma"] + it["noise"]).numpy() * 255
        expected.append(peak_signal_noise_ratio(truth, pred, data_range=255))
    assert out["chroma_psnr"] == pytest.approx(np.mean(expected))
    pooled = peak_signal_noise_ratio(
        np.concatenate([it["chroma"].numpy() for it in items]) * 255,
        np.concatenate([(it["chroma"] + it["noise"]).numpy() for it in items]) * 255,
        data_range=255,
    )
    assert abs(out["chroma_psnr"] - pooled) > 1  # the two means differ: it is not pooled
    assert out["pairs"] == 2 and isinstance(out["pairs"], int)
    table = format_table({"run": out}).splitlines()
    assert table[0].split()[-1] == "pairs" and table[2].split()[-1] == "2"  # not 2.0000

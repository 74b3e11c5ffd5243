from __future__ import annotations

import importlib
import itertools
import math

import numpy as np
import pytest
import torch
from PIL import Image

import psal
from psal.editing import upscale
from psal.editing._xscale import _xvote_torch, cross_scale_vote

up_mod = importlib.import_module("psal.editing.upscale")  # the module, not the function


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
        upscale(img[:6, :6], 2, patch_size=7)


@pytest.mark.parametrize("scale", [np.int64(3), np.int32(2), np.uint8(4), 2.0, np.float64(3.0)])
def test_numpy_and_integral_scales_accepted(scale):
    # patch_size=np.int64(3) was accepted while scale=np.int64(3) was refused (issue 15)
    img = np.random.default_rng(0).integers(0, 255, (12, 14), dtype=np.uint8)
    out = upscale(img, scale, patch_size=np.int64(3), seed=0)
    assert out.shape == (12 * int(scale), 14 * int(scale))


def _brute_xvote(value, idx, dist, s, r, wd, t):
    """The definition, one output pixel at a time (tiny inputs only)."""
    _, c, h, w = value.shape
    out = torch.zeros(1, c, s * h, s * w, dtype=torch.float64)

    def refl(i, n):
        i = -i if i < 0 else i
        return 2 * (n - 1) - i if i >= n else i

    for yy in range(s * h):
        for xx in range(s * w):
            num, den = torch.zeros(c, dtype=torch.float64), 0.0
            for yp in range(yy // s - r, yy // s + r + 1):
                for xp in range(xx // s - r, xx // s + r + 1):
                    if not (0 <= yp < h and 0 <= xp < w):
                        continue
                    for j in range(idx.shape[1]):
                        u, v = divmod(int(idx[0, j, yp, xp]), wd)
                        py, px = refl(s * u + yy - s * yp, h), refl(s * v + xx - s * xp, w)
                        e = 1.0 if t == float("inf") else math.exp(-float(dist[0, j, yp, xp]) / t)
                        num += e * value[0, :, py, px].double()
                        den += e
            out[0, :, yy, xx] = num / den
    return out


@pytest.mark.parametrize("temperature", [float("inf"), 0.3])
def test_cross_scale_vote_kernel_and_torch_match_the_definition(temperature):
    g = torch.Generator().manual_seed(0)
    h, w, s, p = 9, 11, 2, 3
    hd, wd = 5, 6
    value = torch.rand(1, 2, h, w, generator=g)
    idx = torch.randint(0, hd * wd, (1, 3, h, w), generator=g)
    dist = torch.rand(1, 3, h, w, generator=g)
    ref = _brute_xvote(value, idx, dist, s, p // 2, wd, temperature)
    fast = cross_scale_vote(value, idx, dist, s, p, wd, temperature)
    vec = _xvote_torch(value, idx, dist, s, p // 2, wd, temperature)
    assert fast.shape == (1, 2, s * h, s * w)
    torch.testing.assert_close(fast.double(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vec.double(), ref, atol=1e-5, rtol=1e-5)


def test_beats_bicubic_on_a_photo(photo_u8):
    hr = photo_u8("astronaut", (128, 128))
    lr = np.asarray(Image.fromarray(hr).resize((64, 64), Image.Resampling.BICUBIC))
    bic = np.asarray(Image.fromarray(lr).resize((128, 128), Image.Resampling.BICUBIC))
    out = upscale(lr, 2, seed=0)
    assert _psnr(out[2:-2, 2:-2], hr[2:-2, 2:-2]) > _psnr(bic[2:-2, 2:-2], hr[2:-2, 2:-2]) + 0.5


def test_tiles_bound_the_work_and_leave_no_seam(photo_u8, monkeypatch):
    """Memory follows a tile: no step ever sees more than a tile plus its margins."""
    hr = photo_u8("astronaut", (120, 200))
    seen = []
    whole = up_mod._upscale_whole

    def spy(x, *args):
        seen.append(tuple(x.shape[-2:]))
        return whole(x, *args)

    monkeypatch.setattr(up_mod, "_upscale_whole", spy)
    tiled = upscale(hr, 2, tile=48, seed=0)
    m = up_mod.TILE_MARGIN
    assert len(seen) == 3 * 5 and max(a * b for a, b in seen) <= (40 + 2 * m) * (40 + 2 * m)
    seen.clear()
    full = upscale(hr, 2, tile=1000, seed=0)
    assert seen == [(120, 200)]
    # the tiled result is as good as the whole one, and no column/row of tile cuts
    # stands out: the step across a cut is like the steps elsewhere
    assert _psnr(tiled, full) > 38
    g = np.abs(np.diff(tiled.astype(float).mean(-1), axis=1)).mean(0)
    g_full = np.abs(np.diff(full.astype(float).mean(-1), axis=1)).mean(0)
    for cut in (80, 160, 240, 320):  # output columns where tiles meet (x2)
        assert g[cut - 1] < 1.5 * g_full[cut - 1] + 1.0


def test_a_long_thin_image_runs_in_tiles(monkeypatch):
    # a 32 x 4456472 TIFF drove upscale to 6 GB (issue 15): work follows the tile
    seen = []
    whole = up_mod._upscale_whole

    def spy(x, *args):
        seen.append(x.shape[-1])
        return whole(x, *args)

    monkeypatch.setattr(up_mod, "_upscale_whole", spy)
    img = np.random.default_rng(0).integers(0, 255, (8, 1600), dtype=np.uint8)
    out = upscale(img, 4, seed=0)  # automatic tiles: 1536 // 4 = 384 input pixels
    assert out.shape == (32, 6400) and out.dtype == np.uint8
    assert len(seen) == 5 and max(seen) <= 1600 // 5 + 2 * up_mod.TILE_MARGIN


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resize_array_equals_torch_interpolate(dtype):
    # the numpy path's resampling is torch's bicubic (antialiased when shrinking)
    import torch.nn.functional as F

    from psal.editing.upscale import resize_array

    rng = np.random.default_rng(0)
    cases = [((20, 30), (40, 60)), ((40, 60), (20, 30)), ((37, 51), (12, 17)),
             ((13, 9), (26, 18)), ((13, 9), (13, 4)), ((100, 80), (33, 27)),
             ((9, 9), (27, 27)), ((50, 40), (100, 20)), ((3, 3), (9, 9)), ((9, 9), (3, 3))]  # fmt: skip
    for (h, w), size in cases:
        x = rng.random((2, 3, h, w)).astype(dtype)
        shrink = size[0] < h or size[1] < w
        want = F.interpolate(torch.from_numpy(x), size=size, mode="bicubic",
                             align_corners=False, antialias=shrink).numpy()  # fmt: skip
        got = resize_array(x, size)
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-12 if dtype == np.float64 else 2e-6, rtol=0)


@pytest.mark.parametrize("kind", ["uint8", "float"])
def test_numpy_images_and_cpu_tensors_give_the_same_result(kind):
    # both run the compiled CPU path on numpy arrays, tile by tile
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (30, 41, 3), dtype=np.uint8)
    if kind == "float":
        img = img.astype(np.float32) / 255
    got = psal.upscale(img, 2, seed=3, tile=16)
    ten = torch.from_numpy(np.asarray(img, dtype=np.float32) / (255 if kind == "uint8" else 1))
    want = psal.upscale(ten.permute(2, 0, 1), 2, seed=3, tile=16)
    assert got.shape == (60, 82, 3)
    want = want.permute(1, 2, 0).numpy()
    if kind == "uint8":
        want = np.clip(np.rint(want * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(got, want)


def test_upscale_on_numpy_and_its_command_import_no_torch(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    img = np.random.default_rng(0).integers(0, 255, (24, 30, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    out = tmp_path / "out.png"
    code = (
        "import sys, numpy as np, psal\nfrom psal.cli import main\n"
        "img = np.random.default_rng(0).integers(0, 255, (24, 30, 3), dtype=np.uint8)\n"
        "shape = psal.upscale(img, 2, seed=0).shape\n"
        f"status = main(['upscale', {str(tmp_path / 'a.png')!r}, '--scale', '2', '-o', "
        f"{str(out)!r}, '-q'])\n"
        "print(shape, status, 'torch' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)  # fmt: skip
    assert res.stdout.strip().splitlines()[-1] == "(48, 60, 3) 0 False"
    np.testing.assert_array_equal(np.asarray(Image.open(out)), psal.upscale(img, 2, seed=0))


def test_resize_taps_never_read_past_the_input():
    # the compiled kernels read every tap of a window: each must lie inside the input
    # (a window past the end met uninitialised memory: 0 * NaN gave NaN outputs)
    from psal.editing.upscale import _resize_taps

    for n_in in range(1, 40):
        for n_out in range(1, 90):
            for aa, mode in itertools.product((False, True), ("bicubic", "bilinear")):
                first, w = _resize_taps(n_in, n_out, aa, mode)
                assert (first >= 0).all() and (first + w.shape[1] <= n_in).all()
                np.testing.assert_allclose(
                    w.sum(1), 1.0, atol=1e-6 if mode == "bilinear" else 1e-12
                )


def test_cross_scale_vote_keeps_float32_weights_exact_for_large_distances():
    """Distances ~1e6 that differ by sixteenths, T = 0.01: both paths formed -d / T in
    float32 (steps of 8) and were off the float64 vote by up to 5e-3; now 2e-7."""
    xs = importlib.import_module("psal.editing._xscale")
    rng = np.random.default_rng(0)
    value = torch.from_numpy(rng.random((1, 3, 12, 10))).float()
    idx = torch.from_numpy(rng.integers(0, 6 * 5, (1, 3, 12, 10)))
    dist = (1e6 + torch.from_numpy(rng.integers(0, 3, (1, 3, 12, 10))) / 16.0).float()
    ref = xs._xvote_torch(value.double(), idx, dist.double(), 2, 1, 5, 0.01)
    fast = xs.cross_scale_vote_arrays(value.numpy(), idx.numpy(), dist.numpy(), 2, 3, 5, 0.01)
    for out in (xs._xvote_torch(value, idx, dist, 2, 1, 5, 0.01), torch.from_numpy(fast)):
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model", [None, "edsr-x2"])
def test_progress_must_be_a_callable(model):
    img = np.zeros((12, 12, 3), np.uint8)
    with pytest.raises(TypeError, match=r"progress must be a callable .* or None, got 3"):
        upscale(img, 2, model=model, progress=3)


def _cutout(h=48, w=48, hidden=0):
    """A yellow disc with a 1.5-pixel soft edge on a transparent background whose
    (invisible) colour is ``hidden``."""
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    alpha = np.clip((h / 3 - r) * 255 / 1.5, 0, 255).astype(np.uint8)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:] = hidden
    rgb[alpha > 0] = (250, 220, 40)
    return np.dstack([rgb, alpha])


@pytest.mark.parametrize("scale", [2, 3])
def test_transparent_colour_does_not_bleed_into_the_outline(scale):
    # The colour under fully transparent pixels is invisible; enlarging the colour
    # channels on their own mixed it into the visible edge: a black fringe around a
    # yellow cut-out (min visible R was 0 at x2). Premultiplied, the visible result
    # does not depend on it, and no visible pixel is darker than the disc.
    outs = [upscale(_cutout(hidden=v), scale, seed=0).astype(float) for v in (0, 255)]
    for out in outs:
        visible = out[..., 3] >= 8
        assert out[visible][:, :3].min(0).tolist() == [250.0, 220.0, 40.0]

    def over_gray(x):
        a = x[..., 3:] / 255
        return x[..., :3] * a + 128 * (1 - a)

    assert np.abs(over_gray(outs[0]) - over_gray(outs[1])).max() <= 1.0
    # the same alpha either way, and the hidden colour stays where nothing shows
    assert np.array_equal(outs[0][..., 3], outs[1][..., 3])
    assert (outs[1][:10, :10] == [255, 255, 255, 0]).all()


def test_opaque_alpha_changes_nothing():
    # an RGBA image that is opaque everywhere is enlarged exactly as its RGB
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (20, 22, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, np.full((20, 22), 255, np.uint8)])
    assert np.array_equal(upscale(rgba, 2, seed=3)[..., :3], upscale(rgb, 2, seed=3))


def test_transparent_tensor_path_matches_numpy():
    img = _cutout(24, 24)
    a = upscale(img, 2, seed=0)
    t = upscale(torch.from_numpy(img).permute(2, 0, 1).float() / 255, 2, seed=0, backend="torch")
    t8 = (t.permute(1, 2, 0).numpy() * 255).round()
    assert t8.shape == a.shape
    visible = a[..., 3] >= 8
    assert t8[visible][:, :3].min(0).tolist() == [250.0, 220.0, 40.0]

"""Inpainting on numpy arrays (no torch) agrees with the tensor path, bit for bit.

The CPU fill of numpy and PIL images runs on numpy arrays with the compiled kernels;
tensors take the same code on tensors (:mod:`psal.utils.arrays`). Every helper is checked
on both kinds, then whole fills, then that neither ``psal.inpaint`` nor ``psal inpaint``
imports torch.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import psal
from psal.editing import _poisson, _pyramid
from psal.editing._temperature import wexler_temperature
from psal.utils.filters import box_sum


def _pair(x: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    return x, torch.from_numpy(x.copy())


def _same(a, b) -> None:
    b = b.numpy() if isinstance(b, torch.Tensor) else b
    assert isinstance(a, np.ndarray), type(a)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=True)


@pytest.fixture
def scene():
    rng = np.random.default_rng(0)
    img = rng.random((1, 3, 37, 42), dtype=np.float32)
    hole = np.zeros((1, 1, 37, 42), bool)
    hole[..., 9:20, 12:25] = True
    hole[..., 30:, :5] = True  # touching the border
    return img, hole


def test_pyramid_helpers_agree(scene):
    img, hole = scene
    (a, ta), (h, th) = _pair(img), _pair(hole)
    for x, y in zip(_pyramid.downsample(a, h, 0.1), _pyramid.downsample(ta, th, 0.1)):
        _same(x, y)
    _same(_pyramid.texture_features(a, h, 5), _pyramid.texture_features(ta, th, 5))
    _same(_pyramid.dilate(h, 3), _pyramid.dilate(th, 3))
    _same(_pyramid.fill_smooth(a, h), _pyramid.fill_smooth(ta, th))
    _same(_pyramid.block_any(h), _pyramid.block_any(th))
    assert _pyramid.bbox(h, 2) == _pyramid.bbox(th, 2)
    assert _pyramid.hole_radius(h, 10) == _pyramid.hole_radius(th, 10) == 6
    _same(box_sum(a, 5), box_sum(ta, 5))
    _same(box_sum(h, 7), box_sum(th, 7))
    field = np.random.default_rng(1).integers(-1, 19 * 21, (1, 2, 12, 14))
    _same(_pyramid.upsample_field(field, (3, 4), (19, 21), (5, 7), (20, 25), (37, 42)),
          _pyramid.upsample_field(torch.from_numpy(field), (3, 4), (19, 21), (5, 7), (20, 25),
                                  (37, 42)))  # fmt: skip


def test_downsample_equals_the_binomial_convolution(scene):
    """The separable decimation is the 4x4 binomial filter with stride 2."""
    img, hole = scene
    known = torch.from_numpy(~hole).double()
    x = torch.from_numpy(img).double()
    k1 = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    k2 = (torch.outer(k1, k1) / 64).expand(1, 1, 4, 4)
    h, w = img.shape[-2:]
    pad = (1, 1 + w % 2, 1, 1 + h % 2)
    num = torch.cat([F.conv2d(F.pad(x[:, c : c + 1] * known, pad), k2, stride=2)
                     for c in range(3)], 1)  # fmt: skip
    den = F.conv2d(F.pad(known, pad), k2, stride=2)
    got, got_hole = _pyramid.downsample(x.numpy(), hole, 0.25)
    np.testing.assert_allclose(got, (num / den.clamp_min(1e-12)).numpy(), rtol=1e-12)
    assert np.array_equal(got_hole, (den < 0.25).numpy())


def test_block_any_equals_the_ceil_max_pool():
    rng = np.random.default_rng(2)
    for h, w in ((7, 9), (8, 10), (5, 4)):
        m = rng.random((1, 1, h, w)) > 0.8
        ref = F.max_pool2d(torch.from_numpy(m).float(), 2, ceil_mode=True) > 0
        assert np.array_equal(_pyramid.block_any(m), ref.numpy())


def test_temperature_and_poisson_agree(scene):
    img, hole = scene
    d = np.random.default_rng(3).random((1, 2, 20, 20)).astype(np.float32)
    d[0, 0, :2] = np.inf
    where = np.zeros((1, 1, 20, 20), bool)
    where[..., 3:9, :] = True
    assert wexler_temperature(d, where) == wexler_temperature(
        torch.from_numpy(d), torch.from_numpy(where)
    )
    dt = torch.from_numpy(d)
    ref = torch.quantile(dt[:, :1][torch.isfinite(dt[:, :1])], 0.75)
    assert wexler_temperature(dt) == pytest.approx(2 * float(ref), rel=1e-6)
    ys, xs = (c.astype(np.int64) for c in np.nonzero(hole[0, 0]))
    sy, sx = np.clip(ys - 3, 0, 36), np.clip(xs + 9, 0, 41)
    args = [np.ascontiguousarray(v) for v in (ys, xs, sy, sx)]
    a = _poisson.poisson_fill(img, hole, *args)
    b = _poisson.poisson_fill(torch.from_numpy(img), torch.from_numpy(hole),
                              *[torch.from_numpy(v) for v in args])  # fmt: skip
    _same(a, b)


def _photo(h=96, w=120):
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100 : 100 + h, 150 : 150 + w])


def _mask(h=96, w=120):
    m = np.zeros((h, w), bool)
    m[30:55, 40:75] = True
    m[80:84, 10:110] = True  # a stroke
    return m


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"vote": "mean", "temperature": None, "k": 2},
        {"texture_weight": 0, "gradient_domain": False, "patch_size": 5},
        {"source_mask": "left"},
    ],
)
def test_numpy_fill_equals_the_tensor_fill(kw):
    img, m = _photo(), _mask()
    kw = dict(kw)
    if kw.get("source_mask") == "left":
        src = np.zeros_like(m)
        src[:, :90] = True
        kw["source_mask"] = src
    out = psal.inpaint(img, m, seed=3, **kw)
    if "source_mask" in kw:
        kw["source_mask"] = torch.from_numpy(kw["source_mask"])
    ref = psal.inpaint(torch.from_numpy(img).permute(2, 0, 1), torch.from_numpy(m), seed=3, **kw)
    _same(out, ref.permute(1, 2, 0).contiguous())


def test_numpy_fill_of_gray_float_and_rgba_pil_equals_the_tensor_fill():
    img, m = _photo(), _mask()
    gray = (img.mean(2) / 255).astype(np.float64)
    _same(psal.inpaint(gray, m, seed=1), psal.inpaint(torch.from_numpy(gray), m, seed=1))
    rgba = np.dstack([img, np.full(m.shape, 200, np.uint8)])
    pil = psal.inpaint(Image.fromarray(rgba), Image.fromarray(m), seed=2)
    ref = psal.inpaint(torch.from_numpy(rgba).permute(2, 0, 1), torch.from_numpy(m), seed=2)
    assert pil.mode == "RGBA"
    _same(np.asarray(pil), ref.permute(1, 2, 0).contiguous())


def test_tensor_backends_still_take_the_tensor_path(monkeypatch):
    """backend='torch' (or a device) on a numpy image runs on tensors."""
    from psal.editing import inpaint as _unused  # noqa: F401

    mod = sys.modules["psal.editing.inpaint"]
    kinds = []
    real = mod._search

    def spy(cur, *args, **kwargs):
        kinds.append(type(cur).__module__.split(".")[0])
        return real(cur, *args, **kwargs)

    monkeypatch.setattr(mod, "_search", spy)
    img, m = _photo(48, 60), _mask(48, 60)
    psal.inpaint(img, m, seed=0, backend="torch")
    assert set(kinds) == {"torch"}
    kinds.clear()
    psal.inpaint(img, m, seed=0)
    assert set(kinds) == {"numpy"}


def _fresh(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


def test_inpaint_on_numpy_imports_no_torch():
    code = (
        "import sys, numpy as np, psal\n"
        "img = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)\n"
        "m = np.zeros((40, 50), bool); m[10:20, 15:30] = True\n"
        "out = psal.inpaint(img, m, seed=0)\n"
        "out = psal.inpaint(img, m)\n"  # a fresh seed too (not from torch's generator)
        "print(out.shape, 'torch' in sys.modules)\n"
    )
    assert _fresh(code) == "(40, 50, 3) False"


def test_a_fresh_seed_follows_torch_manual_seed_once_torch_is_imported():
    import torch

    from psal._checks import resolve_seed

    torch.manual_seed(5)
    a = resolve_seed(None)
    torch.manual_seed(5)
    assert resolve_seed(None) == a and 0 <= a < 2**31 - 1


def test_inpaint_command_imports_no_torch_scipy_linalg_or_cffi(tmp_path):
    img, m = _photo(48, 60), _mask(48, 60)
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(m).save(tmp_path / "m.png")
    out = tmp_path / "out.png"
    # (Pillow before 10.1 imports cffi when it is installed, for PyAccess: only what the
    # command adds beyond numba and Pillow themselves counts)
    code = (
        "import sys, numba, PIL.Image\nfrom psal.cli import main\n"
        "pre = {n for n in ('scipy.linalg', 'cffi') if n in sys.modules}\n"
        f"status = main(['inpaint', {str(tmp_path / 'a.png')!r}, '--mask', "
        f"{str(tmp_path / 'm.png')!r}, '-o', {str(out)!r}, '-q'])\n"
        "print(status, [n for n in ('torch', 'scipy.linalg', 'cffi') if n in sys.modules "
        "and n not in pre])\n"
    )
    assert _fresh(code) == "0 []"
    dilated = _pyramid.dilate(m[None, None], 2)[0, 0]  # the command's default --dilate 2
    assert np.array_equal(np.asarray(Image.open(out)), psal.inpaint(img, dilated, seed=0))


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_a_large_source_area_is_no_mostly_hole_warning(kind):
    """White in a source mask is where content may come from: 90% white is normal."""
    import warnings

    img, m = _photo(48, 60), _mask(48, 60)
    src = np.ones_like(m)
    src[:, :6] = False
    if kind == "tensor":
        img, m, src = (
            torch.from_numpy(img).permute(2, 0, 1),
            torch.from_numpy(m),
            torch.from_numpy(src),
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        psal.inpaint(img, m, seed=0, source_mask=src)


def _gray_and_ref(h: int = 44, w: int = 52) -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    photo = data.astronaut()[::4, ::4][: h + 8, : w + 8]  # 128x128
    gray = (photo[4 : h + 4, 6 : w + 6] @ [0.299, 0.587, 0.114]).round().astype(np.uint8)
    return gray, np.ascontiguousarray(photo[:h, :w])


@pytest.mark.parametrize(
    "opts",
    [
        {"scales": (1.0,), "propagate": False},
        {"scales": (1.0,)},
        {"scales": (1.0,), "consistency": None},
        {"temperature": float("inf"), "scales": (1.0,)},
    ],
)
def test_colorize_numpy_path_equals_the_tensor_path(opts):
    # at scale 1 no resampling is involved: the two paths give the same 8-bit result
    gray, ref = _gray_and_ref()
    a = psal.colorize(gray, ref, seed=3, patch_size=5, **opts)
    t = psal.colorize(torch.from_numpy(gray / 255.0).float()[None],
                      torch.from_numpy(ref / 255.0).float().permute(2, 0, 1), seed=3,
                      patch_size=5, **opts)  # fmt: skip
    b = (t.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    assert a.shape == b.shape == (44, 52, 3)
    d = np.abs(a.astype(int) - b.astype(int))
    assert d.max() <= 1, d.max()


def test_colorize_numpy_path_with_rescaled_references_stays_within_rounding():
    # resized references: bilinear taps computed in float32 as torch does, but summed
    # in another order (~1e-6): a PatchMatch choice may differ where two reference
    # patches are that close
    gray, ref = _gray_and_ref()
    a = psal.colorize(gray, ref, seed=1, patch_size=5)
    t = psal.colorize(torch.from_numpy(gray / 255.0).float()[None],
                      torch.from_numpy(ref / 255.0).float().permute(2, 0, 1), seed=1,
                      patch_size=5)  # fmt: skip
    b = (t.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    d = np.abs(a.astype(int) - b.astype(int))
    assert d.mean() < 0.05 and (d > 2).mean() < 0.002, (d.mean(), (d > 2).mean())


def test_colorize_numpy_path_keeps_kinds_alpha_and_luma():
    gray, ref = _gray_and_ref(30, 36)
    la = Image.fromarray(np.stack([gray, np.full_like(gray, 200)], -1), "LA")
    out = psal.colorize(la, Image.fromarray(ref), seed=0, patch_size=5)
    assert isinstance(out, Image.Image) and out.mode == "RGBA"
    arr = np.asarray(out)
    assert (arr[..., 3] == 200).all()
    y = arr[..., :3].astype(float) @ [0.299, 0.587, 0.114]
    assert np.abs(y - gray).max() <= 0.51  # the target's luminance, to rounding
    f = psal.colorize(gray.astype(np.float64) / 255, ref, seed=0, patch_size=5)
    assert f.dtype == np.float64 and f.shape == (30, 36, 3)


def test_colorize_numpy_path_and_its_command_import_no_torch(tmp_path):
    gray, ref = _gray_and_ref(30, 36)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(ref).save(tmp_path / "r.png")
    out = tmp_path / "out.png"
    code = (
        "import sys, numpy as np, psal\nfrom PIL import Image\nfrom psal.cli import main\n"
        f"g = np.asarray(Image.open({str(tmp_path / 'g.png')!r}))\n"
        f"r = np.asarray(Image.open({str(tmp_path / 'r.png')!r}))\n"
        "shape = psal.colorize(g, r, seed=0, patch_size=5).shape\n"
        f"status = main(['colorize', {str(tmp_path / 'g.png')!r}, '--reference', "
        f"{str(tmp_path / 'r.png')!r}, '--patch-size', '5', '-o', {str(out)!r}, '-q'])\n"
        "print(shape, status, 'torch' in sys.modules)\n"
    )
    assert _fresh(code) == "(30, 36, 3) 0 False"
    np.testing.assert_array_equal(np.asarray(Image.open(out)),
                                  psal.colorize(gray, ref, seed=0, patch_size=5))  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bilinear_resize_array_matches_torch(dtype):
    from psal.editing.upscale import resize_array

    rng = np.random.default_rng(0)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for h, w in ((37, 53), (5, 9), (2, 3), (160, 171)):
        x = rng.random((1, 2, h, w)).astype(dtype)
        sizes = [(max(1, round(h * s)), max(1, round(w * s))) for s in (0.33, 0.5, 0.7, 1.4, 2)]
        for size in sizes:
            shrink = size[0] < h or size[1] < w
            ref = F.interpolate(torch.from_numpy(x), size=size, mode="bilinear",
                                align_corners=False, antialias=shrink).numpy()  # fmt: skip
            np.testing.assert_allclose(resize_array(x, size, mode="bilinear"), ref, rtol=0,
                                       atol=tol)  # fmt: skip


def test_propagate_numpy_equals_torch():
    from psal.editing._propagate import propagate

    rng = np.random.default_rng(0)
    v = rng.random((1, 2, 70, 75))
    c = (rng.random((1, 1, 70, 75)) > 0.8) * rng.random((1, 1, 70, 75))
    g = rng.random((1, 1, 70, 75))
    a = propagate(v, c, g, smoothness=5.0, sigma=0.1, min_size=16)
    b = propagate(*(torch.from_numpy(t) for t in (v, c, g)), smoothness=5.0, sigma=0.1,
                  min_size=16)  # fmt: skip
    assert isinstance(a, np.ndarray) and a.dtype == np.float64
    np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-9)


def test_resize_array_names_a_bad_mode():
    from psal.editing.upscale import resize_array

    with pytest.raises(ValueError, match="mode must be 'bicubic' or 'bilinear', got 'nearest'"):
        resize_array(np.zeros((1, 1, 4, 4), np.float32), (8, 8), mode="nearest")

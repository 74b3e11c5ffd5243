from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from psal.data import SuperResolutionFolder, degrade, list_images, usable_images


def _write(folder, name, h, w, seed=0):
    rng = np.random.default_rng(seed)
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_pairs_crops_and_augmentation(tmp_path):
    _write(tmp_path, "a/b/one.png", 40, 50)
    files = list_images(tmp_path)  # recursive
    ds = SuperResolutionFolder(files, scale=2, patch=8)
    item = ds[(0, 3)]
    assert item["lr"].shape == (3, 8, 8) and item["hr"].shape == (3, 16, 16)
    torch.testing.assert_close(item["lr"], degrade(item["hr"][None], 2)[0].clamp(0, 1))
    crops = {tuple(ds[(0, s)]["hr"].flatten()[:5].tolist()) for s in range(6)}
    assert len(crops) > 1  # random crops / flips / rotations
    val = SuperResolutionFolder(files, scale=2, patch=8, fixed=True)
    assert torch.equal(val[0]["hr"], val[0]["hr"])
    with pytest.raises(TypeError):
        ds[0]


def test_small_images_skipped_with_a_count_or_refused(tmp_path):
    files = [_write(tmp_path, "big.png", 40, 40), _write(tmp_path, "small.png", 20, 40)]
    kept, skipped = usable_images(files, 32)
    assert kept == [files[0]] and skipped == 1
    with pytest.raises(ValueError, match="smaller than the 64x64 HR crop"):
        usable_images(files, 64)


def test_usable_images_skips_unreadable_files_in_the_same_pass(tmp_path):
    big = _write(tmp_path, "big.png", 40, 40)
    small = _write(tmp_path, "small.png", 20, 40)
    (tmp_path / "empty.png").write_bytes(b"")
    files = [tmp_path / "empty.png", big, small]
    with pytest.warns(UserWarning, match=r"^data\.path: 1 unreadable image file\(s\) skipped"):
        assert usable_images(files, 32) == ([big], 1)
    # none readable: that error first; none large enough: counted among the readable
    with pytest.raises(ValueError, match="none of the 1 image files can be read"):
        usable_images(files[:1], 8)
    with (
        pytest.warns(UserWarning, match="unreadable"),
        pytest.raises(
            ValueError, match=r"^data\.path: all 2 images are smaller than the 64x64 HR crop"
        ),
    ):
        usable_images(files, 64)


def test_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="no image found"):
        list_images(tmp_path)


def test_degrade_is_pillows_antialiased_bicubic_inside():
    """The same filter as Pillow's (and MATLAB's) bicubic resize, away from the borders."""
    from skimage import data

    hr = data.astronaut()[:128, :128]
    t = torch.from_numpy(hr).permute(2, 0, 1)[None].float() / 255
    ours = degrade(t, 2)[0].permute(1, 2, 0).numpy() * 255
    pil = np.asarray(Image.fromarray(hr).resize((64, 64), Image.Resampling.BICUBIC), float)
    assert np.abs(ours - pil)[4:-4, 4:-4].max() < 1.0  # rounding of Pillow's 8-bit output
    with pytest.raises(ValueError, match="multiples"):
        degrade(t[..., :127], 2)


def _keys(x, a=-0.5):
    x = np.abs(x)
    near = (a + 2) * x**3 - (a + 3) * x**2 + 1
    far = a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _imresize_weights(n_in, scale, matlab):
    """(n_in // scale, n_in) weights of MATLAB's imresize(x, 1/scale, 'bicubic').

    Pixel centres aligned (``u = (i + 0.5) * scale - 0.5``), Keys' kernel with a = -0.5
    stretched by ``scale``; outside the image MATLAB reflects (edge pixel repeated),
    the other convention (Pillow's, PyTorch's) drops the weights and renormalises.
    """
    w = np.zeros((n_in // scale, n_in))
    for i in range(n_in // scale):
        u = (i + 0.5) * scale - 0.5
        taps = np.arange(int(np.floor(u - 2 * scale)), int(np.ceil(u + 2 * scale)) + 1)
        k = _keys((u - taps) / scale)
        if matlab:
            t = np.mod(taps, 2 * n_in)
            np.add.at(w[i], np.where(t >= n_in, 2 * n_in - 1 - t, t), k / k.sum())
        else:
            inside = (taps >= 0) & (taps < n_in)
            w[i, taps[inside]] = k[inside] / k[inside].sum()
    return w


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("lr_size", [(3, 1), (1, 3), (5, 2), (1, 1), (7, 9)])
def test_degrade_is_imresize_with_renormalised_borders(scale, lr_size):
    """Against the documented filter computed here, narrow results included (PyTorch's
    own antialiased resize is wrong for one-pixel-wide ones); MATLAB's reflection gives
    the same values once 2 LR pixels from the border."""
    g = torch.Generator().manual_seed(scale)
    hr = torch.rand(1, 3, lr_size[0] * scale, lr_size[1] * scale, generator=g, dtype=torch.float64)
    ours = degrade(hr, scale)[0].numpy()
    for matlab in (False, True):
        wh = _imresize_weights(hr.shape[-2], scale, matlab)
        ww = _imresize_weights(hr.shape[-1], scale, matlab)
        ref = np.einsum("ih,chw,jw->cij", wh, hr[0].numpy(), ww)
        inner = ref[:, 2:-2, 2:-2] if matlab else ref
        got = ours[:, 2:-2, 2:-2] if matlab else ours
        np.testing.assert_allclose(got, inner, atol=1e-6, err_msg=f"matlab={matlab}")


@pytest.mark.parametrize("scale", [0, -2, 2.0, True, "2"])
def test_degrade_names_a_bad_scale(scale):
    with pytest.raises((TypeError, ValueError), match="scale"):
        degrade(torch.rand(1, 3, 8, 8), scale)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_lr_is_the_downscaled_hr_crop_under_every_flip_and_rotation(tmp_path, scale):
    """Each pair is a crop of the image (any offset, odd ones included) turned by one of
    the 8 flips/rotations, and its LR the same turn of the crop's downscale: the
    augmentation commutes with the filter, so LR and HR stay aligned."""
    from skimage import data

    img = data.astronaut()[100:141, 150:187]  # 41x37: odd sides
    Image.fromarray(img).save(tmp_path / "a.png")
    p = 5 if scale < 4 else 4
    ds = SuperResolutionFolder([tmp_path / "a.png"], scale=scale, patch=p)
    s = p * scale
    full = img.astype(np.float32) / 255
    turns = [
        lambda a, k=k, f=f: np.rot90(a[:, ::-1] if f else a, k) for f in (0, 1) for k in range(4)
    ]
    seen_turns, odd = set(), False
    for seed in range(16):
        item = ds[(0, seed)]
        hr = item["hr"].permute(1, 2, 0).numpy()
        found = [(t, y, x) for t, turn in enumerate(turns)
                 for y in range(img.shape[0] - s + 1) for x in range(img.shape[1] - s + 1)
                 if np.array_equal(turn(full[y : y + s, x : x + s]), hr)]  # fmt: skip
        assert len(found) >= 1, seed
        t, y, x = found[0]
        seen_turns.add(t)
        odd |= y % scale != 0 or x % scale != 0
        crop = torch.from_numpy(full[y : y + s, x : x + s].copy()).permute(2, 0, 1)[None]
        low = degrade(crop, scale)[0].clamp(0, 1).permute(1, 2, 0).numpy()
        np.testing.assert_allclose(item["lr"].permute(1, 2, 0).numpy(), turns[t](low), atol=1e-6)
    assert odd and len(seen_turns) >= 6

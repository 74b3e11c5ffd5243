"""The super-resolution network shipped with psal (package data) and its entry points."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import psal
from psal.cli import main
from psal.models import EDSRPSAL, Upscaler
from psal.weights import UPSCALERS, upscaler_file

ROOT = Path(__file__).resolve().parents[2]


def _photo(h=24, w=32):
    """A smooth photo-like test image with edges (uint8 RGB)."""
    y, x = np.mgrid[0:h, 0:w]
    im = np.stack([128 + 100 * np.sin(x / 3.0), 128 + 90 * np.cos(y / 4.0), (x * y) % 255], -1)
    return np.clip(im, 0, 255).astype(np.uint8)


def test_every_shipped_weights_file_loads_and_is_small():
    for name, file in UPSCALERS.items():
        path = upscaler_file(name)
        assert path.is_file(), f"{file} missing from src/psal/weights"
        with resources.as_file(path) as f:
            assert Path(f).stat().st_size < 5 * 2**20
        net = Upscaler.from_pretrained(name, device="cpu")
        assert isinstance(net.network, EDSRPSAL)
        assert f"x{net.scale}" in name


def test_package_data_carries_the_weights():
    """A non-editable install must include the .safetensors files."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert '"weights/*.safetensors"' in section
    for file in UPSCALERS.values():
        assert (ROOT / "src" / "psal" / "weights" / file).is_file()


def test_pretrained_upscales_and_differs_from_bicubic():
    net = Upscaler.from_pretrained("edsr-x2", device="cpu")
    im = _photo()
    out = net.upscale(im, 2)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    x = torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255
    bic = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    bic = (bic[0].permute(1, 2, 0).numpy() * 255).round()
    diff = np.abs(out.astype(float) - bic)
    assert 0.2 < diff.mean() < 20  # the trained residual: present, but a correction of bicubic
    # the same through psal.upscale(model=...), which is what --model runs
    np.testing.assert_array_equal(psal.upscale(im, 2, model="edsr-x2", seed=0), out)


def test_unknown_name_and_scale_mismatch():
    with pytest.raises(ValueError, match="edsr-x2") as err:
        Upscaler.from_pretrained("edsr-x9")
    assert "'edsr-x9'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="model must be one of edsr-x2"):
        psal.upscale(_photo(), 2, model="nope")
    with pytest.raises(ValueError, match="scale is 3 but model 'edsr-x2' enlarges x2"):
        psal.upscale(_photo(), 3, model="edsr-x2")


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_cli_model(tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(_photo()).save(src)
    out = tmp_path / "out.png"
    code, err = _run(capsys, "upscale", src, "--model", "edsr-x2", "-o", out)
    assert code == 0, err
    with Image.open(out) as im:
        assert im.size == (64, 48)
    expected = Upscaler.from_pretrained("edsr-x2", device="cpu").upscale(_photo(), 2)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
    for argv, match in (
        (["--model", "nope"], "--model must be one of edsr-x2, got 'nope'"),
        (["--model", "edsr-x2", "--scale", "4"], "--scale is 4 but --model edsr-x2 enlarges x2"),
        (["--model", "edsr-x2", "--checkpoint", tmp_path], "cannot be used together"),
    ):
        bad = tmp_path / "bad.png"
        code, err = _run(capsys, "upscale", src, *argv, "-o", bad)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 1 and len(lines) == 1 and lines[0].startswith("psal: error: ")
        assert match in lines[0]
        assert not bad.exists()


def test_ensemble_is_the_mean_over_flips_and_rotations():
    plain = Upscaler.from_pretrained("edsr-x2", device="cpu")
    ens = Upscaler.from_pretrained("edsr-x2", device="cpu", ensemble=True)
    x = torch.from_numpy(_photo(12, 16)).permute(2, 0, 1)[None].float() / 255
    outs = []
    for turns in range(4):
        for flip in (False, True):
            t = torch.rot90(x, turns, (2, 3))
            y = plain.network.enlarge(t.flip(-1) if flip else t)
            outs.append(torch.rot90(y.flip(-1) if flip else y, -turns, (2, 3)))
    torch.testing.assert_close(ens(x), torch.stack(outs).mean(0).clamp(0, 1))
    assert not torch.allclose(ens(x), plain(x))
    out = psal.upscale(_photo(), 2, model="edsr-x2", ensemble=True)
    assert out.shape == (48, 64, 3)
    with pytest.raises(ValueError, match="ensemble=True needs model"):
        psal.upscale(_photo(), 2, ensemble=True)
    with pytest.raises(TypeError, match="ensemble"):
        Upscaler(plain.network, ensemble="yes")


def test_cli_ensemble(tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(_photo()).save(src)
    out = tmp_path / "out.png"
    code, err = _run(capsys, "upscale", src, "--model", "edsr-x2", "--ensemble", "-o", out)
    assert code == 0, err
    expected = Upscaler.from_pretrained("edsr-x2", ensemble=True, device="cpu").upscale(_photo())
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
    code, err = _run(capsys, "upscale", src, "--ensemble", "-o", tmp_path / "bad.png")
    assert code == 1 and "--ensemble needs --model or --checkpoint" in err
    assert not (tmp_path / "bad.png").exists()


def test_ensemble_turns_every_transform_back_on_an_asymmetric_image():
    # independent of the implementation's own loop: for a network that commutes with
    # flips and rotations (nearest x2), each of the 8 outputs turned back is the plain
    # output, so their mean is too; a transform inverted the wrong way breaks this
    class Nearest(torch.nn.Module):
        scale = 2

        def __init__(self):
            super().__init__()
            self.gain = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest") * self.gain

    x = torch.zeros(1, 3, 5, 8)
    x[0, 0, 0, 1], x[0, 1, 3, 6], x[0, 2, 4, 0] = 1.0, 0.5, 0.25  # no symmetry at all
    plain, ens = Upscaler(Nearest()), Upscaler(Nearest(), ensemble=True)
    assert ens(x).shape == (1, 3, 10, 16)
    torch.testing.assert_close(ens(x), plain(x), rtol=0, atol=1e-7)

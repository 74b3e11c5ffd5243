"""The learned models' entry points: no side effects, refused inputs, named files."""

import numpy as np
import pytest
import torch

import psal
from psal.models.io import load_weights, save_weights


@pytest.fixture(scope="module")
def upscaler():
    return psal.models.Upscaler.from_pretrained("edsr-x2", device="cpu")


def test_a_seed_leaves_the_callers_generator_alone(upscaler):
    # upscale(seed=) and colorize(seed=) used to call torch.manual_seed: a caller's
    # later draws repeated those after manual_seed(seed)
    x = torch.rand(1, 3, 12, 12)
    torch.manual_seed(5)
    want = torch.rand(3)
    torch.manual_seed(5)
    first = upscaler.upscale(x, seed=0)
    assert torch.equal(torch.rand(3), want)
    assert torch.equal(upscaler.upscale(x, seed=0), first)  # still repeatable
    col = psal.models.Colorizer.from_pretrained("psal-w8", device="cpu")
    gray, ref = torch.rand(1, 1, 24, 24), torch.rand(1, 3, 24, 24)
    torch.manual_seed(5)
    a = col.colorize(gray, ref, seed=1)
    assert torch.equal(torch.rand(3), want)
    assert torch.equal(col.colorize(gray, ref, seed=1), a)


def test_upscaler_refuses_what_it_would_silently_clip(upscaler):
    with pytest.raises(ValueError, match=r"image values must lie in \[0, 1\]"):
        upscaler.upscale(np.random.default_rng(0).random((12, 17, 3)).astype("f4") * 3)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        upscaler(torch.randint(0, 255, (1, 3, 10, 10), dtype=torch.uint8))  # was all white
    with pytest.raises(ValueError, match=r"x must have shape \(B >= 1, 3, H, W\)"):
        upscaler(torch.rand(0, 3, 10, 10))
    u8 = np.random.default_rng(1).integers(0, 255, (12, 14, 3), dtype=np.uint8)
    assert upscaler.upscale(u8).shape == (24, 28, 3)  # uint8 arrays: their full range


def test_a_checkpoint_whose_weights_do_not_fit_its_description_names_the_file(tmp_path):
    states, meta = load_weights(_shipped())
    spec = dict(meta["network"])
    for bad_kwargs, needle in (({**spec["kwargs"], "width": 3}, "size mismatch"),
                               ({**spec["kwargs"], "widht": 3}, "unexpected keyword"),
                               ([1, 2], "kwargs must be a dict")):  # fmt: skip
        file = tmp_path / "bad.safetensors"
        meta_out = {k: v for k, v in meta.items() if k not in ("path",)}
        meta_out["network"] = {**spec, "kwargs": bad_kwargs}
        save_weights(file, states, meta_out, task="upscale")
        with pytest.raises(ValueError, match="do not match its description") as info:
            psal.models.Upscaler.from_checkpoint(file, device="cpu")
        assert "bad.safetensors" in str(info.value) and needle in str(info.value)
        assert "\n" not in str(info.value)


def _shipped():
    from importlib.resources import files

    return files("psal.weights") / "upscale_x2.safetensors"


def test_save_weights_refuses_a_prefix_it_could_not_read_back(tmp_path):
    with pytest.raises(ValueError, match=r"prefix 'critic\.global' must be a non-empty name"):
        save_weights(tmp_path / "w.safetensors", {"critic.global": {"w": torch.zeros(2)}}, {})
    assert not (tmp_path / "w.safetensors").exists()


def test_load_weights_names_a_bad_device_not_the_file():
    with pytest.raises(ValueError, match="device must be 'cpu'"):
        load_weights(_shipped(), device="bogus")


def test_inpainter_context_is_checked_when_made():
    # "a" failed later with "'>=' not supported", inf at inpaint() with an OverflowError
    g = psal.models.create_model("deepfill_v1", width=4, attention="none")
    with pytest.raises(TypeError, match="context must be a number"):
        psal.models.Inpainter(g, context="a")
    with pytest.raises(ValueError, match="context must be a finite number >= 0, got inf"):
        psal.models.Inpainter(g, context=float("inf"))
    assert psal.models.Inpainter(g, context=0).context == 0.0


def test_upscaler_progress_must_be_a_callable(upscaler):
    with pytest.raises(TypeError, match=r"progress must be a callable .* or None, got 3"):
        upscaler.upscale(np.zeros((12, 12, 3), np.uint8), progress=3)

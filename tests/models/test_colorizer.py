from __future__ import annotations

import numpy as np
import pytest
import torch

from psal.models import Colorizer, GuidedColorizer, create_model, save_weights
from psal.utils.color import luma


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("attention", ["psal", "dense", "none"])
def test_any_size_and_aspect_and_gradients(attention):
    torch.manual_seed(0)
    net = GuidedColorizer(width=4, value_width=2, attention=attention)
    y = torch.rand(2, 1, 19, 29)  # not multiples of 4; reference of another size
    ref = torch.rand(2, 3, 26, 14)
    out = net(y, ref, return_flow=attention == "psal")
    assert out.chroma.shape == (2, 2, 19, 29) and out.attended.shape == (2, 2, 19, 29)
    if attention == "psal":
        assert out.flow.shape == (2, 2, 19, 29)
        # every flow vector points into the reference
        yy, xx = torch.meshgrid(torch.arange(19.0), torch.arange(29.0), indexing="ij")
        assert ((yy + out.flow[:, 0]) >= -0.5).all() and ((yy + out.flow[:, 0]) <= 25.5).all()
        assert ((xx + out.flow[:, 1]) >= -0.5).all() and ((xx + out.flow[:, 1]) <= 13.5).all()
    else:
        assert out.flow is None
    loss = (out.chroma**2).mean() + (out.attended**2).mean()
    loss.backward()
    # the correspondence path trains the shared encoder (query and key) except for "none"
    g = net.encoder.levels[0][0].weight.grad
    if attention == "none":
        assert g is None or float(g.abs().sum()) == 0
    else:
        assert g is not None and float(g.abs().sum()) > 0


def test_psal_at_full_resolution_copies_reference_colour():
    # with the target equal to the reference, full-resolution PSAL with an untrained
    # (random) encoder already carries each pixel's own colour: the attended chroma is
    # close to the truth, while "none" on a flipped reference is not
    torch.manual_seed(0)
    from psal.utils.color import rgb_to_luma_chroma

    x = torch.linspace(0, 1, 48)
    ref = torch.stack([x[None].expand(40, 48), x.flip(0)[None].expand(40, 48),
                       torch.rand(40, 48).round()], 0)[None]  # fmt: skip
    y, c = rgb_to_luma_chroma(ref)
    net = GuidedColorizer(width=8, attention="psal", scales=(1,),
                          attention_options={"k": 1, "temperature": 0.01})  # fmt: skip
    with torch.no_grad():
        att = net(y, ref).attended
    assert float((att - c).abs().mean()) < 0.25 * float(c.abs().mean())


def test_bad_arguments():
    with pytest.raises(ValueError, match="attention"):
        GuidedColorizer(attention="contextual")
    with pytest.raises(ValueError, match="scales"):
        GuidedColorizer(scales=(3,))
    net = GuidedColorizer(width=4)
    with pytest.raises(ValueError, match="at least"):
        net(torch.rand(1, 1, 8, 8), torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, Hr, Wr\)"):
        net(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))
    assert isinstance(create_model("guided_colorizer", width=2), GuidedColorizer)


def test_colorizer_keeps_luma_and_loads_checkpoints(tmp_path):
    torch.manual_seed(0)
    net = GuidedColorizer(width=4, value_width=2)
    torch.nn.init.normal_(net.head.weight, std=0.1)
    spec = {"name": "guided_colorizer", "kwargs": {"width": 4, "value_width": 2}}
    path = tmp_path / "w.safetensors"
    save_weights(path, {"network": net.state_dict()}, {"network": spec}, task="colorize")
    model = Colorizer.from_checkpoint(path, device="cpu")
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 255, (30, 45), dtype=np.uint8)
    ref = rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)
    out = model.colorize(gray, ref, seed=0)
    assert out.shape == (30, 45, 3) and out.dtype == np.uint8
    y = luma(torch.from_numpy(out.astype(np.float64)).permute(2, 0, 1)[None])[0, 0].numpy()
    assert np.abs(y - gray).max() <= 0.5 + 1e-9
    assert np.array_equal(out, Colorizer(net).colorize(gray, ref, seed=0))
    with pytest.raises(ValueError, match="colour reference"):
        model.colorize(gray, gray)
    with pytest.warns(UserWarning, match="luminance"):
        model.colorize(ref, ref, seed=0)
    # a checkpoint of another task: the message names both tasks
    other = tmp_path / "inpaint.safetensors"
    save_weights(other, {"generator": {"w": torch.zeros(1)}}, {}, task="inpaint")
    with pytest.raises(ValueError, match="'inpaint', not 'colorize'"):
        Colorizer.from_checkpoint(other)


@pytest.mark.parametrize("strip_rows", [1, 5, 8])
def test_inference_in_strips_equals_whole_image(strip_rows):
    # no_grad inference runs the full-resolution decoder level in row strips with a halo;
    # it must give the whole-image result (several strips, odd heights, image borders)
    torch.manual_seed(0)
    net = GuidedColorizer(width=4, value_width=2, attention="none").eval()
    with torch.no_grad():  # non-zero head, so the stripped convolutions matter
        net.head.weight.normal_()
        net.head.bias.normal_()
    y, ref = torch.rand(1, 1, 37, 29), torch.rand(1, 3, 24, 30)
    with torch.no_grad():
        net.strip_rows = 10**6
        whole = net(y, ref).chroma
        net.strip_rows = strip_rows
        stripped = net(y, ref).chroma
    assert whole.shape == stripped.shape == (1, 2, 37, 29)
    torch.testing.assert_close(stripped, whole, rtol=1e-5, atol=1e-5)
    # with gradients (training) the whole-image path runs and gradients flow
    out = net(y, ref).chroma
    torch.testing.assert_close(out.detach(), whole, rtol=1e-5, atol=1e-5)
    assert out.requires_grad


def test_colorizer_imports_point_down():
    """psal.models.colorizer imports nothing from psal.editing (colour maths in utils)."""
    import ast
    from pathlib import Path

    import psal.models.colorizer as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
    assert names, "no imports parsed"
    assert not [n for n in names if "editing" in n], names


def test_shipped_weights_load_colour_and_keep_luma():
    from pathlib import Path

    import tomllib

    from psal.models import Colorizer
    from psal.models.colorizer import PRETRAINED

    net = Colorizer.from_pretrained("psal-w8", device="cpu")
    assert net.network.attention == "psal"
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (36, 44), dtype=np.uint8)
    ref = rng.integers(0, 256, (30, 28, 3), dtype=np.uint8)
    out = net.colorize(gray, ref, seed=0)
    t = torch.from_numpy(out.astype(np.float64) / 255).permute(2, 0, 1)[None]
    assert np.abs(luma(t)[0, 0].numpy() * 255 - gray).max() <= 0.5 + 1e-6
    with pytest.raises(ValueError, match="psal-w8"):
        Colorizer.from_pretrained("nope")
    # the weights are package data (installed with psal), a few MB at most
    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["psal"]
    assert "weights/*.safetensors" in patterns
    for name in PRETRAINED.values():
        size = (root / "src" / "psal" / "weights" / name).stat().st_size
        assert 0 < size < 5 * 2**20


@pytest.fixture(scope="module")
def tiny_colorizer():
    torch.manual_seed(0)
    net = GuidedColorizer(width=4, value_width=2)
    torch.nn.init.normal_(net.head.weight, std=0.1)
    return Colorizer(net)


def _saturated_pair(dtype=np.float64):
    """A float gray target and its reference of pure R, G, B, C, M, Y, K, W pixels."""
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 2, (32, 32, 3)).astype(dtype)
    return (ref @ np.array([0.299, 0.587, 0.114])).astype(dtype), ref


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_colorize_refuses_floats_outside_0_1(kind, tiny_colorizer):
    gray, ref = _saturated_pair()
    wrap = (lambda a: torch.from_numpy(a)) if kind == "tensor" else (lambda a: a)
    with pytest.raises(ValueError, match=r"target is a float image .*must be in \[0, 1\]"):
        tiny_colorizer.colorize(wrap(gray * 255), wrap(ref), seed=0)  # was a gray result
    bad_ref = wrap(ref * 255)
    if kind == "tensor":
        bad_ref = bad_ref.permute(2, 0, 1)
    with pytest.raises(ValueError, match=r"reference is a float image .*\[0, 1\]"):
        tiny_colorizer.colorize(wrap(gray), bad_ref, seed=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_colorize_float_result_lies_within_0_1(dtype):
    gray, ref = _saturated_pair(dtype)
    net = Colorizer.from_pretrained("psal-w8", device="cpu")
    out = net.colorize(gray, ref, seed=0)
    assert out.dtype == dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0  # was 1.0000000000000002


def test_colorize_progress_must_be_a_callable(tiny_colorizer):
    gray, ref = _saturated_pair()
    with pytest.raises(TypeError, match=r"progress must be a callable .* or None, got 3"):
        tiny_colorizer.colorize(gray, ref, progress=3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.uint8])
def test_network_names_an_input_of_another_dtype(dtype):
    net = GuidedColorizer(width=4)
    y, ref = torch.rand(1, 1, 16, 16), torch.rand(1, 3, 16, 16)
    want = "float32" if dtype != torch.uint8 else "floating-point tensor"
    with pytest.raises(TypeError, match=rf"^y (has dtype|must be a) .*{want}"):
        net(y.to(dtype), ref)
    with pytest.raises(TypeError, match=rf"^reference (has dtype|must be a) .*{want}"):
        net(y, ref.to(dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_wrapper_forward_takes_any_float_dtype(dtype):
    torch.manual_seed(0)
    net = Colorizer(GuidedColorizer(width=4, attention="none"))
    y, ref = torch.rand(1, 1, 16, 16), torch.rand(1, 3, 16, 16)
    out = net(y.to(dtype), ref.to(dtype))
    assert out.chroma.dtype == dtype and out.attended.dtype == dtype
    torch.testing.assert_close(out.chroma.float(), net(y, ref).chroma, atol=1e-2, rtol=0)
    with pytest.raises(TypeError, match=r"^y must be a floating-point tensor"):
        net((y * 255).to(torch.uint8), ref)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (9, 301), (40, 7)])
def test_colorize_takes_tiny_and_thin_targets_as_psal_colorize_does(shape):
    # psal.colorize takes a 9x301 target; the network needs min_size (12) pixels a side,
    # and the wrapper refused them ("target must be at least 12 pixels a side")
    col = Colorizer.from_pretrained("psal-w8", device="cpu")
    rng = np.random.default_rng(0)
    gray = rng.random(shape).astype(np.float32)
    ref = rng.random((10, 11, 3)).astype(np.float32)  # a small reference too
    out = col.colorize(gray, ref, seed=0)
    assert out.shape == (*shape, 3) and out.dtype == np.float32
    y = luma(torch.from_numpy(out).permute(2, 0, 1)[None].double())[0, 0].numpy()
    np.testing.assert_allclose(y, gray, atol=1e-6)


def test_float64_network_colours_float64_images_at_float64_precision():
    # colorize cast the luma and reference to float32 before a float64 network
    from psal.utils.color import luma_chroma_to_rgb

    col = Colorizer.from_pretrained("psal-w8", device="cpu").double()
    g = torch.Generator().manual_seed(0)
    y = torch.rand(1, 1, 20, 24, dtype=torch.float64, generator=g)
    ref = torch.rand(1, 3, 18, 18, dtype=torch.float64, generator=g)
    out = col.colorize(y, ref, seed=0)
    torch.manual_seed(0)  # what seed=0 does around the network
    with torch.no_grad():
        want = luma_chroma_to_rgb(y, col.network(y, ref).chroma).clamp(0, 1)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from psal.models import EDSRPSAL, Upscaler, create_model


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("attention", ["psal", "dense", "none"])
def test_shapes_any_size(scale, attention):
    torch.manual_seed(0)
    net = create_model("edsr_psal", scale=scale, width=8, blocks=2, attention=attention)
    x = torch.rand(2, 3, 11, 14)
    assert net(x).shape == (2, 3, 11 * scale, 14 * scale)


def test_starts_as_bicubic_and_gradients_reach_both_attentions():
    torch.manual_seed(0)
    net = EDSRPSAL(scale=2, width=8, blocks=2, attention="psal")
    x = torch.rand(1, 3, 16, 16)
    bic = torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(net(x), bic)  # the tail starts at zero
    torch.nn.init.normal_(net.tail.weight, std=0.1)
    net(x).square().mean().backward()
    for part in (net.nonlocal_.q, net.nonlocal_.k, net.cross.q, net.cross.k, net.cross.v):
        assert part.weight.grad is not None and float(part.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_strips_equal_the_whole(scale):
    """enlarge runs the tail in strips: exactly forward, so there is no seam."""
    torch.manual_seed(0)
    net = EDSRPSAL(scale=scale, width=8, blocks=2, attention="dense").eval()
    torch.nn.init.normal_(net.tail.weight, std=0.1)
    x = torch.rand(1, 3, 31, 20)
    with torch.no_grad():
        torch.testing.assert_close(net.enlarge(x, rows=7), net(x), atol=1e-5, rtol=1e-5)


def test_cross_scale_brings_back_the_larger_patch():
    """Keys are the features shrunk by s; each match pastes the s x s block it came from."""
    from psal.layers import build_attention
    from psal.models.edsr import _CrossScale

    cs = _CrossScale(4, 2, "dense", {"patch_size": 1, "temperature": 1e-7, "normalize": False})
    f = torch.rand(1, 4, 8, 8)
    for conv in (cs.q, cs.k, cs.v):  # identity embeddings (emb = 2 channels: take 2)
        torch.nn.init.zeros_(conv.bias)
        w = torch.zeros_like(conv.weight)
        w[0, 0] = w[1, 1] = 1
        conv.weight.data = w
    a = cs.attend(f)  # (1, 4 * 2, 8, 8): the 2x2 block of v at twice the matched position
    small = torch.nn.functional.interpolate(f, size=(4, 4), mode="bicubic",
                                            align_corners=False, antialias=True)  # fmt: skip
    d = (f[0, :2].reshape(2, -1, 1) - small[0, :2].reshape(2, 1, -1)).square().sum(0)
    best = d.argmin(1)  # nearest key of every query pixel
    v = torch.nn.functional.pixel_unshuffle(f[:, :2], 2)[0].reshape(8, -1)
    torch.testing.assert_close(a[0].reshape(8, -1), v[:, best], atol=1e-4, rtol=1e-4)
    assert isinstance(build_attention("none"), torch.nn.Module)


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale"):
        EDSRPSAL(scale=5)
    with pytest.raises(ValueError, match="attention"):
        EDSRPSAL(attention="contextual")
    with pytest.raises(ValueError, match="3 channels"):
        EDSRPSAL(width=4, blocks=0, attention="none")(torch.rand(1, 1, 8, 8))


def test_upscaler_takes_what_psal_upscale_takes():
    up = Upscaler(EDSRPSAL(scale=2, width=4, blocks=1, attention="none"))
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 255, (10, 12, 4), dtype=np.uint8))
    out = up.upscale(rgba, 2, seed=0, patch_size=3)
    assert out.mode == "RGBA" and out.size == (24, 20)
    gray = up.upscale(rng.integers(0, 255, (10, 12), dtype=np.uint8))
    assert gray.shape == (20, 24) and gray.dtype == np.uint8
    assert up.upscale(torch.rand(3, 10, 12), np.int64(2)).shape == (3, 20, 24)
    with pytest.raises(ValueError, match="trained for x2"):
        up.upscale(gray, 3)


def test_search_channels_set_the_compared_embeddings_only():
    torch.manual_seed(0)
    net = EDSRPSAL(scale=2, width=8, blocks=2, attention="psal", search_channels=3,
                   attention_options={"k": 2, "iters": 1})  # fmt: skip
    for block in (net.nonlocal_, net.cross):
        assert block.q.out_channels == block.k.out_channels == 3
    assert net.nonlocal_.v.out_channels == 8 and net.cross.v.out_channels == 4
    torch.nn.init.normal_(net.tail.weight, std=0.1)
    net(torch.rand(1, 3, 12, 12)).square().mean().backward()
    assert float(net.cross.q.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="search_channels"):
        EDSRPSAL(search_channels=0)


@pytest.mark.parametrize("guide", ["image", "both"])
@pytest.mark.parametrize("scale", [2, 4])
def test_image_guide_shapes_and_same_parameters_as_none(guide, scale):
    """guide="image": the ablation stays one flag, with the same parameters."""
    torch.manual_seed(0)
    nets = {a: EDSRPSAL(scale=scale, width=8, blocks=2, attention=a, guide=guide,
                        attention_options={"k": 2, "iters": 1}) for a in ("psal", "none")}  # fmt: skip
    shapes = [{k: v.shape for k, v in n.named_parameters()} for n in nets.values()]
    assert shapes[0] == shapes[1]
    assert (nets["psal"].cross is not None) == (guide == "both")
    x = torch.rand(2, 3, 13, 10)
    for net in nets.values():
        assert net(x).shape == (2, 3, 13 * scale, 10 * scale)


def test_image_guide_brings_back_the_detail_of_the_larger_patch():
    """Queries: image pixels; keys: the image shrunk by s; values: the detail blocks."""
    from psal.models.edsr import _ImageGuide, mean_free

    g = _ImageGuide(4, 2, "dense", {"patch_size": 1, "temperature": 1e-7, "normalize": False})
    x = torch.rand(1, 3, 8, 8)
    a = g.attend(x)  # (1, 3 * 2 * 2, 8, 8)
    F = torch.nn.functional
    small = F.interpolate(x, size=(4, 4), mode="bicubic", align_corners=False, antialias=True)
    detail = x - F.interpolate(small, size=(8, 8), mode="bicubic", align_corners=False)
    q, k = mean_free(x), mean_free(small)  # compared without the local mean
    d = (q[0].reshape(3, -1, 1) - k[0].reshape(3, 1, -1)).square().sum(0)
    best = d.argmin(1)
    assert not torch.equal(
        best, (x[0].reshape(3, -1, 1) - small[0].reshape(3, 1, -1)).square().sum(0).argmin(1)
    )
    v = F.pixel_unshuffle(detail, 2)[0].reshape(12, -1)
    torch.testing.assert_close(a[0].reshape(12, -1), v[:, best], atol=1e-4, rtol=1e-4)


def test_image_guide_search_changes_the_output_and_learns():
    """The same weights with and without the search differ; gradients reach the guide."""
    torch.manual_seed(0)
    kw = {"scale": 2, "width": 8, "blocks": 2, "guide": "image", "in_scale": False}
    psal_net = EDSRPSAL(attention="psal", **kw)
    none_net = EDSRPSAL(attention="none", **kw)
    none_net.load_state_dict(psal_net.state_dict())
    x = torch.rand(1, 3, 16, 16)
    bic = torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(psal_net(x), bic)  # untrained: bicubic (tail, gain at zero)
    with torch.no_grad():
        for net in (psal_net, none_net):
            net.guide.gain.fill_(1.0)
        assert float((psal_net(x) - none_net(x)).abs().max()) > 1e-2
    torch.nn.init.normal_(psal_net.tail.weight, std=0.1)
    psal_net(x).square().mean().backward()
    g = psal_net.guide
    for p in (g.log_scale, g.gain, g.out.weight):
        assert p.grad is not None and float(p.grad.abs().sum()) > 0
    gated = EDSRPSAL(attention="psal", guide_gate=True, **kw)
    torch.nn.init.normal_(gated.tail.weight, std=0.1)
    with torch.no_grad():
        gated.guide.gain.fill_(0.1)
    gated(x).square().mean().backward()
    assert float(gated.guide.gate.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="guide"):
        EDSRPSAL(guide="pixels")


@pytest.mark.parametrize("gate", [False, True])
def test_image_guide_strips_equal_the_whole(gate):
    torch.manual_seed(0)
    net = EDSRPSAL(scale=4, width=8, blocks=2, attention="dense", guide="both",
                   guide_gate=gate).eval()  # fmt: skip
    torch.nn.init.normal_(net.tail.weight, std=0.1)
    torch.nn.init.normal_(net.guide.gain, std=0.5)
    x = torch.rand(1, 3, 26, 20)
    with torch.no_grad():
        torch.testing.assert_close(net.enlarge(x, rows=7), net(x), atol=1e-5, rtol=1e-5)


def test_the_shipped_features_network_still_gives_its_output():
    """edsr-x2 (no ``guide`` in its description) loads as before: pinned output.

    (Re-pinned when the shipped weights were retrained, 30000 steps instead of 6000.)
    """
    up = Upscaler.from_pretrained("edsr-x2")
    assert up.network.guide is None and up.network.cross is not None
    x = torch.rand(1, 3, 20, 18, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = up.network(x)
    assert float(y.sum()) == pytest.approx(2152.0249, abs=2e-3)
    expected = torch.tensor([0.343765, 0.734062, -0.371763])
    torch.testing.assert_close(y[0, :, 7, 11], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [2, 4])
def test_guide_blocks_given_beforehand_equal_the_search_and_turn_with_the_image(scale):
    """forward(x, guide=guide_blocks(x)) == forward(x); flips/rotations commute (dense)."""
    torch.manual_seed(0)
    net = EDSRPSAL(scale=scale, width=8, blocks=2, attention="dense", guide="both",
                   guide_gate=True).eval()  # fmt: skip
    torch.nn.init.normal_(net.tail.weight, std=0.1)
    torch.nn.init.normal_(net.guide.gain, std=0.5)
    x = torch.rand(2, 3, 12, 16)
    xs = net.xs
    with torch.no_grad():
        d = net.guide_blocks(x)
        assert d.shape == (2, 3, xs * 12, xs * 16)
        torch.testing.assert_close(net(x, guide=d), net(x), atol=1e-5, rtol=1e-5)
        # another image's blocks change the output (the argument is used)
        assert float((net(x, guide=net.guide_blocks(x.flip(0))) - net(x)).abs().max()) > 1e-3
        for turn in (lambda t: t.flip(-1), lambda t: t.flip(-2), lambda t: t.rot90(1, (2, 3))):
            torch.testing.assert_close(net.guide_blocks(turn(x)), turn(d), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="guide must be"):
        net(x, guide=d[..., :-xs])
    with pytest.raises(ValueError, match="multiples"):
        net.guide_blocks(torch.rand(1, 3, 13, 16))
    plain = EDSRPSAL(scale=scale, width=8, blocks=2, attention="none")
    with pytest.raises(ValueError, match="guide_blocks needs a network with guide="):
        plain.guide_blocks(x)
    with pytest.raises(ValueError, match="no image guide"):
        plain(x, guide=d)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_network_names_an_input_of_another_dtype(dtype):
    net = EDSRPSAL(scale=2, width=4, blocks=1, attention="none", guide="image")
    x = torch.rand(1, 3, 8, 8)
    match = rf"^x has dtype {dtype} but EDSRPSAL's parameters are torch\.float32"
    for call in (net, net.enlarge, net.guide_blocks):
        with pytest.raises(TypeError, match=match):
            call(x.to(dtype))
    with pytest.raises(TypeError, match=rf"^guide has dtype {dtype}"):
        net(x, guide=net.guide_blocks(x).to(dtype))


def test_upscaler_runs_the_network_in_its_own_dtype():
    torch.manual_seed(0)
    net = EDSRPSAL(scale=2, width=4, blocks=1, attention="none").double()
    x = torch.rand(1, 3, 8, 8)
    out = Upscaler(net)(x)
    assert out.shape == (1, 3, 16, 16)
    torch.testing.assert_close(out, net(x.double()).clamp(0, 1))

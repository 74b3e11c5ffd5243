import warnings

import pytest
import torch

from psal.models import DeepFillV1, build_attention, create_model, list_attentions, list_models


def _batch(b=2, size=32):
    torch.manual_seed(0)
    img = torch.rand(b, 3, size, size) * 2 - 1
    mask = torch.zeros(b, 1, size, size, dtype=torch.bool)
    mask[0, :, 8:20, 6:22] = True
    if b > 1:
        mask[1, :, 14:30, 12:26] = True
    return img, mask


def test_registry():
    assert {"deepfill_v1", "wgan_global_critic", "wgan_local_critic", "sn_patchgan_critic"} <= set(
        list_models()
    )
    assert {"none", "contextual", "psal", "dense"} <= set(list_attentions())
    with pytest.raises(ValueError, match=r"unknown model 'deepfill_v9'.*deepfill_v1"):
        create_model("deepfill_v9")
    with pytest.raises(ValueError, match="unknown attention"):
        DeepFillV1(width=4, attention="magic")
    with pytest.raises(TypeError, match="bad options for attention 'psal'"):
        build_attention("psal", kk=3)
    with pytest.raises(ValueError, match="takes no options"):
        build_attention("none", k=3)


def test_outputs_and_composite(device):
    net = DeepFillV1(width=4, attention="none").to(device)
    img, mask = (t.to(device) for t in _batch())
    with torch.no_grad():
        out = net(img, mask)
    for t in out[:3]:
        assert t.shape == img.shape
        assert float(t.min()) >= -1 and float(t.max()) <= 1
    assert out.field is None
    known = ~mask.expand_as(img)
    assert torch.equal(out.completed[known], img[known])
    assert torch.equal(out.completed[~known], out.refined[~known])


def test_hole_content_is_ignored():
    # what lies under the hole must not change the output
    net = DeepFillV1(width=4, attention="none")
    img, mask = _batch()
    noisy = torch.where(mask, torch.rand_like(img), img)
    a, b = net(img, mask), net(noisy, mask)
    torch.testing.assert_close(a.completed, b.completed)


def test_samples_are_independent():
    net = DeepFillV1(width=4, attention="psal", attention_options={"iters": 2})
    img, mask = _batch()
    out = net(img, mask)
    mask2 = mask.clone()
    mask2[1] = False
    mask2[1, :, 2:10, 2:10] = True  # change sample 1's mask only
    out2 = net(img, mask2)
    torch.testing.assert_close(out.coarse[0], out2.coarse[0])
    assert not torch.allclose(out.coarse[1], out2.coarse[1])


@pytest.mark.parametrize("attention", ["none", "psal", "contextual", "dense"])
def test_gradients_reach_every_parameter(attention):
    opts = {"psal": {"iters": 2}, "dense": {"k": 3}}.get(attention, {})
    net = DeepFillV1(width=4, attention=attention, attention_options=opts)
    img, mask = _batch(size=64 if attention == "contextual" else 32)
    out = net(img, mask, return_field=attention != "none")
    (out.coarse.square().mean() + out.refined.square().mean()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    if attention != "none":
        assert out.field is not None and out.field.shape == (
            2,
            2,
            *(s // 4 for s in img.shape[-2:]),
        )


def test_return_flow_and_flow_are_deprecated_spellings_of_the_field():
    """return_flow= (forward and refine stage) and .flow warn and give identical results."""
    net = DeepFillV1(width=4, attention="psal", attention_options={"iters": 2})
    img, mask = _batch()

    def run(*args, **kwargs):
        torch.manual_seed(3)  # PatchMatch's random initialisation
        return net(img, mask, *args, **kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns about nothing
        new = run(return_field=True)
        assert new.field is not None
    with pytest.warns(
        DeprecationWarning, match=r"return_flow=\.\.\.\) is deprecated; use return_field="
    ):
        old = run(return_flow=True)
    with pytest.warns(DeprecationWarning, match=r"by position is deprecated"):
        positional = run(True)
    for out in (old, positional):
        assert out._fields == ("coarse", "refined", "completed", "field")
        for a, b in zip(new, out):
            assert torch.equal(a, b)
    with pytest.warns(
        DeprecationWarning, match=r"InpaintOutput\.flow is deprecated; use InpaintOutput\.field"
    ):
        assert old.flow is old.field
    with pytest.raises(TypeError, match="both 'return_flow'"):
        run(return_field=True, return_flow=True)

    x = torch.rand(2, 5, 32, 32)
    torch.manual_seed(4)
    refined, field = net.refine(x, mask, return_field=True)
    torch.manual_seed(4)
    with pytest.warns(DeprecationWarning, match=r"RefineNetwork\.forward\(return_flow="):
        old_refined, old_field = net.refine(x, mask, return_flow=True)
    assert torch.equal(refined, old_refined) and torch.equal(field, old_field)
    assert net.refine(x, mask)[1] is None


def test_psal_adapter_fills_hole_from_outside():
    layer = build_attention("psal", k=2, patch_size=3, iters=3)
    torch.manual_seed(1)
    x = torch.rand(2, 8, 12, 12)
    hole = torch.zeros(2, 1, 12, 12, dtype=torch.bool)
    hole[:, :, 4:8, 3:9] = True
    out, flow = layer(x, x, x, hole=hole, return_field=True)
    assert torch.equal(out[~hole.expand_as(out)], x[~hole.expand_as(x)])
    ys, xs = torch.nonzero(hole[0, 0], as_tuple=True)
    ty = ys + flow[0, 0, ys, xs].long()
    tx = xs + flow[0, 1, ys, xs].long()
    assert not hole[0, 0, ty, tx].any()  # every source lies outside the hole
    assert (flow[:, :, ~hole[0, 0]] == 0).all()


def test_psal_adapter_passes_through_without_valid_keys():
    layer = build_attention("psal", k=3)
    x = torch.rand(2, 4, 8, 8)
    hole = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    hole[0, :, 3:5, 3:5] = True
    hole[1] = True  # nothing to attend to
    with pytest.warns(RuntimeWarning, match="1 of 2 samples"):
        out, flow = layer(x, x, x, hole=hole, return_field=True)
    assert torch.equal(out[1], x[1])
    assert not torch.equal(out[0], x[0])
    assert (flow[1] == 0).all()


def test_psal_temperature_default_and_options():
    layer = build_attention("psal", patch_size=5, aggregation="patch", learnable_temperature=True)
    assert float(layer.layer.temperature.detach()) == pytest.approx(2 * 25 / 10)
    assert any(p.numel() == 1 for p in layer.parameters())
    assert float(build_attention("psal", normalize=False).layer.temperature) == pytest.approx(1.0)


def test_bad_inputs():
    net = DeepFillV1(width=4, attention="none")
    img, mask = _batch()
    with pytest.raises(ValueError, match="multiples of 4"):
        net(img[..., :30], mask[..., :30])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(img[:, :2], mask)
    with pytest.raises(ValueError, match="mask must have shape"):
        net(img, mask[:1])
    with pytest.raises(TypeError, match="floating-point"):
        net(img.long(), mask)
    with pytest.raises(ValueError, match="width"):
        DeepFillV1(width=1)


def _conv_params(cin, cout, k=3):
    return k * k * cin * cout + cout


def test_parameter_count_per_layer_is_the_references():
    # the reference's gen_conv layers (v1.0.0 inpaint_model.py), c = 32, 5 input channels
    c = 32
    net = DeepFillV1(width=c, attention="contextual")
    stage1_encoder = [(5, c, 5), (c, 2 * c), (2 * c, 2 * c), (2 * c, 4 * c)] + [(4 * c, 4 * c)] * 6
    stage2_dilated = [(5, c, 5), (c, c), (c, 2 * c), (2 * c, 2 * c), (2 * c, 4 * c)]
    stage2_dilated += [(4 * c, 4 * c)] * 5
    attention = [(5, c, 5), (c, c), (c, 2 * c), (2 * c, 4 * c), (4 * c, 4 * c), (4 * c, 4 * c)]
    attention_decoder = [(4 * c, 4 * c)] * 2

    def decoder(cin):
        return [(cin, 4 * c), (4 * c, 4 * c), (4 * c, 2 * c), (2 * c, 2 * c), (2 * c, c),
                (c, c // 2), (c // 2, 3)]  # fmt: skip

    expected = {
        "coarse.encoder": stage1_encoder,
        "coarse.decoder": decoder(4 * c),
        "refine.dilated": stage2_dilated,
        "refine.attention_encoder": attention,
        "refine.attention_decoder": attention_decoder,
        "refine.decoder": decoder(8 * c),
    }
    convs = {n: m for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    for prefix, layers in expected.items():
        mine = [m for n, m in convs.items() if n.startswith(prefix + ".")]
        assert [(m.in_channels, m.out_channels, m.kernel_size[0]) for m in mine] == [
            (a, b, k[0] if k else 3) for a, b, *k in layers
        ], prefix
        got = [sum(p.numel() for p in m.parameters()) for m in mine]
        assert got == [_conv_params(*layer) for layer in layers], prefix
    strides = [m.stride[0] for n, m in convs.items() if n.startswith("refine.dilated.")]
    assert strides[:4] == [1, 2, 1, 2]
    assert sum(p.numel() for p in net.parameters()) == 3_601_542  # 3.60M, the reference's
    # psal < 0.2's layout (stage 1's encoder in stage 2) for old checkpoints
    legacy = DeepFillV1(width=c, attention="contextual", stage2_dilated="legacy")
    assert sum(p.numel() for p in legacy.parameters()) == 3_739_878
    with pytest.raises(ValueError, match="stage2_dilated must be one of"):
        DeepFillV1(width=4, stage2_dilated="v3")


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_image_of_another_dtype_is_named(dtype):
    net = DeepFillV1(width=4, attention="none")
    img, mask = _batch()
    with pytest.raises(TypeError, match=rf"^image has dtype {dtype} but DeepFillV1's "
                                        r"parameters are torch\.float32"):  # fmt: skip
        net(img.to(dtype), mask)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(img.bfloat16(), mask).completed.shape == img.shape

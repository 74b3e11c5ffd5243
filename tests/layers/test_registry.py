"""The attention contract of psal.layers.registry: four names, three modes."""

import pytest
import torch

from psal.layers import AttentionBlock, build_attention, list_attentions
from psal.patchmatch import valid_key_positions

NAMES = ("psal", "dense", "contextual", "none")
# Small, fast settings; contextual at rate 1 so that a pixel's source is a pixel.
OPTIONS = {
    "psal": {"k": 2, "patch_size": 3, "iters": 2},
    "dense": {"patch_size": 3},
    "contextual": {"rate": 1},
    "none": {},
}


def _block(name):
    block = build_attention(name, **OPTIONS[name])
    assert isinstance(block, AttentionBlock)
    return block


def _hole_case():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 4, 14, 16, generator=g)
    hole = torch.zeros(2, 1, 14, 16, dtype=torch.bool)
    hole[0, :, 4:9, 5:10] = True
    hole[1, :, 2:6, 9:14] = True
    return x, hole


def test_names_are_listed_and_sorted():
    assert list_attentions() == ["contextual", "dense", "none", "psal"]


@pytest.mark.parametrize("name", NAMES)
def test_self_attention_in_a_hole(name, device):
    """Queries in the hole take content from outside it only; shapes and field as documented."""
    x, hole = _hole_case()
    torch.manual_seed(0)
    marker = x.clone()
    marker[hole.expand_as(x)] = 1e3  # hole content that must never be copied
    x, hole, marker = x.to(device), hole.to(device), marker.to(device)
    out, field = _block(name).to(device)(x, x, marker, hole=hole, return_field=True)
    assert out.device == x.device and (field is None or field.device == x.device)
    x, hole, marker, out = x.cpu(), hole.cpu(), marker.cpu(), out.cpu()
    field = None if field is None else field.cpu()
    assert out.shape == x.shape and out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())
    if name == "none":
        assert field is None and torch.equal(out, marker)
        return
    inside = hole.expand_as(x)
    assert float(out[inside].abs().max()) < 2.0  # nothing from the 1e3 hole values
    if name in ("psal", "dense"):  # outside the hole: value unchanged
        assert torch.equal(out[~inside], marker[~inside])
    if name == "dense":
        assert field is None
        return
    assert field.shape == (2, 2, 14, 16) and field.dtype == torch.float32
    ys, xs = torch.meshgrid(torch.arange(14), torch.arange(16), indexing="ij")
    ty = (ys + field[:, 0].long()).clamp(0, 13)
    tx = (xs + field[:, 1].long()).clamp(0, 15)
    for b in range(2):
        src_hole = hole[b, 0, ty[b], tx[b]]
        assert not bool(src_hole[hole[b, 0]].any())  # sources of hole pixels are outside


@pytest.mark.parametrize("name", NAMES)
def test_cross_attention_between_images_of_different_sizes(name, device):
    """Colorization: query (B,C,H,W), key (B,C,H',W'), value (B,Cv,H',W') -> (B,Cv,H,W)."""
    torch.manual_seed(0)
    target = torch.rand(2, 4, 12, 10, device=device)
    ref = torch.rand(2, 4, 9, 15, device=device)
    colours = torch.rand(2, 2, 9, 15, device=device)
    out, field = _block(name)(target, ref, colours, return_field=True)
    assert out.device == target.device
    colours, out = colours.cpu(), out.cpu()
    field = None if field is None else field.cpu()
    assert out.shape == (2, 2, 12, 10)
    lo, hi = float(colours.min()), float(colours.max())
    assert lo - 1e-5 <= float(out.min()) and float(out.max()) <= hi + 1e-5  # convex mixes
    if name in ("psal", "contextual"):
        assert field.shape == (2, 2, 12, 10)
        ys, xs = torch.meshgrid(torch.arange(12), torch.arange(10), indexing="ij")
        ky, kx = ys + field[:, 0], xs + field[:, 1]  # a pixel of the key, not the query
        assert bool(((ky >= 0) & (ky < 9) & (kx >= 0) & (kx < 15)).all())
        assert bool((kx >= 10).any())  # reaches key columns the query does not have
    else:
        assert field is None


def test_cross_attention_copies_the_matching_value():
    """A reference that holds the target's pixels: exact search copies their values."""
    torch.manual_seed(0)
    ref = torch.rand(1, 3, 10, 12)
    target = ref[..., 2:8, 3:11].clone()  # a crop of the reference
    value = torch.arange(120.0).reshape(1, 1, 10, 12)
    block = build_attention("dense", k=1, patch_size=1, temperature=1e-4, normalize=False)
    out, field = block(target, ref, value, return_field=True)
    assert torch.equal(out, value[..., 2:8, 3:11])
    assert bool((field[:, 0] == 2).all() and (field[:, 1] == 3).all())


@pytest.mark.parametrize("name", NAMES)
def test_unmasked_self_attention(name, device):
    """Super-resolution: block(x, x, x) -> (B, C, H, W)."""
    torch.manual_seed(0)
    x = torch.rand(2, 4, 11, 13, device=device, requires_grad=True)
    out, field = _block(name)(x, x, x)
    assert out.shape == (2, 4, 11, 13) and field is None
    out.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


def test_psal_and_dense_agree_with_exact_search():
    """psal with a search that finds the exact neighbours equals dense top-k."""
    x, hole = _hole_case()
    opts = {"k": 3, "patch_size": 3, "temperature": 0.3, "aggregation": "patch"}
    a, _ = build_attention("psal", backend="exact", **opts)(x, x, x, hole=hole)
    b, _ = build_attention("dense", **opts)(x, x, x, hole=hole)
    torch.testing.assert_close(a, b)


def test_hole_needs_same_sizes_and_clear_errors():
    block = build_attention("psal")
    q, k = torch.rand(1, 4, 8, 8), torch.rand(1, 4, 9, 8)
    with pytest.raises(ValueError, match="hole is for self-attention"):
        block(q, k, k, hole=torch.zeros(1, 1, 9, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="same channels C"):
        block(q, torch.rand(1, 3, 8, 8), q)
    with pytest.raises(ValueError, match="value must have the key's spatial size"):
        block(q, q, torch.rand(1, 4, 7, 8))
    with pytest.raises(ValueError, match="at least patch_size=5"):
        build_attention("dense", patch_size=5)(q[..., :4, :], q, q)
    with pytest.raises(ValueError, match="unknown attention 'nope'; registered"):
        build_attention("nope")
    with pytest.raises(TypeError, match="bad options for attention 'psal'"):
        build_attention("psal", kk=3)
    with pytest.raises(ValueError, match="attention 'none' takes no options"):
        build_attention("none", k=3)


def test_samples_without_enough_keys_pass_through():
    x, hole = _hole_case()
    hole[1] = True
    for name in ("psal", "dense"):
        with pytest.warns(RuntimeWarning, match="1 of 2 samples"):
            out, field = build_attention(name, k=2)(x, x, x, hole=hole, return_field=True)
        assert torch.equal(out[1], x[1]) and not torch.equal(out[0], x[0])
        assert bool((field[1] == 0).all()) and bool(field[0].abs().sum() > 0)
        assert valid_key_positions(hole, 3)[0].any()


@pytest.mark.parametrize("name", ("psal", "contextual", "none"))
def test_old_adapter_call_still_works(name):
    x, hole = _hole_case()
    block = _block(name)
    torch.manual_seed(0)
    new, new_field = block(x, x, x, hole=hole, return_field=True)
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning, match="deprecated"):
        old, old_field = block(x, hole, return_flow=True)
    assert torch.equal(new, old)
    assert (new_field is None and old_field is None) or torch.equal(new_field, old_field)


def test_models_reexports_the_registry():
    from psal.layers.registry import PSALBlock
    from psal.models import build_attention as b2
    from psal.models import list_attentions as l2

    with pytest.warns(DeprecationWarning, match="psal.models.attention is deprecated"):
        import importlib
        import sys

        sys.modules.pop("psal.models.attention", None)
        PSALAdapter = importlib.import_module("psal.models.attention").PSALAdapter

    assert b2 is build_attention and l2 is list_attentions and PSALAdapter is PSALBlock


def test_registry_drives_the_cli_attention_choices():
    """A registered attention becomes a --attention choice of psal train, and only those."""
    from psal.cli import build_parser
    from psal.layers.registry import ATTENTIONS

    ATTENTIONS.register("test-identity")(lambda **options: build_attention("none"))
    try:
        args = build_parser().parse_args(["train", "inpaint", "--attention", "test-identity"])
        assert "test-identity" in vars(args).values()
        assert "test-identity" in list_attentions()
    finally:
        ATTENTIONS._entries.pop("test-identity")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "inpaint", "--attention", "test-identity"])


def test_docstring_examples():
    import doctest

    from psal.layers import registry

    result = doctest.testmod(registry, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", NAMES)
def test_low_precision_inputs_run_in_float32(name):
    """bfloat16 features (autocast training): the block computes in float32, returns float32."""
    x, hole = _hole_case()
    xb = x.bfloat16()
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = _block(name)(xb, xb, xb, hole=hole)
    torch.manual_seed(0)
    ref, _ = _block(name)(xb.float(), xb.float(), xb.float(), hole=hole)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=0)

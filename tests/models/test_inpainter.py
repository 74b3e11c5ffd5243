import numpy as np
import pytest
import torch
from PIL import Image

from psal.models import DeepFillV1, Inpainter, load_weights, save_weights


@pytest.fixture(scope="module")
def inpainter():
    torch.manual_seed(0)
    return Inpainter(DeepFillV1(width=4, attention="none"), training_size=32)


def _hole(h, w):
    m = np.zeros((h, w), bool)
    m[h // 4 : h // 2, w // 3 : w // 2 + 3] = True
    return m


def test_forward_any_size_and_own_masks(inpainter, device):
    net = inpainter.to(device)
    images = torch.rand(2, 3, 37, 50, device=device)
    masks = torch.zeros(2, 1, 37, 50, dtype=torch.bool, device=device)
    masks[0, :, 5:15, 5:20] = True
    masks[1, :, 20:30, 30:45] = True
    out = net(images, masks)
    assert out.shape == images.shape and out.dtype == images.dtype
    known = ~masks.expand_as(images)
    assert torch.equal(out[known], images[known])
    assert not torch.equal(out[~known], images[~known])
    # each sample is inpainted with its own mask: alone or in a batch, the same result
    alone = net(images[1:], masks[1:])
    torch.testing.assert_close(alone, out[1:], atol=1e-5, rtol=1e-5)
    net.to("cpu")


def test_forward_downscales_large_inputs():
    torch.manual_seed(0)
    net = Inpainter(DeepFillV1(width=4, attention="none"), training_size=16, max_size=32)
    images = torch.rand(1, 3, 70, 90)
    masks = torch.zeros(1, 1, 70, 90, dtype=torch.bool)
    masks[..., 20:40, 30:60] = True
    out = net(images, masks)
    assert out.shape == images.shape
    assert torch.equal(out[~masks.expand_as(out)], images[~masks.expand_as(images)])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(images[:, :1], masks)
    with pytest.raises(ValueError, match="masks must have shape"):
        net(images, masks[..., :10])


@pytest.mark.parametrize("kind", ["uint8", "float32", "float64", "gray_uint8", "gray_float"])
def test_inpaint_numpy_keeps_type(inpainter, kind):
    rng = np.random.default_rng(0)
    h, w = 45, 61
    if kind.startswith("gray"):
        img = rng.random((h, w))
    else:
        img = rng.random((h, w, 3))
    img = (
        (img * 255).astype(np.uint8)
        if kind.endswith("uint8")
        else img.astype(np.float32 if kind == "gray_float" else kind)
    )
    hole = _hole(h, w)
    out = inpainter.inpaint(img, hole)
    assert type(out) is np.ndarray and out.shape == img.shape and out.dtype == img.dtype
    assert np.array_equal(out[~hole], img[~hole])
    assert not np.array_equal(out[hole], img[hole])


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_inpaint_pil_keeps_mode(inpainter, mode):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (40, 52, 4), dtype=np.uint8)
    img = Image.fromarray(arr, "RGBA").convert(mode)
    hole = _hole(40, 52)
    out = inpainter.inpaint(img, Image.fromarray(hole.astype(np.uint8) * 255))
    assert isinstance(out, Image.Image) and out.mode == mode and out.size == img.size
    a, b = np.asarray(img), np.asarray(out)
    assert np.array_equal(a[~hole], b[~hole])
    if mode == "RGBA":
        assert np.array_equal(a[..., 3], b[..., 3])


@pytest.mark.parametrize("mode", ["I;16", "I", "F", "P", "LA"])
def test_inpaint_other_modes_keep_known_pixels(inpainter, mode):
    # 16-bit images were clipped to 8 bits through convert("RGB") and came back dark
    rng = np.random.default_rng(4)
    hole = _hole(40, 52)
    if mode in ("I;16", "I"):
        img = Image.fromarray(rng.integers(0, 65536, (40, 52), dtype=np.uint16))
        img = img if mode == "I;16" else img.convert("I")
    elif mode == "F":
        img = Image.fromarray(rng.random((40, 52), dtype=np.float32))
    else:
        img = Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).convert(mode)
    out = inpainter.inpaint(img, hole)
    expected = {"P": "RGB"}.get(mode, mode)
    assert isinstance(out, Image.Image) and out.mode == expected
    a = np.asarray(img.convert("RGB") if mode == "P" else img)
    b = np.asarray(out)
    assert np.array_equal(a[~hole], b[~hole])
    if mode in ("I;16", "I"):  # the fill is on the image's own 16-bit scale
        assert b[hole].mean() > 10000


def test_inpaint_tensor_batch_with_own_masks_and_psal_mask_rules(inpainter):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 40, 52, generator=g)
    holes = torch.zeros(2, 1, 40, 52, dtype=torch.bool)
    holes[0, :, 5:15, 5:20] = True
    holes[1, :, 20:35, 30:45] = True
    out = inpainter.inpaint(x, holes)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out[~holes.expand_as(x)], x[~holes.expand_as(x)])
    assert not torch.equal(out[0, :, 5:15, 5:20], x[0, :, 5:15, 5:20])
    assert torch.equal(out[0, :, 20:35, 30:45], x[0, :, 20:35, 30:45])
    # masks follow psal.inpaint's rule: soft masks cut at mid-grey, red scribbles count
    img = np.asarray(x[0].permute(1, 2, 0))
    soft = np.zeros((40, 52), np.float32)
    soft[5:15, 5:20] = 0.8
    soft[25:35, 30:45] = 0.2
    res = inpainter.inpaint(img, soft)
    assert np.array_equal(res[25:35, 30:45], img[25:35, 30:45])
    assert not np.array_equal(res[5:15, 5:20], img[5:15, 5:20])
    red = np.zeros((40, 52, 3), np.uint8)
    red[5:15, 5:20, 0] = 255
    res_red = inpainter.inpaint(img, Image.fromarray(red))
    assert not np.array_equal(res_red[5:15, 5:20], img[5:15, 5:20])


def test_inpaint_large_image_uses_a_window(inpainter):
    rng = np.random.default_rng(2)
    img = rng.random((300, 400, 3)).astype(np.float32)
    hole = np.zeros((300, 400), bool)
    hole[100:110, 200:215] = True
    top, bottom, left, right = inpainter._window(hole)
    # the window holds the hole with a margin, and is much smaller than the image
    assert top <= 100 - 10 and bottom >= 110 + 10 and left <= 200 - 15 and right >= 215 + 15
    assert (bottom - top) * (right - left) < 300 * 400 / 10
    out = inpainter.inpaint(img, hole)
    assert np.array_equal(out[~hole], img[~hole])


def test_inpaint_input_errors(inpainter):
    img = np.zeros((20, 20, 3), np.float32)
    with pytest.raises(ValueError, match="mask has size 20x10"):
        inpainter.inpaint(img, np.zeros((10, 20), bool))
    with pytest.raises(TypeError, match="mask must be a numpy array"):
        inpainter.inpaint(img, [[True]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        inpainter.inpaint(img + 2, np.ones((20, 20), bool))
    with pytest.raises(TypeError, match="image must be a numpy array, a PIL image or a torch"):
        inpainter.inpaint([[0]], np.ones((20, 20), bool))
    with pytest.warns(UserWarning, match="empty"):
        no_hole = inpainter.inpaint(img, np.zeros((20, 20), bool))
    assert np.array_equal(no_hole, img)


def test_from_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(3)
    net = DeepFillV1(width=4, attention="psal", attention_options={"k": 2, "iters": 2})
    spec = {
        "name": "deepfill_v1",
        "kwargs": {"width": 4, "attention": "psal", "attention_options": {"k": 2, "iters": 2}},
    }
    path = tmp_path / "w.safetensors"
    save_weights(path, {"generator": net.state_dict()}, {"generator": spec, "image_size": 48})
    loaded = Inpainter.from_checkpoint(path, device="cpu")
    assert loaded.training_size == 48 and loaded.generator.attention_name == "psal"
    for (k, a), (k2, b) in zip(net.state_dict().items(), loaded.generator.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    states, meta = load_weights(path)
    assert meta["generator"] == spec and set(states) == {"generator"}


def test_from_checkpoint_rejects_foreign_files(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a psal checkpoint"):
        Inpainter.from_checkpoint(path)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="cannot read"):
        Inpainter.from_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Inpainter.from_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="without checkpoints"):
        Inpainter.from_checkpoint(tmp_path)


@pytest.mark.parametrize("max_size", [0, 24], ids=["full_size", "downscaled"])
def test_hole_content_does_not_leak_into_the_fill(max_size):
    # a hole at the bottom-right corner of a 45x45 image: padding to a multiple of 4
    # and the antialiased downscale both reach the hole's pixels
    torch.manual_seed(0)
    net = Inpainter(DeepFillV1(width=4, attention="none"), training_size=16, max_size=max_size)
    g = torch.Generator().manual_seed(1)
    a = torch.rand(1, 3, 45, 45, generator=g)
    hole = torch.zeros(1, 1, 45, 45, dtype=torch.bool)
    hole[..., 30:, 30:] = True
    b = torch.where(hole, torch.rand(1, 3, 45, 45, generator=g), a)  # differs in the hole only
    assert torch.equal(net(a, hole), net(b, hole))
    np_hole = hole[0, 0].numpy()
    img_a, img_b = (np.ascontiguousarray(x[0].permute(1, 2, 0).numpy()) for x in (a, b))
    assert np.array_equal(net.inpaint(img_a, np_hole), net.inpaint(img_b, np_hole))


@pytest.mark.filterwarnings("ignore:mask. the hole covers")
def test_inpaint_refuses_a_whole_image_mask_and_warns_on_an_empty_one(inpainter):
    img = np.random.default_rng(0).random((20, 24, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="the mask covers the whole image"):
        inpainter.inpaint(img, np.ones((20, 24), bool))
    batch = torch.from_numpy(img).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
    masks = torch.zeros(2, 1, 20, 24, dtype=torch.bool)
    masks[0, :, 2:6, 2:6] = True
    masks[1] = True  # one sample with no known pixel
    with pytest.raises(ValueError, match="the mask covers the whole image"):
        inpainter.inpaint(batch, masks)
    with pytest.warns(UserWarning, match="the mask is empty; the image is returned unchanged"):
        out = inpainter.inpaint(img, np.zeros((20, 24), bool))
    assert np.array_equal(out, img)


def test_inpaint_names_a_bad_mask_threshold(inpainter):
    img = np.zeros((20, 24, 3), np.float32)
    with pytest.raises(ValueError, match="mask_threshold"):
        inpainter.inpaint(img, np.ones((20, 24), np.float32), mask_threshold=2)


def test_inpaint_seed_repeats_and_leaves_the_global_generator_alone():
    torch.manual_seed(0)
    net = Inpainter(DeepFillV1(width=4, attention="psal", attention_options={"k": 2}),
                    training_size=32)  # fmt: skip
    img = np.random.default_rng(0).random((40, 44, 3)).astype(np.float32)
    hole = _hole(40, 44)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    out = net.inpaint(img, hole, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(999)  # the seed alone decides the result
    assert np.array_equal(net.inpaint(img, hole, seed=5), out)
    with pytest.raises(ValueError, match="seed must be"):
        net.inpaint(img, hole, seed=-1)


def test_inpaint_progress(inpainter):
    img = np.random.default_rng(0).random((20, 24, 3)).astype(np.float32)
    hole = np.zeros((20, 24), bool)
    hole[4:10, 5:12] = True
    calls = []
    inpainter.inpaint(img, hole, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1)]
    batch = torch.from_numpy(img).permute(2, 0, 1)[None].repeat(3, 1, 1, 1)
    calls.clear()
    inpainter.inpaint(batch, torch.from_numpy(hole), progress=lambda *a: calls.append(a))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(TypeError, match="progress"):
        inpainter.inpaint(img, hole, progress=5)


def test_forward_runs_the_generator_in_its_own_dtype():
    torch.manual_seed(0)
    gen = DeepFillV1(width=4, attention="none")
    images = torch.rand(1, 3, 20, 24)
    masks = torch.zeros(1, 1, 20, 24, dtype=torch.bool)
    masks[..., 4:12, 6:14] = True
    want = Inpainter(gen, training_size=32)(images, masks)
    out = Inpainter(gen.double(), training_size=32)(images, masks)
    assert out.dtype == images.dtype
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)


def test_float64_generator_fills_at_float64_precision():
    # forward cast the images to float32 and the prediction back through float32:
    # a float64 generator's fill was float32-accurate (about 1e-7 off)
    torch.manual_seed(0)
    gen = DeepFillV1(width=4, attention="none").double()
    net = Inpainter(gen, training_size=32)
    x = torch.rand(1, 3, 24, 28, dtype=torch.float64)
    m = torch.zeros(1, 1, 24, 28, dtype=torch.bool)
    m[..., 5:12, 6:14] = True
    with torch.no_grad():  # 24x28: a multiple of the stride, under max_size (no resampling)
        want = ((gen((x * 2 - 1).masked_fill(m, 0), m).completed + 1) / 2).clamp(0, 1)
    for out in (net(x, m), net.inpaint(x, m[0, 0].numpy(), seed=0)):
        assert out.dtype == torch.float64
        torch.testing.assert_close(out[m.expand_as(x)], want[m.expand_as(x)], rtol=0, atol=1e-12)


def test_from_checkpoint_names_the_file_of_a_bad_version_1_description(tmp_path):
    # format version 1 gets a legacy keyword added to its kwargs: a list there was an
    # AttributeError ("'list' object has no attribute 'setdefault'"), not the file named
    import json

    from safetensors.torch import save_file

    path = tmp_path / "old.safetensors"
    spec = {"name": "deepfill_v1", "kwargs": [4]}
    meta = {"format": "psal.inpaint/1", "generator": json.dumps(spec), "image_size": "32"}
    save_file({"generator.w": torch.zeros(1)}, str(path), metadata=meta)
    with pytest.raises(ValueError, match=r"old\.safetensors.*kwargs must be a dict"):
        Inpainter.from_checkpoint(path, device="cpu")

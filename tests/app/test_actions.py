"""psal.app.actions without a server: masks from layers, uploads, the tools as the CLI runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from app_helpers import header
from PIL import Image

import psal
from psal.app import actions
from psal.app.actions import Limits
from psal.cli import main

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _photo(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    base = np.add.outer(np.arange(h), np.arange(w))[..., None] * np.array([3, 5, 7])
    return Image.fromarray(((base + rng.integers(0, 40, (h, w, 3))) % 256).astype(np.uint8))


def _layer(h, w, box, rgb=(255, 0, 255), alpha=153):
    a = np.zeros((h, w, 4), np.uint8)
    y0, y1, x0, x1 = box
    a[y0:y1, x0:x1] = (*rgb, alpha)
    return Image.fromarray(a, "RGBA")


def test_mask_comes_from_alpha_not_colour():
    black_opaque = _layer(20, 30, (2, 6, 3, 9), rgb=(0, 0, 0), alpha=255)
    faint = _layer(20, 30, (10, 12, 20, 25), rgb=(255, 255, 255), alpha=1)
    # colour under transparent pixels (what the eraser leaves) is not a hole
    erased = np.zeros((20, 30, 4), np.uint8)
    erased[..., :3] = 255
    hole = actions.mask_from_layers([black_opaque, faint, erased], (30, 20))
    want = np.zeros((20, 30), bool)
    want[2:6, 3:9] = want[10:12, 20:25] = True
    assert hole.dtype == bool and np.array_equal(hole, want)


def test_mask_is_scaled_to_the_photo(tmp_path):
    # a canvas holding a half-size copy: the mask comes back at the photo's full size
    small = _layer(50, 80, (10, 20, 40, 60))
    path = tmp_path / "layer.png"
    small.save(path)
    hole = actions.mask_from_layers([str(path)], (160, 100))
    assert hole.shape == (100, 160)
    ys, xs = np.nonzero(hole)
    assert 19 <= ys.min() <= 20 and 39 <= ys.max() <= 40
    assert 79 <= xs.min() <= 80 and 119 <= xs.max() <= 120
    with pytest.raises(ValueError, match="no alpha channel"):
        actions.mask_from_layers([Image.new("RGB", (4, 4))], (4, 4))


def test_a_layer_without_an_image_is_no_hole():
    # the editor can send a layer it has no image for as None: nothing is painted on it
    # (it was an AttributeError, shown on the page as an unexplained "Error")
    hole = actions.mask_from_layers([None, _layer(8, 10, (1, 3, 2, 5))], (10, 8))
    assert hole.sum() == 6 and hole[1:3, 2:5].all()
    assert not actions.mask_from_layers([None], (10, 8)).any()


@pytest.mark.parametrize("k", [2.5, 0, 33, "two", None, True, "3"])
def test_colorize_k_is_checked_not_truncated(k):
    # k = 2.5 from the API was run as k = 2 without a word
    target, ref = _photo(16, 16, seed=1).convert("L"), _photo(16, 16, seed=2)
    with pytest.raises(ValueError, match=r"^k \(reference patches averaged\) must be an integer"):
        actions.run_colorize(target, ref, patch_size=3, k=k)


def test_inpaint_equals_the_cli(tmp_path, capsys):
    img = _photo()
    img.save(tmp_path / "in.png")
    hole = np.asarray(_layer(48, 64, (15, 30, 20, 40)))[..., 3] > 0
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    out = actions.run_inpaint(img, hole, patch_size=5, dilate=1, seed=4)
    code = main(["inpaint", str(tmp_path / "in.png"), "-m", str(tmp_path / "mask.png"),
                 "--patch-size", "5", "--dilate", "1", "--seed", "4", "-q",
                 "-o", str(tmp_path / "cli.png")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(out), np.asarray(Image.open(tmp_path / "cli.png")))
    a, b = np.asarray(img), np.asarray(out)
    grown = np.zeros_like(hole)
    grown[14:31, 19:41] = True
    assert np.array_equal(a[~grown], b[~grown]) and not np.array_equal(a[hole], b[hole])


def test_inpaint_with_a_source_region_equals_the_cli(tmp_path, capsys):
    img = _photo()
    img.save(tmp_path / "in.png")
    hole = np.zeros((48, 64), bool)
    hole[15:30, 20:40] = True
    source = np.zeros((48, 64), bool)
    source[:, 44:] = True  # copy only from the right-hand strip
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    Image.fromarray(source.astype(np.uint8) * 255).save(tmp_path / "source.png")
    out = actions.run_inpaint(img, hole, patch_size=5, dilate=1, seed=4, source=source)
    code = main(["inpaint", str(tmp_path / "in.png"), "-m", str(tmp_path / "mask.png"),
                 "--source-mask", str(tmp_path / "source.png"), "--patch-size", "5",
                 "--dilate", "1", "--seed", "4", "-q", "-o", str(tmp_path / "cli.png")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(out), np.asarray(Image.open(tmp_path / "cli.png")))
    free = actions.run_inpaint(img, hole, patch_size=5, dilate=1, seed=4)
    assert not np.array_equal(np.asarray(out), np.asarray(free))
    with pytest.raises(ValueError, match="works with the patch-based method"):
        actions.run_inpaint(img, hole, source=source, method=actions.LEARNED_METHOD)
    with pytest.raises(ValueError, match="the region to copy from is 64x47"):
        actions.run_inpaint(img, hole, source=source[1:])


def test_learned_inpaint_equals_the_cli(tmp_path, capsys):
    from psal.models import DeepFillV1, save_weights

    torch.manual_seed(1)
    kwargs = {"width": 4, "attention": "psal", "attention_options": {"k": 2}}  # seeds matter
    net = DeepFillV1(**kwargs)
    ckpt = tmp_path / "w.safetensors"
    spec = {"name": "deepfill_v1", "kwargs": kwargs}
    save_weights(ckpt, {"generator": net.state_dict()}, {"generator": spec, "image_size": 32})
    models = actions.load_models({"inpaint": str(ckpt)}, torch.device("cpu"))
    assert models["inpaint"][0] == "w.safetensors"
    img = _photo(40, 40)
    img.save(tmp_path / "in.png")
    hole = np.zeros((40, 40), bool)
    hole[10:20, 12:30] = True
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    out = actions.run_inpaint(img, hole, seed=2, method=actions.LEARNED_METHOD, models=models)
    code = main(["inpaint", str(tmp_path / "in.png"), "-m", str(tmp_path / "mask.png"),
                 "--checkpoint", str(ckpt), "--seed", "2", "--dilate", "0", "-q",
                 "-o", str(tmp_path / "cli.png")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(out), np.asarray(Image.open(tmp_path / "cli.png")))
    with pytest.raises(ValueError, match=r"no learned inpaint model is loaded.*--checkpoint"):
        actions.run_inpaint(img, hole, method=actions.LEARNED_METHOD, models={})
    with pytest.raises(ValueError, match=r"--checkpoint .*cannot load the model"):
        actions.load_models({"inpaint": str(tmp_path / "mask.png")}, torch.device("cpu"))


def test_learned_colorize_and_upscale_equal_the_cli(tmp_path, capsys):
    from psal.models import EDSRPSAL, GuidedColorizer, save_weights

    torch.manual_seed(0)
    col = GuidedColorizer(width=4, value_width=2)
    torch.nn.init.normal_(col.head.weight, std=0.1)  # not the zero start: real colours
    col_ckpt = tmp_path / "col.safetensors"
    spec = {"name": "guided_colorizer", "kwargs": {"width": 4, "value_width": 2}}
    save_weights(col_ckpt, {"network": col.state_dict()}, {"network": spec}, task="colorize")
    up = EDSRPSAL(scale=2, width=4, blocks=1)
    for p in up.parameters():  # not the bicubic start: the psal attention changes the result
        torch.nn.init.normal_(p, std=0.3)
    up_ckpt = tmp_path / "sr.safetensors"
    spec = {"name": "edsr_psal", "kwargs": {"scale": 2, "width": 4, "blocks": 1}}
    save_weights(up_ckpt, {"net": up.state_dict()}, {"network": spec}, task="upscale")
    models = actions.load_models({"colorize": str(col_ckpt), "upscale": str(up_ckpt)},
                                 torch.device("cpu"))  # fmt: skip
    assert sorted(models) == ["colorize", "upscale"] and models["upscale"][0] == "sr.safetensors"

    target, ref = _photo(30, 44, seed=1).convert("L"), _photo(36, 32, seed=2)
    target.save(tmp_path / "gray.png")
    ref.save(tmp_path / "ref.png")
    got = actions.run_colorize(target, ref, seed=5, method=actions.LEARNED_METHOD, models=models)
    code = main(["colorize", str(tmp_path / "gray.png"), "-r", str(tmp_path / "ref.png"),
                 "--checkpoint", str(col_ckpt), "--seed", "5", "-q",
                 "-o", str(tmp_path / "col.png")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    cli = np.asarray(Image.open(tmp_path / "col.png"))
    assert got.mode == "RGB" and np.array_equal(np.asarray(got), cli)
    patch = actions.run_colorize(target, ref, seed=5)
    assert not np.array_equal(np.asarray(patch), cli)  # the learned model, not the patches

    small = _photo(18, 22, seed=3)
    small.save(tmp_path / "small.png")
    got = actions.run_upscale(small, "x2", seed=7, method=actions.LEARNED_METHOD, models=models)
    code = main(["upscale", str(tmp_path / "small.png"), "--scale", "2", "--checkpoint",
                 str(up_ckpt), "--seed", "7", "-q", "-o", str(tmp_path / "up.png")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert got.size == (44, 36)
    cli = np.asarray(Image.open(tmp_path / "up.png"))
    assert np.array_equal(np.asarray(got), cli)
    other = actions.run_upscale(small, 2, seed=8, method=actions.LEARNED_METHOD, models=models)
    assert not np.array_equal(np.asarray(other), cli)  # the seed reaches the psal attention
    with pytest.raises(ValueError, match=r"scale is x3 but .*sr.safetensors was trained for x2"):
        actions.run_upscale(small, 3, method=actions.LEARNED_METHOD, models=models)
    with pytest.raises(ValueError, match=r"no learned colorize model .*--colorize-checkpoint"):
        actions.run_colorize(target, ref, method=actions.LEARNED_METHOD, models={})


def test_checkpoint_of_another_task_at_start_up(tmp_path, monkeypatch, capsys):
    from psal.models import save_weights

    other = tmp_path / "inpaint.safetensors"
    save_weights(other, {"generator": {}}, {"generator": {"name": "deepfill_v1"}}, task="inpaint")
    for task, flag in [("colorize", "--colorize-checkpoint"), ("upscale", "--upscale-checkpoint")]:
        with pytest.raises(ValueError, match=rf"^{flag} .*'inpaint', not '{task}'") as err:
            actions.load_models({task: str(other)}, torch.device("cpu"))
        assert "\n" not in str(err.value)
    # the command: one line, exit 1, before any server starts
    pytest.importorskip("gradio")
    import psal.app

    monkeypatch.setattr(psal.app, "require_gradio", lambda: None)
    code = main(["app", "--upscale-checkpoint", str(other), "--port", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0
    assert err.startswith("psal: error: --upscale-checkpoint") and "'inpaint', not 'upscale'" in err


def test_colorize_and_upscale_equal_the_library():
    target = _photo(32, 40, seed=1).convert("L")
    ref = _photo(36, 36, seed=2)
    got = actions.run_colorize(target, ref, patch_size=5, k=2, seed=3)
    want = psal.colorize(target, ref, patch_size=5, k=2, seed=3)
    assert np.array_equal(np.asarray(got), np.asarray(want))
    small = _photo(20, 24, seed=5)
    got = actions.run_upscale(small, "x3", patch_size=5, seed=1)
    want = psal.upscale(small, 3, patch_size=5, seed=1)
    assert got.size == (72, 60) and np.array_equal(np.asarray(got), np.asarray(want))


def test_bad_options_and_holes():
    img, hole = _photo(24, 24), np.zeros((24, 24), bool)
    with pytest.raises(ValueError, match="nothing is painted"):
        actions.run_inpaint(img, hole)
    with pytest.raises(ValueError, match="covers the whole image:"):
        actions.run_inpaint(img, ~hole)
    rim = np.ones((24, 24), bool)
    rim[0] = False  # painted all but one row: the growth is what covers it
    with pytest.raises(ValueError, match=r"whole image once grown by 2 pixels \(lower 'Grow"):
        actions.run_inpaint(img, rim, dilate=2)
    hole[5:9, 5:9] = True
    with pytest.raises(ValueError, match="mask is 24x23 but the photo is 24x24"):
        actions.run_inpaint(img, hole[:23])
    for kwargs, msg in [({"patch_size": 4}, "patch size must be a positive odd"),
                        ({"seed": -1}, "seed must be an integer in"),
                        ({"seed": "abc"}, "seed must be an integer"),
                        ({"seed": True}, "seed must be an integer in"),  # not seed 1
                        ({"patch_size": True}, "patch size must be a positive odd"),
                        ({"dilate": -2}, "dilation must be an integer >= 0"),
                        ({"method": "magic"}, "method must be"),
                        ({"source": hole}, "region to copy from leaves nothing to copy"),
                        ({"source": hole & False}, "region to copy from is empty")]:  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            actions.run_inpaint(img, hole, **kwargs)
    small = _photo(5, 6)  # a patch larger than the photo: the slider's words, what to do
    msg = r"the patch size \(7\) is larger than the photo \(6x5 pixels\): .* at most 5"
    with pytest.raises(ValueError, match=msg):
        actions.run_inpaint(small, np.pad(np.ones((1, 1), bool), ((2, 2), (2, 3))), patch_size=7)
    with pytest.raises(ValueError, match=msg):
        actions.run_upscale(small, 2, patch_size=7)
    with pytest.raises(ValueError, match=r"larger than the reference \(6x5 pixels\)"):
        actions.run_colorize(img, small, patch_size=7)
    with pytest.raises(ValueError, match="scale must be one of 2, 3, 4"):
        actions.run_upscale(img, 5)
    with pytest.raises(ValueError, match="no learned upscale model"):
        actions.run_upscale(img, 2, method=actions.LEARNED_METHOD)


def test_uploads_are_checked(tmp_path):
    limits = Limits(max_upload_mb=0.01, max_megapixels=0.002)
    with pytest.raises(ValueError, match="no image given"):
        actions.open_upload(None, "the photo", limits)
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"the photo: cannot read x.png as an image"):
        actions.open_upload(tmp_path / "x.png", "the photo", limits)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80, 3), np.uint8)).save(
        tmp_path / "big.png"
    )
    with pytest.raises(
        ValueError, match=r"the photo is 0.0\d+ MB, above this server's limit of 0.01 MB"
    ):
        actions.open_upload(tmp_path / "big.png", "the photo", limits)
    # the server's own result (a PNG, larger than the JPEG it came from): pixels only
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("padding", "x" * 20000)  # 20 kB in a 40x40 image
    Image.new("RGB", (40, 40)).save(tmp_path / "result.png", pnginfo=info)
    assert (tmp_path / "result.png").stat().st_size > 0.01e6
    with pytest.raises(ValueError, match=r"above this server's limit of 0\.01 MB"):
        actions.open_upload(tmp_path / "result.png", "the result", limits)
    again = actions.open_upload(tmp_path / "result.png", "the result", limits, check_bytes=False)
    assert again.size == (40, 40)
    Image.new("L", (50, 50)).save(tmp_path / "wide.png")  # small file, 2500 pixels
    with pytest.raises(ValueError, match=r"50x50 = 0.0025 megapixels, above .* 0.002 megapixels"):
        actions.open_upload(tmp_path / "wide.png", "the photo", limits)
    Image.new("L", (40, 40)).save(tmp_path / "ok.png")
    ok = actions.open_upload(tmp_path / "ok.png", "the photo", limits)
    assert ok.size == (40, 40) and ok.mode == "L"
    with pytest.raises(ValueError, match="the x2 result is 80x80"):
        actions.check_upscale_size(ok, 2, limits)
    with pytest.raises(ValueError, match="max_upload_mb must be a positive number"):
        Limits(max_upload_mb=0)


def test_results_keep_mode_and_refuse_lossy_jpeg(tmp_path):
    folder = actions.ResultFolder(tmp_path / "r")
    rgba = Image.new("RGBA", (8, 8), (1, 2, 3, 4))
    png = folder.save(rgba, actions.result_stem("/x/my photo.jpg", "inpainted"))
    assert png.name == "my_photo_inpainted.png" and header(png).mode == "RGBA"
    with pytest.raises(ValueError, match=r"JPEG cannot hold this RGBA image.*download it as PNG"):
        folder.save(rgba, "a", "JPEG")
    jpg = folder.save(Image.new("RGB", (8, 8)), "a", "JPEG")
    assert header(jpg).format == "JPEG" and jpg.parent != png.parent
    assert actions.display_copy(Image.new("I;16", (4, 4), 65535)).getpixel((0, 0)) == 255


def test_psal_app_without_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if not installed
    assert main(["app"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "psal[app]"' in err[0], err
    assert err[0].startswith("psal: error: ")


@pytest.mark.parametrize(
    ("host", "why"),
    [("no-such-host.invalid", "not an address or name this machine knows"),
     ("999.1.1.1", "not an address or name this machine knows"),
     ("192.0.2.1", "cannot listen on this address")],  # TEST-NET-1: not this machine's
)  # fmt: skip
def test_psal_app_refuses_a_host_it_cannot_listen_on(host, why, capsys):
    # it said "Cannot find empty port in range" after a line of uvicorn's
    pytest.importorskip("gradio")
    assert main(["app", "--host", host, "--port", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"psal: error: --host {host}: {why}"), err


def test_cli_does_not_import_the_web_code():
    code = (
        "import sys, psal, psal.cli; psal.cli.build_parser(); "
        "bad = [m for m in sys.modules if m.startswith(('gradio', 'fastapi', 'psal.app.ui'))]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_16_bit_colour_photos_are_edited_at_full_depth_as_the_cli_does(tmp_path, capsys):
    from psal.utils.image import load_image, save_image
    from psal.utils.io import full_depth

    rgb16 = np.random.default_rng(3).integers(0, 65536, (40, 48, 3)).astype(np.uint16)
    save_image(rgb16, tmp_path / "deep.png")
    image = actions.open_upload(tmp_path / "deep.png", "the photo", Limits())
    hole = np.zeros((40, 48), bool)
    hole[10:25, 12:30] = True
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    out = actions.run_inpaint(image, hole, patch_size=5, seed=2)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint16  # not cut to 8 bits
    assert np.array_equal(out[~hole], rgb16[~hole])
    code = main(["inpaint", str(tmp_path / "deep.png"), "-m", str(tmp_path / "mask.png"),
                 "--patch-size", "5", "--seed", "2", "--dilate", "0", "-q",
                 "-o", str(tmp_path / "cli.png")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    folder = actions.ResultFolder(tmp_path / "r")
    png = folder.save(out, "deep_inpainted")
    assert header(png).rawmode == "RGB;16B"
    assert np.array_equal(full_depth(load_image(png)), full_depth(load_image(tmp_path / "cli.png")))
    with pytest.raises(ValueError, match=r"JPEG cannot hold this RGB;16 image.*download it as PNG"):
        folder.save(out, "deep", "JPEG")
    up = actions.run_upscale(image, 2, patch_size=5, seed=0)
    assert isinstance(up, np.ndarray) and up.shape == (80, 96, 3) and up.dtype == np.uint16
    ref = _photo(40, 48, seed=1)
    with pytest.warns(UserWarning, match="luminance is used"):
        coloured = actions.run_colorize(image, ref, patch_size=5, seed=0)
    assert isinstance(coloured, np.ndarray) and coloured.dtype == np.uint16
    assert actions.result_file_mode(coloured) == "RGB;16"
    # a 16-bit gray photo is coloured at 16 bits too, the CLI's PNG bit for bit
    gray16 = (rgb16.astype(float) @ [0.299, 0.587, 0.114]).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    ref.save(tmp_path / "ref.png")
    target = actions.open_upload(tmp_path / "gray16.png", "the photo", Limits())
    coloured = actions.run_colorize(target, ref, patch_size=5, seed=0)
    assert isinstance(coloured, np.ndarray) and coloured.dtype == np.uint16
    code = main(["colorize", str(tmp_path / "gray16.png"), "-r", str(tmp_path / "ref.png"),
                 "--patch-size", "5", "--seed", "0", "-q", "-o", str(tmp_path / "c.png")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(coloured, full_depth(load_image(tmp_path / "c.png")))


def test_results_keep_exif_and_are_not_renamed_twice(tmp_path):
    exif = Image.Exif()
    exif[0x013B] = "someone"  # Artist
    folder = actions.ResultFolder(tmp_path / "r")
    for fmt in actions.DOWNLOAD_FORMATS:
        path = folder.save(_photo(), "a", fmt, exif=exif.tobytes())
        assert header(path).exif.get(0x013B) == "someone", fmt
    # "Edit the result": the result of a result keeps one suffix
    stem = actions.result_stem
    assert stem("/t/00001/cat_inpainted.png", "inpainted", once=True) == "cat_inpainted"
    assert stem("/t/_inpainted.png", "inpainted", once=True) == "_inpainted_inpainted"
    assert stem("/t/cat_x2.png", "x2") == "cat_x2_x2"  # four times the photo


def test_the_exif_thumbnail_of_a_photo_is_not_kept(tmp_path, exif_with_thumbnail):
    # phones embed a small copy of the photo in EXIF (IFD1): it would still show what an
    # inpainting removed
    from PIL import ExifTags

    block, thumb = exif_with_thumbnail
    _photo().save(tmp_path / "phone.jpg", exif=block)
    image = actions.open_upload(tmp_path / "phone.jpg", "the photo", Limits())
    assert dict(image.getexif().get_ifd(ExifTags.IFD.IFD1))  # the input has its thumbnail
    hole = np.zeros((48, 64), bool)
    hole[10:30, 10:30] = True
    out = actions.run_inpaint(image, hole, patch_size=5)
    folder = actions.ResultFolder(tmp_path / "r")
    for fmt in actions.DOWNLOAD_FORMATS:
        path = folder.save(out, "x", fmt, exif=image.info["exif"])
        with Image.open(path) as saved:
            kept = saved.getexif()
            assert kept.get(0x013B) == "someone", fmt
            assert not dict(kept.get_ifd(ExifTags.IFD.IFD1)), fmt
        assert thumb[100:140] not in path.read_bytes(), fmt
    deep = np.zeros((8, 8, 3), np.uint16)  # 16-bit PNGs keep the EXIF too
    path = folder.save(deep, "deep", exif=image.info["exif"])
    assert header(path).exif.get(0x013B) == "someone"


def test_results_keep_the_dpi_times_the_upscale_factor(tmp_path):
    # the downloads had no DPI and the input's EXIF resolution unchanged: an upscaled
    # 300 dpi photo read back as 300 dpi at twice the pixels, twice the printed size
    exif = Image.Exif()
    exif[0x011A], exif[0x011B], exif[0x0128] = 300.0, 200.0, 2  # X/YResolution, inch
    _photo(20, 30).save(tmp_path / "photo.jpg", dpi=(300, 200), exif=exif.tobytes())
    image = actions.open_upload(tmp_path / "photo.jpg", "the photo", Limits())
    up = actions.run_upscale(image, 2, patch_size=5, seed=0)
    folder = actions.ResultFolder(tmp_path / "r")
    for fmt in actions.DOWNLOAD_FORMATS:
        path = folder.save(up, "x", fmt, **actions.result_info(image, up))
        with Image.open(path) as saved:
            assert saved.size == (60, 40)
            assert saved.info.get("dpi") == pytest.approx((600, 400), rel=1e-4), fmt
            res = saved.getexif()
            assert (float(res[0x011A]), float(res[0x011B])) == pytest.approx((600, 400)), fmt
    deep = np.zeros((8, 8, 3), np.uint16)  # 16-bit PNGs keep the DPI too
    path = folder.save(deep, "deep", dpi=(600, 400))
    with Image.open(path) as saved:
        assert saved.info.get("dpi") == pytest.approx((600, 400), rel=1e-4)


def test_old_results_are_pruned(tmp_path):
    import os
    import time

    folder = actions.ResultFolder(tmp_path / "r", keep_s=60)
    old = folder.save(_photo(), "old")
    day_ago = time.time() - 86400
    os.utime(old.parent, (day_ago, day_ago))
    new = folder.save(_photo(), "new")  # saving prunes
    assert not old.parent.exists() and new.is_file()
    assert folder.prune(now=time.time() + 30) == 0 and new.is_file()
    assert folder.prune(now=time.time() + 120) == 1 and not new.exists()
    # only its own numbered folders: never another folder it finds there
    (tmp_path / "r" / "my_project").mkdir()
    os.utime(tmp_path / "r" / "my_project", (day_ago, day_ago))
    assert folder.prune() == 0 and (tmp_path / "r" / "my_project").is_dir()
    # the folder removed behind its back (a temp cleaner): made again
    import shutil

    shutil.rmtree(tmp_path / "r")
    assert folder.save(_photo(), "again").is_file()


def test_warnings_of_a_run_are_shown_on_the_page(monkeypatch, capsys):
    # an animation's first frame only, a colour photo given to colour: the command line
    # says so, the page said nothing (the server's console only)
    import warnings

    pytest.importorskip("gradio")
    from psal.app import ui

    shown = []
    monkeypatch.setattr(ui.gr, "Warning", lambda text, title=None: shown.append((title, text)))

    @ui._user_errors("Colorize")
    def handler():
        warnings.warn("target is a colour image: its luminance is used", UserWarning, stacklevel=2)
        return 1

    assert handler() == 1
    assert shown == [("Colorize", "target is a colour image: its luminance is used")]
    assert "psal app: Colorize: warning: target is a colour image" in capsys.readouterr().err


def test_display_copy_of_deep_gray_photos_is_scaled_as_psal_reads_them():
    # a float (mode F) photo was shown binarised (convert("I") truncates [0, 1] to 0 or
    # 1: a black canvas), and a mode I photo stretched to its own maximum, unlike the
    # same values in I;16 (psal reads both as 16-bit data)
    ramp = np.linspace(0, 1, 60).reshape(6, 10)
    f = actions.display_copy(Image.fromarray(ramp.astype(np.float32)))
    assert f.mode == "L" and np.array_equal(np.asarray(f), np.rint(ramp * 255))
    values = (ramp * 1000).astype(np.int32)  # a dark 16-bit photo
    i32 = np.asarray(actions.display_copy(Image.fromarray(values)))
    i16 = np.asarray(actions.display_copy(Image.fromarray(values.astype(np.uint16))))
    assert np.array_equal(i32, i16) and np.array_equal(i16, np.rint(values / 65535 * 255))


def test_check_image_pixels_reads_the_header_of_files_and_blobs(tmp_path):
    import io

    limits = Limits(max_megapixels=0.01)
    path = tmp_path / "layer.png"
    _layer(100, 101, (0, 2, 0, 2)).save(path)
    blob = io.BytesIO()
    _layer(100, 100, (0, 2, 0, 2)).save(blob, "PNG")
    actions.check_image_pixels(blob.getvalue(), "a layer", limits)  # at the limit
    actions.check_image_pixels(b"not an image", "a layer", limits)  # the decoder says so
    with pytest.raises(ValueError, match=r"^a layer is 101x100 = 0\.0101 megapixels, above"):
        actions.check_image_pixels(path, "a layer", limits)
    with pytest.raises(ValueError, match="--max-megapixels"):
        actions.check_image_pixels(path.read_bytes(), "a layer", limits)

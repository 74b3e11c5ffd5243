"""Each action of the running server through gradio_client: images in, the expected image out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from app_helpers import MAX_MEGAPIXELS, MAX_UPLOAD_MB, header, need, photo
from PIL import Image

import psal
from psal.app.actions import Limits, mask_from_layers
from psal.utils.image import save_image


def _file(path):
    from gradio_client import handle_file

    return handle_file(str(path))


def _editor(photo_path, *layers):
    return {"background": _file(photo_path), "layers": [_file(p) for p in layers],
            "composite": _file(photo_path), "id": None}  # fmt: skip


def _stroke(h, w, box, rgb=(255, 0, 255), alpha=153):
    a = np.zeros((h, w, 4), np.uint8)
    y0, y1, x0, x1 = box
    a[y0:y1, x0:x1] = (*rgb, alpha)
    return Image.fromarray(a, "RGBA")


def _error(client, *args, api_name):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=api_name)
    return str(info.value)


@pytest.fixture
def files(tmp_path):
    im = photo(72, 96)
    im.save(tmp_path / "photo.png")
    _stroke(72, 96, (20, 40, 30, 60)).save(tmp_path / "stroke.png")
    # a second layer painted in black, fully opaque: also hole (alpha, not colour)
    _stroke(72, 96, (50, 58, 70, 85), rgb=(0, 0, 0), alpha=255).save(tmp_path / "black.png")
    hole = np.zeros((72, 96), bool)
    hole[20:40, 30:60] = hole[50:58, 70:85] = True
    return tmp_path, im, hole


def test_inpaint_equals_the_library_and_keeps_known_pixels(client, files):
    d, im, hole = files
    before, download = client.predict(
        _file(d / "photo.png"), _editor(d / "photo.png", d / "stroke.png", d / "black.png"),
        "patch-based", 5, 0, 11, "PNG", api_name="/inpaint",
    )  # fmt: skip
    got = np.asarray(Image.open(download))
    want = np.asarray(psal.inpaint(im, hole, patch_size=5, seed=11))
    src = np.asarray(im)
    assert got.shape == src.shape and np.array_equal(got, want)
    assert np.array_equal(got[~hole], src[~hole])  # bit-exact outside the hole
    assert (got[hole] != src[hole]).any(axis=-1).mean() > 0.5
    assert np.array_equal(np.asarray(Image.open(before[0])), src)  # the slider's "before"
    assert np.array_equal(np.asarray(Image.open(before[1])), got)


def test_inpaint_copies_only_from_the_painted_source_region(client, files):
    d, im, hole = files
    # the region to copy from: a band at the top, painted in two layers (any colour);
    # a third, unpainted layer is ignored
    _stroke(72, 96, (0, 12, 0, 60), rgb=(0, 200, 80)).save(d / "src1.png")
    _stroke(72, 96, (0, 12, 55, 96), rgb=(0, 0, 0), alpha=255).save(d / "src2.png")
    _stroke(72, 96, (0, 0, 0, 0)).save(d / "empty.png")
    source = np.zeros((72, 96), bool)
    source[0:12] = True
    layers = (d / "stroke.png", d / "black.png")
    _, download = client.predict(
        _file(d / "photo.png"), _editor(d / "photo.png", *layers), "patch-based", 5, 0, 11,
        "PNG", True, _editor(d / "photo.png", d / "src1.png", d / "src2.png", d / "empty.png"),
        api_name="/inpaint",
    )  # fmt: skip
    got = np.asarray(Image.open(download))
    want = np.asarray(psal.inpaint(im, hole, patch_size=5, seed=11, source_mask=source))
    src = np.asarray(im)
    assert np.array_equal(got, want)  # the library's result, bit for bit
    assert np.array_equal(got[~hole], src[~hole])  # bit-exact outside the hole
    free = np.asarray(psal.inpaint(im, hole, patch_size=5, seed=11))
    assert not np.array_equal(got, free)  # the region made a difference
    # the box unticked: the painted region is ignored (the unrestricted fill)
    _, download = client.predict(
        _file(d / "photo.png"), _editor(d / "photo.png", *layers), "patch-based", 5, 0, 11,
        "PNG", False, _editor(d / "photo.png", d / "src1.png"), api_name="/inpaint",
    )  # fmt: skip
    assert np.array_equal(np.asarray(Image.open(download)), free)


def test_a_source_region_with_nothing_to_copy_from(client, files):
    d, _, _ = files
    # the region lies inside the hole: no patch to copy from; one clear message
    _stroke(72, 96, (22, 38, 32, 58), rgb=(0, 200, 80)).save(d / "inside.png")
    args = (_file(d / "photo.png"), _editor(d / "photo.png", d / "stroke.png"),
            "patch-based", 5, 0, 0, "PNG", True)  # fmt: skip
    msg = _error(client, *args, _editor(d / "photo.png", d / "inside.png"), api_name="/inpaint")
    assert msg.startswith("the region to copy from leaves nothing to copy from"), msg
    assert "5x5 patch outside the hole" in msg and "\n" not in msg, msg
    # ticked, but nothing painted
    msg = _error(client, *args, _editor(d / "photo.png"), api_name="/inpaint")
    assert msg.startswith("the region to copy from is empty"), msg


def test_inpaint_jpeg_download_and_scaled_canvas(client, files):
    d, im, _ = files
    # layers at half size (a canvas showing a scaled copy): the mask is scaled to 96x72
    _stroke(36, 48, (10, 20, 15, 30)).save(d / "half.png")
    _, download = client.predict(
        _file(d / "photo.png"), _editor(d / "photo.png", d / "half.png"),
        "patch-based", 7, 2, 0, "JPEG", api_name="/inpaint",
    )  # fmt: skip
    out = Image.open(download)
    assert (
        out.format == "JPEG" and out.size == (96, 72) and download.endswith("photo_inpainted.jpg")
    )
    hole = mask_from_layers([str(d / "half.png")], (96, 72))
    assert hole.shape == (72, 96) and hole[20:40, 30:60].all() and hole.mean() < 0.15
    want = psal.inpaint(im, hole, dilate_mask=2, seed=0)
    save_image(want, d / "want.jpg")  # the same encoder, the same settings
    assert np.array_equal(np.asarray(out), np.asarray(Image.open(d / "want.jpg")))


def test_listens_on_localhost_only(server):
    psutil = need("psutil")
    listening = [c.laddr for c in psutil.Process(server.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]  # fmt: skip
    assert listening and {a.ip for a in listening} == {"127.0.0.1"}, listening
    assert f"running at http://127.0.0.1:{server.port}/" in server.output


def test_open_photo_fills_the_editor(client, files):
    d, im, _ = files
    editor, slider, download, source = client.predict(_file(d / "photo.png"),
                                                      api_name="/open_photo")  # fmt: skip
    for shown in (editor, source):  # the hole's editor and the source region's
        bg = Image.open(shown["background"])
        assert bg.size == im.size and shown["layers"] == []
        assert np.array_equal(np.asarray(bg.convert("RGB")), np.asarray(im))
    assert slider is None and download is None


def test_colorize_and_upscale(client, tmp_path):
    gray, ref = photo(40, 48).convert("L"), photo(44, 44, seed=1)
    gray.save(tmp_path / "gray.png")
    ref.save(tmp_path / "ref.jpg", quality=92)
    result, download = client.predict(_file(tmp_path / "gray.png"), _file(tmp_path / "ref.jpg"),
                                      "patch-based", 7, 2, 5, "PNG", api_name="/colorize")  # fmt: skip
    ref_read = Image.open(tmp_path / "ref.jpg")
    want = psal.colorize(gray, ref_read, patch_size=7, k=2, seed=5)
    assert np.array_equal(np.asarray(Image.open(download)), np.asarray(want))
    assert np.array_equal(np.asarray(Image.open(result)), np.asarray(want))

    small = photo(24, 30)
    small.save(tmp_path / "small.png")
    result, download = client.predict(_file(tmp_path / "small.png"), "x2", "patch-based", 5, 3,
                                      "PNG", api_name="/upscale")  # fmt: skip
    want = psal.upscale(small, 2, patch_size=5, seed=3)
    assert header(download).size == (60, 48)
    assert np.array_equal(np.asarray(Image.open(download)), np.asarray(want))
    # the page's defaults are the command line's (its upscale slider once said 7, not 3)
    result, download = client.predict(_file(tmp_path / "small.png"), api_name="/upscale")
    assert np.array_equal(
        np.asarray(Image.open(download)), np.asarray(psal.upscale(small, 2, seed=0))
    )
    result, download = client.predict(_file(tmp_path / "gray.png"), _file(tmp_path / "ref.jpg"),
                                      api_name="/colorize")  # fmt: skip
    want = psal.colorize(gray, ref_read, seed=0)  # the seed: --seed 0, as the page
    assert np.array_equal(np.asarray(Image.open(download)), np.asarray(want))


def test_errors_for_bad_uploads_and_inputs(client, server, files):
    d, _, _ = files
    start = len(server.output)  # the console lines of this test only
    (d / "notes.png").write_bytes(b"this is not an image")
    msg = _error(client, _file(d / "notes.png"), _editor(d / "photo.png", d / "stroke.png"),
                 "patch-based", 7, 0, 0, "PNG", api_name="/inpaint")  # fmt: skip
    assert "cannot read notes.png as an image" in msg, msg

    msg = _error(client, _file(d / "photo.png"), _editor(d / "photo.png"), "patch-based", 7, 0,
                 0, "PNG", api_name="/inpaint")  # fmt: skip
    assert "nothing is painted" in msg, msg
    msg = _error(client, _file(d / "photo.png"), _editor(d / "photo.png", d / "stroke.png"),
                 "patch-based", 5, 0, -5, "PNG", api_name="/inpaint")  # fmt: skip
    assert "seed must be an integer in [0, 2**63), got -5" in msg, msg

    # above --max-megapixels (1.5): a 1300x1200 image of few bytes
    Image.new("RGB", (1300, 1200), (90, 90, 90)).save(d / "huge.png")
    msg = _error(client, _file(d / "huge.png"), "x2", "patch-based", 7, 0, "PNG",
                 api_name="/upscale")  # fmt: skip
    assert "1300x1200 = 1.56 megapixels, above this server's limit of 1.5" in msg, msg
    # the x4 result of a small photo is over the limit too
    Image.new("RGB", (400, 300)).save(d / "mid.png")
    msg = _error(client, _file(d / "mid.png"), "x4", "patch-based", 7, 0, "PNG",
                 api_name="/upscale")  # fmt: skip
    assert "the x4 result is 1600x1200" in msg and str(MAX_MEGAPIXELS) in msg, msg

    # above --max-upload-mb (1 MB): refused with the limit named
    noise = np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)
    Image.fromarray(noise).save(d / "heavy.png")
    assert (d / "heavy.png").stat().st_size > 1e6
    msg = _error(client, _file(d / "heavy.png"), "x2", "patch-based", 7, 0, "PNG",
                 api_name="/upscale")  # fmt: skip
    assert "MB, above this server's limit of 1 MB (psal app --max-upload-mb)" in msg, msg
    # above what even the editor's PNGs need: the web server refuses the transfer
    (d / "blob.png").write_bytes(b"\0" * (Limits(MAX_UPLOAD_MB, MAX_MEGAPIXELS).transfer_bytes + 1))
    with pytest.raises(Exception, match=r"(?i)(file size|too large|exceeds|maximum|413)"):
        client.predict(_file(d / "blob.png"), "x2", "patch-based", 7, 0, "PNG",
                       api_name="/upscale")  # fmt: skip
    assert server.proc.poll() is None  # still serving
    # a person's mistake is one line in the server's console, not a traceback
    from app_helpers import wait_until

    wait_until(lambda: "psal app: Inpaint: nothing is painted" in server.output[start:], 10,
               "the console line")  # fmt: skip
    console = server.output[start:]
    assert "cannot read notes.png as an image" in console
    assert "Traceback" not in console, console[-3000:]


def test_one_job_at_a_time(tmp_path):
    need("gradio")
    from psal.app.ui import DEVICE_QUEUE, build_app

    demo = build_app(device="cpu", results=tmp_path)
    fns = {f.api_name: f for f in demo.fns.values()}
    runs = [fns[name] for name in ("inpaint", "colorize", "upscale")]
    assert {(f.concurrency_limit, f.concurrency_id) for f in runs} == {(1, DEVICE_QUEUE)}
    # a failed run leaves the previous result shown ("full" would cover it; seen in
    # Chromium: the result and its download stay, with an "Error" badge)
    assert {f.show_progress for f in runs} == {"minimal"}
    assert demo._queue.max_size == 64
    import psal.app.ui as ui

    assert not Path(ui.__file__).with_suffix(".pyi").exists()  # nothing written beside it


def test_edit_the_result_again(client, server, files):
    d, im, _ = files
    _, first = client.predict(_file(d / "photo.png"), _editor(d / "photo.png", d / "stroke.png"),
                              "patch-based", 7, 0, 1, "PNG", api_name="/inpaint")  # fmt: skip
    photo_path, editor, source = client.predict(None, api_name="/edit_result")  # the last result
    assert Path(photo_path).name == "photo_inpainted.png"
    assert np.array_equal(np.asarray(Image.open(photo_path)), np.asarray(Image.open(first)))
    assert editor["layers"] == [] and header(editor["background"]).size == im.size
    assert source["layers"] == [] and header(source["background"]).size == im.size
    # a painted region to copy from stays painted for the next object
    region = _stroke(72, 96, (0, 72, 70, 96), rgb=(0, 200, 80))
    region.save(d / "region.png")
    _, _, source = client.predict(_editor(d / "photo.png", d / "region.png"),
                                  api_name="/edit_result")  # fmt: skip
    assert len(source["layers"]) == 1
    kept = Image.open(source["layers"][0]["path"] if isinstance(source["layers"][0], dict)
                      else source["layers"][0])  # fmt: skip
    assert np.array_equal(np.asarray(kept)[..., 3] > 0, np.asarray(region)[..., 3] > 0)
    # the next run starts from the result, as `psal inpaint` on the first output would
    _, second = client.predict(_file(photo_path), _editor(photo_path, d / "black.png"),
                               "patch-based", 7, 0, 1, "PNG", api_name="/inpaint")  # fmt: skip
    assert Path(second).name == "photo_inpainted.png"  # not photo_inpainted_inpainted
    hole2 = np.zeros((72, 96), bool)
    hole2[50:58, 70:85] = True
    want = psal.inpaint(Image.open(first), hole2, seed=1)
    assert np.array_equal(np.asarray(Image.open(second)), np.asarray(want))
    # the server's copy pruned (a page left open for a day): the message says why
    for old in server.tmp.glob("psal-app-*/results/*/photo_inpainted.png"):
        old.unlink()
    msg = _error(client, None, api_name="/edit_result")
    assert "no longer on the server (results are kept for 24 hours)" in msg, msg


def test_inpaint_keeps_exif_and_16_bits(client, files):
    d, im, _ = files
    exif = Image.Exif()
    exif[0x013B] = "someone"  # Artist
    im.save(d / "photo.jpg", quality=95, exif=exif.tobytes())
    for fmt in ("PNG", "JPEG"):
        _, download = client.predict(
            _file(d / "photo.jpg"), _editor(d / "photo.jpg", d / "stroke.png"),
            "patch-based", 5, 0, 0, fmt, api_name="/inpaint",
        )  # fmt: skip
        assert header(download).exif.get(0x013B) == "someone", fmt
    deep = np.random.default_rng(1).integers(0, 65536, (72, 96, 3)).astype(np.uint16)
    save_image(deep, d / "deep.png")
    _, download = client.predict(
        _file(d / "deep.png"), _editor(d / "deep.png", d / "stroke.png"),
        "patch-based", 5, 0, 0, "PNG", api_name="/inpaint",
    )  # fmt: skip
    assert header(download).rawmode == "RGB;16B"  # not cut to 8 bits


def test_upscale_keeps_the_printed_size(client, tmp_path):
    # the result and its download had no DPI and the input's EXIF resolution unchanged:
    # an upscaled 300 dpi photo read back as 300 dpi at twice the pixels
    exif = Image.Exif()
    exif[0x011A], exif[0x011B], exif[0x0128] = 300.0, 200.0, 2  # X/YResolution, inch
    photo(20, 30).save(tmp_path / "photo.jpg", quality=95, dpi=(300, 200), exif=exif.tobytes())
    for fmt in ("PNG", "JPEG"):
        result, download = client.predict(_file(tmp_path / "photo.jpg"), "x2", "patch-based",
                                          5, 0, fmt, api_name="/upscale")  # fmt: skip
        for path in (result, download):
            with Image.open(path) as im:
                assert im.size == (60, 40)
                assert im.info.get("dpi") == pytest.approx((600, 400), rel=1e-4), fmt
                res = im.getexif()
                assert (float(res[0x011A]), float(res[0x011B])) == pytest.approx((600, 400))


def test_jpeg_of_an_image_with_alpha_falls_back_to_png(client, tmp_path):
    rgba = photo(20, 24).convert("RGBA")
    rgba.save(tmp_path / "rgba.png")
    _, download = client.predict(_file(tmp_path / "rgba.png"), "x2", "patch-based", 5, 0,
                                      "JPEG", api_name="/upscale")  # fmt: skip
    assert download.endswith(".png") and header(download).mode == "RGBA"
    want = psal.upscale(rgba, 2, patch_size=5, seed=0)
    assert np.array_equal(np.asarray(Image.open(download)), np.asarray(want))


def test_closing_the_terminal_stops_the_server_and_removes_its_files(tmp_path):
    """SIGHUP (the terminal that runs ``psal app`` closed) killed the server outright,
    leaving the temporary folder with the uploaded photos in it."""
    import os
    import signal

    from app_helpers import Server, wait_until

    need("gradio")
    srv = Server(tmp_path)
    try:
        assert [p.name[:9] for p in tmp_path.iterdir()] == ["psal-app-"]
        os.kill(srv.pid, signal.SIGHUP)
        wait_until(lambda: srv.proc.poll() is not None, 60, "the server to stop")
    finally:
        code = srv.stop()
    assert code == 0, srv.output[-3000:]
    assert "psal app: stopped" in srv.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_editor_layers_above_the_pixel_limit_are_refused_before_decoding(tmp_path):
    """Gradio decodes every layer the editor sends before psal sees it: a mostly
    transparent PNG of a few KB could hold hundreds of megapixels, past both limits."""
    gr = need("gradio")
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData

    from psal.app.ui import build_app

    demo = build_app(device="cpu", limits=Limits(max_megapixels=0.01), results=tmp_path / "r")
    editors = [b for b in demo.blocks.values() if isinstance(b, gr.ImageEditor)]
    assert {e.elem_id for e in editors} == {"inpaint-editor", "inpaint-source"}
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    _stroke(100, 100, (1, 5, 1, 5)).save(small)  # 0.01 megapixels: at the limit
    _stroke(100, 101, (1, 5, 1, 5)).save(big)
    for editor in editors:
        ok = editor.preprocess(EditorData(layers=[FileData(path=str(small))]))
        assert ok["layers"][0].size == (100, 100)
        with pytest.raises(gr.Error, match=r"a layer of the editor is 101x100 = 0\.0101 mega"):
            editor.preprocess(EditorData(layers=[FileData(path=str(small)),
                                                  FileData(path=str(big))]))  # fmt: skip

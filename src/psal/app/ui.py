"""The page: Gradio Blocks with an ImageEditor to paint the hole, and one tab per tool.

Why Gradio: its ImageEditor already has the brush (size slider), eraser, undo/redo,
clear, layers and zoom that object removal needs, the queue gives one job at a time
with position and progress shown, uploads above a size limit are refused by the
server, and the front end ships inside the wheel (nothing is fetched at run time).

Two things the widget does not do as psal needs, and how the page deals with them:

* The editor's background comes back as the browser re-drew it (8-bit RGBA PNG: a
  16-bit, gray or colour-managed photo would not come back as the file was). So the
  photo is opened in its own image box, whose file the server keeps as uploaded, and
  the editor only shows a copy of it: the tools read the original file, as the
  command line does, and only the painted layers are taken from the editor.
* The mask comes from the painted layers' alpha (any colour; the eraser makes pixels
  transparent again), at the photo's full resolution (:func:`mask_from_layers`).
  Crop and resize are switched off in the editor so that canvas and photo stay aligned.
* The region to copy from (``psal inpaint --source-mask``) is painted in a second
  editor, shown when "Copy only from a region" is ticked, and read the same way. Not
  as a second layer of the first editor: the editor sends its layers as a bare list
  (no names), drops the ones it has no image for, and lets the person add, remove and
  reorder layers, so "which layer is which" would not survive; two editors cannot be
  mixed up, and every layer of the first stays hole as before.

This module imports gradio; :mod:`psal.app.actions` holds everything else.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import torch

from . import actions
from .actions import LEARNED_METHOD, PATCH_METHOD, Limits, ResultFolder

#: All jobs that use the device share this queue slot: one at a time.
DEVICE_QUEUE = "psal-device"

#: Most jobs waiting in the queue; more are refused with a "queue is full" message.
MAX_QUEUE = 64

_CSS = """
#inpaint-photo, #colorize-target, #colorize-reference, #upscale-image {min-height: 0}
footer {display: none !important}
"""


def photo_input(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` that answers an unreadable upload with a clear one-line message.

    (Its ``preprocess`` is wrapped on the instance: a subclass of a Gradio component
    would make Gradio write a ``.pyi`` file beside this module at import time.)
    """
    box = gr.Image(**kwargs)
    gradio_preprocess = box.preprocess

    def preprocess(payload):
        try:
            return gradio_preprocess(payload)
        except (OSError, ValueError, SyntaxError) as err:  # UnidentifiedImageError: OSError
            name = getattr(payload, "orig_name", None) or "the upload"
            msg = (f"{box.label or 'image'}: cannot read {name} as an image (PNG, JPEG or "
                   f"WebP expected): {type(err).__name__}")  # fmt: skip
            print(f"psal app: {msg}", file=sys.stderr, flush=True)
            raise gr.Error(msg, title="Not an image", print_exception=False) from None

    box.preprocess = preprocess
    return box


def editor_input(limits: Limits, **kwargs: Any) -> gr.ImageEditor:
    """A ``gr.ImageEditor`` whose images are held to the pixel limit before decoding.

    Gradio decodes the background, every layer and the composite the page sends
    before the handler runs; their headers are read first, and an image above
    ``--max-megapixels`` is a one-line message (its ``preprocess`` wrapped on the
    instance, as :func:`photo_input`).
    """
    editor = gr.ImageEditor(**kwargs)
    gradio_preprocess = editor.preprocess

    def preprocess(payload):
        for part in _editor_images(editor, payload):
            try:
                actions.check_image_pixels(part, "a layer of the editor", limits)
            except ValueError as err:
                print(f"psal app: {err}", file=sys.stderr, flush=True)
                raise gr.Error(str(err), title="Too large", print_exception=False) from None
        return gradio_preprocess(payload)

    editor.preprocess = preprocess
    return editor


def _editor_images(editor: gr.ImageEditor, payload: Any) -> list[str | bytes]:
    """The files (paths) or blobs (bytes) of an editor's payload.

    Its background, layers and composite, which its ``preprocess`` decodes.
    """
    if payload is None:
        return []
    if payload.id is not None:  # sent as blobs, kept by the editor until preprocessed
        cached = editor.blob_storage.get(payload.id)
        if cached is None:
            return []
        parts = [cached.background, *cached.layers, cached.composite]
    else:
        parts = [payload.background, *payload.layers, payload.composite]
    found: list[str | bytes] = []
    for part in parts:
        if isinstance(part, (bytes, bytearray, memoryview)):
            found.append(bytes(part))
        elif getattr(part, "path", None):
            found.append(part.path)
    return found


def _theme() -> Any:
    # system fonts only: the default theme would ask Google Fonts (no network here)
    sans = [gr.themes.Font("system-ui"), "ui-sans-serif", "sans-serif"]
    mono = [gr.themes.Font("ui-monospace"), "monospace"]
    return gr.themes.Default(font=sans, font_mono=mono)


def _user_errors(what: str) -> Callable:
    """Turn errors of a handler into a message on the page (gr.Error)."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        return fn(*args, **kwargs)
                    finally:  # what the command line says as a warning, the page shows
                        for w in caught:
                            if issubclass(w.category, UserWarning):
                                text = " ".join(str(w.message).split())
                                print(f"psal app: {what}: warning: {text}", file=sys.stderr)
                                gr.Warning(text, title=what)
            except gr.Error:
                raise
            except (ValueError, TypeError, OSError) as err:
                # the person's mistake: one line in the server's console, not a traceback
                print(f"psal app: {what}: {err}", file=sys.stderr, flush=True)
                raise gr.Error(
                    str(err), title=f"{what}: cannot do that", print_exception=False
                ) from None
            except (RuntimeError, MemoryError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                msg = f"{type(err).__name__}: {first}" if first else type(err).__name__
                raise gr.Error(msg, title=f"{what} failed") from None

        return run

    return wrap


def _progress_callback(progress: gr.Progress, desc: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        progress((done, total), desc=desc)

    return report


def _methods(task: str, models: dict[str, tuple[str, Any]]) -> list[tuple[str, str]]:
    choices = [("patch-based (no weights)", PATCH_METHOD)]
    if task in models:
        choices.append((f"learned ({models[task][0]})", LEARNED_METHOD))
    return choices


def _method_radio(task: str, models: dict[str, tuple[str, Any]]) -> gr.Radio:
    choices = _methods(task, models)
    return gr.Radio(choices, value=choices[-1][1], label="Method", visible=len(choices) > 1,
                    elem_id=f"{task}-method")  # fmt: skip


def build_app(
    *,
    device: torch.device | str = "cpu",
    models: dict[str, tuple[str, Any]] | None = None,
    limits: Limits | None = None,
    results: str | Path,
) -> gr.Blocks:
    """Build the page (not started; see :func:`psal.app.serve`).

    Args:
        device: where the tools run.
        models: learned models by task (:func:`psal.app.actions.load_models`).
        limits: upload and size limits.
        results: folder for result files (inside the app's temporary folder).

    Returns:
        The Blocks, with its queue set to one device job at a time.
    """
    models = models or {}
    limits = limits or Limits()
    device = torch.device(device)
    out = ResultFolder(results)

    def save_both(image, result, name: str, suffix: str, fmt: str) -> tuple[str, str]:
        """The result as PNG (shown, edited again) and in the download format.

        Both keep what holds of ``image``'s metadata, as the command line does: the ICC
        profile, the EXIF block and the DPI (:func:`psal.app.actions.result_info`).
        """
        info = actions.result_info(image, result)
        stem = actions.result_stem(name, suffix, once=suffix == "inpainted")
        png = out.save(result, stem, "PNG", **info)
        download = png
        if fmt != "PNG":
            try:
                download = out.save(result, stem, fmt, **info)
            except ValueError as err:  # e.g. JPEG of an image with alpha: keep the work
                gr.Warning(f"{err}; the download is a PNG", title="Download as PNG")
        return str(png), str(download)

    # ---- inpaint ----------------------------------------------------------------

    @_user_errors("Open photo")
    def open_photo(path: str | None):
        if path is None:
            return None, None, None, None
        image = actions.open_upload(path, "the photo", limits)
        shown = actions.display_copy(image)
        editor = {"background": shown, "layers": [], "composite": shown}
        return editor, None, None, dict(editor)

    @_user_errors("Inpaint")
    def inpaint(photo, editor, method, patch_size, dilate, seed, fmt, use_source=False,
                source_editor=None, progress=gr.Progress()):  # noqa: B008  # fmt: skip
        image = actions.open_upload(photo, "the photo", limits)
        layers = (editor or {}).get("layers") or []
        if not layers:
            raise ValueError("nothing is painted: paint over what to remove with the brush")
        hole = actions.mask_from_layers(layers, image.size)
        source = None
        if use_source:
            painted = (source_editor or {}).get("layers") or []
            source = actions.mask_from_layers(painted, image.size)  # none painted: empty
        progress(0, desc="inpainting")
        result = actions.run_inpaint(
            image, hole, patch_size=patch_size, dilate=dilate, seed=seed, method=method,
            models=models, device=device, progress=_progress_callback(progress, "inpainting"),
            source=source,
        )  # fmt: skip
        png, download = save_both(image, result, photo, "inpainted", fmt)
        return (photo, png), download, png

    @_user_errors("Edit the result")
    def edit_again(last: str | None, source_editor=None):
        if not last:
            raise ValueError("there is no result yet: paint and Run first")
        if not Path(last).is_file():
            hours = actions.KEEP_RESULTS_S / 3600
            raise ValueError(
                f"the last result is no longer on the server (results are kept for "
                f"{hours:g} hours): open the photo again and Run"
            )
        image = actions.open_upload(last, "the result", limits, check_bytes=False)
        shown = actions.display_copy(image)
        editor = {"background": shown, "layers": [], "composite": shown}
        # the region to copy from is the same photo's region: it stays painted
        kept = [layer for layer in (source_editor or {}).get("layers") or []
                if layer is not None and layer.size == image.size]  # fmt: skip
        return last, editor, {"background": shown, "layers": kept, "composite": shown}

    # ---- colorize, upscale ------------------------------------------------------

    @_user_errors("Colorize")
    def colorize(target, reference, method, patch_size, k, seed, fmt,
                 progress=gr.Progress()):  # noqa: B008  # fmt: skip
        t = actions.open_upload(target, "the grayscale photo", limits, unit_float=True)
        r = actions.open_upload(reference, "the colour reference", limits)
        progress(0, desc="colorizing")
        result = actions.run_colorize(
            t, r, patch_size=patch_size, k=k, seed=seed, method=method, models=models,
            device=device, progress=_progress_callback(progress, "colorizing"),
        )  # fmt: skip
        png, download = save_both(t, result, target, "colorized", fmt)
        return png, download

    @_user_errors("Upscale")
    def upscale(photo, scale, method, patch_size, seed, fmt,
                progress=gr.Progress()):  # noqa: B008  # fmt: skip
        image = actions.open_upload(photo, "the photo", limits)
        factor = actions.parse_scale(scale)
        actions.check_upscale_size(image, factor, limits)
        progress(0, desc=f"upscaling x{factor}")
        result = actions.run_upscale(
            image, factor, patch_size=patch_size, seed=seed, method=method, models=models,
            device=device, progress=_progress_callback(progress, f"upscaling x{factor}"),
        )  # fmt: skip
        png, download = save_both(image, result, photo, f"x{factor}", fmt)
        return png, download

    # one job at a time; progress shown as a bar over the outputs ("minimal"), so that
    # a failed run leaves the previous result and its download on the page with an
    # "Error" badge ("full" covers them until the next run succeeds)
    queued = {"concurrency_limit": 1, "concurrency_id": DEVICE_QUEUE, "show_progress": "minimal"}
    # Events that give the editors a photo show no progress. Gradio 6.31's page leaves an
    # editor that has been painted on with the "processing" cover of such an event after
    # its new photo arrives (seen in Chromium, every time once the strokes are a few
    # seconds old); the cover takes the pointer, so no later stroke reaches the canvas
    # and Run said "nothing is painted". These events take a fraction of a second.
    # Test: tests/app/test_browser.py::test_edit_the_result_and_paint_again_in_a_browser
    new_photo = {"show_progress": "hidden"}
    photo_box = {"type": "filepath", "image_mode": None, "sources": ["upload", "clipboard"],
                 "format": "png"}  # fmt: skip
    limit_note = (
        f"Device: **{device}**. Uploads up to {limits.max_upload_mb:g} MB and "
        f"{limits.max_megapixels:g} megapixels; one job runs at a time, others wait in line."
    )

    # uploads in Gradio's cache are pruned like the results: every hour, those older
    # than actions.KEEP_RESULTS_S
    prune = (3600, actions.KEEP_RESULTS_S)
    with gr.Blocks(title="psal", analytics_enabled=False, delete_cache=prune) as demo:
        gr.Markdown("## psal: remove objects, colorize, upscale\n" + limit_note)
        with gr.Tab("Inpaint (remove objects)", elem_id="tab-inpaint"):
            with gr.Row():
                with gr.Column(scale=1, min_width=220):
                    photo = photo_input(label="1. Open or drop a photo", height=180,
                                     elem_id="inpaint-photo", **photo_box)  # fmt: skip
                    method = _method_radio("inpaint", models)
                    patch = gr.Slider(3, 15, value=7, step=2, label="Patch size",
                                      elem_id="inpaint-patch")  # fmt: skip
                    dilate = gr.Slider(0, 25, value=0, step=1, label="Grow the mask (pixels)",
                                       elem_id="inpaint-dilate")  # fmt: skip
                    # no minimum=: psal's check names the seed in one line (Gradio's
                    # said "Value -5 is less than minimum value 0" with a traceback)
                    seed = gr.Number(0, precision=0, label="Seed",
                                     elem_id="inpaint-seed")  # fmt: skip
                    use_source = gr.Checkbox(
                        False, label="Copy only from a region (paint it below)",
                        info="psal inpaint --source-mask; patch-based method",
                        elem_id="inpaint-use-source",
                    )  # fmt: skip
                    fmt = gr.Radio(list(actions.DOWNLOAD_FORMATS), value="PNG",
                                   label="Download as", elem_id="inpaint-format")  # fmt: skip
                    run = gr.Button("3. Run", variant="primary", elem_id="inpaint-run")
                with gr.Column(scale=3):
                    editor = editor_input(
                        limits,
                        label="2. Paint over what to remove (brush size and eraser on the left, "
                        "undo, redo and clear top right; the mouse wheel zooms)",
                        type="pil", image_mode="RGBA", sources=(), transforms=(),
                        brush=gr.Brush(colors=[("#ff00ff", 0.6)], color_mode="fixed"),
                        eraser=gr.Eraser(), format="png", canvas_size=(800, 600), height=620,
                        elem_id="inpaint-editor",
                    )  # fmt: skip
                    source_editor = editor_input(
                        limits,
                        label="Paint where the fill may copy from (everything else is not "
                        "used; the hole never is)",
                        type="pil", image_mode="RGBA", sources=(), transforms=(),
                        brush=gr.Brush(colors=[("#00c853", 0.5)], color_mode="fixed"),
                        eraser=gr.Eraser(), format="png", canvas_size=(800, 600), height=620,
                        visible=False, elem_id="inpaint-source",
                    )  # fmt: skip
            with gr.Row():
                result = gr.ImageSlider(label="Before / after (drag the bar)", type="filepath",
                                        format="png", elem_id="inpaint-result")  # fmt: skip
            with gr.Row():
                download = gr.File(label="Download (full resolution)", elem_id="inpaint-download")
                again = gr.Button("Edit the result (remove the next thing)",
                                  elem_id="inpaint-again")  # fmt: skip
            last = gr.State(None)
            photo.upload(open_photo, photo, [editor, result, download, source_editor],
                         api_name="open_photo", **new_photo)  # fmt: skip
            photo.clear(lambda: (None, None, None, None), None,
                        [editor, result, download, source_editor], api_name=False,
                        **new_photo)  # fmt: skip
            # a new or cleared photo forgets the previous result ("Edit the result" would
            # bring the old photo's result back)
            for event in (photo.upload, photo.clear):
                event(lambda: None, None, last, api_name=False, queue=False)
            use_source.change(lambda on: gr.update(visible=bool(on)), use_source,
                              source_editor, api_name=False, queue=False)  # fmt: skip
            run.click(inpaint,
                      [photo, editor, method, patch, dilate, seed, fmt, use_source, source_editor],
                      [result, download, last], api_name="inpaint", **queued)  # fmt: skip
            again.click(edit_again, [last, source_editor], [photo, editor, source_editor],
                        api_name="edit_result", **new_photo)  # fmt: skip

        with gr.Tab("Colorize", elem_id="tab-colorize"):
            with gr.Row():
                target = photo_input(label="Grayscale photo", elem_id="colorize-target",
                                     **photo_box)  # fmt: skip
                reference = photo_input(label="Colour reference", elem_id="colorize-reference",
                                     **photo_box)  # fmt: skip
                c_result = gr.Image(label="Result", type="filepath", format="png",
                                    interactive=False, elem_id="colorize-result")  # fmt: skip
            with gr.Row():
                c_method = _method_radio("colorize", models)
                c_patch = gr.Slider(3, 15, value=9, step=2, label="Patch size")
                c_k = gr.Slider(1, 8, value=2, step=1, label="Reference patches averaged (k)")
                c_seed = gr.Number(0, precision=0, label="Seed")
                c_fmt = gr.Radio(list(actions.DOWNLOAD_FORMATS), value="PNG", label="Download as")
            c_run = gr.Button("Colorize", variant="primary", elem_id="colorize-run")
            c_download = gr.File(label="Download (full resolution)")
            c_run.click(colorize, [target, reference, c_method, c_patch, c_k, c_seed, c_fmt],
                        [c_result, c_download], api_name="colorize", **queued)  # fmt: skip

        with gr.Tab("Upscale", elem_id="tab-upscale"):
            with gr.Row():
                u_image = photo_input(label="Photo", elem_id="upscale-image", **photo_box)
                u_result = gr.Image(label="Result", type="filepath", format="png",
                                    interactive=False, elem_id="upscale-result")  # fmt: skip
            with gr.Row():
                u_method = _method_radio("upscale", models)
                u_scale = gr.Radio(["x2", "x3", "x4"], value="x2", label="Scale")
                # psal upscale's default (7 is inpainting's): the same image as the CLI
                u_patch = gr.Slider(3, 15, value=3, step=2, label="Patch size")
                u_seed = gr.Number(0, precision=0, label="Seed")
                u_fmt = gr.Radio(list(actions.DOWNLOAD_FORMATS), value="PNG", label="Download as")
            u_run = gr.Button("Upscale", variant="primary", elem_id="upscale-run")
            u_download = gr.File(label="Download (full resolution)")
            u_run.click(upscale, [u_image, u_scale, u_method, u_patch, u_seed, u_fmt],
                        [u_result, u_download], api_name="upscale", **queued)  # fmt: skip

    demo.queue(max_size=MAX_QUEUE, default_concurrency_limit=1)
    return demo


def launch_kwargs(host: str, port: int | None, limits: Limits) -> dict[str, Any]:
    """The arguments of ``Blocks.launch`` for ``psal app``."""
    return {
        "server_name": host,
        "server_port": port,
        "max_file_size": limits.transfer_bytes,
        "theme": _theme(),
        "css": _CSS,
        "ssr_mode": False,
        "show_error": True,
        "quiet": True,
        "inbrowser": False,
        "share": False,
        "footer_links": [],
    }

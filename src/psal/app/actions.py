"""What the web app does, without the web: read uploads, build masks, run the tools.

Everything here is plain Python (no gradio), so it is tested directly and the page's
event handlers (:mod:`psal.app.ui`) stay thin. The tools are the library's own
functions, called as the command line calls them (:mod:`psal.cli.edit`): the same
inputs and seed give the same image, bit for bit.

Errors are :class:`ValueError` with a one-line message meant for the person at the
page; the UI shows them as they are.
"""

from __future__ import annotations

import itertools
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .._checks import SEED_LIMIT, patch_misfit

Progress = Callable[[int, int], None]

#: Method names shown in the page's "method" choices.
PATCH_METHOD = "patch-based"
LEARNED_METHOD = "learned"

#: Formats offered for the download, with their file suffix.
DOWNLOAD_FORMATS = {"PNG": ".png", "JPEG": ".jpg"}


@dataclass(frozen=True)
class Limits:
    """What the server accepts.

    Attributes:
        max_upload_mb: largest uploaded file, in MB (the web server refuses bigger ones
            before they reach psal).
        max_megapixels: largest image (input, and the output of an upscale), in
            millions of pixels.
    """

    max_upload_mb: float = 25.0
    max_megapixels: float = 40.0

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_megapixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")

    @property
    def transfer_bytes(self) -> int:
        """The largest single upload the web server takes, in bytes.

        Not only the photos travel: on Run the editor sends its background, layers and
        composite as PNGs the browser made, which for a photo at the pixel limit take up
        to 4 bytes a pixel (RGBA noise does not compress), more than the JPEG the person
        opened. So the web server lets through what the pixel limit needs, and the
        photos themselves are held to ``max_upload_mb`` by :func:`open_upload`.
        """
        return int(max(self.max_upload_mb * 1e6, self.max_megapixels * 1e6 * 4.2 + 1e6))


# -- learned models -----------------------------------------------------------------


@dataclass(frozen=True)
class LearnedSpec:
    """How the app finds, loads and runs the learned model of one task.

    A task gets a "learned" method in the page when its flag is given to ``psal app``;
    ``run_*`` below call the model as the task's ``psal ... --checkpoint`` command does.

    Attributes:
        flag: the ``psal app`` option that names the checkpoint.
        load: ``load(path, device)`` -> model; raises ValueError/OSError on a bad file.
        help: the option's help text.
    """

    flag: str
    load: Callable[[str, torch.device], Any]
    help: str


def _load_inpainter(path: str, device: torch.device) -> Any:
    from ..models import Inpainter

    return Inpainter.from_checkpoint(path, device=device)


def _load_colorizer(path: str, device: torch.device) -> Any:
    from ..models import Colorizer

    return Colorizer.from_checkpoint(path, device=device)


def _load_upscaler(path: str, device: torch.device) -> Any:
    from ..models import Upscaler

    return Upscaler.from_checkpoint(path, device=device)


#: Task name -> its learned model. Only tasks listed here take a checkpoint.
LEARNED: dict[str, LearnedSpec] = {
    "inpaint": LearnedSpec(
        "--checkpoint", _load_inpainter, "learned DeepFill inpainter (safetensors or run folder)"
    ),
    "colorize": LearnedSpec(
        "--colorize-checkpoint",
        _load_colorizer,
        "learned colorizer of 'psal train colorize' (safetensors or run folder)",
    ),
    "upscale": LearnedSpec(
        "--upscale-checkpoint",
        _load_upscaler,
        "learned upscaler of 'psal train upscale' (safetensors or run folder); the page's "
        "learned method works at the scale it was trained for",
    ),
}


def load_models(
    checkpoints: dict[str, str | None], device: torch.device
) -> dict[str, tuple[str, Any]]:
    """Load the learned models named on the command line, once, at start-up.

    Args:
        checkpoints: task -> checkpoint path (None: not given).
        device: where the models run.

    Returns:
        task -> ``(checkpoint name, model)`` for each given checkpoint.

    Raises:
        ValueError: an unknown task, or a checkpoint that cannot be loaded (the message
            names the option).
    """
    models = {}
    for task, path in checkpoints.items():
        if path is None:
            continue
        if task not in LEARNED:
            raise ValueError(f"no learned model exists for {task!r} (known: {sorted(LEARNED)})")
        spec = LEARNED[task]
        try:
            model = spec.load(str(path), device)
        except (ValueError, OSError, KeyError, RuntimeError) as err:
            raise ValueError(f"{spec.flag} {path}: cannot load the model: {err}") from None
        models[task] = (Path(path).name, model)
    return models


# -- uploads ------------------------------------------------------------------------


def _pixels_error(what: str, w: int, h: int, limit: float) -> ValueError:
    return ValueError(
        f"{what} is {w}x{h} = {w * h / 1e6:.3g} megapixels, above this server's limit "
        f"of {limit:g} megapixels (psal app --max-megapixels)"
    )


def open_upload(
    path: str | os.PathLike[str] | None,
    what: str,
    limits: Limits,
    *,
    unit_float: bool = False,
    check_bytes: bool = True,
) -> Image.Image:
    """Read an uploaded image as the command line reads an input file, within the limits.

    Args:
        path: the uploaded file (None: nothing uploaded).
        what: how the message names this input ("the photo", "the reference").
        limits: the server's limits.
        unit_float: float images must hold values in [0, 1] (colorize's target, as
            ``psal colorize`` checks it).
        check_bytes: apply the upload limit in MB (False for the server's own results:
            a PNG result of a JPEG photo is several times its size; the pixel limit
            still applies).

    Returns:
        The image (EXIF orientation applied, mode kept), loaded.

    Raises:
        ValueError: nothing uploaded, not an image, too large.
    """
    from ..utils.convert import check_values
    from ..utils.image import load_image

    if path is None or str(path) == "":
        raise ValueError(f"{what}: no image given; open or drop a photo first")
    size = Path(path).stat().st_size if Path(path).is_file() else 0
    if check_bytes and size > limits.max_upload_mb * 1e6:
        raise ValueError(
            f"{what} is {size / 1e6:.3g} MB, above this server's limit of "
            f"{limits.max_upload_mb:g} MB (psal app --max-upload-mb)"
        )
    # Pillow refuses decompression bombs itself; check the header size before decoding
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as probe:
                w, h = probe.size
    except Exception:  # load_image below gives the message
        w = h = 0
    if w * h > limits.max_megapixels * 1e6:
        raise _pixels_error(what, w, h, limits.max_megapixels)
    try:
        image = load_image(path, what, max_pixels=max(1, int(limits.max_megapixels * 1e6)))
        check_values(image, what, unit_float=unit_float)
    except ValueError as err:
        raise ValueError(str(err).replace(str(path), Path(path).name)) from None
    return image


def check_image_pixels(source: str | os.PathLike[str] | bytes, what: str, limits: Limits) -> None:
    """Refuse, from its header, an image file (or its bytes) above the pixel limit.

    For what the editor sends (its background, layers and composite): Gradio decodes
    each of them whole before psal sees it, so a layer of many megapixels (a mostly
    transparent PNG of a few hundred KB passes the upload limit) would take gigabytes.

    Raises:
        ValueError: above ``limits.max_megapixels`` (or a decompression bomb). A file
            that is not an image passes: decoding it gives the message.
    """
    import io

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
                w, h = im.size
    except Image.DecompressionBombError:
        raise ValueError(
            f"{what} has too many pixels: above this server's limit of "
            f"{limits.max_megapixels:g} megapixels (psal app --max-megapixels)"
        ) from None
    except Exception:  # not an image: the decoder says so
        return
    if w * h > limits.max_megapixels * 1e6:
        raise _pixels_error(what, w, h, limits.max_megapixels)


def display_copy(image: Image.Image) -> Image.Image:
    """An 8-bit RGB/RGBA copy of ``image`` for showing in the browser's canvas.

    Gray images of more than 8 bits are scaled as psal reads them: 16-bit data
    (``I;16``, and ``I``) from 0..65535, floats (``F``) from [0, 1].
    """
    from ..utils.image import result_mode

    mode = result_mode(image)
    if mode in ("I;16", "I", "F"):
        # (not through convert("I"), which truncated floats to 0 or 1: a black canvas)
        arr = np.nan_to_num(np.asarray(image, dtype=np.float64))
        hi = 1.0 if mode == "F" else 65535.0
        return Image.fromarray(np.clip(arr / hi * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    return image.convert("RGBA" if "A" in mode else "RGB")


# -- masks --------------------------------------------------------------------------


def mask_from_layers(
    layers: Sequence[Image.Image | np.ndarray | str | os.PathLike[str]],
    size: tuple[int, int],
) -> np.ndarray:
    """The hole painted on the editor's layers, at the photo's full resolution.

    A pixel is hole where any layer is not fully transparent: the mask comes from the
    layers' alpha, never from their colour (any brush colour works, the eraser makes a
    pixel transparent again). Layers whose size differs from the photo's (a canvas that
    holds a scaled copy) are scaled to it first, so the mask always has the photo's size.

    Args:
        layers: RGBA images (PIL, ``(H, W, 4)`` uint8 arrays, or file paths); None
            entries (a layer without an image) are skipped.
        size: the photo's ``(width, height)`` (PIL order).

    Returns:
        bool ``(height, width)`` array, True = hole.

    Raises:
        ValueError: a layer without transparency (not a painted layer).
    """
    w, h = size
    hole = np.zeros((h, w), dtype=bool)
    for i, layer in enumerate(layers):
        if layer is None:  # a layer the editor sent no image for: nothing painted on it
            continue
        if isinstance(layer, (str, os.PathLike)):
            with Image.open(layer) as im:
                layer = im.copy()
        if isinstance(layer, np.ndarray):
            if layer.ndim != 3 or layer.shape[2] != 4:
                raise ValueError(f"layer {i} must be RGBA (H, W, 4), got shape {layer.shape}")
            layer = Image.fromarray(np.ascontiguousarray(layer, dtype=np.uint8), "RGBA")
        if layer.mode not in ("RGBA", "LA", "PA", "La", "RGBa"):
            raise ValueError(f"layer {i} has no alpha channel (mode {layer.mode})")
        alpha = layer.getchannel("A")
        if alpha.size != (w, h):
            # a scaled canvas: bilinear keeps thin strokes from vanishing
            alpha = alpha.resize((w, h), Image.Resampling.BILINEAR)
        hole |= np.asarray(alpha) > 0
    return hole


# -- the tools ----------------------------------------------------------------------


def check_seed(seed: Any) -> int:
    """The seed as an int in [0, 2**63), or a ValueError naming it."""
    try:
        value = int(seed)
    except (TypeError, ValueError):
        raise ValueError(f"seed must be an integer, got {seed!r}") from None
    bad = isinstance(seed, bool) or (value != seed and not isinstance(seed, str))
    if bad or not 0 <= value < SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return value


def _check_patch(patch_size: Any) -> int:
    try:
        p = int(patch_size)
    except (TypeError, ValueError):
        p = -1
    if isinstance(patch_size, bool) or p != patch_size or p < 1 or p % 2 == 0:
        raise ValueError(f"patch size must be a positive odd integer, got {patch_size!r}")
    return p


def _check_k(k: Any) -> int:
    """The colorizer's ``k`` as an int in [1, MAX_K], or a ValueError naming it."""
    from ..editing.colorize import MAX_K

    try:
        value = int(k)
    except (TypeError, ValueError):
        value = -1
    if isinstance(k, bool) or value != k or not 1 <= value <= MAX_K:
        raise ValueError(
            f"k (reference patches averaged) must be an integer in [1, {MAX_K}], got {k!r}"
        )
    return value


def _check_patch_fits(patch_size: int, *images: tuple[str, Image.Image]) -> None:
    """The patch against each ``(name, image)``'s sides, in the app's words (its slider)."""
    misfit = patch_misfit(patch_size, images)
    if misfit:
        name, w, h, largest = misfit
        raise ValueError(
            f"the patch size ({patch_size}) is larger than {name} ({w}x{h} pixels): "
            f"choose a patch size of at most {largest}"
        )


def _is_learned(method: str) -> bool:
    """Whether ``method`` names the learned model; a ValueError for anything but the two."""
    if method not in (PATCH_METHOD, LEARNED_METHOD):
        raise ValueError(f"method must be {PATCH_METHOD!r} or {LEARNED_METHOD!r}, got {method!r}")
    return method == LEARNED_METHOD


def run_inpaint(
    image: Image.Image,
    hole: np.ndarray,
    *,
    patch_size: int = 7,
    dilate: int = 0,
    seed: int = 0,
    method: str = PATCH_METHOD,
    models: dict[str, tuple[str, Any]] | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    source: np.ndarray | None = None,
) -> Image.Image:
    """Fill the hole as ``psal inpaint IMAGE --mask MASK [--checkpoint]`` does.

    Args:
        image: the photo (as :func:`open_upload` gives it).
        hole: bool ``(H, W)``, True = hole, the photo's size.
        patch_size: odd patch side (``--patch-size``).
        dilate: grow the hole by this many pixels (``--dilate``).
        seed: ``--seed``.
        method: :data:`PATCH_METHOD` or :data:`LEARNED_METHOD`.
        models: the loaded learned models (:func:`load_models`).
        device: where to work.
        progress: ``progress(done, total)``.
        source: where patches may be copied from (``--source-mask``): bool ``(H, W)``,
            True = allowed, the photo's size; None: anywhere outside the hole. The
            patch-based method only.

    Returns:
        The result, same size and mode as the command line writes: a PIL image, or a
        uint16 ``(H, W, 3 or 4)`` array for a 16-bit colour PNG (edited at full depth,
        as ``psal inpaint`` does; :meth:`ResultFolder.save` writes it to a 16-bit PNG).

    Raises:
        ValueError: an empty or whole-image hole, a source region that leaves nothing
            to copy from, bad options, a missing learned model.
    """
    from ..editing import inpaint
    from ..editing._pyramid import dilate as grow
    from ..utils.io import full_depth

    patch_size = _check_patch(patch_size)
    seed = check_seed(seed)
    if isinstance(dilate, bool) or int(dilate) != dilate or dilate < 0:
        raise ValueError(f"dilation must be an integer >= 0, got {dilate!r}")
    w, h = image.size
    if hole.shape != (h, w):
        raise ValueError(f"the mask is {hole.shape[1]}x{hole.shape[0]} but the photo is {w}x{h}")
    if source is not None and np.shape(source) != (h, w):
        raise ValueError(
            f"the region to copy from is {np.shape(source)[1]}x{np.shape(source)[0]} "
            f"but the photo is {w}x{h}"
        )
    if not hole.any():
        raise ValueError("nothing is painted: paint over what to remove with the brush, then Run")
    drawn = hole
    hole = grow(torch.from_numpy(hole)[None, None], int(dilate))[0, 0].numpy()
    if hole.all():
        grown = (
            "" if drawn.all() else f" once grown by {int(dilate)} pixels (lower 'Grow the mask')"
        )
        raise ValueError(
            f"the mask covers the whole image{grown}: there is no known pixel to copy from"
        )
    if _is_learned(method):
        if source is not None:  # as the CLI refuses --source-mask with --checkpoint
            raise ValueError(
                "a region to copy from works with the patch-based method, not the learned one"
            )
        model = _learned(models, "inpaint")
        return model.inpaint(full_depth(image), hole, seed=seed)  # as the CLI
    if source is not None and not np.any(source):
        raise ValueError(
            "the region to copy from is empty: paint where the fill may copy from "
            "(or untick 'Copy only from a region')"
        )
    _check_patch_fits(patch_size, ("the photo", image))
    try:
        return inpaint(full_depth(image), hole, patch_size=patch_size, seed=seed, device=device,
                       source_mask=source, progress=progress)  # fmt: skip
    except ValueError as err:
        if source is None or not str(err).startswith("source_mask"):
            raise
        raise ValueError(
            f"the region to copy from leaves nothing to copy from: it must hold a whole "
            f"{patch_size}x{patch_size} patch outside the hole (paint a larger region "
            f"away from the hole, or choose a smaller patch size)"
        ) from None


def run_colorize(
    target: Image.Image,
    reference: Image.Image,
    *,
    patch_size: int = 9,
    k: int = 2,
    seed: int = 0,
    method: str = PATCH_METHOD,
    models: dict[str, tuple[str, Any]] | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> Image.Image:
    """Colour ``target`` from ``reference`` as ``psal colorize`` does.

    16-bit colour PNGs are coloured at full depth, as the command line does (the result
    is then a uint16 array; see :func:`run_inpaint`), and so are 16-bit gray photos (a
    16-bit colour PNG, as ``psal colorize`` writes for a PNG output).
    """
    from ..editing import colorize
    from ..utils.io import full_depth

    patch_size = _check_patch(patch_size)
    k = _check_k(k)
    seed = check_seed(seed)
    source = full_depth(target)
    if not isinstance(source, np.ndarray) and target.mode in ("I;16", "I"):
        source = np.asarray(target).astype(np.uint16)  # 16-bit gray: coloured at 16 bits
    if _is_learned(method):
        # as ``psal colorize --checkpoint``: the seed seeds PatchMatch in psal attention
        return _learned(models, "colorize").colorize(
            source, full_depth(reference), seed=seed, progress=progress
        )
    _check_patch_fits(patch_size, ("the photo to colour", target), ("the reference", reference))
    return colorize(source, full_depth(reference), patch_size=patch_size,
                    k=k, seed=seed, device=device, progress=progress)  # fmt: skip


def parse_scale(scale: int | str) -> int:
    """2, 3 or 4 from ``2``, ``"3"`` or ``"x4"``; a ValueError naming the choices otherwise."""
    from ..editing.upscale import SCALES

    text = str(scale).strip().lstrip("xX")
    if isinstance(scale, bool) or text not in {str(s) for s in SCALES}:
        raise ValueError(f"scale must be one of {', '.join(map(str, SCALES))}, got {scale!r}")
    return int(text)


def check_upscale_size(image: Image.Image, scale: int, limits: Limits) -> None:
    """Refuse an upscale whose output would exceed the pixel limit."""
    w, h = image.size
    if w * h * scale * scale > limits.max_megapixels * 1e6:
        raise _pixels_error(f"the x{scale} result", w * scale, h * scale, limits.max_megapixels)


def run_upscale(
    image: Image.Image,
    scale: int | str,
    *,
    patch_size: int = 3,
    seed: int = 0,
    method: str = PATCH_METHOD,
    models: dict[str, tuple[str, Any]] | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> Image.Image:
    """Enlarge ``image`` as ``psal upscale --scale SCALE`` does.

    16-bit colour PNGs are enlarged at full depth, as the command line does (the result
    is then a uint16 array; see :func:`run_inpaint`).
    """
    from ..editing import upscale
    from ..utils.io import full_depth

    factor = parse_scale(scale)
    patch_size = _check_patch(patch_size)
    seed = check_seed(seed)
    if _is_learned(method):
        net = _learned(models, "upscale")
        if net.scale != factor:  # as ``psal upscale --checkpoint`` refuses another scale
            raise ValueError(
                f"the scale is x{factor} but the learned model {models['upscale'][0]} was "
                f"trained for x{net.scale}: choose x{net.scale} or the patch-based method"
            )
        return net.upscale(full_depth(image), factor, patch_size=patch_size, seed=seed,
                           device=device, progress=progress)  # fmt: skip
    _check_patch_fits(patch_size, ("the photo", image))
    return upscale(full_depth(image), factor, patch_size=patch_size, seed=seed, device=device,
                   progress=progress)  # fmt: skip


def _learned(models: dict[str, tuple[str, Any]] | None, task: str) -> Any:
    if not models or task not in models:
        flag = LEARNED[task].flag if task in LEARNED else None
        how = f"start psal app with {flag} FILE" if flag else "psal has no learned model for it"
        raise ValueError(f"no learned {task} model is loaded ({how})")
    return models[task][1]


# -- results ------------------------------------------------------------------------


#: Results older than this (seconds) are removed as new ones are written: a server left
#: running for weeks does not fill the disk (Gradio's own cache is pruned alike, see
#: :func:`psal.app.ui.build_app`).
KEEP_RESULTS_S = 24 * 3600


class ResultFolder:
    """Writes results (PNG, and JPEG on request) into the app's temporary folder.

    Each result gets a folder of its own; folders older than ``keep_s`` seconds are
    removed whenever a result is saved.
    """

    def __init__(self, folder: str | os.PathLike[str], keep_s: float = KEEP_RESULTS_S) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.keep_s = float(keep_s)
        self._count = itertools.count()
        self._lock = threading.Lock()

    def prune(self, now: float | None = None) -> int:
        """Remove the result folders last written more than ``keep_s`` ago; their count.

        Only the numbered folders :meth:`save` makes are touched, never anything else
        that the folder holds.
        """
        import shutil
        import time

        limit = (time.time() if now is None else now) - self.keep_s
        removed = 0
        try:
            entries = list(self.folder.iterdir())
        except OSError:  # the folder is gone (save makes it again) or unreadable
            return 0
        for entry in entries:
            if not (entry.name.isdigit() and len(entry.name) >= 5):
                continue
            try:
                if entry.is_dir() and entry.stat().st_mtime < limit:
                    shutil.rmtree(entry)
                    removed += 1
            except OSError:  # removed meanwhile, or busy: the next save tries again
                continue
        return removed

    def save(
        self,
        image: Image.Image | np.ndarray,
        stem: str,
        fmt: str = "PNG",
        icc: bytes | None = None,
        exif: bytes | None = None,
        dpi: tuple[float, float] | None = None,
    ) -> Path:
        """Save ``image`` in full resolution as ``fmt`` (``PNG`` or ``JPEG``).

        Args:
            image: a result of ``run_*`` (a PIL image, or the uint16 array of a 16-bit
                colour result).
            stem: the file name without suffix.
            fmt: a key of :data:`DOWNLOAD_FORMATS`.
            icc: the ICC profile to embed (the input's, where it describes the result).
            exif: the EXIF block to keep (the input's; orientation already applied).
            dpi: the DPI (x, y) to write (the input's, times an upscale's factor).
            :func:`result_info` gives the three for a result.

        Raises:
            ValueError: an unknown format, or a JPEG of an image it cannot hold (alpha,
                more than 8 bits): the message says to download it as PNG.
        """
        from ..utils.image import save_image

        if fmt not in DOWNLOAD_FORMATS:
            raise ValueError(f"format must be one of {', '.join(DOWNLOAD_FORMATS)}, got {fmt!r}")
        mode = result_file_mode(image)
        if fmt == "JPEG" and mode not in ("L", "RGB", "CMYK"):
            if mode in ("I;16", "I", "F") or mode.endswith(";16") or "A" in mode:
                what = "alpha" if "A" in mode else "bit depth"
                raise ValueError(
                    f"JPEG cannot hold this {mode} image without loss of its {what}; "
                    f"download it as PNG"
                )
        with self._lock:
            self.prune()
            n = next(self._count)
            while (self.folder / f"{n:05d}").exists():  # a folder used before: never reused
                n = next(self._count)
            folder = self.folder / f"{n:05d}"
            folder.mkdir(parents=True)  # the results folder too, if it was removed
        path = folder / f"{stem}{DOWNLOAD_FORMATS[fmt]}"
        save_image(image, path, icc_profile=icc, exif=exif, dpi=dpi)
        return path


def result_info(image: Image.Image, result: Image.Image | np.ndarray) -> dict[str, Any]:
    """What ``result``'s files keep of the metadata of ``image`` (the photo it was made of).

    The rule of the command line and of the Python API
    (:func:`psal.utils.convert.carried_info`): ``icc`` (the profile, where it describes
    the result), ``exif`` and ``dpi`` (both times an upscale's factor per axis, so that
    the printed size stays the same), the keyword arguments of :meth:`ResultFolder.save`.
    """
    from ..utils.convert import carried_info

    size = (result.shape[1], result.shape[0]) if isinstance(result, np.ndarray) else result.size
    info = carried_info(image, result_file_mode(result), size)
    return {"icc": info.get("icc_profile"), "exif": info.get("exif"), "dpi": info.get("dpi")}


def result_file_mode(image: Image.Image | np.ndarray) -> str:
    """The mode of a result: ``image.mode``, or ``RGB;16`` / ``RGBA;16`` for a uint16 array."""
    if isinstance(image, np.ndarray):
        channels = image.shape[2] if image.ndim == 3 else 1
        return ("RGBA" if channels == 4 else "RGB") + (";16" if image.dtype == np.uint16 else "")
    return image.mode


def result_stem(name: str | os.PathLike[str] | None, suffix: str, *, once: bool = False) -> str:
    """``photo_inpainted`` from ``/tmp/.../photo.jpg`` and ``"inpainted"``.

    With ``once``, a name that already ends with the suffix keeps it once: a result
    inpainted again ("Edit the result") is ``photo_inpainted``, not
    ``photo_inpainted_inpainted``. (Not for upscaling: ``photo_x2`` enlarged x2 again
    is ``photo_x2_x2``, four times the photo.)
    """
    stem = Path(str(name)).stem if name else "image"
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:60] or "image"
    if once and stem.endswith(f"_{suffix}") and len(stem) > len(suffix) + 1:
        return stem
    return f"{stem}_{suffix}"

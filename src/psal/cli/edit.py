"""``psal inpaint``, ``psal colorize``, ``psal upscale``: editing photos from the shell.

Each command reads its inputs (PNG, JPEG, WebP; EXIF orientation applied), runs the
matching :mod:`psal.editing` function (or, for ``inpaint --checkpoint``, the learned
network of :mod:`psal.models`), and writes the result atomically: on any error no
output file is created or half-written. The output format follows the output file's
suffix; the output keeps the input's size (or the scaled size) and mode.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .._checks import SEED_LIMIT
from ._common import CLIError, add_device_arg, add_seed_arg, check_not_special, resolve_device

T = TypeVar("T")

#: Default ``--dilate``: 2 removes the halo of anti-aliased and soft outlines, which
#: the gradient-domain fill would otherwise spread into the hole (objects pasted with a
#: soft edge, docs/editing.md: best of 0-3 on the tuning images, and above 1 on 7 of 9
#: other photos); 0 keeps every pixel outside the mask file bit for bit. The Python
#: API and the app (hand-painted masks) default to 0.
DILATE_DEFAULT = 2

INPAINT_EXAMPLES = """\
examples:
  psal inpaint examples/photo.png --mask examples/mask.png -o out.png
  psal inpaint photos/ --mask masks/ -o cleaned/      # pairs photos/a.jpg with masks/a.png
  psal inpaint photo.jpg --mask person.png --source-mask background.png -o out.jpg
  psal inpaint photo.jpg --mask scribble.png --dilate 3 -o clean.jpg
  psal inpaint photo.png --mask mask.png --checkpoint deepfill.safetensors -o out.png

The mask has the image's size; white (values > 127, or above --mask-threshold of the
range) marks the hole; a 0/1 (label) mask reads non-zero as hole. A mask with
transparency is read from its alpha channel: the transparent part is the hole, or the
painted part when the transparent part covers more than half the image (strokes on a
transparent layer). An empty mask writes the input unchanged, with a warning.
"""

COLORIZE_EXAMPLES = """\
examples:
  psal colorize old_photo.png --reference colour_photo.jpg -o coloured.png
  psal colorize gray.png --reference ref.png --patch-size 7 --seed 1 -o out.webp
  psal colorize gray.png --reference ref.png --checkpoint runs/col -o out.png
  psal colorize gray.png --reference ref.png --model psal-w8 -o out.png
  psal colorize frames/ --reference key_frame.jpg -o coloured/   # a folder, one reference

The target's luminance is kept exactly; only the colour comes from the reference.
"""

UPSCALE_EXAMPLES = """\
examples:
  psal upscale photo.png --scale 2 -o photo_x2.png
  psal upscale small.jpg --scale 4 -o big.png
  psal upscale photo.png --scale 2 --checkpoint runs/sr -o photo_x2.png
  psal upscale photo.png --scale 2 --model edsr-x2 -o photo_x2.png   # shipped network
  psal upscale photo.png --model edsr-x2 --ensemble -o photo_x2.png  # 8x slower, better
  psal upscale photos/ --scale 2 -o photos_x2/                        # a whole folder
"""


class _Bar:
    """A tqdm progress bar fed by ``progress(done, total)`` callbacks."""

    def __init__(self, desc: str, quiet: bool) -> None:
        from tqdm import tqdm

        # disable=None: shown only on a terminal, so pipes and logs stay clean
        self.bar = tqdm(desc=desc, total=None, disable=True if quiet else None, leave=False,
                        file=sys.stderr, unit="step")  # fmt: skip

    def __call__(self, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _warn(message: str) -> None:
    print(f"psal: warning: {message}", file=sys.stderr)


def _check_output(path: str, mode: str, size: tuple[int, int] | None = None,
                  inputs: dict[str, str | None] | None = None) -> None:  # fmt: skip
    """Fail before any work if the output path or type is bad or cannot hold the image.

    ``inputs``: other files the command reads (``--mask``, ``--reference``, ...), which
    the output must not overwrite (the edited image itself may be, as an edit in place).
    """
    from ..utils.image import check_savable

    if os.path.isdir(path):  # (Path.is_dir raises on a name too long: check_savable says it)
        raise CLIError(f"--output {path}: is a folder; give a file name (a folder of images "
                       "as input writes into an output folder)")  # fmt: skip
    check_not_special(path, "--output")
    for flag, given in (inputs or {}).items():
        if given is not None and _same_file(path, given):
            raise CLIError(f"--output {path}: is the {flag} file; it would be overwritten")
    check_savable(mode, path, size)


def _save(out: Any, output: str, image: Any, mode: str) -> None:
    """Write the result ``out`` of ``mode`` with what holds of ``image``'s metadata.

    The rule of the Python API's PIL results (:func:`psal.utils.convert.carried_info`):
    the ICC profile where it describes the result, the EXIF block, and the DPI, both
    times an upscale's factor per axis (the printed size stays the same).
    """
    from ..utils.convert import carried_info
    from ..utils.image import save_image

    size = (out.shape[1], out.shape[0]) if isinstance(out, np.ndarray) else out.size
    save_image(out, output, **carried_info(image, mode, size))


def _check_not_flattened(image: Any, path: str, output: str, name: str) -> None:
    """Refuse to write over an animation or multi-page file with its first frame only."""
    from ..utils.io import FRAMES_KEY

    frames = image.info.get(FRAMES_KEY)
    if frames and _same_file(path, output):
        raise CLIError(
            f"{name} {path} holds {frames} frames and only the first is edited: writing "
            "the result over it would lose the others; give another --output"
        )


_FLAGS = {"source_mask": "--source-mask", "patch_size": "--patch-size"}


def _flag_names(message: str) -> str:
    """A library message with its keyword names (``source_mask``) as the flags."""
    import re

    return re.sub(r"\b(" + "|".join(_FLAGS) + r")\b", lambda m: _FLAGS[m.group(1)], message)


def _check_patch_fits(patch_size: int, *images: tuple[str, Any]) -> None:
    """``--patch-size`` against the sides of ``(name, image)`` pairs (patch-based methods).

    The library says ``patch_size=7 is larger than ...`` (its keyword); on the command
    line the flag is named instead, with what to do.
    """
    from .._checks import patch_misfit

    misfit = patch_misfit(patch_size, images)
    if misfit:
        name, w, h, largest = misfit
        raise CLIError(
            f"--patch-size {patch_size} is larger than {name} ({w}x{h} pixels): "
            f"give a --patch-size of at most {largest}"
        )


def _check_options(args: argparse.Namespace) -> None:
    """Check the numeric options, naming the flag (before reading any file)."""
    p = getattr(args, "patch_size", None)
    if p is not None and (p < 1 or p % 2 == 0):
        raise CLIError(f"--patch-size must be a positive odd integer, got {p}")
    if getattr(args, "dilate", 0) < 0:
        raise CLIError(f"--dilate must be >= 0, got {args.dilate}")
    t = getattr(args, "mask_threshold", 0.5)
    if not 0.0 < t < 1.0:
        raise CLIError(f"--mask-threshold must be in (0, 1), got {t}")
    if hasattr(args, "k"):
        from ..editing.colorize import MAX_K

        if not 1 <= args.k <= MAX_K:
            raise CLIError(f"--k must be in [1, {MAX_K}] (reference patches averaged), "
                           f"got {args.k}")  # fmt: skip
    if getattr(args, "max_pixels", None) is not None and args.max_pixels < 1:
        raise CLIError(f"--max-pixels must be >= 1, got {args.max_pixels}")
    if not 0 <= args.seed < SEED_LIMIT:
        raise CLIError(f"--seed must be in [0, 2**63), got {args.seed}")
    src, out = getattr(args, "image", None) or getattr(args, "target", None), args.output
    if src is not None and not Path(src).is_dir() and not os.path.isdir(out):
        from ..utils.io import save_format

        save_format(out)  # a bad file type: said before a file or a network is loaded


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one file or folder.

    Compared as files when both exist (bind mounts and case-insensitive file systems
    included), else as resolved paths.
    """
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet)
        try:
            return Path(a).resolve() == Path(b).resolve()
        except OSError:  # pragma: no cover
            return False


def _run(work: Callable[[Callable[[int, int], None]], object], desc: str, quiet: bool):
    bar = _Bar(desc, quiet)
    try:
        return work(bar)
    finally:
        bar.close()


#: Image files a folder run picks up (by suffix, case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


def _load_mask_for(path: str, image, args, name: str):
    """The mask file ``path`` for ``image``; its errors name the flag ``name`` (``--mask``).

    The library's messages call the file ``mask`` (``mask: no such file: ...``, ``mask
    m.png is 56x30 ...``): that word becomes the flag.
    """
    from ..utils.image import load_mask

    try:
        return load_mask(path, size=image.size, threshold=args.mask_threshold,
                         max_pixels=args.max_pixels)  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        text = str(err)
        if not text.startswith(name):
            for word in ("mask: ", "mask "):
                if text.startswith(word):
                    text = f"{name}{word[4:]}{text[len(word) :]}"
                    break
            else:
                text = f"{name}: {text}"
        raise type(err)(text) from None


def _inpaint_file(args, image_path: str, mask_path: str, source_path: str | None,
                  output: str, device, bar, model=None) -> None:  # fmt: skip
    """Inpaint one file into ``output`` (atomically); ``model``: the learned inpainter."""
    from ..editing._pyramid import dilate
    from ..utils.convert import check_values
    from ..utils.image import file_format, load_image, save_format
    from ..utils.io import full_depth, output_mode

    image = load_image(image_path, "IMAGE", max_pixels=args.max_pixels)
    check_values(image, f"IMAGE {image_path}")
    _check_not_flattened(image, image_path, output, "IMAGE")
    mode = output_mode(image)  # RGB;16 for 16-bit colour PNGs, edited at full depth
    # an image that is its own mask (an erased region) may still be edited in place
    others = {f: p for f, p in (("--mask", mask_path), ("--source-mask", source_path))
              if p is not None and not _same_file(p, image_path)}  # fmt: skip
    _check_output(output, mode, image.size, others)
    drawn = _load_mask_for(mask_path, image, args, "--mask")
    mask = dilate(drawn[None, None], args.dilate)[0, 0]
    source = None
    if source_path is not None:
        source = _load_mask_for(source_path, image, args, "--source-mask")
    if not mask.any():
        _warn(f"the mask of {image_path} is empty; writing the input unchanged")
        if _same_file(image_path, output):
            return
        if save_format(output) == file_format(image_path) and mode == image.mode:
            from ..utils.atomic import atomic_path

            with atomic_path(output) as tmp:
                shutil.copyfile(image_path, tmp)
        else:
            keep = full_depth(image) if mode.endswith(";16") else image.convert(mode)
            _save(keep, output, image, mode)
        return
    if mask.all():
        grown = "" if drawn.all() else f" once grown by --dilate {args.dilate} (try --dilate 0)"
        raise CLIError(
            f"the mask covers the whole image{grown}: there is no known pixel to copy from"
        )
    if model is not None:
        out = model.inpaint(full_depth(image), mask, seed=args.seed, progress=bar)
    else:
        from ..editing.inpaint import inpaint

        if source is not None and not source.any():
            raise CLIError("--source-mask is empty: it leaves nothing to copy from")
        _check_patch_fits(args.patch_size, (f"IMAGE {image_path}", image))
        try:
            out = inpaint(full_depth(image), mask, patch_size=args.patch_size, seed=args.seed,
                          device=device, source_mask=source, progress=bar)  # fmt: skip
        except ValueError as err:  # the library names its keywords; the command its flags
            raise CLIError(_flag_names(str(err))) from None
    _save(out, output, image, mode)


def _inpainter(args, device):
    """The learned inpainter of ``--checkpoint`` (None without one), loaded before any work."""
    if args.checkpoint is None:
        return None
    if args.source_mask is not None:
        raise CLIError("--source-mask works with the patch-based fill, not --checkpoint")
    from ..models import Inpainter

    return _network(
        "--checkpoint", lambda: Inpainter.from_checkpoint(args.checkpoint, device=device)
    )


def _pair(folder: Path, stem: str) -> Path | None:
    """The file of ``folder`` whose name without suffix is ``stem`` (an image suffix)."""
    for suffix in IMAGE_SUFFIXES:
        for cand in (folder / (stem + suffix), folder / (stem + suffix.upper())):
            if cand.is_file():
                return cand
    return None


def _output_name(path: Path) -> str:
    """An output's file name in a folder run.

    The input's name, or its stem with ``.png`` where psal cannot write its format.
    """
    from ..utils.image import SAVE_FORMATS

    return path.name if path.suffix.lower() in SAVE_FORMATS else path.stem + ".png"


def _folder_images(
    folder: Path, output: str, name: str, inputs: dict[str, object] | None = None
) -> tuple[list[Path], Path]:
    """The images of a folder argument and the output folder, checked before any work.

    ``inputs``: the other arguments that name files or folders (``--mask``,
    ``--reference``, ...): the output folder must not be one of those folders, and no
    output may be one of those files. Two images that would be written under one name
    (``a.png`` and ``a.bmp``, written as ``.png``; names differing in case only, on
    macOS and Windows) are refused.
    """
    out_dir = Path(output)
    # hidden files (macOS's ._NAME resource forks, a killed run's .NAME.tmp files) are
    # not images of the folder, nor is a mask file kept among the photos (a --reference
    # among video frames is one of them: the key frame, coloured too)
    named = {f: g for f, g in (inputs or {}).items()
             if f in ("--mask", "--source-mask") and g and Path(g).is_file()}  # fmt: skip
    images = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        flag = next((f for f, g in named.items() if _same_file(str(p), str(g))), None)
        if flag is not None:
            _warn(f"{p.name} is the {flag} file; it is not edited as one of the images")
            continue
        images.append(p)
    if not images:
        raise CLIError(f"{name}: the folder {folder} holds no image file "
                       f"({', '.join(IMAGE_SUFFIXES)})")  # fmt: skip
    if out_dir.exists() and not out_dir.is_dir():
        raise CLIError(f"--output {out_dir}: is a file; a folder of images needs an output folder")
    if not out_dir.exists() and out_dir.suffix.lower() in IMAGE_SUFFIXES:
        raise CLIError(f"--output {out_dir}: names an image file; a folder of images needs an "
                       "output folder")  # fmt: skip
    others = {name: folder, **(inputs or {})}
    if out_dir.exists():
        for flag, given in others.items():
            if given is not None and Path(given).is_dir() and _same_file(str(out_dir), str(given)):
                raise CLIError(f"--output {out_dir}: is the {flag} folder; its files would be "
                               "overwritten")  # fmt: skip
    fold = sys.platform in ("darwin", "win32")  # their usual file systems ignore case
    seen: dict[str, Path] = {}
    for path in images:
        key = _output_name(path).lower() if fold else _output_name(path)
        if key in seen:
            raise CLIError(f"{name}: {seen[key].name} and {path.name} would both be written as "
                           f"{_output_name(path)}; rename one")  # fmt: skip
        seen[key] = path
        for flag, given in others.items():  # an input file among the outputs
            if (
                given is not None
                and Path(given).is_file()
                and _same_file(str(out_dir / _output_name(path)), str(given))
            ):
                raise CLIError(f"--output {out_dir}: {_output_name(path)} would overwrite the "
                               f"{flag} file {given}")  # fmt: skip
    return images, out_dir


def _each_image(images: list[Path], out_dir: Path, what: str, quiet: bool,
                one: Callable[[Path, Path], None]) -> int:  # fmt: skip
    """``one(image, output file)`` for every image: one bar, the failures summed up.

    A failing image does not stop the others; its one-line reason is printed after the
    bar, and the exit status is 1 if any failed. An output keeps its image's name (its
    format, or ``.png`` where psal cannot write that format).
    """
    from tqdm import tqdm

    top = out_dir  # the outermost folder this run creates, if any
    while not top.parent.exists():
        top = top.parent
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)

    def remove_created() -> None:
        """Leave none of the folders made for this run if nothing was written in them."""
        if not created:
            return
        folder = out_dir
        with contextlib.suppress(OSError):  # not empty (written, another process): kept
            while True:
                folder.rmdir()
                if folder == top:
                    break
                folder = folder.parent

    failed = []
    bar = tqdm(images, desc=what, unit="image", disable=True if quiet else None, leave=False,
               file=sys.stderr)  # fmt: skip
    try:
        for path in bar:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        one(path, out_dir / _output_name(path))
                    finally:  # each image's warnings, named (once per image, not per run)
                        for w in caught:
                            text = " ".join(str(w.message).split())
                            _warn(text if path.name in text else f"{path.name}: {text}")
            except (CLIError, ValueError, TypeError, OSError, RuntimeError, MemoryError) as err:
                from ._common import error_line

                failed.append((path.name, error_line(err)))
    except BaseException:  # Ctrl-C, SIGTERM: the folders made for no output go too
        bar.close()
        remove_created()
        raise
    bar.close()
    for name, why in failed:
        print(f"psal: error: {name}: {why}", file=sys.stderr)
    if len(failed) == len(images):
        remove_created()
        print(f"psal: all {len(images)} images failed", file=sys.stderr)
        return 1
    if failed:
        print(f"psal: {len(failed)} of {len(images)} images failed; the others are in {out_dir}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _paired(given: Path | None, image: Path, what: str, flag: str) -> Path | None:
    """``given`` itself, or, for a folder, its file named like ``image`` (else an error).

    The error names the option ``flag`` that gave the folder (``--mask``).
    """
    if given is None or not given.is_dir():
        return given
    found = _pair(given, image.stem)
    if found is None:
        raise CLIError(f"{flag}: no {what} named {image.stem}.* in the folder {given}")
    return found


def _inpaint_folder(args, device) -> int:
    """``psal inpaint DIR --mask MASKDIR|MASK -o OUTDIR``: every image, one bar, a summary."""
    images, out_dir = _folder_images(
        Path(args.image),
        args.output,
        "IMAGE",
        {"--mask": args.mask, "--source-mask": args.source_mask},
    )
    masks, sources = Path(args.mask), args.source_mask and Path(args.source_mask)
    for flag, p in (("--mask", masks), ("--source-mask", sources)):
        if p and not p.exists():
            raise CLIError(f"{flag}: no such file or folder: {p}")
    model = _inpainter(args, device)  # once for the folder

    def one(path: Path, out: Path) -> None:
        mask = _paired(masks, path, "mask", "--mask")
        source = _paired(sources or None, path, "source mask", "--source-mask")
        _inpaint_file(args, str(path), str(mask), source and str(source), str(out), device,
                      None, model)  # fmt: skip

    return _each_image(images, out_dir, "inpaint", args.quiet, one)


def _device_help(p: argparse.ArgumentParser, what: str, network: str) -> None:
    """``--device``'s help as :func:`_patch_device` resolves it (not the generic text)."""
    for action in p._actions:
        if action.dest == "device":
            action.help = (f"auto (default): the patch-based {what} on the CPU, {network} on "
                           "CUDA if available; or cpu, cuda, cuda:N, mps")  # fmt: skip


def _patch_device(args: argparse.Namespace, network: bool):
    """The device of ``psal inpaint`` / ``colorize`` / ``upscale``: CPU for ``auto``, no network.

    The patch-based methods' compiled CPU kernels need no torch (1.4 s of start-up,
    several times an inpainting fill of a 512x680 photo), so for ``auto`` and ``cpu``
    they run there, and numba's CPU target is started without what psal's kernels never
    use; a GPU is used when ``--device`` names one, and by networks for ``auto``.
    """
    if network or args.device not in ("auto", "cpu"):
        return resolve_device(args.device)
    from ..utils.parallel import start_numba_lean

    start_numba_lean()  # this process runs psal's kernels only
    return "cpu"


def _inpaint(args: argparse.Namespace) -> int:
    _check_options(args)
    device = _patch_device(args, network=args.checkpoint is not None)
    if Path(args.image).is_dir():
        return _inpaint_folder(args, device)
    for flag, value in (("--mask", args.mask), ("--source-mask", args.source_mask)):
        if value is not None and Path(value).is_dir():
            raise CLIError(f"{flag} {value} is a folder: give a folder of images as IMAGE "
                           "to pair them by file name")  # fmt: skip
    model = _inpainter(args, device)
    _run(lambda bar: _inpaint_file(args, args.image, args.mask, args.source_mask, args.output,
                                   device, bar, model), "inpaint", args.quiet)  # fmt: skip
    return 0


def _colorize(args: argparse.Namespace) -> int:
    _check_options(args)
    if args.model is not None:  # before any file is read
        if args.checkpoint:
            raise CLIError("--model and --checkpoint both choose a network: give one")
        _check_model_name(args.model, "colorize")
    device = _patch_device(args, network=bool(args.checkpoint or args.model))
    net = None
    if args.checkpoint or args.model:
        from ..models import Colorizer

        if args.model:
            net = _network("--model", lambda: Colorizer.from_pretrained(args.model, device=device))
        else:
            net = _network(
                "--checkpoint", lambda: Colorizer.from_checkpoint(args.checkpoint, device=device)
            )
    refs = Path(args.reference)
    if Path(args.target).is_dir():
        images, out_dir = _folder_images(
            Path(args.target), args.output, "TARGET", {"--reference": args.reference}
        )
        if not refs.exists():
            raise CLIError(f"--reference: no such file or folder: {refs}")

        def one(path: Path, out: Path) -> None:
            ref = _paired(refs, path, "reference", "--reference")
            _colorize_file(args, str(path), str(ref), str(out), device, net, True)

        return _each_image(images, out_dir, "colorize", args.quiet, one)
    if refs.is_dir():
        raise CLIError(f"--reference {refs} is a folder: give a folder of targets as TARGET "
                       "to pair them by file name")  # fmt: skip
    _colorize_file(args, args.target, args.reference, args.output, device, net, args.quiet)
    return 0


def _colorize_file(args, target_path: str, reference_path: str, output: str, device, net,
                   quiet: bool) -> None:  # fmt: skip
    """Colour one file into ``output`` (atomically); ``net``: a network, or None."""
    from ..editing import colorize
    from ..utils.convert import check_values
    from ..utils.image import load_image, result_mode, save_format
    from ..utils.io import full_depth

    target = load_image(target_path, "TARGET", max_pixels=args.max_pixels)
    reference = load_image(reference_path, "--reference", max_pixels=args.max_pixels)
    check_values(target, f"TARGET {target_path}", unit_float=True)
    check_values(reference, f"--reference {reference_path}")
    _check_not_flattened(target, target_path, output, "TARGET")
    mode = "RGBA" if result_mode(target) in ("LA", "RGBA") else "RGB"
    source = full_depth(target)
    if isinstance(source, np.ndarray):  # a 16-bit colour PNG: kept at 16 bits
        mode += ";16"
    elif target.mode in ("I;16", "I") and save_format(output) == "PNG":
        # a 16-bit gray target coloured into a 16-bit colour PNG (an 8-bit format: 8 bits)
        source = np.asarray(target).astype(np.uint16)
        mode += ";16"
    same = _same_file(reference_path, target_path)
    _check_output(output, mode, target.size, {"--reference": None if same else reference_path})
    if net is not None:
        work = lambda bar: net.colorize(  # noqa: E731
            source, full_depth(reference), seed=args.seed, progress=bar
        )
    else:
        _check_patch_fits(args.patch_size, (f"TARGET {target_path}", target),
                          (f"--reference {reference_path}", reference))  # fmt: skip
        work = lambda bar: colorize(  # noqa: E731
            source, full_depth(reference), patch_size=args.patch_size, k=args.k,
            seed=args.seed, device=device, progress=bar,
        )  # fmt: skip
    try:
        out = _run(work, "colorize", quiet)
    except MemoryError:
        raise CLIError(
            "colorize: out of memory (try a smaller --k or --patch-size, or smaller images)"
        ) from None
    _save(out, output, target, mode)


def _upscale(args: argparse.Namespace) -> int:
    from ..editing import upscale
    from ..editing.upscale import SCALES
    from ..utils.convert import check_values
    from ..utils.image import load_image
    from ..utils.io import full_depth, output_mode

    _check_options(args)
    try:
        scale = int(args.scale)
    except ValueError:
        scale = None
    if scale not in SCALES or str(args.scale).strip() not in {str(s) for s in SCALES}:
        raise CLIError(f"--scale must be one of {', '.join(map(str, SCALES))}, got {args.scale!r}")
    if args.checkpoint is not None and args.model is not None:
        raise CLIError("--checkpoint and --model cannot be used together")
    if args.ensemble and args.checkpoint is None and args.model is None:
        raise CLIError("--ensemble needs --model or --checkpoint (a network)")
    network = args.checkpoint is not None or args.model is not None
    device = _patch_device(args, network)
    if network:  # a network, checked first
        from ..models import Upscaler

        if args.model is not None:
            _check_model_name(args.model, "upscale")
        flag, what = (("--checkpoint", args.checkpoint) if args.model is None
                      else ("--model", args.model))  # fmt: skip
        load = Upscaler.from_checkpoint if args.model is None else Upscaler.from_pretrained
        net = _network(flag, lambda: load(what, device=device, ensemble=args.ensemble))
        if net.scale != scale:
            verb = "was trained for" if args.model is None else "enlarges"
            raise CLIError(f"--scale is {scale} but {flag} {what} {verb} x{net.scale}")
        upscale = net.upscale

    def one(path: str, output: str, quiet: bool, taken: set[str] | None = None) -> None:
        image = load_image(path, "IMAGE", max_pixels=args.max_pixels)
        check_values(image, f"IMAGE {path}")
        _check_not_flattened(image, path, output, "IMAGE")
        mode = output_mode(image)
        size = (image.size[0] * scale, image.size[1] * scale)
        try:
            _check_output(output, mode, size)
        except ValueError:
            # in a folder run the name was chosen for the user: an enlarged WebP or JPEG
            # beyond its format's side limit is written as PNG, unless that name is taken
            png = str(Path(output).with_suffix(".png"))
            if taken is None or Path(png).name.lower() in taken:
                raise
            _check_output(png, mode, size)
            _warn(f"{Path(path).name}: the x{scale} result is too large for its format; "
                  f"written as {Path(png).name}")  # fmt: skip
            output = png
        if not network:
            _check_patch_fits(args.patch_size, (f"IMAGE {path}", image))
        out = _run(
            lambda bar: upscale(
                full_depth(image), scale, patch_size=args.patch_size, seed=args.seed,
                device=device, progress=bar,
            ),
            "upscale", quiet,
        )  # fmt: skip
        _save(out, output, image, mode)

    if Path(args.image).is_dir():
        images, out_dir = _folder_images(Path(args.image), args.output, "IMAGE")
        taken = {_output_name(p).lower() for p in images}
        return _each_image(images, out_dir, "upscale", args.quiet,
                           lambda p, o: one(str(p), str(o), True, taken))  # fmt: skip
    one(args.image, args.output, args.quiet)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True,
                   help="output file (.png, .jpg, .webp, .tif)")  # fmt: skip
    add_seed_arg(p)
    add_device_arg(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="refuse input images above N pixels, before decoding them "
                   "(default: $PSAL_MAX_PIXELS, else 8192*8192)")  # fmt: skip


def _folder_output_help(p: argparse.ArgumentParser, name: str) -> None:
    for action in p._actions:
        if action.dest == "output":
            action.help = f"output file (.png, .jpg, .webp); an output folder for a folder {name}"


def _pretrained_names(task: str = "upscale") -> list[str]:
    from ..weights import PRETRAINED

    return sorted(PRETRAINED[task])


def _network(flag: str, load: Callable[[], T]) -> T:
    """``load()``, its unreadable-file or wrong-checkpoint errors named after ``flag``."""
    try:
        return load()
    except (FileNotFoundError, ValueError) as err:
        raise CLIError(f"{flag}: {err}") from None


def _check_model_name(name: str, task: str) -> None:
    """``--model``: one of the networks shipped for ``task``, else a one-line error."""
    names = _pretrained_names(task)
    if name not in names:
        raise CLIError(f"--model must be one of {', '.join(names)}, got {name!r}")


def register(subparsers: argparse._SubParsersAction, shallow: bool = False) -> None:
    """Register ``inpaint``, ``colorize`` and ``upscale`` (in full: cheap either way)."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "inpaint",
        help="fill a masked region (object removal), no trained weights needed",
        description="Fill the masked region of a photo from the rest of it with "
        "multi-scale PatchMatch completion (Wexler et al. 2007, Newson et al. 2014), or "
        "with a trained DeepFill network given --checkpoint. The patch-based fill runs "
        "on the CPU for --device auto (compiled kernels, no torch); --device cuda runs "
        "it on a GPU.",
        epilog=INPAINT_EXAMPLES,
        formatter_class=fmt,
    )
    p.add_argument("image", metavar="IMAGE",
                   help="photo to edit (PNG, JPEG, WebP), or a folder of them")  # fmt: skip
    p.add_argument("-m", "--mask", required=True,
                   help="mask image, white = hole; for a folder IMAGE, a folder of masks "
                   "paired by file name, or one mask for every image")  # fmt: skip
    p.add_argument("--source-mask", default=None, metavar="FILE",
                   help="where content may be copied from (white = allowed); a file or, for "
                   "a folder IMAGE, a folder paired by file name")  # fmt: skip
    _common(p)
    _folder_output_help(p, "IMAGE")
    _device_help(p, "fill", "a --checkpoint network")
    p.add_argument("--patch-size", type=int, default=7, help="odd patch side (default: 7)")
    p.add_argument("--dilate", type=int, default=DILATE_DEFAULT,
                   help=f"grow the hole by N pixels (default: {DILATE_DEFAULT}, for soft, "
                   "anti-aliased mask edges; 0 keeps pixels outside the mask exactly)")  # fmt: skip
    p.add_argument("--mask-threshold", type=float, default=0.5,
                   help="fraction of the range above which a mask pixel is a hole "
                   "(default: 0.5, i.e. > 127)")  # fmt: skip
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="use the learned DeepFill inpainter from this checkpoint")  # fmt: skip
    p.set_defaults(func=_inpaint)

    p = subparsers.add_parser(
        "colorize",
        help="colour a grayscale photo from a colour reference",
        description="Colour a grayscale photo with the colours of a reference photo, "
        "matched by luminance patches (PSAL in pixel space); the luminance is kept.",
        epilog=COLORIZE_EXAMPLES,
        formatter_class=fmt,
    )
    p.add_argument("target", metavar="TARGET",
                   help="grayscale photo to colour, or a folder of them")  # fmt: skip
    p.add_argument("-r", "--reference", required=True,
                   help="colour photo to take colours from; for a folder TARGET, one photo for "
                   "all or a folder paired by file name")  # fmt: skip
    _common(p)
    _folder_output_help(p, "TARGET")
    _device_help(p, "colorization", "a --model or --checkpoint network")
    p.add_argument("--patch-size", type=int, default=9, help="odd patch side (default: 9)")
    p.add_argument("--k", type=int, default=2,
                   help="reference patches averaged, 1 to 32 (default: 2)")  # fmt: skip
    p.add_argument("--checkpoint", default=None, metavar="RUN",
                   help="use the trained colorizer of this run folder or weights file")  # fmt: skip
    p.add_argument("--model", default=None, metavar="NAME",
                   help="use weights shipped with psal: "
                   f"{', '.join(_pretrained_names('colorize'))} (docs/colorize.md)")  # fmt: skip
    p.set_defaults(func=_colorize)

    p = subparsers.add_parser(
        "upscale",
        help="enlarge a photo x2, x3 or x4 from its own self-similarity",
        description="Enlarge a photo x2, x3 or x4: detail is found in the photo's own "
        "downscaled copy (Glasner et al. 2009) with PatchMatch, then back-projected. "
        "Without a network it runs on the CPU for --device auto (compiled kernels, no "
        "torch); --device cuda runs it on a GPU.",
        epilog=UPSCALE_EXAMPLES,
        formatter_class=fmt,
    )
    p.add_argument("image", metavar="IMAGE", help="photo to enlarge, or a folder of them")
    p.add_argument("-s", "--scale", default="2", help="2, 3 or 4 (default: 2)")
    _common(p)
    _folder_output_help(p, "IMAGE")
    _device_help(p, "upscaling", "a --model or --checkpoint network")
    p.add_argument("--patch-size", type=int, default=3,
                   help="odd patch side, in input pixels (default: 3)")  # fmt: skip
    p.add_argument("--checkpoint", default=None, metavar="RUN",
                   help="use the network trained by 'psal train upscale' (a run folder "
                   "or weights file)")  # fmt: skip
    p.add_argument("--model", default=None, metavar="NAME",
                   help="use a network shipped with psal: " + ", ".join(_pretrained_names())
                   + " (default: the training-free method)")  # fmt: skip
    p.add_argument("--ensemble", action="store_true",
                   help="with a network: average it over the 8 flips/rotations of the "
                   "input (8x slower, a little better)")  # fmt: skip
    p.set_defaults(func=_upscale)

"""Helpers of the editing benchmarks (inpaint, colorize, upscale): photos, masks, metrics."""

from __future__ import annotations

import time

import numpy as np
import torch

#: scikit-image photos on disk (no download), by loader name.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle")


def load_photo(name: str, size: tuple[int, int] = (512, 680)) -> np.ndarray:
    """A scikit-image photo, resized to cover ``size`` (H, W), centre-cropped, uint8 RGB."""
    from PIL import Image
    from skimage import data

    im = getattr(data, name)()
    if isinstance(im, tuple):  # stereo_motorcycle -> (left, right, disparity)
        im = im[0]
    if im.ndim == 2:
        im = np.stack([im] * 3, -1)
    im = im[..., :3]
    h, w = size
    s = max(h / im.shape[0], w / im.shape[1])
    nh, nw = max(h, round(im.shape[0] * s)), max(w, round(im.shape[1] * s))
    pil = Image.fromarray(im).resize((nw, nh), Image.Resampling.LANCZOS)
    y0, x0 = (nh - h) // 2, (nw - w) // 2
    return np.asarray(pil)[y0 : y0 + h, x0 : x0 + w].copy()


def set_threads(n: int) -> None:
    """Use ``n`` torch and numba threads (timings then compare per core)."""
    from _common import set_threads as _set

    _set(n)


def import_pypatchmatch():
    """Import the PyPI package ``pypatchmatch`` (module ``patchmatch``), or return None.

    ``benchmarks/patchmatch.py`` (the engine's benchmark) has the same module name and
    sits first on ``sys.path`` when a script of this folder runs, so this folder is
    left out of the path while importing.
    """
    import importlib
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    cached = sys.modules.get("patchmatch")
    if cached is not None and hasattr(cached, "inpaint"):
        return cached
    sys.modules.pop("patchmatch", None)
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    try:
        module = importlib.import_module("patchmatch")
    except ImportError:
        return None
    finally:
        sys.path[:] = saved
    return module if hasattr(module, "inpaint") else None


def rect_mask(shape: tuple[int, int], size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size x size`` square hole at a random position (inside the image)."""
    h, w = shape
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    m = np.zeros(shape, bool)
    m[y : y + size, x : x + size] = True
    return m


def brush_mask(
    shape: tuple[int, int], rng: np.random.Generator, cover: tuple[float, float] = (0.10, 0.25)
) -> np.ndarray:
    """Free-form brush strokes (as in DeepFill v2) until a random coverage in ``cover``."""
    from PIL import Image, ImageDraw

    h, w = shape
    target = rng.uniform(*cover)
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    while (np.asarray(img) > 0).mean() < target:
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        width = int(rng.integers(12, 36))
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(3, 8))):
            angle += rng.uniform(-1.2, 1.2)
            length = rng.uniform(20, 70)
            nx = float(np.clip(x + length * np.cos(angle), 0, w - 1))
            ny = float(np.clip(y + length * np.sin(angle), 0, h - 1))
            draw.line([(x, y), (nx, ny)], fill=255, width=width)
            r = width / 2
            draw.ellipse([nx - r, ny - r, nx + r, ny + r], fill=255)
            x, y = nx, ny
    return np.asarray(img) > 0


def psnr(
    a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None, peak: float = 255.0
) -> float:
    """PSNR in dB over the pixels ``where`` (all channels)."""
    d = a.astype(np.float64) - b.astype(np.float64)
    if where is not None:
        d = d[where]
    mse = float(np.mean(d**2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """Mean SSIM (scikit-image, 7x7 windows) over the pixels ``where``."""
    from skimage.metrics import structural_similarity

    channel_axis = 2 if a.ndim == 3 else None
    _, smap = structural_similarity(a, b, channel_axis=channel_axis, data_range=255, full=True)
    if smap.ndim == 3:
        smap = smap.mean(2)
    return float(smap[where].mean() if where is not None else smap.mean())


def gradient_ratio(out: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    """Mean gradient magnitude of ``out`` over ``where`` divided by that of ``truth``.

    1.0: the fill is as sharp as the truth; a blurred fill scores far below (a smooth
    diffusion fill about 0.4), noise above. Gradients are central differences of the
    luma (mean of the channels) in float.
    """

    def mag(a):
        g = a.astype(np.float64)
        g = g.mean(-1) if g.ndim == 3 else g
        gy, gx = np.gradient(g)
        return np.hypot(gy, gx)

    den = float(mag(truth)[where].mean())
    return float(mag(out)[where].mean()) / den if den > 0 else float("nan")


def gradient_energy_ratio(out: np.ndarray, truth: np.ndarray, border: int = 0) -> float:
    """Gradient energy of ``out`` over that of ``truth``, ``border`` pixels shaved.

    Energy = mean squared forward difference along x plus along y, on the luma (mean of
    the channels) in float. 1.0: as sharp as the truth; lower: blurrier (bicubic x2 of
    the 512x680 photos scores about 0.45). Squared, so it falls faster with blur than
    ``gradient_ratio`` (mean magnitude), which the inpainting tables use.
    """

    def energy(a):
        g = a.astype(np.float64)
        g = g.mean(-1) if g.ndim == 3 else g
        if border:
            g = g[border:-border, border:-border]
        return float((np.diff(g, axis=1) ** 2).mean() + (np.diff(g, axis=0) ** 2).mean())

    den = energy(truth)
    return energy(out) / den if den > 0 else float("nan")


def timed_runs(fn, repeats: int) -> tuple[object, float, float]:
    """Call ``fn()`` ``repeats`` times: (first result, median wall s, median CPU s).

    CPU time is the process's (all its threads). Warm ``fn`` up before (numba
    compilation, caches): these are the times of warm calls.
    """
    import statistics

    result, walls, cpus = None, [], []
    for i in range(max(1, repeats)):
        with Timer() as t:
            out = fn()
        if i == 0:
            result = out
        walls.append(t.seconds)
        cpus.append(t.cpu_seconds)
    return result, statistics.median(walls), statistics.median(cpus)


def texture(name: str, size: tuple[int, int] = (512, 680)) -> np.ndarray:
    """A scikit-image texture (``brick``, ``grass``, ``gravel``: 512x512 gray), cropped
    to at most ``size``, as uint8 RGB (the gray in three channels)."""
    from skimage import data

    im = getattr(data, name)()[: size[0], : size[1]]
    return np.stack([im] * 3, -1).astype(np.uint8)


class Timer:
    """Context manager measuring wall time and the process's CPU time (after
    synchronising CUDA): ``seconds``, ``cpu_seconds``."""

    def __enter__(self) -> Timer:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.t0
        self.cpu_seconds = time.process_time() - self.c0


def print_table(headers: list[str], rows: list[list], title: str | None = None) -> str:
    """Print a Markdown table and return it."""

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    text = ("\n" + title + "\n\n" if title else "") + "\n".join(lines)
    print(text, flush=True)
    return text


def write_json(path: str, payload: dict) -> None:
    """Write results with the environment (``_common.environment``) as JSON, atomically."""
    from _common import environment
    from _common import write_json as _write

    _write(path, {"environment": environment(), **payload})

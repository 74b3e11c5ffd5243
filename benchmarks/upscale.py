"""Upscaling benchmark: psal.upscale against bicubic interpolation (and nearest).

scikit-image photos (512x680) are downscaled x2, x3, x4, then restored to 512x680; the
restorations are compared with the originals: PSNR and SSIM on RGB and the
gradient-energy ratio (mean squared finite differences of the luma, output over
original: 1 = as sharp, lower = blurrier; PSNR alone rewards blur), a border of
``scale`` pixels left out (the originals are cropped to sides divisible by the scale,
e.g. 510x678 for x3, so that the restored grids align exactly). Times: wall and process
CPU seconds (all threads), the median of ``--repeats`` runs after one untimed warm-up
call of each method per scale, at the real size. Two downscaling kernels:

* ``bicubic``: Pillow's antialiased bicubic resize, the model psal.upscale assumes;
* ``gaussian``: scikit-image's ``rescale(..., anti_aliasing=True)`` (Gaussian blur then
  linear interpolation), a kernel psal.upscale does not assume.

Besides nearest and bicubic, the table has ``bicubic + back-projection``: psal.upscale's
last stage alone (Irani & Peleg, with the same iterations), so that what the
self-examples add is seen apart from what back-projection adds.

    PYTHONPATH=src python benchmarks/upscale.py [--json out.json] [--figure fig.png]
    PYTHONPATH=src python benchmarks/upscale.py --previous [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _editing as C


def _degrade(hr: np.ndarray, scale: int, kernel: str) -> np.ndarray:
    h, w = hr.shape[:2]
    size = (round(w / scale), round(h / scale))
    if kernel == "bicubic":
        return np.asarray(Image.fromarray(hr).resize(size, Image.Resampling.BICUBIC))
    from skimage.transform import resize

    out = resize(hr, (size[1], size[0]), anti_aliasing=True, order=1)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def _back_projection_only(lr: np.ndarray, size: tuple[int, int], iters: int) -> np.ndarray:
    from psal.editing.upscale import _back_project, resize

    x = torch.from_numpy(lr.astype(np.float32) / 255).permute(2, 0, 1)[None]
    out = _back_project(resize(x, size), x, iters).clamp(0, 1)
    return np.rint(out[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def _metrics(out: np.ndarray, hr: np.ndarray, border: int) -> tuple[float, float, float]:
    a, b = out[border:-border, border:-border], hr[border:-border, border:-border]
    return C.psnr(a, b), C.ssim(a, b), C.gradient_energy_ratio(a, b)


def _parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--photos", nargs="+", default=list(C.PHOTOS))
    p.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    p.add_argument("--kernels", nargs="+", default=["bicubic", "gaussian"])
    p.add_argument("--size", type=int, nargs=2, default=(512, 680), metavar=("H", "W"))
    p.add_argument("--threads", type=int, default=1, help="torch and numba threads")
    p.add_argument(
        "--previous",
        action="store_true",
        help="also run the previous psal.upscale (benchmarks/_upscale_v0.py)",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed runs per case (median; default 3)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="2 photos, x2, bicubic kernel, 1 timed run (options given explicitly win)",
    )
    p.add_argument("--json", default=None)
    p.add_argument("--figure", default=None)
    args = p.parse_args(argv)
    if args.quick:
        from _common import quick_defaults

        quick_defaults(
            p, args, argv, photos=list(C.PHOTOS[:2]), scales=[2], kernels=["bicubic"], repeats=1
        )
    return args


def _methods(previous: bool) -> dict:
    """Method name -> fn(lr, scale, (h, w)) giving an (h, w, 3) uint8 enlargement."""
    from psal.editing import upscale

    methods = {
        "nearest": lambda lr, s, hw: np.asarray(
            Image.fromarray(lr).resize(hw[::-1], Image.Resampling.NEAREST)
        ),
        "bicubic": lambda lr, s, hw: np.asarray(
            Image.fromarray(lr).resize(hw[::-1], Image.Resampling.BICUBIC)
        ),
        "bicubic + back-projection": lambda lr, s, hw: _back_projection_only(lr, hw, 10),
        "psal.upscale": lambda lr, s, hw: _fit(upscale(lr, s, seed=0), hw),
    }
    if previous:
        import _upscale_v0

        methods["previous psal.upscale"] = lambda lr, s, hw: _fit(
            _upscale_v0.upscale(lr, s, seed=0), hw
        )
    return methods


def _measure(args: argparse.Namespace, methods: dict) -> tuple[list[dict], tuple | None]:
    """Run every method on every (kernel, scale, photo); one record per case and method.

    Each method is called once untimed on the first case of each scale (compilation,
    caches, at the real size), then ``args.repeats`` times per case: median wall and
    CPU seconds; the metrics are those of the first timed run's output.
    """
    h, w = args.size
    records, fig, warm = [], None, set()
    for kernel in args.kernels:
        for scale in args.scales:
            for name in args.photos:
                # sides divisible by the scale, so that every method's output is aligned
                hr = C.load_photo(name, (h, w))[: h - h % scale, : w - w % scale]
                lr = _degrade(hr, scale, kernel)
                outs = {}
                for mname, fn in methods.items():
                    if (mname, scale) not in warm:
                        fn(lr, scale, hr.shape[:2])
                        warm.add((mname, scale))
                    out, wall, cpu = C.timed_runs(
                        lambda fn=fn, lr=lr, scale=scale, hr=hr: fn(lr, scale, hr.shape[:2]),
                        args.repeats,
                    )
                    outs[mname] = out
                    ps, ss, ge = _metrics(out, hr, scale)
                    records.append(
                        {
                            "kernel": kernel,
                            "scale": scale,
                            "photo": name,
                            "method": mname,
                            "psnr": ps,
                            "ssim": ss,
                            "grad_energy": ge,
                            "seconds": wall,
                            "cpu_seconds": cpu,
                        }
                    )
                if fig is None and kernel == "bicubic" and scale == 4:
                    fig = (hr, outs)
    return records, fig


def _summary_rows(args: argparse.Namespace, methods: dict, records: list[dict]) -> list[list]:
    """Means of PSNR, SSIM, gain over bicubic, gradient-energy ratio, wall and CPU
    seconds (each a per-case median) per (kernel, scale, method)."""
    rows = []
    for kernel in args.kernels:
        for scale in args.scales:

            def sel(mname, kernel=kernel, scale=scale):
                return [
                    r
                    for r in records
                    if r["kernel"] == kernel and r["scale"] == scale and r["method"] == mname
                ]

            base = np.mean([r["psnr"] for r in sel("bicubic")])
            for mname in methods:
                runs = sel(mname)
                ps = float(np.mean([r["psnr"] for r in runs]))
                rows.append(
                    [
                        kernel,
                        f"x{scale}",
                        mname,
                        ps,
                        float(np.mean([r["ssim"] for r in runs])),
                        f"{ps - base:+.2f}",
                        float(np.mean([r["grad_energy"] for r in runs])),
                        float(np.mean([r["seconds"] for r in runs])),
                        float(np.mean([r["cpu_seconds"] for r in runs])),
                    ]
                )
    return rows


def _figure(path: str, fig: tuple, size_hw: tuple[int, int]) -> None:
    """Centre crops of nearest, bicubic, psal.upscale and the original, shown 2x."""
    from PIL import ImageDraw

    from psal.utils.image import save_image

    h, w = size_hw
    hr, outs = fig
    y0, x0, s = h // 2 - 64, w // 2 - 96, 160
    tiles = [
        ("nearest", outs["nearest"]),
        ("bicubic", outs["bicubic"]),
        ("psal.upscale", outs["psal.upscale"]),
        ("original", hr),
    ]
    size = 2 * s
    canvas = Image.new("RGB", (size * len(tiles), size + 14), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, arr) in enumerate(tiles):
        crop = Image.fromarray(arr[y0 : y0 + s, x0 : x0 + s]).resize(
            (size, size), Image.Resampling.NEAREST
        )
        canvas.paste(crop, (i * size, 14))
        draw.text(
            (i * size + 3, 1), f"{label} (x4)" if label != "original" else label, fill="black"
        )
    save_image(canvas, path)
    print(f"figure written to {path}")


def main(argv=None) -> int:
    args = _parse(argv)
    C.set_threads(args.threads)
    methods = _methods(args.previous)
    records, fig = _measure(args, methods)
    h, w = args.size
    C.print_table(
        [
            "downscaling",
            "scale",
            "method",
            "PSNR (dB)",
            "SSIM",
            "dB vs bicubic",
            "grad-energy ratio",
            "time (s)",
            "CPU s",
        ],
        _summary_rows(args, methods, records),
        f"Mean over {len(args.photos)} photos ({h}x{w} originals); times: median of "
        f"{args.repeats} warm run(s) per case, {args.threads} thread(s)",
    )
    if args.json:
        C.write_json(args.json, {"settings": vars(args) | {"size": [h, w]}, "records": records})
    if args.figure and fig is not None:
        _figure(args.figure, fig, (h, w))
    return 0


def _fit(out: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """psal.upscale gives round(h * s) x round(w * s); crop or pad to the original size."""
    h, w = size
    if out.shape[:2] == (h, w):
        return out
    out = out[:h, :w]
    return np.pad(out, ((0, h - out.shape[0]), (0, w - out.shape[1]), (0, 0)), mode="edge")


if __name__ == "__main__":
    sys.exit(main())

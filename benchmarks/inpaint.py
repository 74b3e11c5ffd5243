"""Inpainting benchmark: psal.inpaint against OpenCV (Telea, Navier-Stokes) and pypatchmatch.

Photos from scikit-image, resized and cropped to 512x680, with holes of known content:
a 128x128 square and free-form brush strokes covering 10-25% of the image (fixed
seeds). For each method: PSNR and SSIM inside the hole, and the wall time, measured
side by side in one process on the same inputs (after a warm-up call of each).

    PYTHONPATH=src python benchmarks/inpaint.py                  # full run
    PYTHONPATH=src python benchmarks/inpaint.py --photos astronaut --holes rect128
    PYTHONPATH=src python benchmarks/inpaint.py --json out.json --figure docs/x.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _editing as C


def _methods(args):
    import cv2

    from psal.editing import inpaint as psal_inpaint

    methods = {
        "psal": lambda im, m: psal_inpaint(im, m, seed=0, **args.psal_kwargs),
        "cv2-telea": lambda im, m: cv2.inpaint(im, m.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA),
        "cv2-ns": lambda im, m: cv2.inpaint(im, m.astype(np.uint8) * 255, 3, cv2.INPAINT_NS),
    }
    patchmatch = C.import_pypatchmatch()
    if patchmatch is not None and patchmatch.patchmatch_available:
        patchmatch.set_random_seed(0)
        methods["pypatchmatch"] = lambda im, m: patchmatch.inpaint(
            im, m.astype(np.uint8) * 255, patch_size=15
        )
    else:  # pragma: no cover
        print("pypatchmatch is not installed: left out", file=sys.stderr)
    return methods


def _figure(cases, results, names, path, n=3):
    from PIL import Image, ImageDraw

    tiles_rows = []
    for case in cases[:n]:
        im, m = case["image"], case["mask"]
        shown = im.copy()
        shown[m] = (255, 255, 255)
        row = [("input + hole", shown)] + [(nm, results[(case["id"], nm)]) for nm in names]
        row.append(("truth", im))
        tiles_rows.append(row)
    scale = 0.35
    h, w = tiles_rows[0][0][1].shape[:2]
    th, tw = int(h * scale), int(w * scale)
    pad = 16
    canvas = Image.new("RGB", (tw * len(tiles_rows[0]), (th + pad) * len(tiles_rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(tiles_rows):
        for c, (label, arr) in enumerate(row):
            tile = Image.fromarray(arr).resize((tw, th), Image.Resampling.LANCZOS)
            canvas.paste(tile, (c * tw, r * (th + pad) + pad))
            draw.text((c * tw + 3, r * (th + pad) + 2), label, fill="black")
    from psal.utils.image import save_image

    save_image(canvas, path)
    print(f"figure written to {path}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--photos", nargs="+", default=list(C.PHOTOS))
    p.add_argument("--holes", nargs="+", default=["rect128", "brush"], choices=["rect128", "brush"])
    p.add_argument("--size", type=int, nargs=2, default=(512, 680), metavar=("H", "W"))
    p.add_argument("--methods", nargs="+", default=None, help="subset of methods to run")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and numba threads (default 1: pypatchmatch and OpenCV use one)",
    )
    p.add_argument("--json", default=None, help="write results and environment here")
    p.add_argument("--figure", default=None, help="write a side-by-side PNG here")
    p.add_argument(
        "--psal",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra psal.inpaint settings, e.g. k=2 em_iters=4",
    )
    args = p.parse_args(argv)
    C.set_threads(args.threads)
    kw = {}
    for item in args.psal:
        key, val = item.split("=", 1)
        kw[key] = (
            None if val == "None" else (float(val) if "." in val or val == "inf" else int(val))
        )
    args.psal_kwargs = kw

    methods = _methods(args)
    if args.methods:
        methods = {k: v for k, v in methods.items() if k in args.methods}
    size = tuple(args.size)
    cases = []
    for name in args.photos:
        i = C.PHOTOS.index(name) if name in C.PHOTOS else len(C.PHOTOS) + len(name)
        im = C.load_photo(name, size)
        for hole in args.holes:
            rng = np.random.default_rng(1000 * i + (0 if hole == "rect128" else 1))
            m = C.rect_mask(size, 128, rng) if hole == "rect128" else C.brush_mask(size, rng)
            cases.append({"id": f"{name}/{hole}", "image": im, "mask": m, "hole": hole})

    warm = C.load_photo(args.photos[0], (96, 128))
    wm = np.zeros(warm.shape[:2], bool)
    wm[30:50, 40:70] = True
    for fn in methods.values():
        fn(warm, wm)

    rows, results, records = [], {}, []
    for case in cases:
        im, m = case["image"], case["mask"]
        for name, fn in methods.items():
            with C.Timer() as t:
                out = fn(im, m)
            results[(case["id"], name)] = out
            rec = {
                "case": case["id"],
                "method": name,
                "hole_fraction": float(m.mean()),
                "psnr": C.psnr(out, im, m),
                "ssim": C.ssim(out, im, m),
                "seconds": t.seconds,
                "known_changed": int((out[~m] != im[~m]).any(axis=-1).sum()),
            }
            records.append(rec)
            rows.append(
                [
                    case["id"],
                    name,
                    f"{100 * rec['hole_fraction']:.1f}%",
                    rec["psnr"],
                    rec["ssim"],
                    rec["seconds"],
                ]
            )
    C.print_table(
        ["case", "method", "hole", "PSNR (dB)", "SSIM", "time (s)"],
        rows,
        "Per case (PSNR and SSIM inside the hole)",
    )

    summary = []
    ref_time = {}
    for hole in [*args.holes, "all"]:
        for name in methods:
            sel = [
                r
                for r in records
                if r["method"] == name and (hole == "all" or r["case"].endswith(hole))
            ]
            if not sel:
                continue
            t = float(np.mean([r["seconds"] for r in sel]))
            if name == "pypatchmatch":
                ref_time[hole] = t
            summary.append(
                [
                    hole,
                    name,
                    float(np.mean([r["psnr"] for r in sel])),
                    float(np.mean([r["ssim"] for r in sel])),
                    t,
                ]
            )
    for row in summary:
        row.append(row[4] / ref_time[row[0]] if row[0] in ref_time else float("nan"))
    C.print_table(
        ["holes", "method", "mean PSNR (dB)", "mean SSIM", "mean time (s)", "time / pypatchmatch"],
        summary,
        f"Summary over {len(args.photos)} photos ({size[0]}x{size[1]})",
    )
    if args.json:
        C.write_json(args.json, {"settings": {"psal": kw, "size": size}, "records": records})
    if args.figure:
        _figure(cases, results, list(methods), args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Colorization benchmark: chrominance PSNR when the reference is another crop of the scene.

Each scikit-image photo (512x680) is cut into a target (the left 55% of the columns,
turned to grayscale) and a reference (the right 55%, in colour), so only a tenth of
the width is seen by both. The coloured target is compared with the truth on the
chrominance (Cb, Cr of BT.601 YCbCr, 0-255 scale): PSNR, side by side with trivial
baselines (no colour; the reference's mean colour everywhere). The luminance error of
every output is also reported (it must be zero up to 8-bit rounding).

    PYTHONPATH=src python benchmarks/colorize.py [--json out.json] [--figure fig.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _editing as C


def _ycc(rgb: np.ndarray) -> np.ndarray:
    from psal.editing._color import rgb_to_luma_chroma

    t = torch.from_numpy(rgb.astype(np.float64) / 255).permute(2, 0, 1)[None]
    y, c = rgb_to_luma_chroma(t)
    return torch.cat([y, c], 1)[0].permute(1, 2, 0).numpy() * 255


def _gray_like(gray: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    from psal.editing._color import luma_chroma_to_rgb

    y = torch.from_numpy(gray.astype(np.float64) / 255)[None, None]
    c = torch.from_numpy(chroma.astype(np.float64)).permute(2, 0, 1)[None]
    rgb = luma_chroma_to_rgb(y, c)[0].permute(1, 2, 0).numpy()
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--photos", nargs="+", default=list(C.PHOTOS))
    p.add_argument("--size", type=int, nargs=2, default=(512, 680), metavar=("H", "W"))
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and numba threads (default 1: pypatchmatch and OpenCV use one)",
    )
    p.add_argument("--json", default=None)
    p.add_argument("--figure", default=None)
    p.add_argument("--psal", nargs="*", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    C.set_threads(args.threads)
    from psal.editing import colorize

    kw = {}
    for item in args.psal:
        key, val = item.split("=", 1)
        kw[key] = float(val) if "." in val or val == "inf" else int(val)

    h, w = args.size
    cut = int(0.55 * w)
    methods = {
        "psal": lambda g, ref: colorize(g, ref, seed=0, **kw),
        "gray (no colour)": lambda g, ref: np.stack([g] * 3, -1),
        "reference mean colour": lambda g, ref: _gray_like(
            g, np.broadcast_to(_ycc(ref)[..., 1:].mean((0, 1)) / 255, (*g.shape, 2))
        ),
    }
    warm = C.load_photo(args.photos[0], (64, 96))
    colorize(warm[..., 0], warm, seed=0, **kw)
    records, rows, figs = [], [], []
    for name in args.photos:
        im = C.load_photo(name, (h, w))
        target_rgb, ref = im[:, :cut], im[:, w - cut :]
        truth = _ycc(target_rgb)
        gray = np.clip(np.rint(truth[..., 0]), 0, 255).astype(np.uint8)
        outs = {}
        for mname, fn in methods.items():
            with C.Timer() as t:
                out = fn(gray, ref)
            outs[mname] = out
            got = _ycc(out)
            rec = {
                "photo": name,
                "method": mname,
                "chroma_psnr": C.psnr(got[..., 1:], truth[..., 1:]),
                "luma_max_error": float(np.abs(got[..., 0] - gray).max()),
                "seconds": t.seconds,
            }
            records.append(rec)
            rows.append([name, mname, rec["chroma_psnr"], rec["luma_max_error"], rec["seconds"]])
        figs.append((gray, ref, outs["psal"], target_rgb))
    C.print_table(
        ["photo", "method", "chroma PSNR (dB)", "max luma error (0-255)", "time (s)"],
        rows,
        "Per photo",
    )
    summary = []
    for mname in methods:
        sel = [r for r in records if r["method"] == mname]
        summary.append(
            [
                mname,
                float(np.mean([r["chroma_psnr"] for r in sel])),
                float(max(r["luma_max_error"] for r in sel)),
                float(np.mean([r["seconds"] for r in sel])),
            ]
        )
    base = summary[2][1]
    for row in summary:
        row.append(row[1] - base)
    C.print_table(
        [
            "method",
            "mean chroma PSNR (dB)",
            "max luma error",
            "mean time (s)",
            "dB over mean colour",
        ],
        summary,
        f"Summary over {len(args.photos)} photos",
    )
    if args.json:
        C.write_json(args.json, {"settings": {"psal": kw, "size": [h, w]}, "records": records})
    if args.figure:
        from PIL import Image, ImageDraw

        from psal.utils.image import save_image

        s = 0.3
        rows_img = []
        for gray, ref, out, truth in figs[:3]:
            tiles = [np.stack([gray] * 3, -1), ref, out, truth]
            tiles = [
                Image.fromarray(t).resize((int(t.shape[1] * s), int(t.shape[0] * s))) for t in tiles
            ]
            rows_img.append(tiles)
        tw = sum(t.width for t in rows_img[0])
        th = rows_img[0][0].height + 14
        canvas = Image.new("RGB", (tw, th * len(rows_img)), "white")
        draw = ImageDraw.Draw(canvas)
        for r, tiles in enumerate(rows_img):
            x = 0
            for label, tile in zip(["target (gray)", "reference", "psal.colorize", "truth"], tiles):
                canvas.paste(tile, (x, r * th + 14))
                draw.text((x + 3, r * th + 1), label, fill="black")
                x += tile.width
        save_image(canvas, args.figure)
        print(f"figure written to {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Colorization benchmark: chroma PSNR on pairs of the same scene that are not aligned.

Pairs (target in gray, reference in colour), made from scikit-image photos:

* ``pan``: two frames of a camera panning over the photo: crop windows of the same size
  whose offsets differ by about a quarter of the width and a tenth of the height;
* ``zoom``: the same, the reference window 1.4x smaller and enlarged (the camera moved
  closer: objects are seen at another size);
* ``split``: the left 55% and the right 55% of the photo (a tenth of the width seen by
  both: most of the target has no counterpart in the reference);
* ``stereo``: the left (gray) and right (colour) views of ``stereo_motorcycle``.

The held-out photos (astronaut, coffee, stereo_motorcycle) were never used to choose a
parameter or to train; chelsea and rocket are the tuning photos (reported separately).
Methods: gray (no colour), the old default of psal 0.1 (per-pixel votes, one scale), the
new default (three scales; votes whose forward-backward check passes kept, the others
propagated edge-aware), and any trained
network given with ``--checkpoint NAME=RUN``. Scores on the 8-bit scale: chroma PSNR
(Cb, Cr of BT.601 YCbCr), RGB PSNR, and the colourfulness of Hasler and Suesstrunk
(the truth's is printed beside it); time (wall, median of ``--repeats`` warm runs,
every method called once, untimed, on the first pair first) and peak memory per image.

    PYTHONPATH=src python benchmarks/colorize.py [--quick] [--json out.json] [--figure fig.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import _editing as C

HELD_OUT = ("astronaut", "coffee", "stereo_motorcycle")
TUNING = ("chelsea", "rocket")


def _resize(im: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(im).resize((size[1], size[0]), Image.Resampling.LANCZOS))


def make_pairs(photo: str, size: tuple[int, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{kind: (target RGB, reference RGB)}`` for one photo, both ``size`` (H, W)."""
    h, w = size
    if photo == "stereo_motorcycle":
        from skimage import data

        left, right, _ = data.stereo_motorcycle()
        return {"stereo": (_resize(left, size), _resize(right, size))}
    big = C.load_photo(photo, (int(h * 1.12), int(w * 1.35)))
    zh, zw = int(h / 1.4), int(w / 1.4)
    wide = C.load_photo(photo, (h, int(w / 0.55)))
    return {
        "pan": (big[:h, :w], big[-h:, -w:]),
        "zoom": (big[:h, :w], _resize(big[-zh:, -zw:], size)),
        "split": (wide[:, :w], wide[:, -w:]),
    }


def _ycc(rgb: np.ndarray) -> np.ndarray:
    from psal.utils.color import rgb_to_luma_chroma

    t = torch.from_numpy(rgb.astype(np.float64) / 255).permute(2, 0, 1)[None]
    y, c = rgb_to_luma_chroma(t)
    return torch.cat([y, c], 1)[0].permute(1, 2, 0).numpy() * 255


def colourfulness(rgb: np.ndarray) -> float:
    """Colourfulness of Hasler and Suesstrunk (2003) on the 0-255 scale."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def methods(checkpoints: dict[str, str], ablation: bool = False) -> dict:
    from psal.editing import colorize

    out = {
        "gray (no colour)": lambda g, ref: np.stack([g] * 3, -1),
        "old default (0.1)": lambda g, ref: colorize(
            g, ref, seed=0, scales=(1.0,), propagate=False
        ),
        "new default": lambda g, ref: colorize(g, ref, seed=0),
    }
    if ablation:  # each change of the new default alone, and the default without the check
        out["scales only"] = lambda g, ref: colorize(g, ref, seed=0, propagate=False)
        out["propagation only"] = lambda g, ref: colorize(g, ref, seed=0, scales=(1.0,))
        out["no consistency check"] = lambda g, ref: colorize(
            g, ref, seed=0, consistency=None, smoothness=10.0
        )
    for name, run in checkpoints.items():
        from psal.models import Colorizer

        net = Colorizer.from_checkpoint(run)
        out[name] = lambda g, ref, net=net: net.colorize(g, ref, seed=0)
    return out


def score(photos, size, fns, repeats: int = 1) -> tuple[list[dict], list]:
    records, panels = [], []
    dev = torch.device("cpu")
    warm = False
    for photo in photos:
        for kind, (target, ref) in make_pairs(photo, size).items():
            truth = _ycc(target)
            gray = np.clip(np.rint(truth[..., 0]), 0, 255).astype(np.uint8)
            if not warm:  # compilation and first-call caches are not a method's time
                for fn in fns.values():
                    fn(gray, ref)
                warm = True
            outs = {}
            for mname, fn in fns.items():
                base = _common.peak_start(dev)
                out, seconds, _ = C.timed_runs(lambda fn=fn, g=gray, r=ref: fn(g, r), repeats)
                peak = _common.peak_end(dev, base)
                outs[mname] = out
                got = _ycc(out)
                records.append({
                    "photo": photo, "pair": kind, "method": mname,
                    "chroma_psnr": C.psnr(got[..., 1:], truth[..., 1:]),
                    "rgb_psnr": C.psnr(out, target),
                    "colourfulness": colourfulness(out),
                    "truth_colourfulness": colourfulness(target),
                    "luma_max_error": float(np.abs(got[..., 0] - gray).max()),
                    "seconds": seconds, "peak_mb": peak / 2**20,
                })  # fmt: skip
            panels.append((f"{photo} {kind}", gray, ref, outs, target))
    return records, panels


def summarise(records: list[dict], photos, title: str) -> str:
    rows = []
    for mname in dict.fromkeys(r["method"] for r in records):
        sel = [r for r in records if r["method"] == mname and r["photo"] in photos]
        if not sel:
            continue
        rows.append([mname, len(sel)] + [float(np.mean([r[key] for r in sel])) for key in (
            "chroma_psnr", "rgb_psnr", "colourfulness", "truth_colourfulness",
            "luma_max_error", "seconds", "peak_mb")])  # fmt: skip
    return C.print_table(
        ["method", "pairs", "chroma PSNR (dB)", "RGB PSNR (dB)", "colourfulness",
         "truth's", "max luma err", "time (s)", "peak MB"],
        rows, title,
    )  # fmt: skip


def figure(panels, path: str, scale: float) -> None:
    from PIL import Image, ImageDraw

    from psal.utils.image import save_image

    rows = []
    for label, gray, ref, outs, truth in panels:
        tiles = [("target: " + label, np.stack([gray] * 3, -1)), ("reference", ref)]
        tiles += [(m, o) for m, o in outs.items() if not m.startswith("gray")]
        tiles.append(("truth", truth))
        rows.append([(n, Image.fromarray(t).resize((int(t.shape[1] * scale),
                      int(t.shape[0] * scale)))) for n, t in tiles])  # fmt: skip
    tw = max(sum(t.width for _, t in r) for r in rows)
    th = rows[0][0][1].height + 14
    canvas = Image.new("RGB", (tw, th * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, r in enumerate(rows):
        x = 0
        for name, tile in r:
            canvas.paste(tile, (x, i * th + 14))
            draw.text((x + 3, i * th + 1), name, fill="black")
            x += tile.width
    save_image(canvas, path)
    print(f"figure written to {path}")


def parse_checkpoints(p: argparse.ArgumentParser, values: list[str]) -> dict[str, str]:
    """``--checkpoint NAME=RUN ...`` as ``{NAME: RUN}``; ``p.error`` on a malformed one."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, run = value.partition("=")
        if not sep or not name or not run:
            p.error(f"--checkpoint expects NAME=RUN (e.g. net=runs/col), got {value!r}")
        if name in out:
            p.error(f"--checkpoint: the name {name!r} is given twice")
        out[name] = run
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="small images, held-out photos only")
    p.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"))
    p.add_argument("--threads", type=int, default=1, help="torch and numba threads")
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed runs per pair and method, median (default 3; 1 with --quick)",
    )
    p.add_argument("--checkpoint", nargs="*", default=[], metavar="NAME=RUN",
                   help="a trained colorizer to score too, under the name NAME "
                        "(e.g. net=runs/col)")  # fmt: skip
    p.add_argument(
        "--ablation",
        action="store_true",
        help="add scales-only, propagation-only, no-consistency-check",
    )
    p.add_argument("--photos", nargs="+", default=None, metavar="NAME",
                   help="score these scikit-image photos instead (e.g. hubble_deep_field "
                        "immunohistochemistry retina: the network's training photos, "
                        "never used to tune the training-free default)")  # fmt: skip
    p.add_argument("--json", default=None)
    p.add_argument("--figure", default=None)
    args = p.parse_args(argv)
    checkpoints = parse_checkpoints(p, args.checkpoint)
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.repeats is not None and args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    repeats = args.repeats or (1 if args.quick else 3)
    if args.size is not None and min(args.size) < 16:
        p.error(f"--size H W must both be >= 16, got {args.size[0]} {args.size[1]}")
    C.set_threads(args.threads)
    size = tuple(args.size or ((192, 256) if args.quick else (360, 480)))
    photos = HELD_OUT if args.quick else HELD_OUT + TUNING
    if args.photos:
        from skimage import data

        for name in args.photos:
            if not callable(getattr(data, name, None)):
                p.error(f"--photos: {name!r} is not a scikit-image photo (skimage.data.NAME)")
        photos = tuple(args.photos)
    fns = methods(checkpoints, args.ablation)
    records, panels = score(photos, size, fns, repeats)
    when = f"time: median of {repeats} warm run(s)"
    if args.photos:
        summarise(records, photos, f"Chosen photos ({size[0]}x{size[1]}; {when})")
    else:
        summarise(records, HELD_OUT, f"Held-out pairs ({size[0]}x{size[1]}; {when})")
    if not args.quick and not args.photos:
        summarise(records, TUNING, f"Tuning pairs ({size[0]}x{size[1]}; {when})")
    if args.json:
        C.write_json(args.json, {"settings": {"size": size}, "records": records})
    if args.figure:
        shown = photos if args.photos else HELD_OUT
        figure([pn for pn in panels if pn[0].split()[0] in shown], args.figure, 0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())

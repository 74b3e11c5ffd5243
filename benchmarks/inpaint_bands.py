"""Where an inpainting fill's error lies: the smooth band against the texture (a diagnostic).

Issue 12 asks for fills as sharp as the photo (gradient ratio >= 0.85) *and* a hole PSNR
at least the best peer's, which on the held-out images is OpenCV Telea, a diffusion fill
with almost no texture. This script splits each method's error inside the hole into two
bands with a Gaussian of ``--sigma`` pixels (``low = G * e``, ``high = e - low``; each
channel, over the whole image, then averaged over the hole's pixels) and reports, per hole
type and method, the mean squared error of each band, the texture energy of the truth and
of the fill (``x - G * x``, squared) and the correlation of the two textures over the hole
pixels (``rho``): how far the texture a fill invents is the texture that was there.

A fill with texture energy ``E_f``, the truth's ``E_t``, pays about
``E_t + E_f - 2 rho sqrt(E_t E_f)`` in the high band; a diffusion fill (``E_f ~ 0``) pays
``E_t``. Sharpness is then bought with error unless ``rho`` is large; the table shows
how large it is for each method. (The bands are not exactly orthogonal once restricted
to the hole, so ``low + high`` differs a little from the MSE.)

One more row, ``psal, telea's low band``: psal's fill with its smooth band replaced by
Telea's inside the hole (``psal + G * (telea - psal)``), which asks whether psal's PSNR
deficit is in the smooth band (then this row would gain) or in the texture.

Cases are those of ``benchmarks/inpaint.py``: by default the ten images of its
``--quick`` run (their holes; five of them, ``SECOND_TUNING``, were a second tuning set,
so only astronaut, chelsea, gravel, coins and clock are held out), with
``--held-out-3`` the first three (astronaut, chelsea, gravel), with ``--tuning`` its
tuning set.
Methods: psal (default settings), cv2-telea, pypatchmatch-3 (each left out if it is not
installed). Deterministic; about a minute.

Usage:
    python benchmarks/inpaint_bands.py             # the ten images of --quick
    python benchmarks/inpaint_bands.py --held-out-3  # the first three
    python benchmarks/inpaint_bands.py --tuning    # the tuning set
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _editing as C
from inpaint import (
    EXTRA_PHOTOS,
    HELD_OUT_PHOTOS,
    HELD_OUT_TEXTURES,
    HOLES,
    TUNING,
    _methods,
    make_cases,
)

METHODS = ("psal", "cv2-telea", "pypatchmatch-3")
HYBRID = "psal, telea's low band"
COLUMNS = ["holes", "method", "PSNR (dB)", "grad ratio", "MSE", "low-band err", "high-band err",
           "truth texture", "fill texture", "rho"]  # fmt: skip


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(a, (sigma, sigma, 0))  # each channel of an (H, W, C) array


def band_stats(out: np.ndarray, truth: np.ndarray, hole: np.ndarray, sigma: float) -> dict:
    """Band errors and texture energies of one fill (uint8 (H, W, 3) images, bool hole)."""
    t, o = truth.astype(np.float64), out.astype(np.float64)
    e = o - t
    e_low = _blur(e, sigma)
    t_hi, o_hi = t - _blur(t, sigma), o - _blur(o, sigma)
    th, oh = t_hi[hole], o_hi[hole]
    den = float(np.sqrt(np.mean(th**2) * np.mean(oh**2)))
    return {
        "mse": float(np.mean(e[hole] ** 2)),
        "low": float(np.mean(e_low[hole] ** 2)),
        "high": float(np.mean((e - e_low)[hole] ** 2)),
        "truth_hi": float(np.mean(th**2)),
        "fill_hi": float(np.mean(oh**2)),
        "rho": float(np.mean(th * oh)) / den if den > 0 else float("nan"),
        "psnr": C.psnr(out, truth, hole),
        "grad": C.gradient_ratio(out, truth, hole),
    }


def low_band_swap(fill: np.ndarray, smooth: np.ndarray, hole: np.ndarray, sigma: float):
    """``fill`` with its smooth band replaced by ``smooth``'s inside the hole (uint8)."""
    f = fill.astype(np.float64)
    out = f + _blur(smooth.astype(np.float64) - f, sigma)
    res = fill.copy()
    res[hole] = np.clip(np.rint(out[hole]), 0, 255).astype(np.uint8)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tuning", action="store_true", help="the tuning set, not the --quick images")
    p.add_argument("--held-out-3", action="store_true", help="the first three held-out images")
    p.add_argument("--sigma", type=float, default=4.0, help="Gaussian of the smooth band, px")
    p.add_argument("--size", type=int, nargs=2, default=[512, 680], metavar=("H", "W"))
    args = p.parse_args(argv)
    if not args.sigma > 0:
        p.error(f"--sigma must be > 0, got {args.sigma}")
    C.set_threads(2)
    if args.tuning:
        cases = make_cases(list(TUNING), [], HOLES, tuple(args.size), True)
    else:
        photos = [*HELD_OUT_PHOTOS, *([] if args.held_out_3 else EXTRA_PHOTOS)]
        cases = make_cases(photos, HELD_OUT_TEXTURES, HOLES, tuple(args.size))
    methods = _methods(list(METHODS), {})
    names = list(methods)
    if "psal" in methods and "cv2-telea" in methods:
        names.append(HYBRID)
    stats: dict[tuple[str, str], list[dict]] = {}
    for case in cases:
        im, hole = case["image"], case["mask"]
        outs = {name: fn(im, hole) for name, fn in methods.items()}
        if HYBRID in names:
            outs[HYBRID] = low_band_swap(outs["psal"], outs["cv2-telea"], hole, args.sigma)
        for name, out in outs.items():
            stats.setdefault((case["hole"], name), []).append(band_stats(out, im, hole, args.sigma))
        print(f"  {case['id']} done", flush=True)
    rows = []
    for hole in HOLES:
        for name in names:
            sel = stats[(hole, name)]

            def mean(f, sel=sel):
                return float(np.mean([s[f] for s in sel]))

            values = [hole, name, f"{mean('psnr'):.2f}", f"{mean('grad'):.3f}"]
            values += [f"{mean(f):.0f}" for f in ("mse", "low", "high", "truth_hi", "fill_hi")]
            values.append(f"{mean('rho'):.3f}")
            rows.append(values)
    held = sorted({c["id"].split("/")[0] for c in cases if c["group"] == "held-out"})
    n = len(cases) // len(HOLES)
    which = "tuning set" if args.tuning else f"{n} images (held out: {', '.join(held)})"
    C.print_table(COLUMNS, rows, f"Error by band, {which}, sigma {args.sigma:g} px (8-bit units²)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

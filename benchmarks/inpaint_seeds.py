"""Levers against the smoothness of psal's fills, measured across seeds (a diagnostic).

docs/editing.md, "Eighth round". psal's inpainting draws random numbers (PatchMatch's
start and random search), and on a 128x128 square the mean gradient ratio of ten cases
spans 0.78-0.88 over four seeds, more than most levers of the earlier rounds moved it,
which ran one seed. This script runs ``psal.inpaint`` with seeds ``0..N-1`` on both
tuning sets (``benchmarks/inpaint.py --tuning``'s coffee, rocket, grass, brick and
stereo_motorcycle, and the second tuning set camera, immunohistochemistry,
hubble_deep_field, moon and retina; hole seeds 9000+, none of the benchmark's holes; 10
cases per hole type), for the default and for each variant given, and prints per hole
type the mean hole PSNR and gradient ratio over cases and seeds, and each variant's
paired change against the default: per case, the change averaged over the seeds; then
the mean over the cases, +- its standard error over the cases.

Variants (one argument each):

* ``KEY=VALUE[,KEY=VALUE...]``: keywords of ``psal.inpaint``, e.g. ``patch_size=5`` or
  ``texture_weight=5,em_iters=2``;
* ``detail-copy:SIGMA``: after the gradient-domain step, keep its result below a
  Gaussian of ``SIGMA`` pixels and take the finer detail from the winner-takes-all copy
  it started from (``G * poisson + copy - G * copy`` inside the hole): the Poisson
  solve still removes level offsets between copied pieces, the copies keep their grain;
* ``local:R``: sources only within ``max(R, 2 x hole thickness)`` pixels of the hole
  (``source_mask=``, with the gradient-domain step kept on), a locality prior;
* ``offset:W`` (or ``offset:W:fine``, ``offset:W:coarse``): a penalty on the distance
  between a pixel and its source, ``p**2 W**2 |offset|**2`` added to every patch
  distance (two more channels, each pixel's own row and column times ``W`` in the
  level's pixels, searched but never voted), at every scale, the finest only or the
  coarser ones only: PyPatchMatch's search starts from the identity and runs few
  iterations, which favours near sources; this asks whether that bias is what makes
  its fills sharper;
* ``band:L[:F]``: at the pyramid's levels L and coarser (0 = the finest), the pixels
  that are partly known (their known fraction at least the module's ``KNOWN_FRACTION``,
  so sources, but below ``F``, default 0.999) are voted again at each step, beside the
  hole: their values are averages of the known part of their filter only. The fork of
  PyPatchMatch that ``pypatchmatch`` installs keeps its known pixels only at its two
  finest levels, for that reason (its inpaint.cpp: keeping them "made the fills copy
  smooth regions");
* ``pypatchmatch-3``: PyPatchMatch with 7x7 patches (``set_random_seed(seed)``), the
  sharpest peer of ``benchmarks/inpaint.py``, for reference (paired like a variant).

Usage:
    python benchmarks/inpaint_seeds.py detail-copy:1 patch_size=5 --seeds 4   # ~1 min a run
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _editing as C
from inpaint import HOLES, SECOND_TUNING, TUNING, _methods, _value, make_cases


def _cases(size):
    # each set on its own, as inpaint.py --tuning makes them: hole seeds 9000 + 10 i
    return [
        *make_cases(list(TUNING), [], HOLES, size, True),
        *make_cases(list(SECOND_TUNING), [], HOLES, size, True),
    ]


@contextlib.contextmanager
def _detail_copy(sigma: float):
    """Patch the gradient-domain step of psal.editing.inpaint (numpy path) for a run."""
    from scipy.ndimage import gaussian_filter

    mod = importlib.import_module("psal.editing.inpaint")
    orig = mod._gradient_domain

    def patched(image, level, field, dist, patch_size):
        copy = np.array(image, dtype=np.float64, copy=True)  # the winner-takes-all fill
        out = orig(image, level, field, dist, patch_size)
        solved = np.asarray(out, dtype=np.float64)

        def blur(a):  # each channel of a (1, C, H, W) array
            return gaussian_filter(a, (0, 0, sigma, sigma))

        mixed = blur(solved) + copy - blur(copy)
        hole = np.asarray(level.hole[0, 0])
        out[0][:, hole] = mixed[0][:, hole].astype(out.dtype)
        return out

    mod._gradient_domain = patched
    try:
        yield
    finally:
        mod._gradient_domain = orig


@contextlib.contextmanager
def _offset_penalty(weight: float, where: str):
    """Patch the pyramid and the EM step of psal.editing.inpaint (numpy path) for a run."""
    mod = importlib.import_module("psal.editing.inpaint")
    build, em_step = mod._build_pyramid, mod._em_step

    def patched_build(*args, **kwargs):
        pyramid = build(*args, **kwargs)
        for lv, level in enumerate(pyramid):
            on = where == "all" or (where == "fine") == (lv == 0)
            h, w = level.size
            dt = level.image.dtype
            yy, xx = np.meshgrid(np.arange(h, dtype=dt), np.arange(w, dtype=dt), indexing="ij")
            level.coords = (np.stack([yy, xx])[None] * (weight if on else 0.0)).astype(dt)
            level.image = np.ascontiguousarray(np.concatenate([level.image, level.coords], 1))
        return pyramid

    def patched_em(cur, level, field, **kwargs):
        cur[:, -2:] = level.coords  # a hole pixel's own position, never a voted one
        cur, f, d = em_step(cur, level, field, **kwargs)
        cur[:, -2:] = level.coords
        return cur, f, d

    mod._build_pyramid, mod._em_step = patched_build, patched_em
    try:
        yield
    finally:
        mod._build_pyramid, mod._em_step = build, em_step


@contextlib.contextmanager
def _band(min_level: int, frac: float):
    """Patch the pyramid of psal.editing.inpaint (numpy path) for a run: see ``band:``."""
    mod = importlib.import_module("psal.editing.inpaint")
    pyr = importlib.import_module("psal.editing._pyramid")
    build = mod._build_pyramid

    def patched(image, hole, patch_size, *args, **kwargs):
        pyramid = build(image, hole, patch_size, *args, **kwargs)
        strict = pyramid[0].hole  # pixels not wholly known, level by level
        for lv in range(1, len(pyramid)):
            level = pyramid[lv]
            strict = pyr.downsample(pyramid[lv - 1].image, strict, frac)[1] | level.hole
            if lv < min_level:
                continue
            # the level as if ``strict`` were its hole (voted pixels, query crop), with
            # the same sources (forbid) and the same hole for the smooth start
            grown = mod._Level(level.image, strict, patch_size, level.forbid)
            grown.hole = level.hole
            pyramid[lv] = grown
        return pyramid

    mod._build_pyramid = patched
    try:
        yield
    finally:
        mod._build_pyramid = build


def _parse(variant: str):
    """``(psal.inpaint keywords, context manager, local radius or None)`` of a variant.

    Raises:
        ValueError: a malformed variant, said in one line.
    """
    if variant in ("default", "pypatchmatch-3"):
        return {}, contextlib.nullcontext(), None
    if variant.startswith("band:"):
        parts = variant.split(":")[1:]
        try:
            level = int(parts[0])
            frac = float(parts[1]) if len(parts) == 2 else 0.999
        except ValueError:
            level, frac = -1, float("nan")
        if len(parts) > 2 or level < 1 or not 0 < frac <= 1:
            raise ValueError(
                f"variant {variant!r}: expected band:LEVEL[:FRACTION], LEVEL >= 1, "
                "0 < FRACTION <= 1"
            )
        return {}, _band(level, frac), None
    if variant.startswith(("detail-copy:", "local:", "offset:")):
        name, *parts = variant.split(":")
        try:
            value = float(parts[0])
        except ValueError:
            value = float("nan")
        rest = parts[1:]
        if not value > 0 or not (
            rest == [] or (name == "offset" and rest in (["fine"], ["coarse"]))
        ):
            raise ValueError(
                f"variant {variant!r}: expected {name}:NUMBER with NUMBER > 0"
                + (" (then :fine or :coarse, if any)" if name == "offset" else "")
            )
        if name == "detail-copy":
            return {}, _detail_copy(value), None
        if name == "local":
            return {}, contextlib.nullcontext(), value
        return {}, _offset_penalty(value, rest[0] if rest else "all"), None
    if "=" not in variant:
        raise ValueError(
            f"variant {variant!r}: expected KEY=VALUE, detail-copy:SIGMA, local:R, offset:W, "
            "band:L or pypatchmatch-3"
        )
    kw = {k: _value(v) for k, v in (item.split("=", 1) for item in variant.split(","))}
    return kw, contextlib.nullcontext(), None


def _run(cases, seed, variant):
    """Per-case PSNR and gradient ratio of one variant with one seed."""
    import psal

    kw, ctx, radius = _parse(variant)
    if variant == "pypatchmatch-3":
        methods = _methods([variant], {}, seed)
        if variant not in methods:
            raise SystemExit("pypatchmatch-3: pypatchmatch is not installed (pip install .[bench])")
        fill = methods[variant]
    else:

        def fill(im, m):
            extra = dict(kw)
            if radius is not None:
                from scipy.ndimage import distance_transform_edt

                thick = distance_transform_edt(m).max()
                near = distance_transform_edt(~m) <= max(radius, 2 * thick)
                extra |= {"source_mask": near & ~m, "gradient_domain": True}
            return np.asarray(psal.inpaint(im, m, seed=seed, **extra))

    out = {}
    with ctx:
        for case in cases:
            im, m = case["image"], case["mask"]
            res = fill(im, m)
            out[case["id"]] = (C.psnr(res, im, m), C.gradient_ratio(res, im, m))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("variants", nargs="*", help="see above; the default always runs")
    p.add_argument("--seeds", type=int, default=4, help="seeds 0..N-1 (default 4)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, nargs=2, default=(512, 680), metavar=("H", "W"))
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    for v in args.variants:
        try:
            _parse(v)  # a context manager is only entered by _run
        except ValueError as e:
            p.error(str(e))
    C.set_threads(args.threads)
    cases = _cases(tuple(args.size))
    names = ["default", *args.variants]
    runs = {}  # (variant, seed) -> {case id: (psnr, grad)}
    for name in names:
        for seed in range(args.seeds):
            runs[(name, seed)] = _run(cases, seed, name)
            print(f"  {name}, seed {seed} done", flush=True)
    heads = ["variant"]
    for hole in HOLES:
        heads += [f"{hole} dB", f"{hole} grad"]
    rows = []
    for name in names:
        row = [name]
        for hole in HOLES:
            ids = [c["id"] for c in cases if c["hole"] == hole]
            for j in (0, 1):

                def per_case(v, ids=ids, j=j):
                    return np.array(
                        [np.mean([runs[(v, s)][i][j] for s in range(args.seeds)]) for i in ids]
                    )

                mean = per_case(name).mean()
                if name == "default":
                    row.append(f"{mean:.2f}" if j == 0 else f"{mean:.3f}")
                    continue
                d = per_case(name) - per_case("default")
                se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
                row.append(
                    f"{mean:.2f} ({d.mean():+.2f} +- {se:.2f})"
                    if j == 0
                    else f"{mean:.3f} ({d.mean():+.3f} +- {se:.3f})"
                )
        rows.append(row)
    C.print_table(
        heads,
        rows,
        f"Both tuning sets, {len(cases) // len(HOLES)} cases per hole type, seeds "
        f"0-{args.seeds - 1}: mean (paired change against the default +- standard error)",
    )
    spread = []
    for hole in HOLES:
        ids = [c["id"] for c in cases if c["hole"] == hole]
        per_seed = [
            (
                np.mean([runs[("default", s)][i][0] for i in ids]),
                np.mean([runs[("default", s)][i][1] for i in ids]),
            )
            for s in range(args.seeds)
        ]
        spread.append([hole, *(f"{a:.2f} / {b:.3f}" for a, b in per_seed)])
    C.print_table(
        ["holes", *(f"seed {s}" for s in range(args.seeds))],
        spread,
        "The default's mean PSNR / gradient ratio per seed (the seed noise)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

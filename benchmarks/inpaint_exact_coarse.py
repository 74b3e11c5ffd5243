"""Diagnostic: psal.inpaint with the *exact* nearest patches at its coarse scales.

Issue 12's question is why the fills are smoother than the truth. The third and fourth
rounds (docs/editing.md) argued that the patch distance itself prefers smooth sources
and that the coarse scales settle that choice. This script tests the argument directly:
it replaces the PatchMatch search of every pyramid level from ``--from-level`` up (0 =
the finest) by the exact k-NN search (``psal.patchmatch(..., backend="exact")``, the
same query pixels, sources and k), leaves everything else as the library does it, and
prints hole PSNR and the gradient ratio per case and per hole type, beside the library's
own default on the same cases (``--from-level 99``, which changes nothing).

``--coarse-k K`` keeps PatchMatch at those levels but searches K neighbours and hands on
one of them: the nearest (``--tolerance 0``: a better search than k = 1), or one drawn
at random among those within ``(1 + tolerance)`` of the nearest (Efros and Leung's
tolerance sampling, so that neighbouring pixels copy from more varied sources).

It patches two private functions of :mod:`psal.editing.inpaint` (``_build_pyramid``,
``_search``) in this process only: a one-off measurement, not an option of the library.
The exact search is slow (30-290 s a case at 512x680 on one thread, against 0.2-0.9 s).

    PYTHONPATH=src python benchmarks/inpaint_exact_coarse.py --from-level 99   # default
    PYTHONPATH=src python benchmarks/inpaint_exact_coarse.py --from-level 1    # exact coarse
"""

from __future__ import annotations

import argparse
import importlib
import json
import time

import numpy as np

import _editing as C
import inpaint as B


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--from-level", type=int, default=1,
                   help="exact search at this pyramid level and coarser (0 = finest; "
                   "a large value: the library's default everywhere)")  # fmt: skip
    p.add_argument("--coarse-k", type=int, default=None,
                   help="PatchMatch with this many neighbours at those levels instead "
                   "of the exact search; one of them is handed on")  # fmt: skip
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="with --coarse-k: draw among the neighbours within (1 + this) "
                   "of the nearest (default 0: the nearest)")  # fmt: skip
    p.add_argument("--images", nargs="+", default=list(B.TUNING),
                   help="images (default: the tuning set, never the held-out images)")  # fmt: skip
    p.add_argument("--holes", nargs="+", default=list(B.HOLES), choices=B.HOLES)
    p.add_argument("--size", type=int, nargs=2, default=(512, 680), metavar=("H", "W"))
    p.add_argument("--json", default=None, help="write the per-case rows here")
    args = p.parse_args(argv)

    import torch

    import psal
    from psal.patchmatch import patchmatch

    C.set_threads(1)
    module = importlib.import_module("psal.editing.inpaint")
    build, search = module._build_pyramid, module._search

    def build_numbered(*a, **kw):
        pyramid = build(*a, **kw)
        for i, level in enumerate(pyramid):
            level.number = i  # 0 = finest
        return pyramid

    def search_exact_coarse(cur, level, field, *, k, patch_size, pm_iters, seed, backend):
        if getattr(level, "number", 0) < args.from_level:
            return search(cur, level, field, k=k, patch_size=patch_size, pm_iters=pm_iters,
                          seed=seed, backend=backend)  # fmt: skip
        if args.coarse_k is not None:
            init = None if field is None else np.repeat(field, args.coarse_k, axis=1)
            idx, dist = search(cur, level, init, k=args.coarse_k, patch_size=patch_size,
                               pm_iters=pm_iters, seed=seed, backend=backend)  # fmt: skip
            near = dist <= (1 + args.tolerance) * dist[:, :1] + 1e-12
            draw = np.random.default_rng(seed % 2**32).random(dist.shape) * near
            pick = np.argmax(draw, axis=1)[:, None]  # the nearest when only it is near
            return (np.ascontiguousarray(np.take_along_axis(idx, pick, 1)),
                    np.ascontiguousarray(np.take_along_axis(dist, pick, 1)))  # fmt: skip
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        res = patchmatch(as_t(level.crop(cur)), as_t(cur), k=k, patch_size=patch_size, iters=1,
                         query_valid=as_t(level.touch_crop), key_valid=as_t(~level.forbid),
                         seed=seed, backend="exact")  # fmt: skip
        return res.indices.numpy(), res.distances.numpy()

    module._build_pyramid, module._search = build_numbered, search_exact_coarse
    tuning = all(name in B.TUNING for name in args.images)
    cases = B.make_cases(args.images, [], args.holes, tuple(args.size), tuning=tuning)
    rows = []
    for case in cases:
        im, m = case["image"], case["mask"]
        t0 = time.perf_counter()
        out = psal.inpaint(im, m, seed=0)
        row = {"case": case["id"], "hole": case["hole"], "psnr": C.psnr(out, im, m),
               "grad_ratio": C.gradient_ratio(out, im, m),
               "seconds": time.perf_counter() - t0}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    how = ("exact search" if args.coarse_k is None else
           f"PatchMatch k={args.coarse_k}, tolerance {args.tolerance}")  # fmt: skip
    print(f"\n{how} from level {args.from_level} up; {len(cases)} cases\n")
    print("| holes | PSNR (dB) | grad ratio | time (s) |\n|---|---:|---:|---:|")
    for hole in args.holes:
        sel = [r for r in rows if r["hole"] == hole]
        print(f"| {hole} | {np.mean([r['psnr'] for r in sel]):.2f} | "
              f"{np.mean([r['grad_ratio'] for r in sel]):.3f} | "
              f"{np.mean([r['seconds'] for r in sel]):.2f} |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"from_level": args.from_level, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

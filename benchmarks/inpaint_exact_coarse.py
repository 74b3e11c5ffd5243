"""Diagnostic: psal.inpaint with the *exact* nearest patches at its coarse scales.

Issue 12's question is why the fills are smoother than the truth. The third and fourth
rounds (docs/editing.md) argued that the patch distance itself prefers smooth sources
and that the coarse scales settle that choice. This script tests the argument directly:
it replaces the PatchMatch search of every pyramid level from ``--from-level`` up (0 =
the finest) by the exact k-NN search (``psal.patchmatch(..., backend="exact")``, the
same query pixels, sources and k), leaves everything else as the library does it, and
prints hole PSNR and the gradient ratio per case and per hole type, beside the library's
own default on the same cases (``--from-level 99``, which changes nothing).

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
    print(f"\nexact search from level {args.from_level} up; {len(cases)} cases\n")
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

"""Does a coarse-to-fine start pay for the PatchMatch engine? (a diagnostic, issue 14)

The engine starts every search from a random field. A common alternative (Newson et al.
2014 for inpainting, the NRDC-like start measured for colorization) is to search a
2x-downsampled copy of both maps first, upsample that field to full size (coarse match
``(y, x)`` of query pixel ``(qy, qx)`` becomes, for each of the four fine pixels
``(2 qy + dy, 2 qx + dx)``, the key pixel ``(2 y + dy, 2 x + dx)``) and hand it to the
full-size search as ``init=``, with fewer iterations there. Whether that beats simply
running fewer iterations from a random start is what this script measures: it uses only
the public API (``psal.patchmatch(..., init=...)``), so it changes nothing in the engine.

Inputs, quality columns and the exact reference are those of ``benchmarks/patchmatch.py``
(k=3; ``rgb``: photos, patch 7; ``feat``: CNN features, patch 3; ``rand``: uniform random
features, patch 3), the quality measured on 2048 sampled query pixels against the exact
search. Rows: the default start with 5, 4 and 3 iterations, then ``coarse A+B`` = A
iterations on the half-size maps (patch 3) and B at full size from the upsampled field.
Times are the best of ``--repeats`` runs in this one process (wall, and process CPU time
of all threads, which a busy machine inflates less); rows compare with each other as the
ratio of CPU times (``x default``); absolute times follow the machine's load.

Usage:
    python benchmarks/patchmatch_coarse_init.py    # feat and rgb at 256², feat at 512²
    python benchmarks/patchmatch_coarse_init.py --cases rand:256 --splits 4+3
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numba
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import psal
from _common import environment, print_table
from patchmatch import WORKLOADS, K, field_quality, make_inputs, sample_mask


def upsample_field(ind: torch.Tensor, key_hw, query_hw) -> torch.Tensor:
    """(B, k, hq/2, wq/2) flat indices into the half-size key -> (B, k, hq, wq) into the key.

    ``key_hw`` and ``query_hw`` are the full-size (height, width) of the key and query.
    """
    hk, wk = key_hw
    hq, wq = query_hw
    hc, wc = ind.shape[-2:]
    cy, cx = ind // (wk // 2), ind % (wk // 2)
    ys, xs = torch.arange(hq), torch.arange(wq)
    qy, qx = (ys // 2).clamp(max=hc - 1), (xs // 2).clamp(max=wc - 1)
    dy, dx = (ys - 2 * qy).view(1, 1, hq, 1), (xs - 2 * qx).view(1, 1, 1, wq)
    ky = (2 * cy[:, :, qy][:, :, :, qx] + dy).clamp(0, hk - 1)
    kx = (2 * cx[:, :, qy][:, :, :, qx] + dx).clamp(0, wk - 1)
    return ky * wk + kx


def coarse_to_fine(q, k, patch: int, coarse_iters: int, fine_iters: int, seed: int = 0):
    qc, kc = F.avg_pool2d(q, 2), F.avg_pool2d(k, 2)
    rc = psal.patchmatch(qc, kc, k=K, patch_size=3, iters=coarse_iters, seed=seed, backend="numba")
    init = upsample_field(rc.indices, k.shape[-2:], q.shape[-2:])
    return psal.patchmatch(q, k, k=K, patch_size=patch, iters=fine_iters, seed=seed,
                           backend="numba", init=init)  # fmt: skip


def best_time(fn, repeats: int):
    """(best wall time, best process CPU time of all threads, the last result)."""
    wall, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu, out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=["feat:256", "rgb:256", "feat:512"],
                   help="workload:size pairs (workloads: rgb, feat, rand)")  # fmt: skip
    p.add_argument("--splits", nargs="+", default=["4+2", "4+3"],
                   help="coarse+fine iteration counts of the coarse-to-fine rows")  # fmt: skip
    p.add_argument("--repeats", type=int, default=5, help="runs per row (the best is kept)")
    p.add_argument("--threads", type=int, default=2, help="torch and numba threads")
    args = p.parse_args(argv)
    for case in args.cases:
        kind, _, size = case.partition(":")
        if kind not in WORKLOADS or not size.isdigit() or int(size) < 16:
            p.error(f"--cases: expected workload:size (rgb, feat or rand; size >= 16), "
                    f"got {case!r}")  # fmt: skip
    for split in args.splits:
        a, _, b = split.partition("+")
        if not (a.isdigit() and b.isdigit()):
            p.error(f"--splits: expected A+B iteration counts, got {split!r}")
    if args.repeats < 1 or args.threads < 1:
        p.error("--repeats and --threads must be >= 1")
    return args


COLUMNS = ["workload", "size", "start", "time (s)", "cpu (s)", "x default (cpu)", "dist ratio",
           "NN recall", "kNN recall"]  # fmt: skip


def run_case(kind: str, size: int, splits: list[str], repeats: int) -> list[dict]:
    """The rows of one workload and size: default starts, then the coarse-to-fine ones."""
    patch = WORKLOADS[kind]
    q, k = make_inputs(kind, size, torch.device("cpu"))
    qm = sample_mask(size, 2048, torch.device("cpu"))
    ex = psal.patchmatch(q, k, k=K, patch_size=patch, backend="exact", query_valid=qm)
    full = torch.ones(1, 1, size, size, dtype=torch.bool)
    sel = (full if qm is None else qm).expand(1, K, size, size)

    def pick(r):
        return r.indices[sel].view(K, -1).t(), r.distances[sel].view(K, -1).t()

    def default(n: int):
        return psal.patchmatch(q, k, k=K, patch_size=patch, iters=n, seed=0, backend="numba")

    ex_i, ex_d = pick(ex)
    default(1)  # compiled before the clock starts
    variants = [(f"default, {n} iterations", lambda n=n: default(n)) for n in (5, 4, 3)]
    for split in splits:
        a, b = (int(x) for x in split.split("+"))
        variants.append((f"coarse {a}+{b}", lambda a=a, b=b: coarse_to_fine(q, k, patch, a, b)))
    rows, base = [], None
    for name, fn in variants:
        t, cpu, res = best_time(fn, repeats)
        base = base or cpu
        ratio, nn, knn = field_quality(*pick(res), ex_i, ex_d)
        values = [kind, f"{size}²", name, f"{t:.3f}", f"{cpu:.3f}", f"{cpu / base:.2f}",
                  f"{ratio:.4f}", f"{nn:.3f}", f"{knn:.3f}"]  # fmt: skip
        rows.append(dict(zip(COLUMNS, values, strict=True)))
        print(f"  {kind} {size}² {name}: {t:.3f} s, {cpu:.3f} s CPU", flush=True)
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    print(" ".join(f"{k}={v}" for k, v in environment().items()), flush=True)
    rows = []
    for case in args.cases:
        kind, size = case.split(":")
        rows += run_case(kind, int(size), args.splits, args.repeats)
    print()
    print_table(rows, COLUMNS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

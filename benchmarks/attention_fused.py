"""PSAttention forward+backward on CPU: the fused aggregation against the torch graph.

The issue-14 case of ``benchmarks/attention.py`` (self-attention on (1, 64, S, S) CNN
features, k=3, 3x3 patches, 5 PatchMatch iterations, temperature 0.5, ``"center"`` and
``"patch"``) timed **in one process, interleaved**, with the aggregation as one fused
autograd node (:mod:`psal.layers._aggregate_cpu`, the default) and as the torch graph
it replaced (``psal.layers._aggregate.FUSED = False``: the code of commit a632be8),
against ``Conv2d(64, 64, 3)`` forward+backward on the same map, and the PatchMatch search
alone (no gradient) to show how much of PSAttention it is. Each round runs every case
once, in turn, so a drift of the machine's speed hits all of them; the table gives the
median over rounds of the wall time and of the process CPU time (all threads), and
each case's ratio to the convolution of the same measure.

Usage:
    python benchmarks/attention_fused.py                  # 128², 1 thread, 11 rounds
    python benchmarks/attention_fused.py --quick          # 5 rounds (~20 s)
    python benchmarks/attention_fused.py --threads 2 --out result   # also result.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import environment, print_table, set_threads, write_json

CASES = ("conv3x3", "search", "center torch graph", "center fused", "patch torch graph",
         "patch fused")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=128, help="map side S (default 128)")
    p.add_argument("--threads", type=int, default=1, help="torch and numba threads")
    p.add_argument("--rounds", type=int, default=11, help="interleaved rounds")
    p.add_argument("--quick", action="store_true", help="5 rounds")
    p.add_argument("--out", help="write PREFIX.json (rows and environment)")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    rounds = args.rounds
    if args.quick:  # --rounds given on the command line wins over the preset
        from _common import quick_defaults

        quick_defaults(p, args, argv, rounds=5)
        rounds = args.rounds

    set_threads(args.threads)
    import psal
    import psal.layers._aggregate as agg_mod
    from attention import make_features

    x = make_features(args.size, 1, torch.device("cpu")).requires_grad_(True)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)

    def attention(aggregation, fused):
        def run():
            agg_mod.FUSED = fused
            try:
                x.grad = None
                out = psal.ps_attention(x, x, x, k=3, patch_size=3, iters=5, temperature=0.5,
                                        aggregation=aggregation, seed=0)  # fmt: skip
                (out * w).sum().backward()
            finally:
                agg_mod.FUSED = True

        return run

    def conv_run():
        x.grad = None
        (conv(x) * w).sum().backward()

    def search():
        with torch.no_grad():
            psal.patchmatch(x, x, k=3, patch_size=3, iters=5, seed=0)

    fns = {
        "conv3x3": conv_run,
        "search": search,
        "center torch graph": attention("center", False),
        "center fused": attention("center", True),
        "patch torch graph": attention("patch", False),
        "patch fused": attention("patch", True),
    }
    for fn in fns.values():  # compilation / cache loads, lazy initialisation, warm-up
        fn()
        fn()
    load_start = os.getloadavg()
    wall = {c: [] for c in CASES}
    cpu = {c: [] for c in CASES}
    for _ in range(rounds):
        for c in CASES:
            t0, c0 = time.perf_counter(), time.process_time()
            fns[c]()
            wall[c].append(time.perf_counter() - t0)
            cpu[c].append(time.process_time() - c0)
    load_end = os.getloadavg()
    med_w = {c: statistics.median(wall[c]) for c in CASES}
    med_c = {c: statistics.median(cpu[c]) for c in CASES}
    rows = []
    for c in CASES:
        rows.append({
            "case (fwd+bwd)": c if c != "search" else "search alone (no grad)",
            "wall (ms)": f"{1e3 * med_w[c]:.1f}",
            "cpu (ms)": f"{1e3 * med_c[c]:.1f}",
            "x conv (wall)": f"{med_w[c] / med_w['conv3x3']:.2f}",
            "x conv (cpu)": f"{med_c[c] / med_c['conv3x3']:.2f}",
        })  # fmt: skip
    print(f"{args.size}²x64, {args.threads} thread(s), median of {rounds} interleaved rounds, "
          f"load {load_start[0]:.2f} -> {load_end[0]:.2f}")  # fmt: skip
    print_table(rows, list(rows[0]))
    for agg in ("center", "patch"):
        old, new = med_w[f"{agg} torch graph"], med_w[f"{agg} fused"]
        print(f"{agg}: fused {old / new:.2f}x faster than the torch graph (wall); "
              f"without the search {(old - med_w['search']) / (new - med_w['search']):.2f}x")  # fmt: skip # noqa: E501
    if args.out:
        env = environment("cpu") | {"loadavg_start": str(load_start), "loadavg_end": str(load_end)}
        write_json(args.out + ".json", {"environment": env, "rows": rows,
                                        "wall_s": wall, "cpu_s": cpu})  # fmt: skip


if __name__ == "__main__":
    main()

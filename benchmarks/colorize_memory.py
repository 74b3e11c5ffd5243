"""Time and peak memory of the guided colorizer (psal attention) by image size, on CPU.

A target of S x S (luminance) and a colour reference of S x S go through an untrained
:class:`psal.models.GuidedColorizer` (the cost does not depend on the weights) in
inference mode. Each size runs in a fresh process, whose peak resident memory
(``ru_maxrss``, which includes the ~0.3 GB of torch itself) is reported. What dense
attention at the same scales would need for its score matrix alone is computed, not run.

    PYTHONPATH=src python benchmarks/colorize_memory.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CHILD = """
import resource, sys, time, torch
torch.set_num_threads({threads})
from psal.models import GuidedColorizer
torch.manual_seed(0)
net = GuidedColorizer(width={width}, attention="psal").eval()
s = {size}
y, ref = torch.rand(1, 1, s, s), torch.rand(1, 3, s, s)
t0 = time.perf_counter()
with torch.no_grad():
    out = net(y, ref)
t = time.perf_counter() - t0
print(t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def dense_bytes(size: int, factor: int) -> int:
    """Bytes of a float32 dense score matrix between two (size/factor)² feature maps."""
    n = (size // factor) ** 2
    return 4 * n * n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true", help="512 and 1024 only")
    p.add_argument("--sizes", type=int, nargs="*", default=None)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    sizes = args.sizes or ([512, 1024] if args.quick else [512, 1024, 2048])
    import _editing as C

    rows, records = [], []
    for s in sizes:
        code = CHILD.format(threads=args.threads, width=args.width, size=s)
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if res.returncode != 0:
            print(res.stderr[-2000:], file=sys.stderr)
            return 1
        seconds, peak = map(float, res.stdout.split()[-2:])
        d1, d4 = dense_bytes(s, 1), dense_bytes(s, 4)
        records.append(
            {"size": s, "seconds": seconds, "peak_bytes": peak,
             "dense_full_res_scores_bytes": d1, "dense_quarter_scores_bytes": d4}
        )  # fmt: skip
        rows.append([f"{s}²", seconds, peak / 2**30, d4 / 2**30, d1 / 2**40])
    title = f"GuidedColorizer(width={args.width}), CPU, {args.threads} thread(s)"
    C.print_table(["target = reference", "psal time (s)", "psal peak (GiB)",
                   "dense at 1/4: scores (GiB)", "dense at full res: scores (TiB)"],
                  rows, title)  # fmt: skip
    if args.json:
        C.write_json(args.json, {"width": args.width, "threads": args.threads,
                                 "records": records})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

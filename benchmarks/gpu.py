"""GPU benchmark: engine, attention and a DeepFill training step, one table.

For each map side S (default 256, 512, 1024, 2048; 64-channel features of a fixed random
CNN applied to a scikit-image photo, k=3, patch 3, 5 iterations):

* ``engine``: ``psal.patchmatch`` of the features against another photo's, per backend
  (``torch`` on the device; ``torch-64MB`` the same with the CPU's chunk budget, up to
  ``--small-chunks-max``, to see what larger chunks gain on the device; ``numba`` on the
  CPU up to ``--numba-max``). Quality: the
  mean nearest distance found over the exact one (``dist ratio``, 1.000 is perfect) and
  the exact nearest neighbour's recall, on a fixed sample of ``--sample`` query pixels
  searched exactly on the device.
* ``attention``: ``psal.ps_attention`` self-attention (center aggregation), forward +
  backward of a weighted sum.
* ``deepfill``: one generator step of ``DeepFillV1(width=--width, attention="psal")`` on
  an S x S RGB image with a centred square hole: forward, L1 loss, backward.

Times are medians of ``--repeats`` runs after a warm-up, the device synchronised around
each; peak memory is ``torch.cuda.max_memory_allocated`` above what was allocated before
the run (on CPU, the resident-size growth). A case that runs out of memory is reported,
not fatal; no case starts after ``--budget`` seconds (the table still prints, so
``gpu.sh`` stays under 8 minutes). ``--device cpu --quick`` runs the same code on
small maps: the dry run the tests use, since no GPU was available when this script
was written.

Usage:
    python benchmarks/gpu.py                     # on a CUDA machine (benchmarks/gpu.sh)
    python benchmarks/gpu.py --device cpu --quick
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (
    cnn_features,
    environment,
    peak_end,
    peak_start,
    print_table,
    quick_defaults,
    skimage_photo,
    timeit,
)

K, PATCH, ITERS = 3, 3, 5
COLUMNS = ["bench", "size", "backend", "time (s)", "peak MB", "dist ratio", "NN recall"]


def features(name: str, size: int, device: torch.device) -> torch.Tensor:
    return cnn_features(skimage_photo(name, size).to(device)).contiguous()


def measure(fn, device: torch.device, repeats: int) -> tuple[float, float]:
    """(median time in s, peak bytes of the warm-up run) of ``fn``."""
    base = peak_start(device)
    fn()  # warm-up, and the memory measurement
    peak = peak_end(device, base)
    return timeit(fn, device, repeats=repeats, warmup=0), peak


def engine_rows(size, device, args) -> list[dict]:
    import psal

    q, k = features("astronaut", size, device), features("coffee", size, device)
    g = torch.Generator().manual_seed(0)
    n = min(args.sample, size * size)
    sel = torch.randperm(size * size, generator=g)[:n].to(device)
    qmask = torch.zeros(size * size, dtype=torch.bool, device=device)
    qmask[sel] = True
    qmask = qmask.view(1, 1, size, size)
    ex = psal.patchmatch(q, k, k=K, patch_size=PATCH, backend="exact", query_valid=qmask)
    ex_d = ex.distances[0, 0].reshape(-1)[sel].double()
    ex_i = ex.indices[0, 0].reshape(-1)[sel]
    from psal.patchmatch import torch_backend

    rows = []
    for name in ("torch", "torch-64MB", "numba"):
        backend = name.split("-")[0]
        if backend == "numba" and size > args.numba_max:
            continue
        if name == "torch-64MB" and (device.type == "cpu" or size > args.small_chunks_max):
            continue
        dev = torch.device("cpu") if backend == "numba" else device
        qq, kk = q.to(dev), k.to(dev)
        # torch-64MB: the accelerator with the CPU's chunk budget, to see what the larger
        # accelerator chunks (torch_backend.ACCEL_CHUNK_BYTES) gain
        chunks = torch_backend.MAX_CHUNK_BYTES if name == "torch-64MB" else None

        def run(qq=qq, kk=kk, backend=backend, chunks=chunks):
            saved = torch_backend.ACCEL_CHUNK_BYTES
            torch_backend.ACCEL_CHUNK_BYTES = chunks if chunks is not None else saved
            try:
                return psal.patchmatch(qq, kk, k=K, patch_size=PATCH, iters=ITERS, seed=0,
                                       backend=backend)  # fmt: skip
            finally:
                torch_backend.ACCEL_CHUNK_BYTES = saved

        t, peak = measure(run, dev, args.repeats)
        res = run()
        d = res.distances[0, 0].reshape(-1).to(device)[sel].double()
        i = res.indices[:, :, :, :].reshape(K, -1).to(device)[:, sel]
        rows.append({"bench": "engine", "size": f"{size}²", "backend": name,
                     "time (s)": f"{t:.3f}", "peak MB": f"{peak / 2**20:.0f}",
                     "dist ratio": f"{float(d.mean() / ex_d.mean()):.3f}",
                     "NN recall": f"{float((i == ex_i).any(0).double().mean()):.3f}"})  # fmt: skip
    return rows


def attention_row(size, device, args) -> dict:
    import psal

    x = features("astronaut", size, device).requires_grad_(True)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(device)

    def run():
        x.grad = None
        out = psal.ps_attention(x, x, x, k=K, patch_size=PATCH, iters=ITERS, temperature=0.5,
                                seed=0)  # fmt: skip
        (out * w).sum().backward()

    t, peak = measure(run, device, args.repeats)
    backend = "torch" if device.type != "cpu" else "numba"
    return {"bench": "attention", "size": f"{size}²", "backend": backend, "time (s)": f"{t:.3f}",
            "peak MB": f"{peak / 2**20:.0f}"}  # fmt: skip


def deepfill_row(size, device, args) -> dict:
    from psal.models import DeepFillV1

    torch.manual_seed(0)
    net = DeepFillV1(width=args.width, attention="psal", device=device)
    img = skimage_photo("astronaut", size).to(device) * 2 - 1
    mask = torch.zeros(1, 1, size, size, dtype=torch.bool, device=device)
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = True

    def run():
        net.zero_grad(set_to_none=True)
        out = net(img, mask)
        ((out.coarse - img).abs().mean() + (out.refined - img).abs().mean()).backward()

    t, peak = measure(run, device, args.repeats)
    backend = "torch" if device.type != "cpu" else "numba"
    return {"bench": "deepfill", "size": f"{size}²", "backend": backend, "time (s)": f"{t:.3f}",
            "peak MB": f"{peak / 2**20:.0f}"}  # fmt: skip


def guarded(fn, bench, size, device, args) -> list[dict]:
    try:
        out = fn(size, device, args)
        return out if isinstance(out, list) else [out]
    except torch.OutOfMemoryError as e:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return [{"bench": bench, "size": f"{size}²", "time (s)": "OOM: " + str(e)[:40]}]


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="small maps, one repeat (dry run)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sample", type=int, default=4096, help="query pixels searched exactly")
    ap.add_argument("--numba-max", type=int, default=512, help="largest size for numba (CPU)")
    ap.add_argument(
        "--small-chunks-max",
        type=int,
        default=1024,
        help="largest size for the torch-64MB row (the CPU's chunk budget)",
    )
    ap.add_argument("--width", type=int, default=32, help="DeepFill base width")
    ap.add_argument("--budget", type=float, default=270.0,
                    help="seconds; no case starts after this (the table still prints)")  # fmt: skip
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu.py: no CUDA device: nothing to time (try --device cpu --quick)")
        return []
    if args.quick:  # an option given on the command line wins over the preset
        quick_defaults(ap, args, argv, sizes=[32, 64], repeats=1, sample=256, width=4)
    sizes = args.sizes or [256, 512, 1024, 2048]
    env = environment(device)
    env["load"] = "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    rows = []
    t0 = time.perf_counter()
    for size in sizes:
        for fn, bench in ((engine_rows, "engine"), (attention_row, "attention"),
                          (deepfill_row, "deepfill")):  # fmt: skip
            if time.perf_counter() - t0 > args.budget:
                rows.append({"bench": bench, "size": f"{size}²", "time (s)": "skipped: budget"})
                continue
            rows += guarded(fn, bench, size, device, args)
            print(rows[-1], flush=True)
    print()
    print_table(rows, COLUMNS)
    return rows


if __name__ == "__main__":
    main()

"""Contextual attention: one batched call (grouped convolutions) vs a loop over samples.

The PyTorch ports of DeepFill loop over the batch in Python; psal runs every sample in one
grouped convolution. Both compute the same thing (checked here); this prints their median
times, forward and forward+backward, as ratios, and the size of the score matrix (which
grows with the square of the pixel count).

    python benchmarks/contextual_attention.py [--device cuda] [--sizes 32 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time

import torch

from psal.layers import contextual_attention
from psal.utils.atomic import atomic_path


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_sample_loop(x, mask, **kw):
    outs, offs = [], []
    for n in range(x.shape[0]):
        o, d = contextual_attention(x[n : n + 1], x[n : n + 1], mask[n : n + 1], **kw)
        outs.append(o)
        offs.append(d)
    return torch.cat(outs), torch.cat(offs)


def batched(x, mask, **kw):
    return contextual_attention(x, x, mask, **kw)


def timeit(fn, x, mask, backward, device, repeats, warmup=2):
    times = []
    for i in range(warmup + repeats):
        xi = x.detach().requires_grad_(backward)
        sync(device)
        t0 = time.perf_counter()
        out, _ = fn(xi, mask, rate=2)
        if backward:
            out.square().sum().backward()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="also write the rows and environment here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    rows = []
    header = (
        f"{'size':>5} {'scores/sample':>14} {'fwd loop ms':>12} {'fwd batched ms':>15} "
        f"{'ratio':>6} {'f+b loop ms':>12} {'f+b batched ms':>15} {'ratio':>6}"
    )
    threads = torch.get_num_threads()
    print(f"B={args.batch} C={args.channels} rate=2 device={device} threads={threads}")
    print(header)
    for size in args.sizes:
        x = torch.rand(args.batch, args.channels, size, size, device=device)
        mask = torch.zeros(args.batch, 1, size, size, dtype=torch.bool, device=device)
        for n in range(args.batch):  # a different box per sample
            y0 = (n * size // 7) % (size // 2)
            mask[n, :, y0 : y0 + size // 2, size // 4 : size // 4 + size // 3] = True
        out_l, off_l = per_sample_loop(x, mask, rate=2)
        out_b, off_b = batched(x, mask, rate=2)
        torch.testing.assert_close(out_b, out_l, rtol=1e-4, atol=1e-5)
        if not torch.equal(off_b, off_l):
            print(f"  note: {(off_b != off_l).any(1).float().mean():.2%} of offsets differ (ties)")
        n_scores = (-(-size // 2)) ** 4
        row = {"size": size, "scores_per_sample": n_scores}
        for name, backward in (("fwd", False), ("fwd_bwd", True)):
            row[f"{name}_loop_s"] = timeit(per_sample_loop, x, mask, backward, device, args.repeats)
            row[f"{name}_batched_s"] = timeit(batched, x, mask, backward, device, args.repeats)
        rows.append(row)
        print(
            f"{size:>5} {n_scores:>14,} {row['fwd_loop_s'] * 1e3:>12.1f} "
            f"{row['fwd_batched_s'] * 1e3:>15.1f} {row['fwd_loop_s'] / row['fwd_batched_s']:>6.2f} "
            f"{row['fwd_bwd_loop_s'] * 1e3:>12.1f} {row['fwd_bwd_batched_s'] * 1e3:>15.1f} "
            f"{row['fwd_bwd_loop_s'] / row['fwd_bwd_batched_s']:>6.2f}"
        )
    print("ratio = loop time / batched time (> 1: the batched call is faster)")

    if args.json:
        env = {
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "batch": args.batch,
            "channels": args.channels,
        }
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"environment": env, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

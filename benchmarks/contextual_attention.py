"""Contextual attention: one batched call (grouped convolutions) vs a loop over samples.

The PyTorch ports of DeepFill loop over the batch in Python; psal runs every sample in one
grouped convolution. Both compute the same thing (checked here); this prints their median
times, forward and forward+backward, as ratios (loop / batched, > 1: batched is faster),
and the size of the score matrix, which grows with the square of the pixel count.

    python benchmarks/contextual_attention.py [--device cuda] [--sizes 32 64] [--json out.json]
"""

from __future__ import annotations

import argparse

import torch

from _common import environment, print_table, timeit, write_json
from psal.layers import contextual_attention


def per_sample_loop(x, mask):
    outs, offs = [], []
    for n in range(x.shape[0]):
        xn = x[n : n + 1]
        o, d = contextual_attention(xn, xn, xn, hole=mask[n : n + 1], rate=2, return_field=True)
        outs.append(o)
        offs.append(d)
    return torch.cat(outs), torch.cat(offs)


def batched(x, mask):
    return contextual_attention(x, x, x, hole=mask, rate=2, return_field=True)


def step(fn, x, mask, backward):
    def run():
        xi = x.detach().requires_grad_(backward)
        out, _ = fn(xi, mask)
        if backward:
            out.square().sum().backward()

    return run


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="also write the rows and environment here")
    parser.add_argument("--quick", action="store_true", help="size 32, 2 repeats (seconds)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = [32], 2
    return args


def make_case(batch: int, channels: int, size: int, device: torch.device):
    """Random features and one box hole per sample, each sample's box elsewhere."""
    x = torch.rand(batch, channels, size, size, device=device)
    mask = torch.zeros(batch, 1, size, size, dtype=torch.bool, device=device)
    for n in range(batch):
        y0 = (n * size // 7) % (size // 2)
        mask[n, :, y0 : y0 + size // 2, size // 4 : size // 4 + size // 3] = True
    return x, mask


def measure_size(size: int, device: torch.device, args: argparse.Namespace) -> dict:
    """Check the batched call against the loop, then time both, forward and backward."""
    x, mask = make_case(args.batch, args.channels, size, device)
    out_l, _ = per_sample_loop(x, mask)
    out_b, _ = batched(x, mask)
    torch.testing.assert_close(out_b, out_l, rtol=1e-4, atol=1e-5)
    row = {"size": size, "scores/sample": f"{(-(-size // 2)) ** 4:,}"}
    for name, backward in (("fwd", False), ("fwd+bwd", True)):
        t_loop = timeit(step(per_sample_loop, x, mask, backward), device, args.repeats)
        t_batch = timeit(step(batched, x, mask, backward), device, args.repeats)
        row[f"{name} loop ms"] = f"{t_loop * 1e3:.1f}"
        row[f"{name} batched ms"] = f"{t_batch * 1e3:.1f}"
        row[f"{name} loop/batched"] = f"{t_loop / t_batch:.2f}"
    return row


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    env = environment(device)
    settings = " ".join(f"{k}={v}" for k, v in env.items())
    print(f"B={args.batch} C={args.channels} rate=2 {settings}")
    rows = [measure_size(size, device, args) for size in args.sizes]
    print_table(rows, list(rows[0]))
    if args.json:
        write_json(args.json, {"environment": env, "batch": args.batch, "rows": rows})


if __name__ == "__main__":
    main()

"""Score a network shipped with psal on the held-out images of ``train_upscale.py``.

Bicubic, the training-free ``psal.upscale``, the pretrained network and its geometric
self-ensemble (8 flips/rotations), on the same held-out crops and metrics as
``benchmarks/train_upscale.py``: Y-PSNR, SSIM, gradient-energy ratio, seconds. About a
minute on one core.

The crops were never trained on, but they are not untouched: the training recipe of
``edsr-x2`` (threads, learning rate, crop size, width, image sizes) and the decision to
ship it were made on their scores, so the network's rows are optimistic (selected on
their own test set). Bicubic's rows are untouched. A clean figure needs the recipe
re-chosen with ``train_upscale.py --split tune`` first.

    PYTHONPATH=src python benchmarks/upscale_pretrained.py [--model edsr-x2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_upscale import HELD_OUT_PHOTOS, HELD_OUT_SELF_SIMILAR, score


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="edsr-x2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import psal
    from psal.models import Upscaler

    torch.set_num_threads(args.threads)
    plain = Upscaler.from_pretrained(args.model, device="cpu")
    ens = Upscaler.from_pretrained(args.model, device="cpu", ensemble=True)
    s = plain.scale
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"{args.model} (x{s}), torch threads {torch.get_num_threads()}, load {' '.join(load)}")
    methods = {
        "bicubic": lambda lr: F.interpolate(
            lr, scale_factor=s, mode="bicubic", align_corners=False
        ),
        "psal.upscale": lambda lr: psal.upscale(lr, s, seed=0),
        args.model: plain,
        f"{args.model} x8": ens,
    }
    report = {"model": args.model, "load": load}
    for split, names in (("photos", HELD_OUT_PHOTOS), ("self-similar", HELD_OUT_SELF_SIMILAR)):
        rows = score(methods, names, s)
        report[split] = rows
        base = rows["bicubic"]["y_psnr"]
        print(
            f"\nx{s}, held-out {split} ({', '.join(names)}; never trained on, but the "
            "recipe was chosen on them: network rows optimistic)"
        )
        print(f"{'method':16s} {'Y-PSNR':>7s} {'vs bic':>7s} {'SSIM':>7s} {'grad':>6s} {'s':>6s}")
        for m, r in rows.items():
            print(
                f"{m:16s} {r['y_psnr']:7.2f} {r['y_psnr'] - base:+7.2f} {r['y_ssim']:7.4f} "
                f"{r['grad_ratio']:6.3f} {r['seconds']:6.2f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

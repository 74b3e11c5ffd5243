"""Super-resolution benchmark: the small edsr_psal network trained with psal / dense /
none attention for an equal CPU-time budget, against bicubic and psal.upscale.

Training images: scikit-image photos and textures (no download); held-out images are
never trained on. Each variant trains (L1, Adam) on random 32x32 LR crops (x2 only by
default) for ``--budget`` seconds of process CPU time; then every method enlarges the
held-out images (8-bit LR made by antialiased bicubic downscaling) and is scored:
Y-PSNR and SSIM (``scale`` pixels shaved), gradient-energy ratio, seconds. ``--memory``
also measures psal inference's peak memory at a 1024x1024 input (a subprocess, RSS).

    PYTHONPATH=src python benchmarks/train_upscale.py --quick        # ~2 minutes
    PYTHONPATH=src python benchmarks/train_upscale.py --budget 300 --scales 2 4 --memory
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

TRAIN = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "grass",
    "gravel",
    "camera",
    "hubble_deep_field",
)
HELD_OUT_PHOTOS = ("coins", "immunohistochemistry", "motorcycle")  # (cat is chelsea)
HELD_OUT_SELF_SIMILAR = ("brick", "checkerboard_texture", "text")


def _image(name: str) -> np.ndarray:
    from skimage import data

    if name == "motorcycle":
        im = data.stereo_motorcycle()[0]
    elif name == "checkerboard_texture":
        im = np.tile(data.brick()[:64, :64], (4, 4))[:, :, None].repeat(3, 2)
    else:
        im = getattr(data, name)()
    if im.ndim == 2:
        im = np.stack([im] * 3, -1)
    return np.ascontiguousarray(im[..., :3])


def _t(im: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255


def train(
    attention: str,
    scale: int,
    budget: float,
    width: int = 32,
    blocks: int = 6,
    patch: int = 32,
    batch: int = 8,
    seed: int = 0,
) -> tuple[torch.nn.Module, int]:
    from psal.data import degrade
    from psal.models import create_model

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = create_model("edsr_psal", scale=scale, width=width, blocks=blocks, attention=attention)
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    images = [_t(_image(n)) for n in TRAIN]
    p = patch * scale
    steps, t0 = 0, time.process_time()
    while time.process_time() - t0 < budget:
        crops = []
        for _ in range(batch):
            im = images[rng.integers(len(images))]
            y, x = rng.integers(0, im.shape[-2] - p + 1), rng.integers(0, im.shape[-1] - p + 1)
            crop = im[..., y : y + p, x : x + p]
            crop = torch.rot90(
                crop.flip(-1) if rng.integers(2) else crop, int(rng.integers(4)), (2, 3)
            )
            crops.append(crop)
        hr = torch.cat(crops)
        lr = degrade(hr, scale).clamp(0, 1)
        loss = (net(lr) - hr).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    return net.eval(), steps


def score(methods: dict, names: tuple[str, ...], scale: int) -> dict:
    from psal.data import degrade
    from psal.training.tasks.upscale import sr_metrics

    rows = {m: [] for m in methods}
    for name in names:
        im = _image(name)[:256, :256]
        h, w = im.shape[0] - im.shape[0] % scale, im.shape[1] - im.shape[1] % scale
        hr = _t(im[:h, :w])
        lr = (degrade(hr, scale).clamp(0, 1) * 255).round() / 255
        for m, fn in methods.items():
            torch.manual_seed(0)
            t0 = time.perf_counter()
            with torch.no_grad():
                out = fn(lr)
            r = sr_metrics(out, hr, scale)
            r["seconds"] = time.perf_counter() - t0
            rows[m].append(r)
    return {m: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for m, rs in rows.items()}


MEMORY_CHILD = """
import resource, sys, torch
from psal.models import create_model
torch.manual_seed(0)
net = create_model("edsr_psal", scale=2, width=32, blocks=6, attention=sys.argv[1]).eval()
x = torch.rand(1, 3, int(sys.argv[2]), int(sys.argv[2]))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = net.enlarge(x)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, base / 1024, tuple(out.shape))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="30 s budget per variant, x2")
    p.add_argument("--budget", type=float, default=180, help="CPU seconds of training per variant")
    p.add_argument("--scales", type=int, nargs="+", default=[2])
    # dense attention is opt-in: at the 128x128 LR held-out crops of x2 its in-scale block
    # holds 16384^2 scores (1 GiB a copy); at 1024x1024 it would need 4 TiB
    p.add_argument("--attentions", nargs="+", default=["psal", "none"])
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--patch", type=int, default=32, help="LR crop side")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--memory", action="store_true", help="peak RSS of inference at 1024x1024")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.budget = 30
    import psal

    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load {' '.join(load)}")
    report = {"settings": vars(args), "load": load, "results": {}}
    for scale in args.scales:
        nets = {}
        for att in args.attentions:
            net, steps = train(att, scale, args.budget, args.width, args.blocks, args.patch,
                               args.batch)  # fmt: skip
            nets[att] = net
            print(f"x{scale} {att}: {steps} steps in {args.budget:.0f} CPU s")
            report["results"].setdefault(f"x{scale}", {})[f"steps_{att}"] = steps
        methods = {
            "bicubic": lambda lr, s=scale: F.interpolate(
                lr, scale_factor=s, mode="bicubic", align_corners=False
            ),
            "psal.upscale": lambda lr, s=scale: psal.upscale(lr, s, seed=0),
            **{f"net-{a}": (lambda lr, n=n: n.enlarge(lr)) for a, n in nets.items()},
        }
        for split, names in (("photos", HELD_OUT_PHOTOS), ("self-similar", HELD_OUT_SELF_SIMILAR)):
            rows = score(methods, names, scale)
            report["results"][f"x{scale}"][split] = rows
            base = rows["bicubic"]["y_psnr"]
            print(f"\nx{scale}, held-out {split} ({', '.join(names)})")
            print(
                f"{'method':14s} {'Y-PSNR':>7s} {'vs bic':>7s} {'SSIM':>7s} {'grad':>6s} {'s':>6s}"
            )
            for m, r in rows.items():
                print(
                    f"{m:14s} {r['y_psnr']:7.2f} {r['y_psnr'] - base:+7.2f} {r['y_ssim']:7.4f} "
                    f"{r['grad_ratio']:6.3f} {r['seconds']:6.2f}"
                )
    if args.memory:
        for att, side in (("psal", 1024), ("none", 1024), ("dense", 128)):
            res = subprocess.run(
                [sys.executable, "-c", MEMORY_CHILD, att, str(side)],
                capture_output=True,
                text=True,
                check=True,
            )
            peak, base, _shape = res.stdout.split(maxsplit=2)
            print(
                f"inference {att} at {side}x{side} x2: peak RSS {float(peak):.0f} MB "
                f"(after model set-up {float(base):.0f} MB)"
            )
            report.setdefault("memory", {})[f"{att}@{side}"] = float(peak)
        n = 1024 * 1024
        print(
            f"dense at 1024x1024 would hold in-scale scores of {n}x{n} float32: "
            f"{n * n * 4 / 2**40:.1f} TiB (cross-scale: {n * n // 4 * 4 / 2**40:.1f} TiB)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"max RSS of this process {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

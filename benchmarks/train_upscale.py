"""Super-resolution benchmark: the small edsr_psal network trained with psal / dense /
none attention for an equal CPU-time budget, against bicubic and psal.upscale.

Training images: scikit-image photos and textures plus matplotlib's grace_hopper (no
download), at full size and shrunk by half; held-out images are never trained on. Each
variant trains (L1, Adam, cosine learning rate over the budget) on random LR crops
(8-bit, antialiased bicubic) for ``--budget`` seconds of process CPU time (or exactly
``--steps`` steps), on ``--threads`` threads (torch and numba; 1 by default, the
fairest CPU-time comparison and what a shared machine allows); then every method
enlarges the held-out images (8-bit LR made by antialiased bicubic downscaling) and is
scored: Y-PSNR and SSIM (``scale`` pixels shaved), gradient-energy ratio, seconds
(wall, median of 3 warm runs per image after one untimed call).
``--memory`` also measures psal inference's peak memory at a 1024x1024 input (a
subprocess, RSS). ``--save DIR`` writes each trained network as a psal checkpoint
(``DIR/upscale_x{scale}_{attention}.safetensors``, readable by
``psal.models.Upscaler.from_checkpoint``) with the command line in its metadata.

The psal variant is the cheap configuration (``--psal-k 2 --pm-iters 2
--search-channels 4``: two neighbours, two PatchMatch iterations, searching on a
4-channel projection); ``--no-in-scale`` keeps only the cross-scale block (in every
variant, so they stay the same network but for the attention). ``--guide image`` makes
the cross-scale block search the input image (``--guide-gate``: with a per-pixel gate;
``--guide-k``, ``--guide-iters``: its PatchMatch), again in every variant.

    PYTHONPATH=src python benchmarks/train_upscale.py --quick        # ~2 minutes
    PYTHONPATH=src python benchmarks/train_upscale.py --budget 300 --scales 2 4 --memory
    PYTHONPATH=src python benchmarks/train_upscale.py --budget 100 --scales 4 --guide image \
        --guide-gate --no-in-scale --patch 48 --batch 2 --seed 0   # docs/upscale.md
    PYTHONPATH=src python benchmarks/train_upscale.py --quick --split tune --guide image \
        --guide-gate --no-in-scale --patch 48 --batch 2 --whole     # pilots: tuning split
"""

from __future__ import annotations

import argparse
import json
import math
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
    "cell",
    "clock",
    "moon",
    "page",
    "retina",
    "colorwheel",
    "grace_hopper",
)
HELD_OUT_PHOTOS = ("coins", "immunohistochemistry", "motorcycle")  # (cat is chelsea)
HELD_OUT_SELF_SIMILAR = ("brick", "checkerboard_texture", "text")
#: ``--split tune``: training images set aside for choosing settings (pilots never see the
#: held-out images): the networks train without them and are scored on them.
TUNE_PHOTOS = ("rocket",)
TUNE_SELF_SIMILAR = ("grass", "gravel", "page")


def _image(name: str) -> np.ndarray:
    from skimage import data

    if name == "motorcycle":
        im = data.stereo_motorcycle()[0]
    elif name == "grace_hopper":  # matplotlib's sample photo (a JPEG: used shrunk by half too)
        import matplotlib.cbook
        from PIL import Image

        with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as f:
            im = np.asarray(f.convert("RGB"))
    elif name == "checkerboard_texture":
        im = np.tile(data.brick()[:64, :64], (4, 4))[:, :, None].repeat(3, 2)
    else:
        im = getattr(data, name)()
    if im.ndim == 2:
        im = np.stack([im] * 3, -1)
    return np.ascontiguousarray(im[..., :3])


def _t(im: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255


def training_images(exclude: tuple[str, ...] = ()) -> list[torch.Tensor]:
    """The training photos (less ``exclude``), each at full size and shrunk by half."""
    out = []
    for name in TRAIN:
        if name in exclude:
            continue
        im = _t(_image(name))
        h, w = im.shape[-2:]
        half = F.interpolate(im, size=(h // 2, w // 2), mode="bicubic", align_corners=False,
                             antialias=True).clamp(0, 1)  # fmt: skip
        out += [im, half]
    return out


def network_kwargs(args: argparse.Namespace, attention: str, scale: int) -> dict:
    """create_model arguments of a variant (the psal one gets the cheap search settings)."""
    kw = {"scale": scale, "width": args.width, "blocks": args.blocks, "attention": attention,
          "in_scale": args.in_scale, "search_channels": args.search_channels}  # fmt: skip
    if attention == "psal":
        kw["attention_options"] = {"k": args.psal_k, "iters": args.pm_iters}
    if args.guide != "features":  # (the key is left out for the old networks' descriptions)
        kw["guide"] = args.guide
        if args.guide_gate:
            kw["guide_gate"] = True
        if attention == "psal" and (args.guide_k, args.guide_iters) != (4, 2):
            kw["guide_options"] = {"k": args.guide_k, "iters": args.guide_iters}
    return kw


def train(
    kwargs: dict,
    budget: float,
    steps_limit: int | None = None,
    patch: int = 24,
    batch: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    exclude: tuple[str, ...] = (),
    whole: bool = False,
) -> tuple[torch.nn.Module, int, float]:
    """Train for ``budget`` CPU seconds (or ``steps_limit`` steps): (net, steps, CPU s).

    ``whole``: the LR crops are cut from each training image's LR made whole (8-bit,
    once per image, inside the budget), and a psal network's image guide is searched
    once per whole LR image (:meth:`~psal.models.EDSRPSAL.guide_blocks`, its temperature
    then fixed) and cut and turned with the crop: the search a held-out image gets
    (the whole image), at almost no cost per step. Every variant gets the same crops.
    """
    from psal.data import degrade
    from psal.models import create_model

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    scale = kwargs["scale"]
    net = create_model("edsr_psal", **kwargs)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    p = patch * scale
    images = [im for im in training_images(exclude) if min(im.shape[-2:]) >= p]
    # compile the search's kernels before the clock starts (numba's first call takes
    # seconds: compiling is not training); the gradients are cleared at the first step
    net(torch.rand(1, 3, patch, patch)).mean().backward()
    cache = whole and net.guide is not None and kwargs["attention"] != "none"
    if cache:
        net.guide.log_scale.requires_grad_(False)  # the search's weights: fixed
    lows: dict[int, torch.Tensor] = {}
    blocks: dict[int, torch.Tensor] = {}
    xs = net.xs

    def turn(t: torch.Tensor, flip: int, rot: int) -> torch.Tensor:
        return torch.rot90(t.flip(-1) if flip else t, rot, (2, 3))

    steps, t0 = 0, time.process_time()
    while True:
        spent = time.process_time() - t0
        done = steps / steps_limit if steps_limit else spent / budget
        if done >= 1:
            break
        for group in opt.param_groups:  # cosine over the budget (CPU time or steps)
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * done))
        crops, low_crops, guide_crops = [], [], []
        for _ in range(batch):
            i = int(rng.integers(len(images)))
            im = images[i]
            y, x = rng.integers(0, im.shape[-2] - p + 1), rng.integers(0, im.shape[-1] - p + 1)
            if whole:  # on the LR grid
                y, x = y - y % scale, x - x % scale
            crop = im[..., y : y + p, x : x + p]
            flip, rot = int(rng.integers(2)), int(rng.integers(4))
            crops.append(turn(crop, flip, rot))
            if not whole:
                continue
            if i not in lows:
                h, w = im.shape[-2] // scale * scale, im.shape[-1] // scale * scale
                lows[i] = (degrade(im[..., :h, :w], scale).clamp(0, 1) * 255).round() / 255
                if cache:
                    with torch.no_grad():
                        blocks[i] = net.guide_blocks(net._pad(lows[i]))
            ly, lx = y // scale, x // scale
            low_crops.append(turn(lows[i][..., ly : ly + patch, lx : lx + patch], flip, rot))
            if cache:
                g = blocks[i][..., xs * ly : xs * (ly + patch), xs * lx : xs * (lx + patch)]
                guide_crops.append(turn(g, flip, rot))
        hr = torch.cat(crops)
        if whole:
            low = torch.cat(low_crops)
        else:
            low = (degrade(hr, scale).clamp(0, 1) * 255).round() / 255  # 8-bit, as files
        out = net(low, guide=torch.cat(guide_crops)) if cache else net(low)
        loss = (out - hr).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    return net.eval(), steps, time.process_time() - t0


def score(methods: dict, names: tuple[str, ...], scale: int, repeats: int = 3) -> dict:
    """Metrics of every method on the ``names`` crops, and its time: the median of
    ``repeats`` warm runs per image (each method is called once, untimed, on the first
    image first: numba compilation and first-call caches are not its time)."""
    import statistics

    from psal.data import degrade
    from psal.training.tasks.upscale import sr_metrics

    def run(fn, lr):
        torch.manual_seed(0)
        with torch.no_grad():
            return fn(lr)

    rows = {m: [] for m in methods}
    for i, name in enumerate(names):
        im = _image(name)[:256, :256]
        h, w = im.shape[0] - im.shape[0] % scale, im.shape[1] - im.shape[1] % scale
        hr = _t(im[:h, :w])
        lr = (degrade(hr, scale).clamp(0, 1) * 255).round() / 255
        for m, fn in methods.items():
            if i == 0:
                run(fn, lr)  # warm-up, untimed
            times = []
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                out = run(fn, lr)
                times.append(time.perf_counter() - t0)
            r = sr_metrics(out, hr, scale)
            r["seconds"] = statistics.median(times)
            rows[m].append(r)
    out = {m: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for m, rs in rows.items()}
    for m, rs in rows.items():  # per image too (Y-PSNR), to see where a difference comes from
        out[m]["y_psnr_per_image"] = {n: float(r["y_psnr"]) for n, r in zip(names, rs)}
    return out


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


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject bad option values up front (``p.error``: usage, the option, exit status 2)."""
    if not (math.isfinite(args.budget) and args.budget > 0):
        p.error(f"--budget must be a positive number of CPU seconds, got {args.budget:g}")
    if args.steps is not None and args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        p.error(f"--lr must be > 0, got {args.lr:g}")
    minimum = {"width": 1, "blocks": 0, "batch": 1, "threads": 1, "search_channels": 1,
               "psal_k": 1, "guide_k": 1, "pm_iters": 0, "guide_iters": 0}  # fmt: skip
    for name, least in minimum.items():
        if getattr(args, name) < least:
            p.error(f"--{name.replace('_', '-')} must be >= {least}, got {getattr(args, name)}")
    from psal.models.edsr import ATTENTIONS

    bad = [a for a in args.attentions if a not in ATTENTIONS]
    if bad:
        p.error(f"--attentions: {', '.join(bad)} not among {', '.join(ATTENTIONS)}")
    for scale in sorted(set(args.scales)):  # the cross-scale search: 3x3 patches at 1/xs
        xs = 2 if scale == 4 else scale
        if args.patch < 2 * xs + 1:
            p.error(f"--patch must be >= {2 * xs + 1} at x{scale} (the cross-scale search needs "
                    f"3x3 patches on the LR crop shrunk {xs}x), got {args.patch}")  # fmt: skip
    exclude = TUNE_PHOTOS + TUNE_SELF_SIMILAR if args.split == "tune" else ()
    side = max(min(_image(n).shape[:2]) for n in TRAIN if n not in exclude)
    largest = side // max(args.scales)
    if args.patch > largest:
        p.error(f"--patch {args.patch} at x{max(args.scales)} needs HR crops of "
                f"{args.patch * max(args.scales)} pixels; the largest training image "
                f"allows --patch <= {largest}")  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="30 s budget per variant, x2")
    p.add_argument("--budget", type=float, default=180, help="CPU seconds of training per variant")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="train exactly this many steps instead (equal steps, reproducible)",
    )
    p.add_argument("--scales", type=int, nargs="+", default=[2], choices=(2, 3, 4))
    # dense attention is opt-in: at the 128x128 LR held-out crops of x2 its in-scale block
    # holds 16384^2 scores (1 GiB a copy); at 1024x1024 it would need 4 TiB
    p.add_argument("--attentions", nargs="+", default=["psal", "none"])
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--patch", type=int, default=24, help="LR crop side")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (cosine)")
    p.add_argument("--threads", type=int, default=1, help="torch and numba threads")
    p.add_argument(
        "--in-scale",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the in-scale non-local block (every variant)",
    )
    p.add_argument(
        "--guide",
        choices=("features", "image", "both"),
        default="features",
        help="what the cross-scale block searches (every variant): the learned features "
        "(Mei et al.), the input image (internal examples, Glasner et al.) or both",
    )
    p.add_argument("--guide-k", type=int, default=4, help="psal image guide: neighbours")
    p.add_argument("--guide-gate", action="store_true", help="per-pixel gate of the guide")
    p.add_argument("--guide-iters", type=int, default=2, help="psal image guide: iterations")
    p.add_argument(
        "--whole",
        action="store_true",
        help="crops cut from each training image's whole LR (every variant); psal's image "
        "guide searched once per whole image (cached) instead of once per crop",
    )
    p.add_argument("--search-channels", type=int, default=4)
    p.add_argument("--psal-k", type=int, default=2)
    p.add_argument("--pm-iters", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--split",
        choices=("held-out", "tune"),
        default="held-out",
        help="tune: train without the tuning images and score on them (for choosing "
        "settings without looking at the held-out images)",
    )
    p.add_argument("--memory", action="store_true", help="peak RSS of inference at 1024x1024")
    p.add_argument("--save", default=None, metavar="DIR", help="write the trained networks")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.quick:  # --budget given on the command line wins over the preset
        from _common import quick_defaults

        quick_defaults(p, args, argv, budget=30)
    check_args(p, args)
    import numba

    import psal
    from _common import set_threads

    set_threads(args.threads)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()} (numba "
          f"{numba.get_num_threads()}), load {' '.join(load)}")  # fmt: skip
    report = {"settings": vars(args), "load": load, "results": {}}
    exclude: tuple[str, ...] = ()
    splits = (("photos", HELD_OUT_PHOTOS), ("self-similar", HELD_OUT_SELF_SIMILAR))
    if args.split == "tune":
        exclude = TUNE_PHOTOS + TUNE_SELF_SIMILAR
        splits = (("tune-photos", TUNE_PHOTOS), ("tune-self-similar", TUNE_SELF_SIMILAR))
    for scale in args.scales:
        nets = {}
        res = report["results"].setdefault(f"x{scale}", {})
        for att in args.attentions:
            kw = network_kwargs(args, att, scale)
            net, steps, spent = train(kw, args.budget, args.steps, args.patch, args.batch,
                                      args.lr, args.seed, exclude, args.whole)  # fmt: skip
            nets[att] = net
            print(f"x{scale} {att}: {steps} steps in {spent:.0f} CPU s "
                  f"({1000 * spent / max(steps, 1):.0f} ms a step)", flush=True)  # fmt: skip
            res[f"steps_{att}"] = steps
            res[f"cpu_s_{att}"] = spent
            if args.save:
                from psal.models.io import save_weights

                out = Path(args.save) / f"upscale_x{scale}_{att}.safetensors"
                out.parent.mkdir(parents=True, exist_ok=True)
                command = "PYTHONPATH=src python benchmarks/train_upscale.py " + " ".join(
                    sys.argv[1:] if argv is None else argv
                )
                meta = {"network": {"name": "edsr_psal", "kwargs": kw}, "scale": scale,
                        "step": steps, "trained_by": command,
                        "training_images": list(TRAIN)}  # fmt: skip
                save_weights(out, {"net": net.state_dict()}, meta, task="upscale")
                print(f"wrote {out}")
        if "none" in nets and len(nets) > 1:
            for att in nets:
                if att != "none" and res["steps_none"]:
                    ratio = (res[f"cpu_s_{att}"] / max(res[f"steps_{att}"], 1)) / (
                        res["cpu_s_none"] / res["steps_none"]
                    )
                    res[f"step_cost_ratio_{att}"] = ratio
                    print(f"x{scale}: a {att} step costs {ratio:.2f} none steps")
        methods = {
            "bicubic": lambda lr, s=scale: F.interpolate(
                lr, scale_factor=s, mode="bicubic", align_corners=False
            ),
            "psal.upscale": lambda lr, s=scale: psal.upscale(lr, s, seed=0),
            **{f"net-{a}": (lambda lr, n=n: n.enlarge(lr)) for a, n in nets.items()},
        }
        for split, names in splits:
            rows = score(methods, names, scale)
            res[split] = rows
            base = rows["bicubic"]["y_psnr"]
            kind = "tuning split" if split.startswith("tune") else "held-out"
            print(f"\nx{scale}, {kind} {split} ({', '.join(names)})")
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

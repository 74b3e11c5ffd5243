"""Train the same small DeepFill generator with attention psal, contextual and none.

For each data set (repetitive textures and photos from scikit-image) and each attention
layer, trains a small generator (``--width``) with the full DeepFill losses for the same
number of steps, then reports PSNR and L1 on validation tiles with fixed masks: over the
whole image and in the hole only, and the hole's gradient ratio (mean gradient
magnitude of the fill over the truth's: 1 = as sharp, a blurred fill scores far below;
PSNR alone rewards blur). Every run uses the same seed, data order and masks.

Data: each source image is split into a training part (its left 3/4) and a validation
part (its right 1/4, cut into tiles). The validation pixels are never trained on, but
they are **the same images** (same scene, lighting, texture statistics) as the
training parts, not separate held-out images: the scores are "same images, unseen
quarter" and flatter a network that memorises an image's look.

    python benchmarks/train_inpaint.py                  # default budget: a few minutes
    python benchmarks/train_inpaint.py --steps 2000 --width 16 --json results.json
    python benchmarks/train_inpaint.py --quick          # a re-check in under 2 minutes

Prints a table with the budget and the machine. The numbers of a short CPU budget say
how fast each variant starts to learn, not how good it ends up.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from psal.data import InpaintingFolder, MaskGenerator, list_images
from psal.training import InpaintConfig, Trainer, apply_overrides, evaluate
from psal.utils.jsonfile import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _editing, _common

DATASETS = {
    "textures": ["brick", "grass", "gravel"],
    "photos": ["astronaut", "coffee", "chelsea", "rocket"],
}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _rgb(name: str) -> np.ndarray:
    from skimage import data

    im = getattr(data, name)()
    if im.ndim == 2:
        im = np.stack([im] * 3, -1)
    return np.ascontiguousarray(im[..., :3])


def prepare(root: Path, names: list[str], tile: int, scale: float) -> tuple[Path, Path]:
    """Write training parts and validation tiles of the named images under ``root``."""
    train, val = root / "train", root / "val"
    train.mkdir(parents=True)
    val.mkdir(parents=True)
    for name in names:
        im = Image.fromarray(_rgb(name))
        if scale != 1:
            size = (round(im.width * scale), round(im.height * scale))
            im = im.resize(size, Image.Resampling.BICUBIC)
        arr = np.asarray(im)
        cut = arr.shape[1] * 3 // 4
        Image.fromarray(arr[:, :cut]).save(train / f"{name}.png")
        right = arr[:, cut:]
        for i in range(right.shape[0] // tile):
            for j in range(right.shape[1] // tile):
                t = right[i * tile : (i + 1) * tile, j * tile : (j + 1) * tile]
                Image.fromarray(t).save(val / f"{name}_{i}_{j}.png")
    return train, val


class _Recorder:
    """Wraps ``model(images, masks)``; keeps the hole gradient ratio of every image."""

    def __init__(self, model) -> None:
        self.model, self.ratios = model, []

    def __getattr__(self, name):  # e.g. ``device``
        return getattr(self.model, name)

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        import _editing as C

        completed = self.model(images, masks)
        for out, im, m in zip(completed.float(), images.float(), masks):
            hole = m[0].bool().cpu().numpy()
            if hole.any():
                self.ratios.append(
                    C.gradient_ratio(
                        out.permute(1, 2, 0).cpu().numpy(), im.permute(1, 2, 0).cpu().numpy(), hole
                    )
                )
        return completed


def run(args: argparse.Namespace, train: Path, val: Path, attention: str, out: Path) -> dict:
    overrides = {
        "data.path": train,
        "out": out,
        "data.image_size": args.size,
        "data.val_fraction": 0,
        "data.num_workers": 0,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "seed": args.seed,
        "model.kwargs.width": args.width,
        "model.critic_width": args.width * 2,
        "model.kwargs.attention": attention,
        "optim.n_critic": args.n_critic,
        "optim.lr": args.lr,
        "optim.critic_lr": args.lr,
        "device": args.device,
        "tensorboard": False,
        "progress": False,
        "val_every": 0,
        "save_every": 0,
        "log_every": 0,
    }
    cfg = apply_overrides(InpaintConfig(), [f"{k}={v}" for k, v in overrides.items()])
    if attention == "psal":
        cfg.model.kwargs["attention_options"] = {"k": args.k, "iters": args.iters}
    trainer = Trainer(cfg)
    start = time.perf_counter()
    trainer.fit()
    elapsed = time.perf_counter() - start
    masks = MaskGenerator("rect", args.size)
    files = list_images(val)
    dataset = torch.utils.data.ConcatDataset(
        [
            InpaintingFolder(files, args.size, masks, fixed=True, mask_seed=s)
            for s in range(1, args.mask_seeds + 1)
        ]
    )
    recorder = _Recorder(trainer.task.inpainter())
    with torch.random.fork_rng():
        torch.manual_seed(0)
        metrics = evaluate(recorder, dataset, batch_size=16)
    trainer.close()
    finite = [r for r in recorder.ratios if np.isfinite(r)]
    grad = float(np.mean(finite)) if finite else float("nan")
    return {"train_s": elapsed, **metrics, "grad_ratio_hole": grad}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``--quick``: a run of under two minutes, for a re-check)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=150, help="generator steps per run")
    p.add_argument("--size", type=int, default=64, help="training crop size")
    p.add_argument("--width", type=int, default=8, help="generator base channels")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--n-critic", type=int, default=1, help="critic steps per generator step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--k", type=int, default=3, help="psal neighbours")
    p.add_argument("--iters", type=int, default=3, help="psal PatchMatch iterations")
    p.add_argument("--scale", type=float, default=0.5, help="resize source images first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mask-seeds", type=int, default=4, help="fixed masks per validation tile")
    p.add_argument("--threads", type=int, default=1, help="torch and numba threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--attention", nargs="+", default=["none", "contextual", "psal"])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--quick", action="store_true", help="20 steps at 32 px, one data set")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.quick:  # options given on the command line win over the preset
        from _common import quick_defaults

        quick_defaults(p, args, argv, steps=20, size=32, datasets=["textures"], mask_seeds=1)
    return args


def environment(args: argparse.Namespace) -> dict:
    """The machine and settings line printed with the table."""
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": _cpu_name(),
        "cpus": os.cpu_count(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "device": args.device,
        "threads": args.threads,
    }


def table(rows: list[dict], mask_seeds: int) -> str:
    """The results as a markdown table."""
    head = ["data", "attention", "train s", "PSNR", "PSNR hole", "L1 hole", "grad hole"]
    head += ["SSIM", "val (same images, unseen 1/4)"]
    lines = [head]
    for r in rows:
        lines.append(
            [
                r["data"],
                r["attention"],
                f"{r['train_s']:.0f}",
                f"{r['psnr']:.2f}",
                f"{r['psnr_hole']:.2f}",
                f"{r['l1_hole']:.4f}",
                f"{r['grad_ratio_hole']:.3f}",
                f"{r['ssim']:.4f}",
                f"{r['val_tiles']}x{mask_seeds}",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines[1:]
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """Train every (data set, attention) pair and print the table."""

    args = parse_args(argv)
    from _common import set_threads

    set_threads(args.threads)
    env = environment(args)
    budget = (
        f"{args.steps} steps x batch {args.batch_size} at {args.size}px, width {args.width}, "
        f"n_critic {args.n_critic}, lr {args.lr}, seed {args.seed}"
    )
    print(f"# {budget}")
    print("# " + ", ".join(f"{k} {v}" for k, v in env.items()))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ds in args.datasets:
            train, val = prepare(Path(tmp) / ds, DATASETS[ds], args.size, args.scale)
            n_val = len(list_images(val))
            for att in args.attention:
                r = run(args, train, val, att, Path(tmp) / ds / f"run_{att}")
                rows.append({"data": ds, "attention": att, "val_tiles": n_val, **r})
                print(
                    f"  {ds:9s} {att:10s} psnr {r['psnr']:.2f}  psnr_hole {r['psnr_hole']:.2f}"
                    f"  l1_hole {r['l1_hole']:.4f}  grad_hole {r['grad_ratio_hole']:.3f}"
                    f"  ({r['train_s']:.0f} s)",
                    file=sys.stderr,
                )
    print(
        "# validation: the right quarter of the same images as training (never trained "
        "on, but not separate images); grad hole = gradient ratio in the hole (1 = as sharp)"
    )
    print(table(rows, args.mask_seeds))
    if args.json:
        write_json(args.json, {"budget": budget, "env": env, "results": rows})


if __name__ == "__main__":
    main()

"""``psal train inpaint`` and ``psal eval inpaint``: train and evaluate inpainting networks.

Examples::

    psal train inpaint --data photos/ --out runs/ca --steps 100000
    psal train inpaint --data photos/ --attention psal model.attention_options.k=4
    psal train inpaint --resume --out runs/ca            # continue after a kill
    torchrun --nproc_per_node 2 $(which psal) train inpaint --data photos/ --out runs/ddp
    psal eval inpaint --checkpoint runs/ca --data val_photos/ --json metrics.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from ._common import DEBUG_ENV, CLIError, add_device_arg, add_seed_arg, resolve_device

TRAIN_EXAMPLES = f"""\
examples:
  psal train inpaint --data photos/ --out runs/ca --steps 100000
  psal train inpaint --data photos/ --out runs/psal --attention psal model.attention_options.k=4
  psal train inpaint --data photos/ --out runs/small --image-size 128 --width 16 --batch-size 8
  psal train inpaint --data photos/ --config small.json optim.n_critic=2
  psal train inpaint --resume --out runs/ca              # continue after a kill
  psal train inpaint --resume --out runs/ca --steps 200000
  torchrun --nproc_per_node 2 $(which psal) train inpaint --data photos/ --out runs/ddp

Without --resume, --out must not hold a run's checkpoints already. config.json,
TensorBoard logs and checkpoints are written there once the first step has run.
--image-size must be a multiple of 4 (with psal attention, at least 4 x its patch size).
Set {DEBUG_ENV}=1 to see the full traceback of an error.
"""

EVAL_EXAMPLES = f"""\
examples:
  psal eval inpaint --checkpoint runs/ca --data val_photos/
  psal eval inpaint --checkpoint runs/ca/checkpoints/step_00100000.safetensors \\
      --data val_photos/ --masks free-form --json metrics.json
  psal eval inpaint --checkpoint runs/psal --data val_photos/ --image-size 256 --resize resize

The masks are fixed by --mask-seed; --seed fixes the network's own randomness
(PatchMatch in psal attention), so an evaluation repeats exactly. Set {DEBUG_ENV}=1 to
see the full traceback of an error.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train inpaint`` and ``eval inpaint``."""
    train = subparsers.add_parser("train", help="train a network")
    train_sub = train.add_subparsers(dest="task", metavar="TASK")
    train_sub.required = True
    fmt = argparse.RawDescriptionHelpFormatter
    p = train_sub.add_parser(
        "inpaint",
        help="train a DeepFill-style inpainting network",
        description=(
            "Train the DeepFill v1 generator (attention: contextual, psal or none) with\n"
            "WGAN-GP global/local critics or an SN-PatchGAN critic. Settings: dataclass\n"
            "defaults < --config FILE < options < section.key=value overrides\n"
            "(e.g. model.width=16 optim.n_critic=1 loss.discount_gamma=0.9). Runs under\n"
            "torchrun for several GPUs or nodes."
        ),
        epilog=TRAIN_EXAMPLES,
        formatter_class=fmt,
    )
    p.add_argument("--data", help="folder of training images (searched recursively)")
    p.add_argument("--config", help="JSON (or TOML) config file with default settings")
    p.add_argument("--out", help="run folder for checkpoints and logs (default runs/inpaint)")
    p.add_argument("--steps", type=int, help="total generator steps (default 100000)")
    p.add_argument(
        "--image-size", type=int, help="side of the training crops, a multiple of 4 (default 256)"
    )
    p.add_argument("--batch-size", type=int, help="images per batch and process (default 16)")
    p.add_argument("--attention", choices=("contextual", "psal", "none"), help="attention layer")
    p.add_argument("--critic", choices=("wgan-gp", "sn-patchgan"), help="critic type")
    p.add_argument("--masks", choices=("rect", "free-form", "mixed"), help="hole masks")
    p.add_argument("--width", type=int, help="generator base channels, >= 2 (paper: 32)")
    p.add_argument(
        "--num-workers", type=int, help="data loader processes per training process (default 2)"
    )
    p.add_argument("--seed", type=int, help="random seed, >= 0 (default 0)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="CHECKPOINT",
        help="continue a run exactly: from CHECKPOINT (weights file or run folder), or "
        "without a value from the latest checkpoint of --out",
    )
    p.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    add_device_arg(p)
    p.set_defaults(func=_train, device=None)  # None: keep the config's device

    evaluate = subparsers.add_parser("eval", help="evaluate a network")
    eval_sub = evaluate.add_subparsers(dest="task", metavar="TASK")
    eval_sub.required = True
    e = eval_sub.add_parser(
        "inpaint",
        help="evaluate an inpainting checkpoint on fixed masks",
        description=(
            "Mean L1, mean L2, PSNR and total variation (DeepFill Table 1) and SSIM of\n"
            "the completed images, plus L1/L2/PSNR in the hole, on every image of --data\n"
            "with masks fixed by --mask-seed."
        ),
        epilog=EVAL_EXAMPLES,
        formatter_class=fmt,
    )
    e.add_argument("--checkpoint", required=True, help="weights file or run folder")
    e.add_argument("--data", required=True, help="folder of images (searched recursively)")
    e.add_argument(
        "--image-size",
        type=int,
        help="image side, >= 8 (default: the side the checkpoint was trained at)",
    )
    e.add_argument(
        "--resize", choices=("crop", "resize"), default="crop", help="centre crop or resize"
    )
    e.add_argument("--masks", choices=("rect", "free-form", "mixed"), default="rect")
    e.add_argument("--mask-seed", type=int, default=0, help="seed of the fixed masks (default 0)")
    e.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    e.add_argument("--limit", type=int, help="evaluate only the first N images (N >= 1)")
    e.add_argument("--json", help="write the metrics to this JSON file")
    add_seed_arg(e)
    add_device_arg(e)
    e.set_defaults(func=_eval)


def _build_config(args: argparse.Namespace):
    from ..models.io import resolve_weights_file
    from ..training.config import (
        TrainConfig,
        apply_overrides,
        config_from_dict,
        load_config_file,
    )
    from ..training.trainer import Trainer

    resume = None
    config = TrainConfig()
    if args.resume is not None:
        where = args.resume
        if where == "auto":
            if args.out is None:
                raise CLIError("--resume without a checkpoint needs --out (the run folder)")
            where = args.out
        try:
            resume = resolve_weights_file(where)
        except FileNotFoundError as err:
            raise CLIError(f"--resume: {err}") from None
        config = Trainer.config_from_checkpoint(resume)
    if args.config:
        config = config_from_dict(load_config_file(args.config), config)
    flags = {
        "data.path": args.data,
        "out": args.out,
        "steps": args.steps,
        "data.image_size": args.image_size,
        "batch_size": args.batch_size,
        "model.attention": args.attention,
        "model.critic": args.critic,
        "data.masks": args.masks,
        "model.width": args.width,
        "data.num_workers": args.num_workers,
        "seed": args.seed,
        "device": args.device,
    }
    overrides = [f"{k}={v}" for k, v in flags.items() if v is not None]
    if args.no_tensorboard:
        overrides.append("tensorboard=false")
    if args.no_progress:
        overrides.append("progress=false")
    config = apply_overrides(config, overrides)
    config = apply_overrides(config, list(args.overrides))
    if not config.data.path:
        raise CLIError("--data is required (a folder of training images)")
    return config, resume  # checked by Trainer before anything is written


def _train(args: argparse.Namespace) -> int:
    from ..training.trainer import Trainer

    config, resume = _build_config(args)
    if config.device != "auto":
        resolve_device(config.device)  # clear error for a missing device
    trainer = Trainer(config, resume=resume)
    start = trainer.step
    try:
        results = trainer.fit()
    finally:
        trainer.close()
    if trainer.info.is_main:
        if trainer.step == start:
            print(
                f"nothing to train: the run is at step {start} and --steps is {config.steps}; "
                "nothing written"
            )
        else:
            n = trainer.step - start
            print(
                f"trained {n} step{'s' if n != 1 else ''} (now at step {trainer.step}); "
                f"checkpoints in {Path(config.out) / 'checkpoints'}"
            )
        if results:
            print(json.dumps({k: round(v, 5) for k, v in results.items()}))
    return 0


def _eval(args: argparse.Namespace) -> int:
    import torch

    from ..data import InpaintingFolder, MaskGenerator, list_images
    from ..models import Inpainter
    from ..training.evaluate import evaluate, format_table, write_json

    for flag, value, low in (
        ("--image-size", args.image_size, 8),
        ("--batch-size", args.batch_size, 1),
        ("--limit", args.limit, 1),
        ("--mask-seed", args.mask_seed, 0),
        ("--seed", args.seed, 0),
    ):
        if value is not None and value < low:
            raise CLIError(f"{flag} must be >= {low}, got {value}")
    if args.json:  # before the evaluation, not after it
        from ..utils.atomic import check_writable

        check_writable(args.json, "--json")
    device = resolve_device(args.device)
    try:
        model = Inpainter.from_checkpoint(args.checkpoint, device=device)
    except FileNotFoundError as err:
        raise CLIError(f"--checkpoint: {err}") from None
    size = args.image_size if args.image_size is not None else model.training_size
    files = list_images(args.data)
    masks = MaskGenerator(args.masks, size)
    dataset = InpaintingFolder(
        files, size, masks, args.resize, fixed=True, mask_seed=args.mask_seed
    )
    # The network's own randomness (PatchMatch seeds drawn from torch's generator in
    # psal attention) is fixed too, so that an evaluation repeats exactly.
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    results = evaluate(
        model, dataset, args.batch_size, device, limit=args.limit, progress=sys.stderr.isatty()
    )
    print(format_table({Path(args.checkpoint).name: results}))
    if args.json:
        write_json(
            args.json,
            {
                "checkpoint": str(args.checkpoint),
                "data": str(args.data),
                "image_size": size,
                "masks": args.masks,
                "mask_seed": args.mask_seed,
                "seed": args.seed,
                "metrics": results,
            },
        )
    return 0

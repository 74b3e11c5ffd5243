"""``psal train TASK`` and ``psal eval TASK``, one pair per registered training task.

Every flag comes from the task's option table (:mod:`psal.training.config.options`):
its config key, help, allowed values, and its default read from the task's config
dataclass. Values are checked once, by the library; its errors name ``key (--flag)``.

Examples::

    psal train inpaint --data photos/ --out runs/ca --steps 100000
    psal train inpaint --resume --out runs/ca            # continue after a kill
    torchrun --nproc_per_node 2 -m psal train inpaint --data photos/ --out runs/ddp
    psal eval inpaint --checkpoint runs/ca --data val_photos/ --json metrics.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

from ._common import DEBUG_ENV, CLIError, check_not_special, resolve_device

COMMON_EPILOG = f"Set {DEBUG_ENV}=1 to see the full traceback of an error."
TRAIN_HELP = "train a network"
EVAL_HELP = "evaluate a network"

TRAIN_NOTES = """\
Settings: the task's defaults < --resume's stored config < --config FILE < options <
section.key=value overrides. Without --resume, --out must not hold a run's checkpoints
already; --resume without --out writes into the checkpoint's own run folder only.
config.json, TensorBoard logs and checkpoints are written once the first step has run.
A resumed run continues exactly where it stopped when its settings are unchanged; a
new --steps also moves the learning-rate schedule's milestones (step, cosine), so the
rest of the run differs from one started with those steps.
"""


def _field_type(config_class: type, key: str) -> Any:
    """The Python type of a config key (from the dataclass, or a dict entry's default)."""
    cls: Any = config_class
    value: Any = config_class()
    for part in key.split("."):
        if dataclasses.is_dataclass(cls):
            hints = typing.get_type_hints(cls)
            cls = hints[part]
            value = getattr(value, part)
        else:
            value, cls = value[part], None
    if cls is None:
        return type(value)
    args = [a for a in typing.get_args(cls) if a is not type(None)]
    return args[0] if args else cls


def _add_options(
    parser: argparse.ArgumentParser, table: Any, config_class: type, optional: tuple[str, ...] = ()
) -> None:
    """One flag per option of ``table`` (``optional``: keys not required here after all)."""
    from ..training.config import get_key

    defaults = config_class()
    for opt in table:
        if opt.flag is None:
            continue
        default = get_key(defaults, opt.key)
        choices = opt.allowed()
        text = opt.help
        if choices:  # argparse checks them but a METAVAR hides them from --help
            text += "; one of " + ", ".join(str(c) for c in choices)
        if default not in (None, ""):
            text += f" (default {default})"
        kind = _field_type(config_class, opt.key)
        parser.add_argument(
            opt.flag,
            dest=opt.key,
            metavar=opt.flag.lstrip("-").upper().replace("-", "_"),
            type=kind if kind in (int, float) else str,
            choices=choices,
            help=text,
            required=opt.required and opt.key not in optional,
            default=None,  # None: keep the config's value
        )


def register(subparsers: argparse._SubParsersAction, shallow: bool = False) -> None:
    """Register ``train TASK`` and ``eval TASK`` for every registered task.

    ``shallow``: the two commands' names and help lines only (for ``psal --help``,
    without importing the tasks).
    """
    if shallow:
        subparsers.add_parser("train", help=TRAIN_HELP)
        subparsers.add_parser("eval", help=EVAL_HELP)
        return
    from ..training.tasks import get_task, list_tasks
    from ..weights import PRETRAINED

    fmt = argparse.RawDescriptionHelpFormatter
    train = subparsers.add_parser("train", help=TRAIN_HELP)
    train_sub = train.add_subparsers(dest="task", metavar="TASK")
    train_sub.required = True
    evaluate = subparsers.add_parser("eval", help=EVAL_HELP)
    eval_sub = evaluate.add_subparsers(dest="task", metavar="TASK")
    eval_sub.required = True
    for name in list_tasks():
        task = get_task(name)
        p = train_sub.add_parser(
            name,
            help=f"train a {task.help or name}",
            description=task.description + "\n\n" + TRAIN_NOTES,
            epilog=f"examples:\n{task.train_examples}\n\n{COMMON_EPILOG}",
            formatter_class=fmt,
        )
        _add_options(p, task.options, task.config_class)
        p.add_argument("--config", help="JSON (or TOML) config file with default settings")
        p.add_argument(
            "--resume",
            nargs="?",
            const="auto",
            metavar="CHECKPOINT",
            help="continue a run exactly: from CHECKPOINT (weights file or run folder), or "
            "without a value from the latest checkpoint of --out",
        )
        p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard logs")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
        p.set_defaults(func=_train, task_class=task)
        if task.eval_config_class is None or task.eval_options is None:
            continue
        e = eval_sub.add_parser(
            name,
            help=f"evaluate a {task.help or name} checkpoint",
            epilog=f"examples:\n{task.eval_examples}\n\n{COMMON_EPILOG}",
            formatter_class=fmt,
        )
        shipped = sorted(PRETRAINED.get(name, {}))
        _add_options(e, task.eval_options, task.eval_config_class,
                     optional=("checkpoint",) if shipped else ())  # fmt: skip
        if shipped:
            e.add_argument("--model", choices=shipped, metavar="NAME",
                           help="evaluate a network shipped with psal instead of --checkpoint: "
                           + ", ".join(shipped))  # fmt: skip
        e.add_argument("--json", help="write the metrics to this JSON file")
        e.set_defaults(func=_eval, task_class=task)


def _flag_values(args: argparse.Namespace, table: Any) -> dict[str, Any]:
    return {
        opt.key: getattr(args, opt.key)
        for opt in table
        if opt.flag is not None and getattr(args, opt.key, None) is not None
    }


def build_config(args: argparse.Namespace) -> tuple[Any, Path | None]:
    """The run's config and the checkpoint to resume (None for a new run)."""
    from ..models.io import resolve_weights_file
    from ..training import Trainer, apply_overrides, config_from_dict, load_config_file
    from ..training.checkpoint import run_folder

    task = args.task_class
    flags = _flag_values(args, task.options)
    resume = None
    config = task.config_class()
    if args.resume is not None:
        where = args.resume
        if where == "auto":
            if "out" not in flags:
                raise CLIError("--resume without a checkpoint needs --out (the run folder)")
            where = flags["out"]
        try:
            resume = resolve_weights_file(where)
        except FileNotFoundError as err:
            raise CLIError(f"--resume: {err}") from None
        config = Trainer.config_from_checkpoint(resume, task=task.name)
        # Write only where the user points: --out, or the checkpoint's own run folder
        # (never the folder named inside the checkpoint).
        config = dataclasses.replace(config, out=str(run_folder(resume)))
    if args.config:
        config = config_from_dict(load_config_file(args.config), config)
    overrides = [f"{k}={v}" for k, v in flags.items()]
    if args.no_tensorboard:
        overrides.append("tensorboard=false")
    if args.no_progress:
        overrides.append("progress=false")
    config = apply_overrides(config, overrides)
    config = apply_overrides(config, list(args.overrides))
    if args.resume is not None and "out" not in flags:
        config = dataclasses.replace(config, out=str(run_folder(resume)))
    return config, resume  # checked by the Trainer before anything is written


def _train(args: argparse.Namespace) -> int:
    from ..training import Trainer, TrainingDiverged

    config, resume = build_config(args)
    if config.device != "auto":
        resolve_device(config.device)  # clear error for a missing device
    trainer = Trainer(config, resume=resume)
    start = trainer.step
    ended = False
    try:
        results = trainer.fit()
        ended = True
    except TrainingDiverged as err:
        raise CLIError(str(err)) from err
    finally:
        trainer.close(wait=ended)  # after an error, leave without waiting for the others
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
    from ..training import format_table
    from ..utils.jsonfile import write_json

    task = args.task_class
    config = dataclasses.replace(task.eval_config_class(), **_flag_values(args, task.eval_options))
    model = getattr(args, "model", None)
    if model is not None and config.checkpoint:
        raise CLIError("--model and --checkpoint both choose a network: give one")
    if model is None and not config.checkpoint:
        raise CLIError("--checkpoint (or --model, a network shipped with psal) is required")
    if config.device != "auto":
        resolve_device(config.device)
    if args.json is not None:  # before the evaluation, not after it
        from ..utils.atomic import check_writable

        check_not_special(args.json, "--json")
        check_writable(args.json, "--json")  # also refuses an empty name
    with contextlib.ExitStack() as stack:
        if model is not None:
            from importlib import resources

            from ..weights import pretrained_file

            path = stack.enter_context(resources.as_file(pretrained_file(task.name, model)))
            config = dataclasses.replace(config, checkpoint=str(path))
        report = task.evaluate(config, progress=sys.stderr.isatty())
    label = model or Path(config.checkpoint).name
    print(format_table(report.get("rows") or {label: report["metrics"]}))
    if args.json is not None:
        source = {"model": model} if model is not None else {"checkpoint": config.checkpoint}
        write_json(args.json, {**source, "data": config.data, **report})
    return 0

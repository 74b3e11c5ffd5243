"""One table per task of its settings: config key, command-line flag, help, choices.

argparse (:mod:`psal.cli.train`), the config checks and every error message read the
same table, so a flag, its key and its allowed values are written once. An option may
have no flag (then it is set with ``key=value`` on the command line) and no choices.

Example:
    >>> table = OptionTable([Option("steps", "--steps", "training steps")])
    >>> table.key_name("steps"), table.key_name("optim.lr")
    ('steps (--steps)', 'optim.lr')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..._checks import SEED_LIMIT

__all__ = ["BASE_OPTIONS", "ConfigError", "Option", "OptionTable", "get_key"]


class ConfigError(ValueError):
    """A bad config value; ``key`` is the dotted config key it concerns."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Option:
    """One setting of a task.

    Attributes:
        key: dotted config key (``data.image_size``, ``model.kwargs.width``).
        flag: its command-line flag (``--image-size``), or None.
        help: one line for ``--help``; the default value is appended from the library.
        choices: the allowed values, or a function returning them (a registry's names),
            or None for any value of the field's type.
        required: the command line requires the flag.
    """

    key: str
    flag: str | None = None
    help: str = ""
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    required: bool = False

    def allowed(self) -> tuple[str, ...] | None:
        """The allowed values (calling ``choices`` if it is a function), or None."""
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)


def get_key(config: Any, key: str) -> Any:
    """The value at a dotted ``key`` of a config (dataclass attributes, then dict keys)."""
    value = config
    for part in key.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


class OptionTable:
    """The options of a task, by key; formats keys with their flags for messages."""

    def __init__(self, options: Iterable[Option]) -> None:
        self.options: dict[str, Option] = {}
        for opt in options:
            self.options[opt.key] = opt  # a later entry (the task's) replaces a base one

    def __iter__(self):
        return iter(self.options.values())

    def extend(self, options: Iterable[Option]) -> OptionTable:
        """A new table: these options, then ``options`` (replacing any of the same key)."""
        return OptionTable([*self, *options])

    def flag(self, key: str) -> str | None:
        """The command-line flag of ``key``, if it has one."""
        opt = self.options.get(key)
        return opt.flag if opt else None

    def key_name(self, key: str) -> str:
        """``key`` with its flag, if it has one: ``data.image_size (--image-size)``."""
        flag = self.flag(key)
        return f"{key} ({flag})" if flag else key

    # ------------------------------------------------------------------ checks
    def fail(self, key: str, expected: str, value: Any) -> None:
        """Raise :class:`ConfigError` ``"<key (flag)> must be <expected>, got <value>"``."""
        raise ConfigError(f"{self.key_name(key)} must be {expected}, got {value!r}", key)

    def check_choices(self, config: Any) -> None:
        """Every option with choices holds one of them."""
        for opt in self:
            allowed = opt.allowed()
            if allowed is not None:
                try:
                    value = get_key(config, opt.key)
                except (KeyError, AttributeError):
                    continue  # a kwargs entry left to the model's default
                if value not in allowed:
                    self.fail(opt.key, "one of " + ", ".join(allowed), value)

    def integer(self, config: Any, key: str, low: int, high: int | None = None) -> None:
        """``low <= value (<= high)``."""
        value = get_key(config, key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, "an integer", value)
        if value < low or (high is not None and value > high):
            self.fail(key, f">= {low}" if high is None else f"in [{low}, {high}]", value)

    def number(
        self, config: Any, key: str, low: float, low_open: bool, high: float | None = None
    ) -> None:
        """A finite number ``> low`` (or ``>=``), and ``< high`` if given."""
        value = get_key(config, key)
        ok = isinstance(value, int | float) and math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low)
        if high is not None:
            ok = ok and value < high
        if not ok:
            span = f"{'>' if low_open else '>='} {low:g}"
            if high is not None:
                span = f"in {'(' if low_open else '['}{low:g}, {high:g})"
            self.fail(key, f"a finite number {span}" if high is None else span, value)

    def check_eval(self, config: Any) -> None:
        """The checks every ``psal eval TASK`` config shares: choices, the two paths, limit."""
        self.check_choices(config)
        for key in ("checkpoint", "data"):
            if not getattr(config, key):
                self.fail(key, "a path", getattr(config, key))
        if config.limit is not None:
            self.integer(config, "limit", 1)

    def _check_writable_folder(self, key: str, path: str) -> None:
        """A folder that is, or can be made, writable: checked before any work.

        The run folder is made after the first step; a path that is a file, or under
        one, or on a read-only or forbidden place, would stop the run there with a bare
        OS error. Nothing is created here.
        """
        import os
        import tempfile
        from pathlib import Path

        p = Path(path)  # as the engine uses it (a quoted "~" is a folder named "~")
        if p.exists() and not p.is_dir():
            raise ConfigError(f"{self.key_name(key)} {path}: is a file, not a folder", key)
        probe = p
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise ConfigError(f"{self.key_name(key)} {path}: {probe} is a file, not a folder", key)
        try:  # os.access says yes to root on places that refuse it (/sys, /proc)
            os.rmdir(tempfile.mkdtemp(prefix=".psal-probe-", dir=probe))
        except OSError as err:
            raise ConfigError(
                f"{self.key_name(key)} {path}: cannot write in {probe} ({err.strerror or err})",
                key,
            ) from None

    def check_base(self, config: Any) -> None:
        """The checks of the shared settings (:class:`~.schema.BaseConfig`)."""
        self.check_choices(config)
        if not isinstance(config.out, str) or not config.out.strip():
            self.fail("out", "a folder path", config.out)
        self._check_writable_folder("out", config.out)
        if not isinstance(config.data.path, str) or not config.data.path:
            self.fail("data.path", "a folder of training images", config.data.path)
        if not isinstance(config.model.name, str) or not config.model.name:
            self.fail("model.name", "a registered model name", config.model.name)
        self.integer(config, "steps", 0)
        self.integer(config, "batch_size", 1)
        if not (isinstance(config.seed, int) and 0 <= config.seed < SEED_LIMIT):
            self.fail("seed", "in [0, 2**63)", config.seed)
        for key in ("log_every", "image_every", "val_every", "save_every", "keep_checkpoints"):
            self.integer(config, key, 0)
        self.number(config, "data.val_fraction", 0, False, 1)
        self.integer(config, "data.val_max", 0)
        self.integer(config, "data.num_workers", 0)
        self.number(config, "optim.lr", 0, True)
        for i in range(2):
            beta = config.optim.betas[i]
            if not (math.isfinite(beta) and 0 <= beta < 1):
                self.fail(f"optim.betas[{i}]", "in [0, 1)", beta)
        self.number(config, "optim.grad_clip", 0, False)
        self.integer(config, "optim.warmup_steps", 0)


#: The options every task has (a task adds its own: ``BASE_OPTIONS.extend([...])``).
BASE_OPTIONS = OptionTable(
    [
        Option("data.path", "--data", "folder of training images (searched recursively)"),
        Option("out", "--out", "run folder for checkpoints and logs"),
        Option("steps", "--steps", "total training steps"),
        Option("batch_size", "--batch-size", "images per batch and process"),
        Option("data.num_workers", "--num-workers", "data loader processes per process"),
        Option("seed", "--seed", "random seed, >= 0"),
        Option("device", "--device", "torch device: auto, cpu, cuda, cuda:N, mps"),
        Option("optim.amp", None, "mixed precision", ("auto", "bf16", "fp16", "off")),
        Option("optim.scheduler", None, "learning-rate schedule", ("none", "cosine", "step")),
    ]
)

"""Training settings as dataclasses; config files give defaults, the command line overrides.

Precedence, lowest first: the dataclass defaults (the paper's settings), a config file
(JSON, or TOML on Python >= 3.11) with the same nested structure, then ``key=value``
overrides with dotted names (``model.width=8``, ``optim.n_critic=1``). The final
:class:`TrainConfig` is stored with every checkpoint (see
:mod:`psal.training.checkpoint`).

Example:
    >>> cfg = apply_overrides(TrainConfig(), ["model.width=8", "data.image_size=64"])
    >>> cfg.model.width, cfg.data.image_size
    (8, 64)
    >>> config_from_dict(config_to_dict(cfg)) == cfg
    True

A config file, for instance ``small.json``::

    {"model": {"width": 16, "attention": "psal",
               "attention_options": {"k": 4, "aggregation": "patch"}},
     "data": {"image_size": 128}, "optim": {"n_critic": 2}, "steps": 20000}
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._checks import SEED_LIMIT

__all__ = [
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config_file",
    "validate_config",
]


@dataclass
class ModelConfig:
    """The networks.

    Attributes:
        generator: registered generator name.
        width: the generator's base channel count ``c`` (32 in the paper).
        attention: a name of :func:`psal.layers.list_attentions` (``"contextual"``,
            ``"dense"``, ``"none"``, ``"psal"``).
        attention_options: options of the attention adapter (see
            :mod:`psal.layers.registry`).
        critic: ``"wgan-gp"`` (DeepFill v1: global and local WGAN critics with gradient
            penalty) or ``"sn-patchgan"`` (DeepFill v2, hinge loss; for free-form masks).
        critic_width: channels of the critics' first layer (64 in the paper).
    """

    generator: str = "deepfill_v1"
    width: int = 32
    attention: str = "contextual"
    attention_options: dict[str, Any] = field(default_factory=dict)
    critic: str = "wgan-gp"
    critic_width: int = 64


@dataclass
class DataConfig:
    """The images and their holes.

    Attributes:
        path: folder of images (searched recursively).
        image_size: side of the training crops.
        resize: ``"crop"`` (random crop) or ``"resize"`` (whole image resized).
        masks: ``"rect"`` (v1), ``"free-form"`` (v2 brush strokes) or ``"mixed"``.
        hole_size: side of the rectangle box (and of the local critic's input); None:
            ``image_size // 2``.
        max_delta: how much a rectangle's side may shrink; None: ``image_size // 8``.
        val_fraction: fraction of the images held out for validation.
        val_max: at most this many validation images.
        num_workers: data loader processes per training process.
    """

    path: str = ""
    image_size: int = 256
    resize: str = "crop"
    masks: str = "rect"
    hole_size: int | None = None
    max_delta: int | None = None
    val_fraction: float = 0.05
    val_max: int = 200
    num_workers: int = 2


@dataclass
class LossConfig:
    """Loss weights (those of the DeepFill v1 reference configuration).

    Total generator loss: ``l1_weight * (coarse_weight * hole_l1(coarse) + hole_l1(fine))
    + ae_weight * (coarse_weight * known_l1(coarse) + known_l1(fine)) + adv_weight *
    (global_adv_weight * adv_global + adv_local)``.

    Attributes:
        l1_weight: spatially discounted L1 in the hole.
        ae_weight: L1 outside the hole.
        coarse_weight: relative weight of the coarse output's L1 terms.
        adv_weight: adversarial term.
        global_adv_weight: global critic's share relative to the local one.
        gp_weight: gradient penalty lambda.
        gp_masked: weight the penalised gradient by the hole mask (the reference).
        discount_gamma: spatial discount (0.99 in the paper).
    """

    l1_weight: float = 1.2
    ae_weight: float = 1.2
    coarse_weight: float = 1.2
    adv_weight: float = 0.001
    global_adv_weight: float = 1.0
    gp_weight: float = 10.0
    gp_masked: bool = True
    discount_gamma: float = 0.99


@dataclass
class OptimConfig:
    """Optimisation.

    Attributes:
        lr: Adam learning rate of the generator.
        critic_lr: Adam learning rate of the critics.
        betas: Adam betas.
        n_critic: critic steps per generator step (each on a fresh batch).
        grad_clip: clip the gradient norm of each network to this (0 = off).
        amp: mixed precision: ``"auto"`` (bfloat16 on CUDA when supported, float16
            otherwise; off on CPU), ``"bf16"``, ``"fp16"`` or ``"off"``.
    """

    lr: float = 1e-4
    critic_lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    n_critic: int = 5
    grad_clip: float = 0.0
    amp: str = "auto"


@dataclass
class TrainConfig:
    """A whole training run.

    Attributes:
        model: see :class:`ModelConfig`.
        data: see :class:`DataConfig`.
        loss: see :class:`LossConfig`.
        optim: see :class:`OptimConfig`.
        out: run folder (checkpoints, TensorBoard logs, config).
        steps: generator steps in total.
        batch_size: images per batch and per process.
        seed: seed of initialisation, data order, masks and training randomness.
        device: ``auto``, ``cpu``, ``cuda``; under torchrun each process takes
            ``cuda:LOCAL_RANK``.
        log_every: steps between scalar logs.
        image_every: steps between TensorBoard image grids (0 = never).
        val_every: steps between validations (0 = only at the end).
        save_every: steps between checkpoints (one is always written at the end).
        keep_checkpoints: how many recent checkpoints to keep.
        tensorboard: write TensorBoard logs (needs the ``tensorboard`` package).
        progress: show a progress bar.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    out: str = "runs/inpaint"
    steps: int = 100_000
    batch_size: int = 16
    seed: int = 0
    device: str = "auto"
    log_every: int = 50
    image_every: int = 1000
    val_every: int = 2000
    save_every: int = 1000
    keep_checkpoints: int = 3
    tensorboard: bool = True
    progress: bool = True


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain nested dicts (JSON-ready)."""
    out = dataclasses.asdict(config)
    return json.loads(json.dumps(out))


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Check/convert a value (from JSON, TOML or a ``key=value`` string) to type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except (TypeError, ValueError) as err:
                errors.append(str(err))
        raise ValueError(f"{name}: cannot use {value!r} ({'; '.join(errors)})")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "true",
            "1",
            "yes",
            "on",
            "false",
            "0",
            "no",
            "off",
        ):
            return value.lower() in ("true", "1", "yes", "on")
        raise ValueError(f"{name} must be a boolean (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str):
            value = _parse_literal(value)
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",")]
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ValueError(f"{name} must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if isinstance(value, str):
            value = _parse_literal(value)
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a table/object, got {value!r}")
        return dict(value)
    raise TypeError(f"{name}: unsupported field type {tp!r}")  # pragma: no cover


class _Whole(dict):
    """A dict given whole on the command line (replaces the field instead of merging)."""


def _parse_literal(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def config_from_dict(
    data: dict[str, Any], base: Any = None, prefix: str = "", _from_text: bool = False
) -> Any:
    """Build a config from nested dicts, on top of ``base`` (default: the defaults).

    Unknown keys are errors (a typo must not be ignored silently); values are checked
    against the field types. Dict-valued fields (``attention_options``) are replaced as a
    whole.
    """
    base = TrainConfig() if base is None else base
    if not isinstance(data, dict):
        raise ValueError(f"{prefix or 'config'} must be a table/object, got {data!r}")
    fields = _fields(type(base))
    changes: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ValueError(f"unknown config key {name!r}; known keys here: {known}")
        _, tp = fields[key]
        if _is_dataclass_type(tp):
            changes[key] = config_from_dict(value, getattr(base, key), f"{name}.", _from_text)
        elif isinstance(value, _Whole):
            changes[key] = _coerce(dict(value), tp, name)
        elif _from_text and typing.get_origin(tp) is dict and isinstance(value, dict):
            # ``model.attention_options.k=4``: merge one option, values parsed as JSON.
            merged = dict(getattr(base, key))
            merged.update(
                {k: _parse_literal(v) if isinstance(v, str) else v for k, v in value.items()}
            )
            changes[key] = merged
        else:
            changes[key] = _coerce(value, tp, name)
    return dataclasses.replace(base, **changes)


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """Apply ``section.key=value`` strings.

    Values are converted to the field's type (``true``, ``8``, ``1e-4``, ``0.5,0.9``);
    JSON objects and lists are parsed. A dict field can be set whole
    (``model.attention_options={"k": 4}``) or one key at a time
    (``model.attention_options.k=4``, the value parsed as JSON when possible).
    """
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like section.key=value")
        parts = key.replace("-", "_").split(".")
        target = nested
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ValueError(f"override {item!r} conflicts with another override")
        value: Any = text
        parsed = _parse_literal(text)
        if isinstance(parsed, dict):
            value = _Whole(parsed)
        elif isinstance(parsed, list) or parsed is None:
            value = parsed
        target[parts[-1]] = value
    return config_from_dict(nested, config, _from_text=True)


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON (``.json``) or TOML (``.toml``, Python >= 3.11) config file as dicts."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"config file {str(p)!r} is not valid JSON: {err}") from None
    elif suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # pragma: no cover - Python 3.10
            raise ValueError(
                f"config file {str(p)!r}: TOML needs Python >= 3.11 (tomllib); use JSON"
            ) from None
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config file {str(p)!r} is not valid TOML: {err}") from None
    else:
        raise ValueError(f"config file {str(p)!r} must end in .json or .toml")
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(p)!r} must hold an object/table at the top")
    return data


#: The command-line flags of ``psal train inpaint`` that set config keys (for messages).
FLAGS = {
    "data.path": "--data",
    "out": "--out",
    "steps": "--steps",
    "data.image_size": "--image-size",
    "batch_size": "--batch-size",
    "model.attention": "--attention",
    "model.critic": "--critic",
    "data.masks": "--masks",
    "model.width": "--width",
    "data.num_workers": "--num-workers",
    "seed": "--seed",
    "device": "--device",
}

#: Largest accepted ``seed``: psal's one seed limit (seed + rank and step offsets still
#: fit torch's unsigned 64 bits).
MAX_SEED = SEED_LIMIT - 1

_CHOICES = {
    "model.critic": ("wgan-gp", "sn-patchgan"),
    "data.resize": ("crop", "resize"),
    "data.masks": ("rect", "free-form", "mixed"),
    "optim.amp": ("auto", "bf16", "fp16", "off"),
}


def key_name(key: str) -> str:
    """``key`` with its command-line flag, if it has one: ``data.image_size (--image-size)``."""
    return f"{key} ({FLAGS[key]})" if key in FLAGS else key


def validate_config(config: TrainConfig) -> TrainConfig:
    """Check the values of a :class:`TrainConfig` (not only their types).

    Checks what can be checked without building the networks (the image size against
    the generator's stride and attention is checked by the trainer).

    Raises:
        ValueError: a bad value; the message names the key (and its flag) and what was
            expected.
    """

    def fail(key: str, expected: str, value: Any) -> None:
        raise ValueError(f"{key_name(key)} must be {expected}, got {value!r}")

    def integer(key: str, value: int, low: int, high: int | None = None) -> None:
        if value < low or (high is not None and value > high):
            fail(key, f">= {low}" if high is None else f"in [{low}, {high}]", value)

    def number(key: str, value: float, low: float, low_open: bool, high: float | None = None):
        ok = math.isfinite(value) and (value > low if low_open else value >= low)
        if high is not None:
            ok = ok and value < high
        if not ok:
            span = f"{'>' if low_open else '>='} {low:g}"
            if high is not None:
                span = f"in {'(' if low_open else '['}{low:g}, {high:g})"
            fail(key, f"a finite number {span}" if high is None else span, value)

    c, m, d, o, ls = config, config.model, config.data, config.optim, config.loss
    for key, choices in _CHOICES.items():
        section, _, name = key.rpartition(".")
        value = getattr(getattr(c, section) if section else c, name)
        if value not in choices:
            fail(key, "one of " + ", ".join(choices), value)
    if not isinstance(c.out, str) or not c.out.strip():
        fail("out", "a folder path", c.out)
    integer("steps", c.steps, 0)
    integer("batch_size", c.batch_size, 1)
    integer("seed", c.seed, 0, MAX_SEED)
    for key in ("log_every", "image_every", "val_every", "save_every", "keep_checkpoints"):
        integer(key, getattr(c, key), 0)
    integer("model.width", m.width, 2)
    integer("model.critic_width", m.critic_width, 1)
    integer("data.image_size", d.image_size, 4)
    if d.hole_size is not None and not 1 <= d.hole_size <= d.image_size:
        fail("data.hole_size", f"None or in [1, data.image_size = {d.image_size}]", d.hole_size)
    if d.max_delta is not None:
        integer("data.max_delta", d.max_delta, 0)
    number("data.val_fraction", d.val_fraction, 0, False, 1)
    integer("data.val_max", d.val_max, 0)
    integer("data.num_workers", d.num_workers, 0)
    number("optim.lr", o.lr, 0, True)
    number("optim.critic_lr", o.critic_lr, 0, True)
    for i, beta in enumerate(o.betas):
        number(f"optim.betas[{i}]", beta, 0, False, 1)
    integer("optim.n_critic", o.n_critic, 0)
    number("optim.grad_clip", o.grad_clip, 0, False)
    for f in dataclasses.fields(ls):
        if f.name not in ("gp_masked", "discount_gamma"):
            number(f"loss.{f.name}", getattr(ls, f.name), 0, False)
    if not (math.isfinite(ls.discount_gamma) and 0 < ls.discount_gamma <= 1):
        fail("loss.discount_gamma", "in (0, 1]", ls.discount_gamma)
    return config

"""Settings of the ``inpaint`` task (DeepFill v1/v2 training) and its option table.

Example:
    >>> from psal.training import InpaintConfig, apply_overrides
    >>> cfg = apply_overrides(InpaintConfig(), ["model.kwargs.width=8", "data.image_size=64"])
    >>> cfg.model.kwargs["width"], cfg.data.image_size
    (8, 64)

A config file, for instance ``small.json``::

    {"model": {"kwargs": {"width": 16, "attention": "psal",
                          "attention_options": {"k": 4, "aggregation": "patch"}}},
     "data": {"image_size": 128}, "optim": {"n_critic": 2}, "steps": 20000}
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...config import (
    BASE_OPTIONS,
    BaseConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    Option,
    OptionTable,
)

__all__ = [
    "EVAL_OPTIONS",
    "INPAINT_OPTIONS",
    "InpaintConfig",
    "InpaintData",
    "InpaintEvalConfig",
    "InpaintLoss",
    "InpaintModel",
    "InpaintOptim",
]


def _generator_kwargs() -> dict[str, Any]:
    return {"width": 32, "attention": "contextual", "attention_options": {}}


@dataclass
class InpaintModel(ModelConfig):
    """The generator (``name`` + ``kwargs`` for ``create_model``) and its critics.

    Attributes:
        name: registered generator name.
        kwargs: the generator's arguments: ``width`` (base channels ``c``, 32 in the
            paper), ``attention`` (a name of :func:`psal.layers.list_attentions`) and
            ``attention_options`` (see :mod:`psal.layers.registry`).
        critic: ``"wgan-gp"`` (DeepFill v1: global and local WGAN critics with gradient
            penalty) or ``"sn-patchgan"`` (DeepFill v2, hinge loss; for free-form masks).
        critic_width: channels of the critics' first layer (64 in the paper).
    """

    name: str = "deepfill_v1"
    kwargs: dict[str, Any] = field(default_factory=_generator_kwargs)
    critic: str = "wgan-gp"
    critic_width: int = 64


@dataclass
class InpaintData(DataConfig):
    """The images and their holes.

    Attributes:
        image_size: side of the training crops.
        resize: ``"crop"`` (random crop) or ``"resize"`` (whole image resized).
        masks: ``"rect"`` (v1), ``"free-form"`` (v2 brush strokes) or ``"mixed"``.
        hole_size: side of the rectangle box (and of the local critic's input); None:
            ``image_size // 2``.
        max_delta: how much a rectangle's side may shrink; None: ``image_size // 8``.
    """

    image_size: int = 256
    resize: str = "crop"
    masks: str = "rect"
    hole_size: int | None = None
    max_delta: int | None = None


@dataclass
class InpaintLoss:
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
        discount: the discounted L1's weighting (:mod:`psal.models.losses`): ``"box"``
            (the reference code's: the whole hole box weighted by its distance to the
            box's edges, averaged over the box), ``"nearest"`` (distance to the nearest
            known pixel, averaged over the hole; for free-form holes) or ``"auto"``
            (``box`` for rectangle masks, ``nearest`` otherwise).
    """

    l1_weight: float = 1.2
    ae_weight: float = 1.2
    coarse_weight: float = 1.2
    adv_weight: float = 0.001
    global_adv_weight: float = 1.0
    gp_weight: float = 10.0
    gp_masked: bool = True
    discount_gamma: float = 0.99
    discount: str = "auto"


@dataclass
class InpaintOptim(OptimConfig):
    """Optimisation (Adam with the reference's betas).

    Attributes:
        critic_lr: Adam learning rate of the critics (``lr`` is the generator's).
        n_critic: critic steps per generator step (each on a fresh batch).
    """

    betas: tuple[float, float] = (0.5, 0.9)
    critic_lr: float = 1e-4
    n_critic: int = 5


@dataclass
class InpaintConfig(BaseConfig):
    """A DeepFill training run (see :class:`~psal.training.config.BaseConfig`)."""

    model: InpaintModel = field(default_factory=InpaintModel)
    data: InpaintData = field(default_factory=InpaintData)
    optim: InpaintOptim = field(default_factory=InpaintOptim)
    loss: InpaintLoss = field(default_factory=InpaintLoss)
    out: str = "runs/inpaint"

    #: Keys of psal < 0.2 (and of checkpoints of format version 1) -> their keys now.
    ALIASES: ClassVar[dict[str, str]] = {
        "model.generator": "model.name",
        "model.width": "model.kwargs.width",
        "model.attention": "model.kwargs.attention",
        "model.attention_options": "model.kwargs.attention_options",
    }


def _attention_names() -> list[str]:
    from ....models import list_attentions

    return list_attentions()


#: The one table of ``psal train inpaint``'s flags, keys and allowed values.
INPAINT_OPTIONS = BASE_OPTIONS.extend(
    [
        Option("out", "--out", "run folder for checkpoints and logs"),
        Option("steps", "--steps", "total generator steps"),
        Option("data.image_size", "--image-size", "side of the training crops, a multiple of 4"),
        Option("model.kwargs.attention", "--attention", "attention layer", _attention_names),
        Option("model.critic", "--critic", "critic type", ("wgan-gp", "sn-patchgan")),
        Option("data.masks", "--masks", "hole masks", ("rect", "free-form", "mixed")),
        Option("model.kwargs.width", "--width", "generator base channels, >= 2 (paper: 32)"),
        Option("data.resize", None, "crop or resize the images", ("crop", "resize")),
        Option("loss.discount", None, "discounted L1 weighting", ("auto", "box", "nearest")),
    ]
)


def check_inpaint_config(config: InpaintConfig) -> None:
    """The value checks of an :class:`InpaintConfig`.

    The image size against the generator's stride is checked when it is built.
    """
    opts = INPAINT_OPTIONS
    opts.check_base(config)
    kw = config.model.kwargs
    width = kw.get("width", 32)
    if isinstance(width, bool) or not isinstance(width, int):
        opts.fail("model.kwargs.width", "an integer", width)
    if width < 2:
        opts.fail("model.kwargs.width", ">= 2", width)
    if not isinstance(kw.get("attention_options", {}), dict):
        opts.fail("model.kwargs.attention_options", "a table/object", kw["attention_options"])
    opts.integer(config, "model.critic_width", 1)
    d = config.data
    opts.integer(config, "data.image_size", 4)
    if d.hole_size is not None and not 1 <= d.hole_size <= d.image_size:
        opts.fail(
            "data.hole_size", f"None or in [1, data.image_size = {d.image_size}]", d.hole_size
        )
    if d.max_delta is not None:
        opts.integer(config, "data.max_delta", 0)
    opts.number(config, "optim.critic_lr", 0, True)
    opts.integer(config, "optim.n_critic", 0)
    # DeepFill trains at constant rates: the task makes no schedule, so these were ignored
    if config.optim.scheduler != "none":
        opts.fail("optim.scheduler", "'none' for inpaint (constant learning rates)",
                  config.optim.scheduler)  # fmt: skip
    if config.optim.warmup_steps != 0:
        opts.fail("optim.warmup_steps", "0 for inpaint (no schedule)", config.optim.warmup_steps)
    loss = config.loss
    for f in dataclasses.fields(loss):
        if f.name not in ("gp_masked", "discount_gamma", "discount"):
            opts.number(config, f"loss.{f.name}", 0, False)
    if not (math.isfinite(loss.discount_gamma) and 0 < loss.discount_gamma <= 1):
        opts.fail("loss.discount_gamma", "in (0, 1]", loss.discount_gamma)


# ---------------------------------------------------------------- evaluation
@dataclass
class InpaintEvalConfig:
    """Settings of ``psal eval inpaint``.

    Attributes:
        checkpoint: weights file or run folder.
        data: folder of images (searched recursively).
        image_size: image side (None: the side the checkpoint was trained at).
        resize: ``"crop"`` (centre crop) or ``"resize"``.
        masks: ``"rect"``, ``"free-form"`` or ``"mixed"``.
        mask_seed: seed of the fixed masks.
        batch_size: images per batch.
        limit: evaluate only the first ``limit`` images (None: all).
        seed: the network's own randomness (PatchMatch in psal attention).
        device: ``auto``, ``cpu``, ``cuda``, ...
    """

    checkpoint: str = ""
    data: str = ""
    image_size: int | None = None
    resize: str = "crop"
    masks: str = "rect"
    mask_seed: int = 0
    batch_size: int = 8
    limit: int | None = None
    seed: int = 0
    device: str = "auto"


EVAL_OPTIONS = OptionTable(
    [
        Option("checkpoint", "--checkpoint", "weights file or run folder", required=True),
        Option("data", "--data", "folder of images (searched recursively)", required=True),
        Option("image_size", "--image-size", "image side, >= 8 (default: the training size)"),
        Option("resize", "--resize", "centre crop or resize", ("crop", "resize")),
        Option("masks", "--masks", "hole masks", ("rect", "free-form", "mixed")),
        Option("mask_seed", "--mask-seed", "seed of the fixed masks"),
        Option("batch_size", "--batch-size", "images per batch"),
        Option("limit", "--limit", "evaluate only the first N images (N >= 1)"),
        Option("seed", "--seed", "random seed of the network (PatchMatch)"),
        Option("device", "--device", "torch device: auto, cpu, cuda, cuda:N, mps"),
    ]
)


def check_eval_config(config: InpaintEvalConfig) -> None:
    """The value checks of an :class:`InpaintEvalConfig`."""
    opts = EVAL_OPTIONS
    opts.check_eval(config)
    if config.image_size is not None:
        opts.integer(config, "image_size", 8)
    opts.integer(config, "batch_size", 1)
    opts.integer(config, "mask_seed", 0)
    opts.integer(config, "seed", 0)

"""Settings of the ``colorize`` task and its option tables.

Example:
    >>> from psal.training import apply_overrides
    >>> from psal.training.tasks.colorize import ColorizeConfig
    >>> cfg = apply_overrides(ColorizeConfig(), ["model.kwargs.attention=none"])
    >>> cfg.model.kwargs["attention"], cfg.data.pairs
    ('none', 'auto')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ....data.colorize import PAIR_KINDS
from ....models.colorizer import ATTENTION_MODES
from ...config import BASE_OPTIONS, BaseConfig, DataConfig, ModelConfig, Option, OptionTable

__all__ = ["COLORIZE_OPTIONS", "EVAL_OPTIONS", "ColorizeConfig", "ColorizeEvalConfig"]


def _network_kwargs() -> dict[str, Any]:
    return {"width": 16, "attention": "psal", "attention_options": {}}


@dataclass
class ColorizeModel(ModelConfig):
    """The network: ``name`` + ``kwargs`` for ``create_model`` (see GuidedColorizer)."""

    name: str = "guided_colorizer"
    kwargs: dict[str, Any] = field(default_factory=_network_kwargs)


@dataclass
class ColorizeData(DataConfig):
    """The pairs (:mod:`psal.data.colorize`).

    Attributes:
        image_size: side of the square target and reference crops (multiple of 4).
        pairs: ``"auto"``, ``"video"`` (frame folders) or ``"photos"`` (single photos,
            the reference a random geometric transform of the photo).
        max_gap: video pairs: largest frame distance.
        pair_seed: seed of the fixed validation pairs.
    """

    image_size: int = 128
    pairs: str = "auto"
    max_gap: int = 4
    pair_seed: int = 0


@dataclass
class ColorizeLoss:
    """Loss weights: ``huber(chroma) + grad_weight * L1(chroma gradients)``.

    Attributes:
        huber_delta: Huber transition (chroma on a 0-1 scale); 0 gives plain L1.
        grad_weight: weight of the L1 distance between the horizontal and vertical
            differences of predicted and true chroma (coherent colour, edges kept).
        attended_weight: weight of the same chroma loss on the attended chroma (before the
            decoder): teaches the encoders to match the right reference patches.
    """

    huber_delta: float = 0.02
    grad_weight: float = 0.5
    attended_weight: float = 0.5


@dataclass
class ColorizeConfig(BaseConfig):
    """A colorizer training run (see :class:`~psal.training.config.BaseConfig`)."""

    model: ColorizeModel = field(default_factory=ColorizeModel)
    data: ColorizeData = field(default_factory=ColorizeData)
    loss: ColorizeLoss = field(default_factory=ColorizeLoss)
    out: str = "runs/colorize"
    batch_size: int = 8
    image_every: int = 500
    val_every: int = 1000
    save_every: int = 500


COLORIZE_OPTIONS = BASE_OPTIONS.extend(
    [
        Option("data.image_size", "--image-size", "side of the training crops, a multiple of 4"),
        Option("model.kwargs.attention", "--attention", "attention layer", ATTENTION_MODES),
        Option("model.kwargs.width", "--width", "base channels of the network, >= 2"),
        Option("data.pairs", "--pairs", "kind of pairs", PAIR_KINDS),
        Option("data.max_gap", "--max-gap", "video pairs: largest frame distance"),
    ]
)


def check_colorize_config(config: ColorizeConfig) -> None:
    """The value checks of a :class:`ColorizeConfig`."""
    opts = COLORIZE_OPTIONS
    opts.check_base(config)
    kw = config.model.kwargs
    width = kw.get("width", 16)
    if isinstance(width, bool) or not isinstance(width, int) or width < 2:
        opts.fail("model.kwargs.width", "an integer >= 2", width)
    if not isinstance(kw.get("attention_options", {}), dict):
        opts.fail("model.kwargs.attention_options", "a table/object", kw["attention_options"])
    opts.integer(config, "data.image_size", 16)
    if config.data.image_size % 4:
        opts.fail("data.image_size", "a multiple of 4", config.data.image_size)
    opts.integer(config, "data.max_gap", 1)
    opts.integer(config, "data.pair_seed", 0)
    for key in ("huber_delta", "grad_weight", "attended_weight"):
        opts.number(config, f"loss.{key}", 0, False)


@dataclass
class ColorizeEvalConfig:
    """Settings of ``psal eval colorize``.

    Attributes:
        checkpoint: weights file or run folder.
        data: folder of photos or frame folders.
        pairs: ``"auto"``, ``"video"`` or ``"photos"``.
        image_size: crop side (None: the training size).
        max_gap: video pairs: largest frame distance.
        pair_seed: seed of the fixed pairs.
        limit: evaluate only the first ``limit`` pairs (None: all).
        seed: the network's own randomness (PatchMatch in psal attention).
        device: ``auto``, ``cpu``, ``cuda``, ...
    """

    checkpoint: str = ""
    data: str = ""
    pairs: str = "auto"
    image_size: int | None = None
    max_gap: int = 4
    pair_seed: int = 0
    limit: int | None = None
    seed: int = 0
    device: str = "auto"


EVAL_OPTIONS = OptionTable(
    [
        Option("checkpoint", "--checkpoint", "weights file or run folder", required=True),
        Option("data", "--data", "folder of photos or frame folders", required=True),
        Option("pairs", "--pairs", "kind of pairs", PAIR_KINDS),
        Option("image_size", "--image-size", "crop side, a multiple of 4 (default: training size)"),
        Option("max_gap", "--max-gap", "video pairs: largest frame distance"),
        Option("pair_seed", "--pair-seed", "seed of the fixed pairs"),
        Option("limit", "--limit", "evaluate only the first N pairs (N >= 1)"),
        Option("seed", "--seed", "random seed of the network (PatchMatch)"),
        Option("device", "--device", "torch device: auto, cpu, cuda, cuda:N, mps"),
    ]
)


def check_eval_config(config: ColorizeEvalConfig) -> None:
    """The value checks of a :class:`ColorizeEvalConfig`."""
    opts = EVAL_OPTIONS
    opts.check_eval(config)
    if config.image_size is not None:
        opts.integer(config, "image_size", 16)
        if config.image_size % 4:
            opts.fail("image_size", "a multiple of 4", config.image_size)
    opts.integer(config, "max_gap", 1)
    opts.integer(config, "pair_seed", 0)
    opts.integer(config, "seed", 0)

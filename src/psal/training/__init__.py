"""Training and evaluation of inpainting networks: configs, loop, checkpoints, metrics."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config_file,
)
from .evaluate import METRICS, evaluate, format_table
from .trainer import Trainer

__all__ = [
    "METRICS",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "Trainer",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "evaluate",
    "format_table",
    "load_checkpoint",
    "load_config_file",
    "save_checkpoint",
]

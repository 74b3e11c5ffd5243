"""Training settings shared by every task.

Dataclasses (:mod:`.schema`), files and overrides (:mod:`.overrides`), and the per-task
option table read by argparse, the checks and the error messages (:mod:`.options`).
"""

from .options import BASE_OPTIONS, ConfigError, Option, OptionTable, get_key
from .overrides import apply_overrides, config_from_dict, config_to_dict, load_config_file
from .schema import BaseConfig, DataConfig, ModelConfig, OptimConfig

__all__ = [
    "BASE_OPTIONS",
    "BaseConfig",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "Option",
    "OptionTable",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "get_key",
    "load_config_file",
]

"""Training and evaluation: one engine (:class:`Trainer`) for every registered task.

- :mod:`.engine`: the loop, checkpoints, resume; :mod:`.runtime`: device, DDP, mixed
  precision, the optimisation step; :mod:`.stream`: the resumable data stream;
  :mod:`.monitor`: progress bar and TensorBoard; :mod:`.checkpoint`: files on disk.
- :mod:`.evaluate`: the task-generic evaluation loop (:func:`mean_metrics`) and
  :func:`format_table`; :func:`evaluate` and :data:`METRICS` are the ``inpaint`` task's
  (:mod:`.tasks.inpaint.evaluate`), kept here under their old names.
- :mod:`.config`: shared settings, files and ``key=value`` overrides, option tables.
- :mod:`.tasks`: the task registry (:func:`~.tasks.register_task`) and the tasks
  (``inpaint``); see :mod:`psal.training.tasks.base` for how to write one.
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import (
    BaseConfig,
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimConfig,
    Option,
    OptionTable,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config_file,
)
from .engine import Trainer
from .evaluate import format_table, mean_metrics
from .optim import make_scheduler
from .runtime import Runtime, TrainingDiverged
from .tasks import Task, get_task, list_tasks, register_task
from .tasks.inpaint import InpaintConfig, InpaintEvalConfig, InpaintTask
from .tasks.inpaint.evaluate import METRICS, evaluate

#: The config of the ``inpaint`` task under its name before tasks existed.
TrainConfig = InpaintConfig

__all__ = [
    "METRICS",
    "BaseConfig",
    "ConfigError",
    "DataConfig",
    "InpaintConfig",
    "InpaintEvalConfig",
    "InpaintTask",
    "ModelConfig",
    "OptimConfig",
    "Option",
    "OptionTable",
    "Runtime",
    "Task",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "evaluate",
    "format_table",
    "get_task",
    "list_tasks",
    "load_checkpoint",
    "load_config_file",
    "make_scheduler",
    "mean_metrics",
    "register_task",
    "save_checkpoint",
]

"""How to write a training task: the contract between the engine and a task.

The engine (:class:`psal.training.Trainer`) knows nothing of inpainting, colorization or
super-resolution. It owns the device and torchrun set-up, mixed precision, the
optimisation step with gradient clipping, the loop (progress bar, steps per second,
TensorBoard scalars), periodic validation, atomic checkpoints and exact ``--resume``.
A **task** owns everything else: its config, data, networks, losses, the step, its
validation metrics, its TensorBoard images and its inference wrapper.

What a task defines (class attributes):

- ``config_class``: a dataclass subclassing :class:`~psal.training.config.BaseConfig`
  (shared fields: ``steps``, ``batch_size``, ``optim``, ``out``, ``seed``, ``device``,
  intervals...); replace ``model``/``data``/``optim`` with subclasses that add fields and
  add sections of your own (``loss``). The network is ``model.name`` + ``model.kwargs``,
  passed untouched to :func:`psal.models.create_model`. Give every field a default.
- ``options``: ``BASE_OPTIONS.extend([Option(key, flag, help, choices), ...])``, the table
  of flags, keys and allowed values; ``psal train NAME`` gets a flag for every option
  that has one, the checks read the choices, and errors name ``key (--flag)``.
- ``eval_config_class`` and ``eval_options``: the same for ``psal eval NAME``.
- ``progress_keys``: the logged values shown on the progress bar.

What a task implements (methods), and when the engine calls them:

- ``upgrade_config(data, version)`` (classmethod, optional): turn the config dict of a
  checkpoint of an older format version into the current one (renamed keys are better
  declared in the config class's ``ALIASES``).
- ``check_config(config)`` (classmethod): value checks beyond the types, before
  anything is built or written; call ``cls.options.check_base(config)`` first and raise
  through ``cls.options.fail(key, expected, value)`` so that messages name the flag.
- ``__init__(config, runtime)``: once, after ``torch.manual_seed(config.seed)`` (same
  weights on every rank). Build the data (``self.train_set``: a dataset whose
  ``__getitem__`` takes ``(index, seed)`` keys from the engine's sampler and returns a
  dict of tensors; ``self.val_set`` or None), the networks (``self.networks``: name ->
  module; these names are the weight prefixes in checkpoints), their optimisers
  (``self.optimizers``: name -> optimizer) and LR schedulers (``self.schedulers``:
  name -> scheduler, stepped once per step by the engine; use
  :func:`psal.training.optim.make_scheduler` for ``optim.scheduler``). Move networks to
  ``runtime.device``; keep ``runtime.wrap(net)`` (DDP under torchrun) for the forward
  passes that update a network.
- ``train_step(next_batch, images)``: one training step. ``next_batch()`` returns a
  fresh batch on the device (call it as often as the step needs: a GAN's critic steps
  take their own batches). Run forward passes under ``runtime.autocast()`` and update
  with ``runtime.step(loss, "optimizer name")`` (backward, scaling, clipping, skipping
  non-finite gradients, stopping on non-finite losses). Return ``(logs, visuals)``:
  ``logs`` a dict of floats (averaged over ranks and written to TensorBoard every
  ``log_every`` steps); ``visuals`` anything ``log_images`` needs, or None. ``images``
  says that this step's visuals will be logged (compute extra outputs only then).
- ``validate()``: on rank 0 every ``val_every`` steps and at the end, under
  ``torch.no_grad`` in its own RNG context; return ``{metric: float}`` ({} without
  validation data) and restore the networks' train mode.
- ``summary(results)``: the one line printed after a validation.
- ``log_images(writer, step, visuals)``: rank 0, every ``image_every`` steps.
- ``metadata()``: JSON-ready dict stored in the weights file beside the task name and
  config: what the inference wrapper needs (e.g. the generator's ``{"name", "kwargs"}``).
- ``load_inference(path, device)`` (classmethod): the inference wrapper, loaded from a
  weights file or run folder (check the task with ``load_weights(path, task=cls.name)``).
- ``evaluate(config, progress=False)`` (classmethod): ``psal eval NAME``: check
  ``config`` (an ``eval_config_class``, through ``eval_options``), load the inference
  wrapper, return ``{"metrics": {name: float}, ...the settings used}``; the command
  line prints the metrics as a table and writes the whole dict with ``--json``.

Checkpoints (written by the engine, :mod:`psal.training.checkpoint`): the weights of
``networks`` in safetensors with metadata (format version, task name, config, step,
``metadata()``), and a training state file: ``optimizers``, ``schedulers``, gradient
scalers, step, and per rank the RNG states and data position.

Minimal example (a single network trained with L1; see :mod:`.inpaint` for a GAN)::

    @dataclass
    class DenoiseData(DataConfig):
        image_size: int = 64

    @dataclass
    class DenoiseConfig(BaseConfig):
        model: ModelConfig = field(default_factory=lambda: ModelConfig("my_unet", {}))
        data: DenoiseData = field(default_factory=DenoiseData)

    @register_task("denoise")
    class DenoiseTask(Task):
        config_class = DenoiseConfig
        options = BASE_OPTIONS.extend([Option("data.image_size", "--image-size", "crop side")])

        def __init__(self, config, runtime):
            super().__init__(config, runtime)
            files = list_images(config.data.path)
            self.train_set = MyNoisyFolder(files, config.data.image_size)
            net = create_model(config.model.name, **config.model.kwargs).to(runtime.device)
            self.networks = {"net": net}
            self.net_train = runtime.wrap(net)
            opt = torch.optim.Adam(net.parameters(), config.optim.lr, config.optim.betas)
            self.optimizers = {"net": opt}
            self.schedulers = {"net": make_scheduler(opt, config.optim, config.steps)}

        def train_step(self, next_batch, images):
            batch = next_batch()
            with self.runtime.autocast():
                loss = (self.net_train(batch["noisy"]) - batch["clean"]).abs().mean()
            self.runtime.step(loss.float(), "net", "l1 loss")
            return {"l1": loss.item()}, None
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from ..config import BASE_OPTIONS, BaseConfig, ConfigError, OptionTable
from ..runtime import Runtime

__all__ = ["Task", "build_model"]

Batch = dict[str, torch.Tensor]


def build_model(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """:func:`psal.models.create_model` of the config's ``model``, its errors named.

    A misspelt or out-of-range keyword (``model.kwargs.widht=3``), or the network of
    another task (``model.name=deepfill_v1`` for upscaling), fails in the network's
    constructor with a message that names no config key; here it is re-raised as a
    :class:`~psal.training.config.ConfigError` naming ``model.name`` and ``model.kwargs``.
    """
    from ...models import create_model

    try:
        return create_model(name, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"model (model.name={name!r}, model.kwargs={kwargs!r}): {err}", "model.kwargs"
        ) from err


class Task:
    """Base class of training tasks (see the module docstring for the contract).

    Attributes:
        config: the run's config (a ``config_class`` instance).
        runtime: device, ranks, mixed precision and the update step.
        train_set: training dataset (``(index, seed)`` keys -> dict of tensors).
        val_set: validation dataset, or None.
        networks: name -> module, saved in checkpoints under these names.
        optimizers: name -> optimiser, saved in the training state.
        schedulers: name -> LR scheduler, stepped once per step, saved too.
    """

    name: ClassVar[str] = ""
    #: ``psal train/eval NAME --help`` texts: one line, a paragraph, example blocks.
    help: ClassVar[str] = ""
    description: ClassVar[str] = ""
    train_examples: ClassVar[str] = ""
    eval_examples: ClassVar[str] = ""
    config_class: ClassVar[type[BaseConfig]] = BaseConfig
    options: ClassVar[OptionTable] = BASE_OPTIONS
    eval_config_class: ClassVar[type | None] = None
    eval_options: ClassVar[OptionTable | None] = None
    progress_keys: ClassVar[tuple[str, ...]] = ()
    #: Config keys (prefixes) that change the networks' parameters: when a resume fails
    #: to load the weights, the differences in these keys are named.
    architecture_keys: ClassVar[tuple[str, ...]] = ("model.",)

    def __init__(self, config: BaseConfig, runtime: Runtime) -> None:
        self.config = config
        self.runtime = runtime
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}

    @contextlib.contextmanager
    def scanning_data(self) -> Iterator[bool]:
        """Around the scan of the data folder; yields whether this rank reports.

        Every rank scans the same files, so what the scan finds (unreadable files
        skipped, images too small) is reported once, by rank 0: on the other ranks its
        warnings are silenced, and the task prints its own notes only where the
        yielded value is True.
        """
        if self.runtime.info.is_main:
            yield True
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield False

    # ------------------------------------------------------------- config
    @classmethod
    def check_config(cls, config: BaseConfig) -> None:
        """Check the values of ``config``; raises ConfigError naming key and flag."""
        cls.options.check_base(config)

    @classmethod
    def upgrade_config(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """The config dict stored in a checkpoint of format ``version``, made current."""
        return data

    # ------------------------------------------------------------ training
    def train_step(self, next_batch: Callable[[], Batch], images: bool) -> tuple[dict, Any]:
        """One training step; returns ``(logs, visuals)``."""
        raise NotImplementedError(f"task {self.name!r} does not implement train_step")

    def validate(self) -> dict[str, float]:
        """Validation metrics ({} without validation data)."""
        return {}

    def summary(self, results: dict[str, float]) -> str:
        """One line describing validation ``results``."""
        return ", ".join(f"{k} {v:.4g}" for k, v in list(results.items())[:3])

    def log_images(self, writer: Any, step: int, visuals: Any) -> None:
        """Write TensorBoard images of a step's ``visuals`` (default: none)."""

    def metadata(self) -> dict[str, Any]:
        """What the inference wrapper needs, stored in the weights file."""
        return {}

    # ----------------------------------------------------- inference, eval
    @classmethod
    def load_inference(cls, path: Any, device: Any = None) -> nn.Module:
        """The inference wrapper of a checkpoint of this task."""
        raise NotImplementedError(f"task {cls.name!r} has no inference wrapper")

    @classmethod
    def evaluate(cls, config: Any, progress: bool = False) -> dict[str, Any]:
        """``psal eval``: ``{"metrics": {...}, ...settings used}`` (``progress``: a bar)."""
        raise NotImplementedError(f"task {cls.name!r} has no evaluation")

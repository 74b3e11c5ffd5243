"""The settings every task shares, as dataclasses (nanoGPT's ``GPTConfig`` style).

A task's config subclasses :class:`BaseConfig` and replaces the sections it needs with
subclasses of :class:`ModelConfig`, :class:`DataConfig` and :class:`OptimConfig` (adding
fields), and adds its own sections (``loss``, ...). Every field has a default, so
``InpaintConfig()`` is a complete, valid run description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BaseConfig", "DataConfig", "ModelConfig", "OptimConfig"]


@dataclass
class ModelConfig:
    """The trained network, as the registry builds it.

    Attributes:
        name: registered model name (:func:`psal.models.create_model`).
        kwargs: keyword arguments passed untouched to ``create_model(name, **kwargs)``.
    """

    name: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """The training images.

    Attributes:
        path: folder of images (searched recursively).
        val_fraction: fraction of the images held out for validation, chosen by a
            hash of each file's path relative to ``path``, not by ``seed``
            (:func:`psal.data.split_files`).
        val_max: at most this many validation images.
        num_workers: data loader processes per training process.
    """

    path: str = ""
    val_fraction: float = 0.05
    val_max: int = 200
    num_workers: int = 2


@dataclass
class OptimConfig:
    """Optimisation of the (main) network.

    Attributes:
        lr: Adam learning rate.
        betas: Adam betas.
        grad_clip: clip each optimiser's gradient norm to this (0 = off).
        amp: mixed precision: ``"auto"`` (bfloat16 on CUDA when supported, float16
            otherwise; off on CPU), ``"bf16"``, ``"fp16"`` or ``"off"``.
        scheduler: learning-rate schedule of a task that asks for one
            (:func:`psal.training.optim.make_scheduler`): ``"none"`` (constant),
            ``"cosine"`` (to 0 at ``steps``) or ``"step"`` (halved at 50%, 75%).
        warmup_steps: linear warm-up from 0 over this many steps (with a schedule).
    """

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 0.0
    amp: str = "auto"
    scheduler: str = "none"
    warmup_steps: int = 0


@dataclass
class BaseConfig:
    """What every training run has (a task's config subclasses it).

    Attributes:
        model: see :class:`ModelConfig`.
        data: see :class:`DataConfig`.
        optim: see :class:`OptimConfig`.
        out: run folder (checkpoints, TensorBoard logs, config).
        steps: training steps in total.
        batch_size: images per batch and per process.
        seed: seed of initialisation, data order and training randomness.
        device: ``auto``, ``cpu``, ``cuda``; under torchrun each process takes
            ``cuda:LOCAL_RANK``.
        log_every: steps between scalar logs.
        image_every: steps between TensorBoard image grids (0 = never).
        val_every: steps between validations (0 = only at the end).
        save_every: steps between checkpoints (one is always written at the end).
        keep_checkpoints: how many recent checkpoints to keep (0 = all).
        tensorboard: write TensorBoard logs (needs the ``tensorboard`` package).
        progress: show a progress bar.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    out: str = "runs/run"
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

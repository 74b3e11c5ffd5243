"""Network weights shipped with psal (package data, safetensors).

Light on purpose (no torch import): the command line lists the names in its help.
``docs/upscale.md`` and ``docs/colorize.md`` give the command that trained each file and
its scores.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["COLORIZERS", "PRETRAINED", "UPSCALERS", "colorizer_file", "pretrained_file",
           "upscaler_file"]  # fmt: skip

#: Pretrained super-resolution networks: name -> file in this folder.
UPSCALERS: dict[str, str] = {"edsr-x2": "upscale_x2.safetensors"}

#: Pretrained reference-guided colorizers: name -> file in this folder.
COLORIZERS: dict[str, str] = {"psal-w8": "colorize_psal_w8.safetensors"}

#: The tables above by training task (``psal train TASK`` / ``psal eval TASK``).
PRETRAINED: dict[str, dict[str, str]] = {"upscale": UPSCALERS, "colorize": COLORIZERS}


def _file(table: dict[str, str], what: str, name: str) -> Traversable:
    if not isinstance(name, str) or name not in table:
        raise ValueError(
            f"model must be one of {', '.join(sorted(table))} (the pretrained {what} "
            f"shipped with psal), got {name!r}"
        )
    return resources.files(__name__) / table[name]


def upscaler_file(name: str) -> Traversable:
    """The weights file of the pretrained upscaler ``name``.

    Raises:
        ValueError: ``name`` is not one of :data:`UPSCALERS` (the message lists them).
    """
    return _file(UPSCALERS, "upscalers", name)


def colorizer_file(name: str) -> Traversable:
    """The weights file of the pretrained colorizer ``name``.

    Raises:
        ValueError: ``name`` is not one of :data:`COLORIZERS` (the message lists them).
    """
    return _file(COLORIZERS, "colorizers", name)


def pretrained_file(task: str, name: str) -> Traversable:
    """The weights file of the pretrained network ``name`` of training task ``task``.

    Raises:
        ValueError: no such task or name in :data:`PRETRAINED` (the message lists them).
    """
    if task not in PRETRAINED:
        raise ValueError(f"no pretrained networks ship for task {task!r}")
    return _file(PRETRAINED[task], f"{task} networks", name)

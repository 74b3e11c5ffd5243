"""Network weights shipped with psal (package data, safetensors).

Light on purpose (no torch import): the command line lists the names in its help.
``docs/upscale.md`` gives the command that trained each file and its scores.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["UPSCALERS", "upscaler_file"]

#: Pretrained super-resolution networks: name -> file in this folder.
UPSCALERS: dict[str, str] = {"edsr-x2": "upscale_x2.safetensors"}


def upscaler_file(name: str) -> Traversable:
    """The weights file of the pretrained upscaler ``name``.

    Raises:
        ValueError: ``name`` is not one of :data:`UPSCALERS` (the message lists them).
    """
    if not isinstance(name, str) or name not in UPSCALERS:
        raise ValueError(
            f"model must be one of {', '.join(sorted(UPSCALERS))} (the pretrained "
            f"upscalers shipped with psal), got {name!r}"
        )
    return resources.files(__name__) / UPSCALERS[name]

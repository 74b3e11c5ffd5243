"""Name -> constructor registries, used by configs, checkpoints and the command line.

A network family registers its constructor under a name (as timm and BasicSR do);
configs and checkpoints then store only that name and the keyword arguments, and
:func:`create_model` rebuilds the network. Attention adapters of the generator have
their own registry (:data:`ATTENTIONS`, defined with the layers in
:mod:`psal.layers.registry`) so new layers plug in the same way.

Example:
    >>> from psal.models import create_model, list_models
    >>> "deepfill_v1" in list_models()
    True
    >>> net = create_model("deepfill_v1", width=4, attention="none")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from ..layers.registry import ATTENTIONS
from ..utils.registry import Registry

__all__ = ["ATTENTIONS", "MODELS", "Registry", "create_model", "list_models", "register_model"]

T = TypeVar("T", bound=Callable[..., Any])

#: Networks (generators and critics).
MODELS = Registry("model")


def register_model(name: str) -> Callable[[T], T]:
    """Register a network constructor under ``name`` (decorator)."""
    return MODELS.register(name)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the network registered as ``name`` with keyword arguments ``kwargs``."""
    return MODELS.get(name)(**kwargs)


def list_models() -> list[str]:
    """Names of the registered networks."""
    return MODELS.names()

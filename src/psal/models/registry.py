"""Name -> constructor registries, used by configs, checkpoints and the command line.

A network family registers its constructor under a name (as timm and BasicSR do);
configs and checkpoints then store only that name and the keyword arguments, and
:func:`create_model` rebuilds the network. Attention adapters of the generator have
their own registry (:data:`ATTENTIONS`) so new layers plug in the same way.

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

__all__ = ["ATTENTIONS", "MODELS", "Registry", "create_model", "list_models", "register_model"]

T = TypeVar("T", bound=Callable[..., Any])


class Registry:
    """A mapping from names to constructors, filled by the :meth:`register` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering a constructor under ``name`` (unique)."""

        def decorator(fn: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = fn
            return fn

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        """The constructor registered as ``name``; a clear error names the known ones."""
        if not isinstance(name, str) or name not in self._entries:
            known = ", ".join(map(repr, sorted(self._entries)))
            raise ValueError(f"unknown {self.kind} {name!r}; registered: {known}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


#: Networks (generators and critics).
MODELS = Registry("model")
#: Attention adapters of the inpainting generator (see :mod:`psal.models.attention`).
ATTENTIONS = Registry("attention")


def register_model(name: str) -> Callable[[T], T]:
    """Register a network constructor under ``name`` (decorator)."""
    return MODELS.register(name)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the network registered as ``name`` with keyword arguments ``kwargs``."""
    return MODELS.get(name)(**kwargs)


def list_models() -> list[str]:
    """Names of the registered networks."""
    return MODELS.names()

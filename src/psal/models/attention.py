"""Deprecated home of the attention adapters: they live in :mod:`psal.layers.registry`.

``build_attention`` and ``list_attentions`` are re-exported; the adapter classes keep
their old names as aliases of the blocks for one release.
"""

from __future__ import annotations

from .._deprecation import warn_deprecated
from ..layers.registry import (
    ContextualBlock as ContextualAdapter,
)
from ..layers.registry import (
    IdentityBlock as IdentityAdapter,
)
from ..layers.registry import (
    PSALBlock as PSALAdapter,
)
from ..layers.registry import build_attention, list_attentions

warn_deprecated("psal.models.attention is deprecated; import from psal.layers.registry", 2)

__all__ = [
    "ContextualAdapter",
    "IdentityAdapter",
    "PSALAdapter",
    "build_attention",
    "list_attentions",
]

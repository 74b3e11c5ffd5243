"""Attention layers built on the PatchMatch engine, and contextual attention.

Each layer is a function plus a thin ``nn.Module`` whose ``forward`` calls it; all take
``(query, key, value)`` tensors with keyword-only options. Networks choose their
attention by name through :mod:`psal.layers.registry` (:func:`build_attention`).
"""

import importlib

from .vote import vote  # imports no torch (the editing tools' numpy path uses it)

# The layers are imported on first access (PEP 562).
_ATTRS = {
    "ContextualAttention": "contextual",
    "contextual_attention": "contextual",
    "PatchAttention": "dense",
    "patch_attention": "dense",
    "PSAttention": "psattention",
    "attend": "psattention",
    "ps_attention": "psattention",
    "ATTENTIONS": "registry",
    "AttentionBlock": "registry",
    "build_attention": "registry",
    "list_attentions": "registry",
}


def __getattr__(name: str):
    """Import the layers on first access."""
    if name in _ATTRS:
        value = getattr(importlib.import_module(f"{__name__}.{_ATTRS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ATTRS))


__all__ = [
    "ATTENTIONS",
    "AttentionBlock",
    "ContextualAttention",
    "PSAttention",
    "PatchAttention",
    "attend",
    "build_attention",
    "contextual_attention",
    "list_attentions",
    "patch_attention",
    "ps_attention",
    "vote",
]

"""Attention layers built on the PatchMatch engine, and contextual attention.

Each layer is a function plus a thin ``nn.Module`` whose ``forward`` calls it; all take
``(query, key, value)`` tensors with keyword-only options. Networks choose their
attention by name through :mod:`psal.layers.registry` (:func:`build_attention`).
"""

from .._lazy import lazy_exports
from .vote import vote  # imports no torch (the editing tools' numpy path uses it)

# The layers are imported on first access.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ContextualAttention": ".contextual",
        "contextual_attention": ".contextual",
        "PatchAttention": ".dense",
        "patch_attention": ".dense",
        "PSAttention": ".psattention",
        "attend": ".psattention",
        "ps_attention": ".psattention",
        "ATTENTIONS": ".registry",
        "AttentionBlock": ".registry",
        "build_attention": ".registry",
        "list_attentions": ".registry",
    },
)

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

"""Attention layers built on the PatchMatch engine, and contextual attention.

Each layer is a function plus a thin ``nn.Module`` whose ``forward`` calls it; all take
``(query, key, value)`` tensors with keyword-only options. Networks choose their
attention by name through :mod:`psal.layers.registry` (:func:`build_attention`).
"""

from .contextual import ContextualAttention, contextual_attention
from .dense import PatchAttention, patch_attention
from .psattention import PSAttention, attend, ps_attention
from .registry import ATTENTIONS, AttentionBlock, build_attention, list_attentions
from .vote import vote

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

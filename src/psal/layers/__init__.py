"""Attention layers built on the PatchMatch engine, and contextual attention.

Each layer is a function plus a thin ``nn.Module`` whose ``forward`` calls it.
"""

from .contextual import ContextualAttention, contextual_attention
from .dense import PatchAttention, patch_attention
from .psattention import PSAttention, attend, ps_attention
from .vote import vote

__all__ = [
    "ContextualAttention",
    "PSAttention",
    "PatchAttention",
    "attend",
    "contextual_attention",
    "patch_attention",
    "ps_attention",
    "vote",
]

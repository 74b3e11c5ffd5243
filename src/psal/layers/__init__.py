"""Attention layers built on the PatchMatch engine, and contextual attention.

Each layer is a function plus a thin ``nn.Module`` whose ``forward`` calls it.
"""

from .contextual import ContextualAttention, contextual_attention

__all__ = ["ContextualAttention", "contextual_attention"]

"""Attention layers built on the PatchMatch engine.

Each layer is a function plus a thin ``nn.Module`` whose ``forward`` calls it.
"""

from .dense import PatchAttention, patch_attention
from .psattention import PSAttention, attend, ps_attention

__all__ = ["PSAttention", "PatchAttention", "attend", "patch_attention", "ps_attention"]

"""psal: patch-based attention for image editing.

Layers of the package, each importing only from those below it:

1. :mod:`psal.patchmatch`: the k-nearest-patch search engine.
2. :mod:`psal.layers`: attention layers (PSAttention, PatchAttention,
   ContextualAttention); :mod:`psal.viz` colours their neighbour fields.
"""

from . import patchmatch, viz
from .layers import (
    ContextualAttention,
    PatchAttention,
    PSAttention,
    attend,
    contextual_attention,
    patch_attention,
    ps_attention,
)
from .patchmatch import PatchMatchResult

__version__ = "0.1.0"

__all__ = [
    "ContextualAttention",
    "PSAttention",
    "PatchAttention",
    "PatchMatchResult",
    "__version__",
    "attend",
    "contextual_attention",
    "patch_attention",
    "patchmatch",
    "ps_attention",
    "viz",
]

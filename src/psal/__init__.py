"""psal: patch-based attention for image editing.

Layers of the package, each importing only from those below it:

1. :mod:`psal.patchmatch`: the k-nearest-patch search engine.
2. :mod:`psal.layers`: attention layers (PSAttention, PatchAttention, ...).
"""

from . import patchmatch
from .layers import PatchAttention, PSAttention, attend, patch_attention, ps_attention
from .patchmatch import PatchMatchResult

__version__ = "0.1.0"

__all__ = [
    "PSAttention",
    "PatchAttention",
    "PatchMatchResult",
    "__version__",
    "attend",
    "patch_attention",
    "patchmatch",
    "ps_attention",
]

"""psal: patch-based attention for image editing.

Layers of the package, each importing only from those below it:

1. :mod:`psal.patchmatch`: the k-nearest-patch search engine.
2. :mod:`psal.layers`: attention layers (PSAttention, PatchAttention,
   ContextualAttention); :mod:`psal.viz` colours their neighbour fields.
3. :mod:`psal.models`: networks built from the layers (DeepFill v1 with swappable
   attention, its critics and losses, the ``Inpainter`` for inference);
   :mod:`psal.metrics` measures them.
4. :mod:`psal.editing`: training-free editing in pixel space (``inpaint``,
   ``colorize``, ``upscale``), PatchMatch search plus PSAL voting;
   :mod:`psal.data` and :mod:`psal.training`: data, masks, training and evaluation.
5. :mod:`psal.cli`: the ``psal`` command.

``psal.models``, ``psal.data`` and ``psal.training`` are imported on first use.
"""

from . import metrics, patchmatch, viz
from .editing import colorize, inpaint, upscale
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

_LAZY = ("models", "data", "training")


def __getattr__(name: str):
    """Import the network, data and training layers on first access."""
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"psal.{name}")
    raise AttributeError(f"module 'psal' has no attribute {name!r}")


__all__ = [
    "ContextualAttention",
    "PSAttention",
    "PatchAttention",
    "PatchMatchResult",
    "__version__",
    "attend",
    "colorize",
    "contextual_attention",
    "data",
    "inpaint",
    "metrics",
    "models",
    "patch_attention",
    "patchmatch",
    "ps_attention",
    "training",
    "upscale",
    "viz",
]

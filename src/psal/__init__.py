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

Every sub-module is imported on first use.
"""

__version__ = "0.2.0.dev0"

from ._lazy import lazy_exports

# Everything is imported on first access (PEP 562), so that ``psal inpaint`` and other
# commands load only what they use: ``import psal`` alone costs no torch import.
_ATTRS = {
    "colorize": "psal.editing.colorize",
    "inpaint": "psal.editing.inpaint",
    "upscale": "psal.editing.upscale",
    "ContextualAttention": "psal.layers",
    "PatchAttention": "psal.layers",
    "PSAttention": "psal.layers",
    "attend": "psal.layers",
    "contextual_attention": "psal.layers",
    "patch_attention": "psal.layers",
    "ps_attention": "psal.layers",
    "PatchMatchResult": "psal.patchmatch",
}
_MODULES = ("metrics", "patchmatch", "viz", "layers", "editing", "models", "data", "training")


__getattr__, __dir__ = lazy_exports(__name__, _ATTRS, _MODULES)


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

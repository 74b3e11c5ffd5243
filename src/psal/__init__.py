"""psal: patch-based attention for image editing.

Layers of the package, each importing only from those below it:

1. :mod:`psal.patchmatch`: the k-nearest-patch search engine.
"""

from . import patchmatch
from .patchmatch import PatchMatchResult

__version__ = "0.1.0"

__all__ = ["PatchMatchResult", "__version__", "patchmatch"]

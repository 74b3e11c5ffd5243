"""The PatchMatch engine: approximate k-nearest-neighbour search between patches.

Everything else in psal stands on :func:`patchmatch`. The backends and the rule that
chooses between them live in :mod:`psal.patchmatch.backends`; the border rule and the
differentiable patch distance in :mod:`psal.patchmatch.distance`.
"""

import sys
import types

from .api import PatchMatchResult, patchmatch
from .backends import available_backends, resolve_backend, set_default_backend, use_backend
from .distance import pad_reflect, patch_distance, unfold_patches, valid_key_positions

__all__ = [
    "PatchMatchResult",
    "available_backends",
    "pad_reflect",
    "patch_distance",
    "patchmatch",
    "resolve_backend",
    "set_default_backend",
    "unfold_patches",
    "use_backend",
    "valid_key_positions",
]


class _CallableModule(types.ModuleType):
    """Lets ``psal.patchmatch`` be both this package and the search function.

    ``psal.patchmatch(query, key, ...)`` calls :func:`patchmatch`, while
    ``psal.patchmatch.patch_distance`` and ``import psal.patchmatch.backends`` keep
    working as for any package.
    """

    def __call__(self, *args, **kwargs):
        """Call :func:`psal.patchmatch.patchmatch`."""
        return patchmatch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

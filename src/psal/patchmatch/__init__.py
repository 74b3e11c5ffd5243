"""The PatchMatch engine: approximate k-nearest-neighbour search between patches.

Everything else in psal stands on :func:`patchmatch`. The backends and the rule that
chooses between them live in :mod:`psal.patchmatch.backends`; the border rule and the
differentiable patch distance in :mod:`psal.patchmatch.distance`.
"""

import sys
import types

from .._lazy import lazy_exports

# Imported on first access: the compiled CPU search (:mod:`psal.patchmatch.cpu_numba`)
# and its numpy entry load without torch, which ``psal inpaint`` on the CPU never imports.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "PatchMatchResult": ".api",
        "patchmatch": ".api",
        "available_backends": ".backends",
        "resolve_backend": ".backends",
        "set_default_backend": ".backends",
        "use_backend": ".backends",
        "pad_reflect": ".distance",
        "patch_distance": ".distance",
        "unfold_patches": ".distance",
        "valid_key_positions": ".distance",
    },
)

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
        return __getattr__("patchmatch")(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

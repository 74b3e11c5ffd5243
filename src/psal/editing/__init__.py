"""Training-free image editing in pixel space: PSAL with the image as query, key, value.

* :func:`inpaint`: multi-scale PatchMatch completion (object removal).
* :func:`colorize`: colour a grayscale image from a colour reference.
* :func:`upscale`: single-image super-resolution by cross-scale patch recurrence.

Each takes and returns numpy arrays, PIL images or tensors (the same kind back).
Each is imported on first use: ``inpaint`` on numpy images needs no torch.
"""

import sys
import types

from .._lazy import lazy_exports

__all__ = ["colorize", "inpaint", "upscale"]
__getattr__, __dir__ = lazy_exports(__name__, {name: f".{name}" for name in __all__})


class _Package(types.ModuleType):
    """Keeps ``psal.editing.inpaint`` the function, as an eager import would.

    Loading the module ``psal.editing.inpaint`` (by any import) binds it as an attribute
    of this package; the function of the same name is bound instead.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name in __all__ and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

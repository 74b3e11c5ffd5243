"""Training-free image editing in pixel space: PSAL with the image as query, key, value.

* :func:`inpaint`: multi-scale PatchMatch completion (object removal).
* :func:`colorize`: colour a grayscale image from a colour reference.
* :func:`upscale`: single-image super-resolution by cross-scale patch recurrence.

Each takes and returns numpy arrays, PIL images or tensors (the same kind back).
"""

from .colorize import colorize
from .inpaint import inpaint
from .upscale import upscale

__all__ = ["colorize", "inpaint", "upscale"]

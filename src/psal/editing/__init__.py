"""Training-free image editing in pixel space: PSAL with the image as query, key, value.

* :func:`inpaint`: multi-scale PatchMatch completion (object removal).
* :func:`colorize`: colour a grayscale image from a colour reference.
* :func:`upscale`: single-image super-resolution by cross-scale patch recurrence.

Each takes and returns numpy arrays, PIL images or tensors (the same kind back).
"""

__all__ = ["colorize", "inpaint", "upscale"]


def __getattr__(name: str):
    """Import each tool on first access (``psal inpaint`` needs no colorize code)."""
    if name in __all__:
        import importlib

        value = getattr(importlib.import_module(f"psal.editing.{name}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'psal.editing' has no attribute {name!r}")

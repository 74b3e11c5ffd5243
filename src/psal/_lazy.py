"""Packages whose public names are imported on first access (PEP 562).

So that ``psal inpaint`` loads only what it runs: the engine's compiled search, the
vote and the editing pipeline import no torch, while their packages also export the
torch layers and backends.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(
    package: str, attrs: dict[str, str], modules: tuple[str, ...] = ()
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, exporting ``attrs`` lazily.

    Args:
        package: the package's ``__name__``.
        attrs: public name -> the module that defines it, relative to the package
            (``".api"``) or absolute (``"psal.editing.inpaint"``).
        modules: sub-modules imported on first access as ``package.name``.
    """

    def __getattr__(name: str) -> object:
        if name in modules:
            return importlib.import_module(f"{package}.{name}")
        if name in attrs:
            value = getattr(importlib.import_module(attrs[name], package), name)
            setattr(sys.modules[package], name, value)  # next time a plain attribute
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(attrs) | set(modules))

    return __getattr__, __dir__

"""The progress callback every long-running psal function takes."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ProgressCallback"]

#: ``progress(done, total)``: called after each unit of work with the units done so far
#: and the total (which may grow while the work runs, e.g. per pyramid level).
ProgressCallback = Callable[[int, int], None]

"""The border rule's index form for compiled kernels (imports neither torch nor psal).

See :mod:`psal.patchmatch.distance` for the rule: patches that cross the border are
completed by reflection about the border pixel (``-1 -> 1``, ``size -> size - 2``).
"""

from __future__ import annotations

from numba import njit


@njit(inline="always", cache=True)
def reflect1(i, size):  # pragma: no cover (compiled)
    """:func:`psal.patchmatch.distance.reflect_index` for one integer, in numba kernels."""
    if i < 0:
        i = -i
    if i >= size:
        i = 2 * (size - 1) - i
    return i

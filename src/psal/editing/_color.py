"""The colour conversions of :mod:`psal.utils.color`, under their former private name.

They live in :mod:`psal.utils.color` (so that :mod:`psal.models` can use them without
importing :mod:`psal.editing`); this module re-exports them for the editing tools.
"""

from __future__ import annotations

from ..utils.color import KB, KG, KR, luma, luma_chroma_to_rgb, rgb_to_luma_chroma

__all__ = ["KB", "KG", "KR", "luma", "luma_chroma_to_rgb", "rgb_to_luma_chroma"]

"""JSON files written atomically, with non-finite floats spelled out."""

from __future__ import annotations

import json
import math
import os
from typing import Any

from .atomic import atomic_path

__all__ = ["write_json"]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically; NaN and inf become strings."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_clean(payload), indent=2) + "\n")

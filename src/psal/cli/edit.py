"""Sub-commands of ``psal`` (placeholder module, filled in by its issue)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's sub-commands."""

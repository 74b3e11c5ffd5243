"""Helpers shared by the sub-commands: errors, devices, progress."""

from __future__ import annotations

import argparse
import sys

import torch


class CLIError(Exception):
    """An error to report to the user as one line, with exit status 1."""


def run_command(args: argparse.Namespace) -> int:
    """Run ``args.func(args)``; turn expected errors into ``psal: error: ...`` + status 1."""
    try:
        status = args.func(args)
    except KeyboardInterrupt:
        print("psal: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, TypeError, FileNotFoundError, OSError) as err:
        print(f"psal: error: {err}", file=sys.stderr)
        return 1
    return 0 if status is None else int(status)


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (CUDA if available, else CPU), cpu, cuda, cuda:N, mps",
    )


def resolve_device(name: str) -> torch.device:
    """Turn a ``--device`` value into a :class:`torch.device`, checking it exists."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise CLIError(f"--device: unknown device {name!r} ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device: CUDA was requested but no CUDA device is available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError("--device: MPS was requested but is not available")
    return device


def add_seed_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--seed`` (an integer; default 0 so that runs repeat)."""
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

"""Helpers shared by the sub-commands: errors, devices, progress.

Errors reach the user as one line, ``psal: error: ...``, and exit status 1. Set the
environment variable ``PSAL_DEBUG=1`` to get the full Python traceback instead.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import TYPE_CHECKING, Any

from ..utils.atomic import Terminated

if TYPE_CHECKING:
    import torch

#: Environment variable: when set (to anything but ``0`` or empty), errors are re-raised
#: with their traceback instead of being printed as one line.
DEBUG_ENV = "PSAL_DEBUG"

_DEVICE_RE = re.compile(r"(cpu|mps|cuda(:\d+)?)")


class CLIError(Exception):
    """An error to report to the user as one line, with exit status 1."""


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def error_line(err: BaseException) -> str:
    """One line describing ``err``.

    An exception re-raised by a :class:`torch.utils.data.DataLoader` worker carries the
    worker's whole traceback in its message ("Caught OSError in DataLoader worker
    process 1. Original Traceback ..."): its last line is the original error, which is
    what the user needs. Other multi-line messages (torch's) are cut to their first line.
    """
    text = str(err).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Original Traceback" in text and lines:
        # The last line reads "OSError: cannot read image ..."; drop the type name.
        return re.sub(r"^[A-Za-z_][\w.]*: ", "", lines[-1])
    if not lines:
        return type(err).__name__
    if len(lines) > 1:
        return f"{lines[0]} ... ({DEBUG_ENV}=1 shows the whole message)"
    return lines[0]


def _quiet_data_workers() -> None:
    """Drop the data loader's complaint that its workers died, after a SIGTERM.

    A SIGTERM sent to the whole process group (Slurm's ``scancel``, ``kill -TERM
    -PGID``) stops the data loader's worker processes too; when the loader is then
    collected, torch reports "DataLoader worker (pid N) is killed by signal:
    Terminated" as an ignored exception, twenty lines after ``psal: terminated``. That
    is the expected end of the run, so that one report is dropped; any other ignored
    exception still prints.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        text = str(getattr(unraisable, "exc_value", ""))
        if "DataLoader worker" in text and "killed by signal" in text:
            return
        previous(unraisable)

    sys.unraisablehook = hook


def run_command(args: argparse.Namespace) -> int:
    """Run ``args.func(args)``; turn expected errors into ``psal: error: ...`` + status 1.

    With ``PSAL_DEBUG=1`` in the environment the error is re-raised (full traceback).
    """
    try:
        status = args.func(args)
    except Terminated:
        print("psal: terminated", file=sys.stderr)
        _quiet_data_workers()
        raise
    except KeyboardInterrupt:
        if _debug():
            raise
        print("psal: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, TypeError, OSError, ImportError, RuntimeError) as err:
        if _debug():
            raise
        line = error_line(err)
        if isinstance(err, RuntimeError) and not isinstance(err, CLIError):
            # Not one of psal's own checks: say how to see where it came from.
            line += f" [{type(err).__name__}; {DEBUG_ENV}=1 shows the traceback]"
        print(f"psal: error: {line}", file=sys.stderr)
        return 1
    return 0 if status is None else int(status)


def check_not_special(path: str, flag: str) -> None:
    """:func:`psal.utils.atomic.check_not_special` as a :class:`CLIError` naming ``flag``.

    Outputs are written atomically (a temporary file renamed onto ``path``), which would
    replace a device, FIFO or socket by a regular file. Folders are left to the caller.
    """
    from ..utils.atomic import check_not_special as check

    try:
        check(path, flag)
    except ValueError as err:
        raise CLIError(str(err)) from None


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (CUDA if available, else CPU), cpu, cuda, cuda:N, mps",
    )


def resolve_device(name: str) -> torch.device:
    """Turn a ``--device`` value into a :class:`torch.device`, checking it exists.

    Accepted: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` and ``mps``.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or not _DEVICE_RE.fullmatch(name):
        raise CLIError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device: CUDA was requested but no CUDA device is available")
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise CLIError(
                f"--device {name}: no such CUDA device (found {count}: cuda:0 to cuda:{count - 1})"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError("--device: MPS was requested but is not available")
    return device


def add_seed_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--seed`` (an integer; default 0 so that runs repeat)."""
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

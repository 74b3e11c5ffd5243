"""The ``psal`` command line.

Each group of sub-commands lives in its own module with a ``register(subparsers)``
function; this module only assembles them and turns errors into a one-line message and
a non-zero exit status.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from ._common import CLIError, run_command

#: Modules (relative to psal.cli) that register sub-commands, in help order, with the
#: commands each registers.
COMMAND_MODULES = {
    "edit": ("inpaint", "colorize", "upscale"),
    "train": ("train", "eval"),
    "app": ("app",),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Build the ``psal`` argument parser.

    With ``argv`` whose first word is a command, only the module of that command
    registers (``psal inpaint`` then imports neither the training code nor torch). With
    ``argv`` naming no command (``psal --help``, a typo), every command registers its
    name and help line only (``shallow``: the same top-level help and errors, without
    importing the training tasks and torch). ``argv=None``: every command, in full.
    """
    import importlib

    words = [a for a in (argv or []) if not a.startswith("-")]
    modules = [m for m, commands in COMMAND_MODULES.items() if words and words[0] in commands]
    shallow = argv is not None and not modules

    parser = argparse.ArgumentParser(
        prog="psal",
        description="Patch-based attention for image editing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"psal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in modules or COMMAND_MODULES:
        module = importlib.import_module(f"psal.cli.{name}")
        module.register(sub, shallow=shallow)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``psal`` console script; returns the exit status."""
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        # ``KEY=VALUE`` overrides may sit between options (argparse takes only the
        # first run of positionals); anything else is an unknown argument
        if isinstance(getattr(args, "overrides", None), list) and all(
            "=" in e and not e.startswith("-") for e in extra
        ):
            args.overrides.extend(extra)
        else:
            hint = _did_you_mean(parser, argv if argv is not None else sys.argv[1:], extra)
            parser.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    from ..utils.atomic import terminate_gracefully

    # SIGTERM (kill, timeout, torchrun) unwinds like an exception, so that no temporary
    # file is left behind; Python warnings print as one ``psal: warning:`` line each
    with terminate_gracefully(), warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return run_command(args)


#: Options that play the same role under another name in another command (the
#: training crop side: ``--image-size`` for inpaint and colorize, ``--patch``, the
#: low-resolution crop, for upscale).
_SAME_ROLE = {"--image-size": ("--patch",), "--patch": ("--image-size",)}


def _did_you_mean(parser: argparse.ArgumentParser, argv: Sequence[str],
                  extra: Sequence[str]) -> str:  # fmt: skip
    """`` (did you mean --dilate?)`` for misspelt options of the command that ran."""
    import difflib

    words = [a for a in argv if not a.startswith("-")]
    while True:  # down the sub-commands named in argv (``train``, then ``upscale``)
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = next((subs[0].choices[w] for w in words if subs and w in subs[0].choices),
                      None)  # fmt: skip
        if chosen is None:
            break
        parser = chosen
    known = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    hints = []
    for e in extra:
        if e.startswith("--"):
            flag = e.split("=", 1)[0]
            close = [o for o in _SAME_ROLE.get(flag, ()) if o in known]
            close = close or difflib.get_close_matches(flag, known, n=1, cutoff=0.7)
            hints += [f"{flag}: did you mean {close[0]}?"] if close else []
    return f" ({'; '.join(hints)})" if hints else ""


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = " ".join(str(message).split())
    print(f"psal: warning: {text}", file=sys.stderr if file is None else file)


__all__ = ["CLIError", "build_parser", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

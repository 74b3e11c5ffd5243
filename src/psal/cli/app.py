"""``psal app``: start the local web app (needs the ``app`` extra).

The web code (gradio) is imported only when the command runs, so ``import psal`` and
the other commands do not pay for it.
"""

from __future__ import annotations

import argparse
import sys

from ._common import CLIError, add_device_arg, resolve_device

APP_EXAMPLES = """\
examples:
  psal app                                   # http://127.0.0.1:7860, this machine only
  psal app --port 8080 --device cuda
  psal app --checkpoint runs/psal            # adds the learned inpainter to the page
  psal app --colorize-checkpoint runs/col --upscale-checkpoint runs/sr
                                             # learned colorizer and upscaler too
  psal app --host 0.0.0.0                    # reachable from other machines: careful

Needs the web app extra: pip install "psal[app]".
"""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _check_host(host: str) -> None:
    """Refuse, before anything starts, a ``--host`` this machine cannot listen on.

    (Gradio would report a name that does not resolve, or an address of another
    machine, as "Cannot find empty port", after a line of uvicorn's own.)
    """
    import socket

    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise CLIError(
            f"--host {host}: not an address or name this machine knows ({reason})"
        ) from None
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind((addr[0], 0))
        except OSError as err:
            raise CLIError(
                f"--host {host}: cannot listen on this address ({err.strerror or err}); give "
                "an address of this machine, 127.0.0.1, or 0.0.0.0 for all of them"
            ) from None


def _app(args: argparse.Namespace) -> int:
    from ..app import LEARNED, Limits, require_gradio, serve

    require_gradio()  # ImportError -> "psal: error: ... pip install "psal[app]""
    if args.port is not None and not 0 < args.port < 65536:
        raise CLIError(f"--port must be in 1..65535, got {args.port}")
    _check_host(args.host)
    device = resolve_device(args.device)
    checkpoints = {task: getattr(args, spec.flag.lstrip("-").replace("-", "_"))
                   for task, spec in LEARNED.items()}  # fmt: skip
    limits = Limits(max_upload_mb=args.max_upload_mb, max_megapixels=args.max_megapixels)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"psal app: warning: listening on {args.host}: anyone who can reach this machine "
              "can use the app and its device", file=sys.stderr)  # fmt: skip
    serve(host=args.host, port=args.port, device=device, checkpoints=checkpoints, limits=limits)
    return 0


APP_HELP = "local web app: paint a mask and remove objects, colorize, upscale"


def register(subparsers: argparse._SubParsersAction, shallow: bool = False) -> None:
    """Register ``app`` (``shallow``: its name and help line only, for ``psal --help``)."""
    if shallow:
        subparsers.add_parser("app", help=APP_HELP)
        return
    from ..app.actions import LEARNED, Limits

    p = subparsers.add_parser(
        "app",
        help=APP_HELP,
        description="Start a local web page to paint over objects and remove them, colour "
        "a grayscale photo from a reference, or upscale a photo; it calls the same "
        "functions as the other commands. Stop it with Ctrl-C.",
        epilog=APP_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")  # fmt: skip
    p.add_argument("--port", type=int, default=None,
                   help="TCP port (default: the first free one from 7860)")  # fmt: skip
    add_device_arg(p)
    for spec in LEARNED.values():
        p.add_argument(spec.flag, default=None, metavar="FILE", help=spec.help)
    p.add_argument("--max-upload-mb", type=_positive, default=Limits.max_upload_mb,
                   help="largest upload in MB (default: %(default)g)")  # fmt: skip
    p.add_argument("--max-megapixels", type=_positive, default=Limits.max_megapixels,
                   help="largest image, input or upscaled output, in megapixels "
                   "(default: %(default)g)")  # fmt: skip
    p.set_defaults(func=_app)

"""``psal app``: a local web page to paint a mask and remove objects, colorize, upscale.

The page (:mod:`psal.app.ui`, Gradio) calls the same functions as the command line
(:mod:`psal.app.actions` -> :func:`psal.inpaint`, :func:`psal.colorize`,
:func:`psal.upscale`, the learned :class:`psal.models.Inpainter`), so the same inputs
and seed give the same image as ``psal inpaint`` & co.

Needs the ``app`` extra (``pip install "psal[app]"``). Importing this package does not
import gradio; :func:`serve` does.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import torch

from .actions import LEARNED, Limits, load_models

__all__ = ["INSTALL_HINT", "LEARNED", "Limits", "serve"]

#: Signals that stop the server cleanly (its temporary folder removed): Ctrl-C, kill,
#: and the terminal closing (SIGHUP, where the system has it).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)

#: What to run when gradio is missing.
INSTALL_HINT = 'pip install "psal[app]"'


def require_gradio() -> None:
    """Raise ImportError with the install command when the app extra is missing."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise ImportError(
            f"psal app needs the web app extra, which is not installed: {INSTALL_HINT}"
        )


def serve(
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    device: torch.device | str = "cpu",
    checkpoints: dict[str, str | None] | None = None,
    limits: Limits | None = None,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
    announce: Any = None,
) -> None:
    """Start the page and block until Ctrl-C, SIGTERM, SIGHUP or ``stop`` is set.

    Everything the server writes (uploads, results, Gradio's cache) goes to one
    temporary folder, removed when the server stops, also when the terminal that runs
    it is closed (SIGHUP, whose default action would kill the process and leave the
    uploaded photos behind). (Gradio reads that folder's name
    when it is first imported: call this before anything else imports gradio.)

    Args:
        host: address to bind (127.0.0.1: this machine only).
        port: TCP port (None: the first free one from 7860).
        device: where the tools run.
        checkpoints: task -> learned checkpoint (see :data:`psal.app.actions.LEARNED`).
        limits: upload and image size limits.
        ready: set once the server answers.
        stop: set it (from another thread) to stop the server.
        announce: ``announce(url, temp_folder)`` once started (default: print the URL).
    """
    require_gradio()
    limits = limits or Limits()
    device = torch.device(device)
    models = load_models(checkpoints or {}, device)  # bad checkpoints fail before serving
    folder = Path(tempfile.mkdtemp(prefix="psal-app-"))
    saved = {k: os.environ.get(k) for k in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED")}
    os.environ["GRADIO_TEMP_DIR"] = str(folder / "gradio")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    stop = stop or threading.Event()
    handlers = {}
    demo = None
    try:
        from .ui import build_app, launch_kwargs

        demo = build_app(device=device, models=models, limits=limits, results=folder / "results")
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                handlers[sig] = signal.signal(sig, lambda *_: stop.set())
        demo.launch(prevent_thread_lock=True, **launch_kwargs(host, port, limits))
        url = demo.local_url
        if announce is None:
            print(f"psal app: running at {url} (Ctrl-C to stop)", flush=True)
        else:
            announce(url, folder)
        if ready is not None:
            ready.set()
        while not stop.wait(0.5):
            pass
    finally:
        if demo is not None:
            demo.close()
        # removed while the handlers still hold: a second Ctrl-C only sets ``stop``
        shutil.rmtree(folder, ignore_errors=True)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if announce is None:
            print("psal app: stopped", file=sys.stderr, flush=True)

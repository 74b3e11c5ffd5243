"""Helpers of the app tests: a real ``psal app`` server in a subprocess, test photos.

The server runs with small limits (so the size checks are cheap to test), one torch and
one numba thread, and ``TMPDIR`` pointed at a folder of the test's own: after it stops,
that folder must hold nothing (the app's temporary folder is removed).
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SRC = str(Path(__file__).resolve().parents[2] / "src")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: The limits the test server runs with.
MAX_UPLOAD_MB = 1.0
MAX_MEGAPIXELS = 1.5


def need(module: str):
    """Import ``module``, or skip (fail in CI, where the app extra must be installed)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if IN_CI:
            pytest.fail(f"{module} is not installed; CI installs it with the app extra")
        pytest.skip(f"{module} is not installed (pip install -e '.[dev,app]')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``psal app`` process: ``url``, ``pid``, its output so far, ``stop()``."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.tmp = tmp
        self.port = _free_port()
        env = {**os.environ, "PYTHONPATH": SRC, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1",
               "NUMBA_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "psal", "app", "--port", str(self.port), "--device", "cpu",
             "--max-upload-mb", str(MAX_UPLOAD_MB), "--max-megapixels", str(MAX_MEGAPIXELS),
             *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(120) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("psal app did not start:\n" + self.output)
        self.url = f"http://127.0.0.1:{self.port}/"

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if "psal app: running at" in line:
                self._ready.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._reader.join(10)  # the pipe's end reached: its last lines are in self.lines
        if not self._reader.is_alive():
            self.proc.stdout.close()
        return self.proc.returncode


def photo(h: int, w: int, seed: int = 0) -> Image.Image:
    """A textured RGB photo (scikit-image's astronaut, resized; noise if unavailable)."""
    try:
        from skimage import data

        im = Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.BICUBIC)
    except ImportError:
        rng = np.random.default_rng(seed)
        im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return im


def wait_until(check, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def header(path):
    """What the tests read of an image file, with the file closed again: ``size``,
    ``mode``, ``format``, ``rawmode`` (the first tile's, e.g. ``RGB;16B``) and ``exif``
    (a dict of the base IFD's tags)."""
    from types import SimpleNamespace

    with Image.open(path) as im:
        return SimpleNamespace(
            size=im.size,
            mode=im.mode,
            format=im.format,
            rawmode=im.tile[0][3] if im.tile else None,
            exif=dict(im.getexif()),
        )

"""Atomic file writing: a failing or killed writer never leaves a half-written file.

:func:`atomic_path` writes to a hidden temporary file beside the destination and renames
it at the end; any Python exception removes the temporary file. A signal that kills the
process (SIGTERM: what ``kill``, ``timeout`` and ``torchrun`` send) runs no Python code
unless a handler turns it into an exception: :func:`terminate_gracefully` installs one
(the ``psal`` command does, around every command) that raises :class:`Terminated`, so
the same clean-up runs. Importing psal changes no signal handler.

:func:`check_writable` checks, before any work, that a file can be created at a path
(and :func:`check_not_special` that the path is not a device, FIFO or socket).
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "Terminated",
    "atomic_path",
    "check_not_special",
    "check_writable",
    "terminate_gracefully",
]

#: Characters of the destination name kept in the temporary file's name: the rest of
#: the temporary name (dot, random part, ``.tmp`` and the suffix) must still fit in the
#: file system's limit on a name when the destination's own name just fits.
_TMP_NAME_KEEP = 120

#: Test hook: when set, called with the temporary path once the writer is done and
#: before the rename (the tests use it to kill a command in the middle of a write).
_before_rename: Callable[[Path], None] | None = None

#: Temporary files being written right now (removed by :func:`terminate_gracefully`'s
#: handler, should the signal arrive outside the ``try`` of :func:`atomic_path`).
_live: set[Path] = set()
_live_lock = threading.Lock()


class Terminated(SystemExit):
    """Raised by the handler of :func:`terminate_gracefully` when SIGTERM arrives.

    A :class:`SystemExit` (so ``except Exception`` does not swallow it) with the exit
    status ``128 + signal number`` that shells report for a terminated process.
    """


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask, read without changing it where the system allows.

    ``os.umask`` can only be read by setting it: between ``umask(0)`` and the restore,
    a file another thread creates (an upload of the web app, a log) would get mode
    0666 / 0777. Linux gives the value in ``/proc/self/status``; elsewhere the set and
    restore is the only way (serialised here, at least among psal's own writers).
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        umask = os.umask(0o077)  # the strictest value for the instant it is set
        os.umask(umask)
    return umask


def _final_mode(dest: Path) -> int:
    try:
        return dest.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _tmp_prefix(dest: Path) -> str:
    name = dest.name
    if len(name) > _TMP_NAME_KEEP:
        name = name[:_TMP_NAME_KEEP]
    return f".{name}."


def _existing_folder(dest: Path) -> Path:
    parent = dest.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def check_not_special(path: str | os.PathLike[str], name: str = "output") -> None:
    """Refuse a ``path`` that exists and is neither a regular file nor a folder.

    :func:`atomic_path` renames a new file onto its destination. Onto ``/dev/null``, a
    FIFO or a socket that rename would replace the special file with a regular one (as
    root, ``/dev/null`` itself, which every other program then writes into). Missing
    paths and folders pass (folders are :func:`check_writable`'s).

    Raises:
        ValueError: with a message that names ``name`` and the path.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, or a name other checks report
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ValueError(
            f"{name} {os.fspath(path)}: is not a regular file (a device, FIFO or socket); "
            "outputs are written to a new file renamed into place, which would replace it"
        )


def check_writable(path: str | os.PathLike[str], name: str = "output") -> None:
    """Check, before any work, that :func:`atomic_path` can create ``path``.

    Checks that ``path`` is not a device, FIFO or socket (:func:`check_not_special`)
    nor a folder, that its name fits the file system's limit,
    that the nearest existing folder above it is a folder, and that a file can be
    created there (a real probe, removed at once: permission bits say nothing about
    read-only mounts or root).

    Raises:
        ValueError: with a message that names ``name`` and the path.
    """
    dest = Path(path)
    if not dest.name:
        raise ValueError(f"{name} {path!r}: give a file name")
    try:
        limit = os.pathconf(_existing_folder(dest), "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # pragma: no cover - not POSIX
        limit = 255
    for part in dest.parts:
        if len(os.fsencode(part)) > limit:
            raise ValueError(
                f"{name} {path}: the name {part[:20]}... is {len(os.fsencode(part))} bytes "
                f"long; this file system allows {limit}"
            )
    check_not_special(dest, name)
    if dest.is_dir():
        raise ValueError(f"{name} {path}: is a directory; give a file name")
    parent = _existing_folder(dest)
    if not parent.is_dir():
        raise ValueError(f"{name} {path}: {parent} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".psal-write-test.", dir=parent)
    except OSError as err:
        reason = err.strerror or str(err)
        raise ValueError(f"{name} {path}: cannot create files in {parent} ({reason})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary file lives in the destination folder (same file system, so the final
    ``os.replace`` is atomic) and keeps the destination's suffix, so writers that pick
    a format from the extension (Pillow, safetensors) behave as for ``path``. On any
    exception (including :class:`Terminated`, see :func:`terminate_gracefully`) the
    temporary file is removed and ``path`` is left as it was. A ``path`` that is a
    device, FIFO or socket is refused before anything is written
    (:func:`check_not_special`: ``ValueError``).

    Example:
        >>> with atomic_path("out.png") as tmp:  # doctest: +SKIP
        ...     image.save(tmp)
    """
    dest = Path(path)
    check_not_special(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=_tmp_prefix(dest), suffix=f".tmp{dest.suffix}", dir=dest.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    with _live_lock:
        _live.add(tmp)
    try:
        yield tmp
        if _before_rename is not None:
            _before_rename(tmp)
        # mkstemp creates the file 0600 whatever the umask; give it the mode an
        # ordinary open() would have (or the mode of the file it replaces)
        os.chmod(tmp, _final_mode(dest))
        with open(tmp, "rb+") as fh:  # flush to disk before the rename
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        with _live_lock:
            _live.discard(tmp)


def _remove_live() -> None:
    with _live_lock:
        paths = list(_live)
    for p in paths:
        with contextlib.suppress(OSError):
            p.unlink()


@contextlib.contextmanager
def terminate_gracefully(signals: tuple[int, ...] = (signal.SIGTERM,)) -> Iterator[None]:
    """Within the block, turn SIGTERM into a :class:`Terminated` exception.

    The exception unwinds the stack like any other, so :func:`atomic_path` removes its
    temporary file (the handler also removes every temporary file being written, in
    case the signal lands outside its ``try``). The previous handlers are restored on
    exit. Outside the main thread (where Python cannot set handlers) it does nothing.

    Example:
        >>> with terminate_gracefully():  # doctest: +SKIP
        ...     save_everything()
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    owner = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() == owner:  # not in a forked child (a DataLoader worker, say),
            _remove_live()  # whose copy of the list names the parent's files
        raise Terminated(128 + signum)

    previous = {}
    try:
        for s in signals:
            previous[s] = signal.signal(s, handler)
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)

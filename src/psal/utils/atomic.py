"""Atomic file writing: a failing or killed writer never leaves a half-written file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _final_mode(dest: Path) -> int:
    try:
        return dest.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary file lives in the destination folder (same file system, so the final
    ``os.replace`` is atomic) and keeps the destination's suffix, so writers that pick
    a format from the extension (Pillow, safetensors) behave as for ``path``. On any
    exception the temporary file is removed and ``path`` is left as it was.

    Example:
        >>> with atomic_path("out.png") as tmp:  # doctest: +SKIP
        ...     image.save(tmp)
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}", dir=dest.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
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

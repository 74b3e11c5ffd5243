"""The one place where a PatchMatch backend is chosen.

Backends:

* ``"exact"``: brute-force search, chunked so its memory stays bounded. The reference
  for tests and the right choice for small inputs. Any torch device.
* ``"numba"``: the fast CPU backend: sequential scan-order PatchMatch compiled with
  numba, parallel over fixed row bands and the batch. Inputs on another device are
  copied to the CPU and the results copied back. Compiled once, cached on disk.
* ``"torch"``: vectorised PatchMatch in pure PyTorch (all pixels updated in parallel,
  jump-flood propagation as in the published GPU code). Runs on any torch device (CUDA,
  MPS, CPU) with nothing to compile.

``"auto"`` picks ``numba`` for CPU tensors and ``torch`` for every other device. The
choice can be overridden for the whole process with :func:`set_default_backend`, for
a block with :func:`use_backend`, or with the environment variable
``PSAL_PATCHMATCH_BACKEND``; an explicit ``backend=`` argument always wins.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
else:
    from ..utils.arrays import lazy_torch as torch  # for annotations (imports torch if resolved)

__all__ = [
    "BACKENDS",
    "available_backends",
    "get_backend",
    "resolve_backend",
    "set_default_backend",
    "use_backend",
]

#: Backend name -> module (relative to ``psal.patchmatch``) that defines ``search``.
BACKENDS: dict[str, str] = {"exact": "exact", "numba": "cpu_numba", "torch": "torch_backend"}
ENV_VAR = "PSAL_PATCHMATCH_BACKEND"

_default: str | None = None
#: Open :func:`use_backend` blocks, oldest first: (token, name). The newest applies; a
#: block removes its own entry on exit, so blocks that overlap in different threads
#: leave the process default as it was (restoring a saved value did not).
_blocks: list[tuple[object, str | None]] = []
_blocks_lock = threading.Lock()


def _check_name(name: str, allow_auto: bool = True) -> str:
    names = (["auto"] if allow_auto else []) + list(BACKENDS)
    if not isinstance(name, str) or name not in names:
        raise ValueError(f"backend must be one of {', '.join(map(repr, names))}; got {name!r}")
    return name


def get_backend(name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """Return the ``search`` function of a named backend, importing it now.

    Raises:
        ValueError: unknown name.
        ImportError: the backend's dependency is missing (said here, at selection).
    """
    _check_name(name, allow_auto=False)
    try:
        module = importlib.import_module(f"psal.patchmatch.{BACKENDS[name]}")
    except ImportError as err:  # pragma: no cover - numba is a hard dependency
        raise ImportError(
            f"PatchMatch backend {name!r} is unavailable: {err}. Install its dependency "
            f"or choose another backend ({', '.join(BACKENDS)})."
        ) from err
    return module.search


def available_backends() -> dict[str, bool]:
    """Map each backend name to whether it can be imported here."""
    out = {}
    for name in BACKENDS:
        try:
            get_backend(name)
            out[name] = True
        except ImportError:
            out[name] = False
    return out


def set_default_backend(name: str | None) -> None:
    """Set the backend that ``backend="auto"`` resolves to (None restores the rule)."""
    global _default
    _default = None if name is None else _check_name(name, allow_auto=False)


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Context manager form of :func:`set_default_backend`, for the block.

    While the block runs, ``backend="auto"`` resolves to ``name`` (None: the rule, as if
    no default were set), in every thread, as :func:`set_default_backend` does; the
    newest open block wins. On exit the block's setting is removed, whatever other
    threads opened or closed meanwhile.
    """
    if name is not None:
        _check_name(name, allow_auto=False)
    token = object()
    with _blocks_lock:
        _blocks.append((token, name))
    try:
        yield
    finally:
        with _blocks_lock:
            _blocks[:] = [entry for entry in _blocks if entry[0] is not token]


def _current_default() -> str | None:
    """The name ``"auto"`` resolves to before the environment and device rule."""
    with _blocks_lock:
        if _blocks:
            return _blocks[-1][1]
    return _default


def resolve_backend(name: str, device: torch.device | str) -> str:
    """Turn ``"auto"`` into a concrete backend name for tensors on ``device``.

    (``device`` may be a name, ``"cpu"``, so that numpy callers need no torch.)
    """
    _check_name(name)
    if name != "auto":
        return name
    default = _current_default()
    if default is not None:
        return default
    env = os.environ.get(ENV_VAR, "").strip()
    if env and env != "auto":
        if env not in BACKENDS:
            raise ValueError(
                f"environment variable {ENV_VAR} must be one of {', '.join(BACKENDS)} or "
                f"'auto'; got {env!r}"
            )
        return env
    kind = device if isinstance(device, str) else device.type
    return "numba" if kind.split(":")[0] == "cpu" else "torch"


def compiled_cpu(device: object, backend: str) -> bool:
    """Whether a search on ``device`` (None = CPU) with ``backend`` runs compiled.

    That is the CPU kernel, which numpy arrays can call directly (no torch):
    ``backend`` ``"numba"``, or ``"auto"`` resolving to it.
    """
    if not (device is None or str(device) == "cpu"):
        return False
    return backend in ("auto", "numba") and resolve_backend(backend, "cpu") == "numba"

"""The weights file of a training run: one safetensors file, self-describing.

A weights file holds the state dicts of a task's networks under name prefixes
(``generator.``, ``critic_global.``, ...) and string metadata (JSON values):

- ``format``: ``"psal.checkpoint"`` and ``format_version``: ``2``;
- ``task``: the task it was trained for (``"inpaint"``, ...); loading for another task is
  a one-line error naming both;
- ``step`` and ``config``: the training step and the full training configuration;
- what the task's inference wrapper needs, e.g. for ``inpaint``: ``generator``
  (``{"name": registry name, "kwargs": {...}}``, rebuilt with
  :func:`psal.models.create_model`) and ``image_size``.

Files of format version 1 (``format`` ``"psal.inpaint/1"``, written before tasks
existed) are read as task ``inpaint``, version 1.

A run folder keeps its checkpoints in ``checkpoints/`` with a ``latest.json`` pointer
written last (see :mod:`psal.training.checkpoint`); :func:`resolve_weights_file` accepts a
weights file, that folder or the run folder. Loading uses safetensors only: no pickle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..utils.atomic import atomic_path

__all__ = ["FORMAT", "FORMAT_VERSION", "load_weights", "resolve_weights_file", "save_weights"]

FORMAT = "psal.checkpoint"
FORMAT_VERSION = 2
#: Older formats: ``format`` string -> (task, version).
LEGACY_FORMATS = {"psal.inpaint/1": ("inpaint", 1)}
LATEST = "latest.json"


def save_weights(
    path: str | os.PathLike[str],
    states: dict[str, dict[str, torch.Tensor]],
    metadata: dict[str, Any],
    *,
    task: str = "inpaint",
) -> None:
    """Write state dicts under their prefixes, atomically, with JSON-encoded metadata.

    Args:
        path: the ``.safetensors`` file.
        states: ``{prefix: state_dict}``.
        metadata: JSON-ready values (strings are stored as they are).
        task: the task the networks were trained for.
    """
    flat: dict[str, torch.Tensor] = {}
    for prefix, state in states.items():
        if not isinstance(prefix, str) or not prefix or "." in prefix:
            raise ValueError(
                f"states: prefix {prefix!r} must be a non-empty name without '.' (the file "
                "joins prefix and key with '.', and reading splits at the first one)"
            )
        for key, value in state.items():
            flat[f"{prefix}.{key}"] = value.detach().to("cpu").contiguous().clone()
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    meta.update(format=FORMAT, format_version=str(FORMAT_VERSION), task=task)
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=meta)


def _pointer_target(pointer: Path, key: str = "weights") -> Path:
    """The file named by ``pointer[key]``: a plain file name in the pointer's folder."""
    try:
        name = json.loads(pointer.read_text())[key]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{str(pointer)!r} is not a valid checkpoint pointer") from None
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(
            f"{str(pointer)!r} names {name!r}, which is not a file in its own folder: refused"
        )
    return pointer.parent / name


def resolve_weights_file(path: str | os.PathLike[str]) -> Path:
    """Find the weights file of ``path``: the file itself, or a run's latest checkpoint.

    ``path`` may be a ``.safetensors`` file, a run folder or its ``checkpoints`` folder.
    A ``latest.json`` pointer may only name a file in its own folder.

    Raises:
        FileNotFoundError: nothing usable at ``path``.
        ValueError: a corrupt pointer, or one naming a file elsewhere.
    """
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        for folder in (p, p / "checkpoints"):
            pointer = folder / LATEST
            if pointer.is_file():
                target = _pointer_target(pointer)
                if target.is_file():
                    return target
                raise FileNotFoundError(f"{pointer} points to a missing file {target}")
        raise FileNotFoundError(
            f"{str(p)!r} is a folder without checkpoints (no {LATEST} in it or in "
            "its checkpoints/ folder)"
        )
    raise FileNotFoundError(f"checkpoint {str(p)!r} does not exist")


def load_weights(
    path: str | os.PathLike[str], device: torch.device | str = "cpu", task: str | None = None
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Read a weights file: ``({prefix: state_dict}, metadata)`` with JSON values decoded.

    ``metadata`` always has ``task``, ``format_version`` (1 or 2) and ``path`` (the file).

    Args:
        path: a weights file or a run folder (see :func:`resolve_weights_file`).
        device: where the tensors go.
        task: if given, the file must have been trained for this task.

    Raises:
        FileNotFoundError: see :func:`resolve_weights_file`.
        ValueError: not a psal checkpoint, a newer format, another task's checkpoint, or
            a floating-point tensor holding NaN or inf (named, with the file).
    """
    from ..utils.convert import check_device

    device = check_device(device) or torch.device("cpu")  # a bad device is not a bad file
    file = resolve_weights_file(path)
    try:
        with safe_open(str(file), framework="pt", device=str(device)) as f:
            raw_meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"cannot read {str(file)!r} as a safetensors file: {err}") from err
    fmt = raw_meta.get("format")
    meta: dict[str, Any] = {}
    for k, v in raw_meta.items():
        try:
            meta[k] = json.loads(v)
        except json.JSONDecodeError:
            meta[k] = v
    if fmt in LEGACY_FORMATS:
        meta["task"], meta["format_version"] = LEGACY_FORMATS[fmt]
    elif fmt == FORMAT:
        version = meta.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(
                f"{str(file)!r} has checkpoint format version {version!r}; this psal reads "
                f"versions up to {FORMAT_VERSION}: upgrade psal"
            )
    else:
        raise ValueError(
            f"{str(file)!r} is not a psal checkpoint (format {fmt!r}, expected {FORMAT!r})"
        )
    if task is not None and meta.get("task") != task:
        raise ValueError(
            f"checkpoint {str(file)!r} was trained for task {meta.get('task')!r}, not {task!r}"
        )
    states: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(
                f"checkpoint {str(file)!r}: tensor {key!r} holds NaN or inf values; the "
                "weights are unusable (a damaged file, or a diverged training run)"
            )
        prefix, _, rest = key.partition(".")
        states.setdefault(prefix, {})[rest] = value
    meta["path"] = str(file)
    return states, meta


def build_network(
    meta: dict[str, Any], name: Any, kwargs: Any, state: dict[str, torch.Tensor], what: str
) -> torch.nn.Module:
    """The network a checkpoint describes (``name``, ``kwargs``) with its ``state`` loaded.

    A description that does not build (an unknown keyword, kwargs that are not a dict)
    or weights that do not fit it (missing keys, other shapes) are one ``ValueError``
    naming the file and ``what`` it describes, not torch's many-line report.
    """
    from .registry import create_model

    where = meta.get("path", "the checkpoint")
    try:
        if not isinstance(kwargs, dict):
            raise TypeError(f"kwargs must be a dict, got {type(kwargs).__name__}")
        net = create_model(name, **kwargs)
        net.load_state_dict(state)
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()] or [repr(err)]
        first = " ".join(lines[:2])  # torch's first line only says "Error(s) in loading"
        raise ValueError(
            f"checkpoint {str(where)!r}: its {what} weights do not match its description "
            f"({name!r}: {first[:300]})"
        ) from err
    return net

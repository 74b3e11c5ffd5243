"""The weights file of an inpainting run: one safetensors file, self-describing.

A weights file holds the state dicts of several networks under name prefixes
(``generator.``, ``critic_global.``, ...) and string metadata:

- ``format``: ``"psal.inpaint/1"``;
- ``generator``: JSON ``{"name": registry name, "kwargs": {...}}``, enough to rebuild the
  generator with :func:`psal.models.create_model`;
- ``image_size``: the training image size;
- ``step``: the training step;
- ``config``: the full training configuration (JSON), written with every checkpoint.

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

__all__ = ["FORMAT", "load_weights", "resolve_weights_file", "save_weights"]

FORMAT = "psal.inpaint/1"
LATEST = "latest.json"


def save_weights(
    path: str | os.PathLike[str],
    states: dict[str, dict[str, torch.Tensor]],
    metadata: dict[str, Any],
) -> None:
    """Write state dicts under their prefixes, atomically, with JSON-encoded metadata."""
    flat: dict[str, torch.Tensor] = {}
    for prefix, state in states.items():
        for key, value in state.items():
            flat[f"{prefix}.{key}"] = value.detach().to("cpu").contiguous().clone()
    meta = {"format": FORMAT}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=meta)


def resolve_weights_file(path: str | os.PathLike[str]) -> Path:
    """Find the weights file of ``path``: the file itself, or a run's latest checkpoint.

    ``path`` may be a ``.safetensors`` file, a run folder or its ``checkpoints`` folder.

    Raises:
        FileNotFoundError: nothing usable at ``path``.
    """
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        for folder in (p, p / "checkpoints"):
            pointer = folder / LATEST
            if pointer.is_file():
                target = folder / json.loads(pointer.read_text())["weights"]
                if target.is_file():
                    return target
                raise FileNotFoundError(f"{pointer} points to a missing file {target}")
        raise FileNotFoundError(
            f"{str(p)!r} is a folder without checkpoints (no {LATEST} in it or in "
            "its checkpoints/ folder)"
        )
    raise FileNotFoundError(f"checkpoint {str(p)!r} does not exist")


def load_weights(
    path: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Read a weights file: ``({prefix: state_dict}, metadata)`` with JSON values decoded.

    Raises:
        FileNotFoundError: see :func:`resolve_weights_file`.
        ValueError: the file is not a psal inpainting weights file.
    """
    file = resolve_weights_file(path)
    try:
        with safe_open(str(file), framework="pt", device=str(device)) as f:
            raw_meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"cannot read {str(file)!r} as a safetensors file: {err}") from err
    if raw_meta.get("format") != FORMAT:
        raise ValueError(
            f"{str(file)!r} is not a psal inpainting checkpoint (format "
            f"{raw_meta.get('format')!r}, expected {FORMAT!r})"
        )
    meta: dict[str, Any] = {}
    for k, v in raw_meta.items():
        try:
            meta[k] = json.loads(v)
        except json.JSONDecodeError:
            meta[k] = v
    states: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        prefix, _, rest = key.partition(".")
        states.setdefault(prefix, {})[rest] = value
    meta["path"] = str(file)
    return states, meta

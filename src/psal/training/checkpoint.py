"""Checkpoints of a training run: weights in safetensors, training state beside them.

A run folder's ``checkpoints/`` holds, for step ``N``:

- ``step_0000000N.safetensors``: the weights of every network of the task (see
  :mod:`psal.models.io`), with the format version, the task, the full training config
  and what the task's inference wrapper needs in its metadata; usable alone for
  inference and evaluation;
- ``step_0000000N.state.pt``: the training state: ``format_version``, ``task``,
  ``step``, ``optimizers``, ``schedulers`` and ``scalers`` (name -> state dict),
  ``skipped_steps``, ``world_size``, ``config``, and per rank (``ranks``) the RNG
  states (torch, CUDA, numpy, python), the data stream position and digest, and a
  digest of the rank's weights (equal on every rank of a synchronised run);
  written with :func:`torch.save`, read with ``torch.load(weights_only=True)``;
- ``latest.json``: ``{"step", "weights", "state"}``, the pointer to the newest complete
  checkpoint.

Every file is written atomically (temporary file + rename) and the pointer last, so a
kill at any moment leaves the previous checkpoint and the pointer to it intact.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.io import LATEST, load_weights, save_weights
from ..utils.atomic import atomic_path

__all__ = [
    "capture_rng",
    "existing_step",
    "load_checkpoint",
    "restore_rng",
    "run_folder",
    "save_checkpoint",
]


def capture_rng(device: torch.device | None = None) -> dict[str, Any]:
    """RNG states of torch (and CUDA on ``device``), numpy and python, as safe types."""
    np_state = np.random.get_state()  # noqa: NPY002 - the legacy global RNG is saved too
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore the states captured by :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            "MT19937",
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    step: int,
    weights: dict[str, dict[str, torch.Tensor]],
    metadata: dict[str, Any],
    state: dict[str, Any],
    keep: int = 3,
    task: str = "inpaint",
) -> Path:
    """Write a checkpoint of ``step`` atomically, update ``latest.json``, prune old ones.

    Returns:
        The weights file.
    """
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"step_{step:08d}"
    weights_file, state_file = folder / f"{stem}.safetensors", folder / f"{stem}.state.pt"
    with atomic_path(state_file) as tmp:
        torch.save(state, tmp)
    save_weights(weights_file, weights, {**metadata, "step": step}, task=task)
    pointer = {"step": step, "weights": weights_file.name, "state": state_file.name}
    with atomic_path(folder / LATEST) as tmp:
        tmp.write_text(json.dumps(pointer, indent=2) + "\n")
    if keep > 0:
        stems = sorted({p.name.split(".")[0] for p in folder.glob("step_*.safetensors")})
        for old in stems[:-keep]:
            if old != stem:
                for suffix in (".safetensors", ".state.pt"):
                    (folder / f"{old}{suffix}").unlink(missing_ok=True)
    return weights_file


def run_folder(weights_file: str | os.PathLike[str]) -> Path:
    """The run folder a weights file belongs to (the parent of its ``checkpoints/``)."""
    file = Path(weights_file).resolve()
    return file.parent.parent if file.parent.name == "checkpoints" else file.parent


def existing_step(run_dir: str | os.PathLike[str]) -> int | None:
    """The step of the run held in ``run_dir`` (its newest checkpoint), or None if none.

    A folder holds a run when its ``checkpoints/`` has a ``latest.json`` pointer or a
    ``step_*.safetensors`` file; a missing or empty folder holds none.
    """
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    steps = []
    for file in folder.glob("step_*.safetensors"):
        try:
            steps.append(int(file.name[len("step_") :].split(".")[0]))
        except ValueError:
            continue
    pointer = folder / LATEST
    if pointer.is_file():
        try:
            steps.append(int(json.loads(pointer.read_text())["step"]))
        except (ValueError, KeyError, TypeError):
            steps.append(0)
    return max(steps) if steps else None


#: Keys every training state file has.
STATE_KEYS = ("step", "world_size", "optimizers", "scalers", "ranks")


def load_checkpoint(
    path: str | os.PathLike[str], task: str | None = None
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any], dict[str, Any]]:
    """Load ``(weights, metadata, training_state)`` of a checkpoint.

    ``path`` is a weights file or a run / checkpoints folder (its latest checkpoint).
    The training state is read with ``torch.load(weights_only=True)``.

    Args:
        path: the checkpoint.
        task: if given, the checkpoint must have been trained for this task.

    Raises:
        FileNotFoundError: no checkpoint, or its training state file is missing.
        ValueError: another task's checkpoint, or a corrupt or incomplete state file.
    """
    weights, meta = load_weights(path, task=task)
    file = Path(meta["path"])
    state_file = file.with_name(file.name.replace(".safetensors", ".state.pt"))
    if not state_file.is_file():
        raise FileNotFoundError(
            f"training state {str(state_file)!r} of checkpoint {str(file)!r} is missing; "
            "the weights alone can be used for inference but not to resume training"
        )
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, EOFError, RuntimeError (zip), ...
        raise ValueError(
            f"training state {str(state_file)!r} is corrupt ({type(err).__name__}); resume "
            "from an earlier checkpoint (pass its .safetensors file to --resume)"
        ) from err
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(
            f"training state {str(state_file)!r} is incomplete (missing "
            f"{', '.join(map(repr, missing))}); resume from an earlier checkpoint"
        )
    return weights, meta, state

"""A run of ``psal train colorize|upscale`` killed and resumed ends where an unbroken run ends.

The inpainting task has its own, more detailed test (``test_trainer.py``); these two
cover the other tasks' data streams, schedules and PSAL's PatchMatch seeds.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from psal.training import Trainer, apply_overrides
from psal.training.tasks import get_task

COMMON = {"model.kwargs.width": 4, "device": "cpu", "progress": False, "tensorboard": False,
          "model.kwargs.attention": "psal", "data.num_workers": 0, "data.val_fraction": 0.25,
          "save_every": 1, "steps": 4, "batch_size": 2}  # fmt: skip
TASK_ARGS = {
    "colorize": {"data.image_size": 24, "model.kwargs.value_width": 2},
    "upscale": {"data.patch": 12, "model.kwargs.blocks": 1, "optim.scheduler": "step"},
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from skimage import data

    root = tmp_path_factory.mktemp("resume_photos")
    for name in ["astronaut", "coffee", "chelsea", "rocket"]:
        Image.fromarray(getattr(data, name)()[:64, :72]).save(root / f"{name}.png")
    return root


def _config(task, photos, out, **extra):
    values = {**COMMON, **TASK_ARGS[task], "data.path": photos, "out": out, **extra}
    return apply_overrides(get_task(task).config_class(), [f"{k}={v}" for k, v in values.items()])


def _weights(trainer):
    return {
        f"{name}.{key}": value.detach().clone()
        for name, net in trainer.task.networks.items()
        for key, value in net.state_dict().items()
    }


@pytest.mark.parametrize("task", ["colorize", "upscale"])
def test_killed_and_resumed_run_matches_an_unbroken_one(task, photos, tmp_path):
    straight = Trainer(_config(task, photos, tmp_path / "a"))
    straight.fit()
    killed = Trainer(_config(task, photos, tmp_path / "b"))
    killed.fit(until=2)  # "killed" after step 2: its checkpoint is on disk
    del killed
    resumed = Trainer(_config(task, photos, tmp_path / "b"), resume=tmp_path / "b")
    assert resumed.step == 2
    resumed.fit()
    assert resumed.step == straight.step == 4
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.stream.digest == straight.stream.digest != ""
    # a different seed gives different weights: the comparison above can fail
    other = Trainer(_config(task, photos, tmp_path / "c", seed=7))
    other.fit()
    c = _weights(other)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].numel() > 1)

"""The engine with a task written against the documented interface (no inpainting):
one network, L1 loss, a learning-rate schedule; exact resume of the schedule too."""

import warnings
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from psal.training import (
    BaseConfig,
    ModelConfig,
    Task,
    Trainer,
    get_task,
    list_tasks,
    load_checkpoint,
    make_scheduler,
    register_task,
)


class _Noisy(torch.utils.data.Dataset):
    """Random 8x8 images and noisy copies, from each ``(index, seed)`` key."""

    def __len__(self):
        return 10

    def __getitem__(self, key):
        index, seed = key
        g = torch.Generator().manual_seed(int(seed))
        clean = torch.rand(3, 8, 8, generator=g)
        noisy = clean + 0.1 * torch.randn(3, 8, 8, generator=g)
        return {"index": torch.tensor(index), "clean": clean, "noisy": noisy}


@dataclass
class _ToyConfig(BaseConfig):
    model: ModelConfig = field(default_factory=lambda: ModelConfig("toy_conv", {"width": 4}))


@register_task("toy_denoise")
class _ToyTask(Task):
    config_class = _ToyConfig

    def __init__(self, config, runtime):
        super().__init__(config, runtime)
        self.train_set = _Noisy()
        w = config.model.kwargs["width"]
        net = nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, 3, 3, padding=1))
        self.networks = {"net": net.to(runtime.device)}
        self.net_train = runtime.wrap(net)
        opt = torch.optim.Adam(net.parameters(), config.optim.lr, config.optim.betas)
        self.optimizers = {"net": opt}
        self.schedulers = {"net": make_scheduler(opt, config.optim, config.steps)}

    def train_step(self, next_batch, images):
        batch = next_batch()
        with self.runtime.autocast():
            loss = (self.net_train(batch["noisy"]) - batch["clean"]).abs().mean()
        self.runtime.step(loss.float(), "net", "l1 loss")
        return {"l1": loss.item()}, None

    def validate(self):
        return {"lr": self.optimizers["net"].param_groups[0]["lr"]}


def _config(tmp_path, **kw):
    cfg = _ToyConfig(out=str(tmp_path), steps=6, batch_size=2, device="cpu", seed=3)
    cfg.data.path, cfg.data.num_workers = "unused", 0
    cfg.tensorboard = cfg.progress = False
    cfg.optim.scheduler, cfg.optim.warmup_steps, cfg.optim.lr = "cosine", 2, 1e-2
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_a_task_of_the_documented_interface_trains_and_resumes_exactly(tmp_path):
    assert "toy_denoise" in list_tasks() and get_task("toy_denoise") is _ToyTask
    straight = Trainer(_config(tmp_path / "a"))
    results = straight.fit()
    assert results["lr"] == 0.0  # the cosine schedule (after 2 warm-up steps) ends at 0
    first = Trainer(_config(tmp_path / "b"))
    first.fit(until=3)
    resumed = Trainer(_config(tmp_path / "b"), resume=tmp_path / "b")
    assert resumed.step == 3
    resumed.fit()
    for (k, a), b in zip(straight.task.networks["net"].state_dict().items(),
                         resumed.task.networks["net"].state_dict().values()):  # fmt: skip
        assert torch.equal(a, b), k
    assert (
        straight.task.schedulers["net"].state_dict() == resumed.task.schedulers["net"].state_dict()
    )
    weights, meta, state = load_checkpoint(tmp_path / "b", task="toy_denoise")
    assert meta["task"] == state["task"] == "toy_denoise" and set(weights) == {"net"}
    assert set(state["schedulers"]) == {"net"} and state["format_version"] == 2
    with pytest.raises(ValueError, match="trained for task 'toy_denoise', not 'inpaint'"):
        load_checkpoint(tmp_path / "b", task="inpaint")


def test_settings_changed_on_resume_take_effect_and_moments_are_kept(tmp_path):
    # optim.lr on resume used to be overridden by the checkpoint's optimiser and schedule
    # (the run's config.json said the new value): the advice after a divergence
    # ("lower optim.lr and resume") did nothing
    first = Trainer(_config(tmp_path / "r"))
    first.fit(until=3)
    saved = first.task.optimizers["net"].state_dict()["state"]
    cfg = _config(tmp_path / "r")
    cfg.optim.lr, cfg.optim.betas = 1e-3, (0.8, 0.99)
    with pytest.warns(RuntimeWarning, match=r"optim.betas .*; optim.lr 0.01 -> 0.001\)"):
        resumed = Trainer(cfg, resume=tmp_path / "r")
    opt, sched = resumed.task.optimizers["net"], resumed.task.schedulers["net"]
    factor = sched.lr_lambdas[0](3)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * factor)
    assert opt.param_groups[0]["betas"] == (0.8, 0.99) and sched.base_lrs == [1e-3]
    for i, s in opt.state_dict()["state"].items():  # Adam's moments: the checkpoint's
        assert torch.equal(s["exp_avg"], saved[i]["exp_avg"])
    resumed.fit()
    assert resumed.task.validate()["lr"] == 0.0
    with pytest.warns(RuntimeWarning, match="optim.lr 0.001 -> 0.01"):  # back to 0.01
        same = Trainer(_config(tmp_path / "r"), resume=tmp_path / "r")
    assert same.task.optimizers["net"].param_groups[0]["lr"] == 0.0


def test_resume_after_switching_mixed_precision(tmp_path):
    # a run saved without a gradient scaler resumed with one (optim.amp=fp16), or the
    # reverse, used to stop on torch's "The source state dict is empty"
    first = Trainer(_config(tmp_path / "m"))
    first.fit(until=2)
    cfg = _config(tmp_path / "m")
    cfg.optim.amp = "fp16"
    with pytest.warns(RuntimeWarning, match="optim.amp 'auto' -> 'fp16'"):
        resumed = Trainer(cfg, resume=tmp_path / "m")
    assert resumed.step == 2


def test_settings_changed_on_resume_are_named(tmp_path):
    """A resume with another seed (data order, crops) or batch size continued silently."""
    first = Trainer(_config(tmp_path / "s"))
    first.fit(until=2)
    with pytest.warns(RuntimeWarning) as record:
        Trainer(_config(tmp_path / "s", seed=4, batch_size=3), resume=tmp_path / "s")
    message = str(record[0].message)
    assert "batch_size (--batch-size) 2 -> 3; seed (--seed) 3 -> 4" in message
    assert "step_00000002.safetensors" in message and "from step 2 on" in message
    # the same settings, or only where and how often it reports: nothing to say
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(_config(tmp_path / "s"), resume=tmp_path / "s")
        Trainer(_config(tmp_path / "s", log_every=1, keep_checkpoints=1), resume=tmp_path / "s")

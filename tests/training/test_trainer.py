import json

import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import tiny_overrides

from psal.cli import main
from psal.data import InpaintingFolder, MaskGenerator
from psal.models import Inpainter, load_weights
from psal.training import TrainConfig, Trainer, apply_overrides, evaluate, load_checkpoint


def _config(data, out, **extra):
    return apply_overrides(TrainConfig(), tiny_overrides(data, out, **extra))


def _states(trainer):
    out = {}
    for name, net in trainer.task.networks.items():
        out.update({f"{name}.{k}": v for k, v in net.state_dict().items()})
    return out


def test_resume_continues_exactly(photo_folder, tmp_path):
    # psal attention draws PatchMatch seeds from torch's RNG: resuming must restore it
    extra = {"model.attention": "psal", "model.attention_options": '{"iters": 2}'}
    straight = Trainer(_config(photo_folder, tmp_path / "a", **extra))
    straight.fit()
    first = Trainer(_config(photo_folder, tmp_path / "b", **extra))
    first.fit(until=2)  # "killed" after step 2 (its checkpoint is on disk)
    assert first.step == 2
    del first
    resumed = Trainer(_config(photo_folder, tmp_path / "b", **extra), resume=tmp_path / "b")
    assert resumed.step == 2
    resumed.fit()
    assert resumed.step == straight.step == 4
    a, b = _states(straight), _states(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.stream.digest == straight.stream.digest
    assert resumed.stream.position == straight.stream.position
    sa = straight.task.optimizers["generator"].state_dict()["state"]
    sb = resumed.task.optimizers["generator"].state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    # and a run interrupted differently does differ (the comparison can fail)
    other = Trainer(_config(photo_folder, tmp_path / "c", seed=1, **extra))
    other.fit()
    assert not torch.equal(
        _states(other)["generator.coarse.encoder.0.0.weight"],
        a["generator.coarse.encoder.0.0.weight"],
    )


def test_checkpoint_contents_and_kept_files(photo_folder, tmp_path):
    trainer = Trainer(_config(photo_folder, tmp_path, steps=5, save_every=1, keep_checkpoints=2))
    trainer.fit()
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == [
        "latest.json",
        "step_00000004.safetensors",
        "step_00000004.state.pt",
        "step_00000005.safetensors",
        "step_00000005.state.pt",
    ]
    weights, meta, state = load_checkpoint(tmp_path)
    assert meta["step"] == 5 and state["step"] == 5
    assert meta["config"]["model"]["kwargs"]["width"] == 4 and state["config"] == meta["config"]
    assert set(weights) == {"generator", "critic_global", "critic_local"}
    assert set(state["ranks"][0]["rng"]) == {"torch", "numpy", "python"}
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 5


def test_killed_save_loses_nothing(photo_folder, tmp_path, monkeypatch):
    trainer = Trainer(_config(photo_folder, tmp_path, steps=1))
    trainer.fit()
    folder = tmp_path / "checkpoints"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    import psal.models.io as io

    def crash(tensors, path, metadata=None):
        with open(path, "wb") as fh:
            fh.write(b"half a file")
        raise KeyboardInterrupt  # as if killed in the middle of the write

    monkeypatch.setattr(io, "save_file", crash)
    trainer.config.steps = 2
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    # the new state file may be complete, but nothing points to it; no temporary files
    assert {k: v for k, v in after.items() if k in before} == before
    assert not [n for n in after if n.startswith(".")]
    assert json.loads(after["latest.json"])["step"] == 1
    monkeypatch.undo()
    resumed = Trainer(_config(photo_folder, tmp_path, steps=2), resume=tmp_path)
    assert resumed.step == 1


def test_sn_patchgan_with_free_form_masks(photo_folder, tmp_path):
    cfg = _config(
        photo_folder,
        tmp_path,
        steps=1,
        **{"model.critic": "sn-patchgan", "data.masks": "free-form"},
    )
    trainer = Trainer(cfg)
    logs, (out, _) = trainer.train_step()
    assert set(trainer.task.critics) == {"critic_patch"}
    assert all(np.isfinite(v) for v in logs.values())
    assert out.completed.shape == (2, 3, 32, 32)


def test_generator_learns(tmp_path):
    """A tiny generator trained on one part of a texture fills holes in the held-out part."""
    from skimage import data

    folder, held_out = tmp_path / "train", tmp_path / "held_out"
    folder.mkdir()
    held_out.mkdir()
    brick = np.stack([data.brick()] * 3, -1)
    brick = np.asarray(Image.fromarray(brick).resize((96, 96), Image.Resampling.BICUBIC))
    Image.fromarray(brick[:, :60]).save(folder / "left.png")
    Image.fromarray(brick[:, 60:]).save(held_out / "right.png")  # never trained on
    cfg = _config(
        folder,
        tmp_path / "run",
        steps=70,
        batch_size=8,
        **{
            "data.hole_size": 16,
            "data.max_delta": 4,
            "data.val_fraction": 0,
            "optim.lr": 2e-3,
            "optim.critic_lr": 2e-3,
        },
    )
    trainer = Trainer(cfg)
    fixed = InpaintingFolder(
        [held_out / "right.png"] * 16, 32, MaskGenerator("rect", 32, 16, 4), fixed=True
    )

    def hole_error():
        return evaluate(trainer.task.inpainter(), fixed, batch_size=16)["l1_hole"]

    start = hole_error()
    trainer.fit()
    end = hole_error()
    assert end < 0.7 * start, (start, end)  # measured: 0.112 -> 0.057


def test_cli_train_resume_eval(photo_folder, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "inpaint",
        "--data",
        str(photo_folder),
        "--out",
        str(out),
        "--steps",
        "2",
        "--image-size",
        "32",
        "--batch-size",
        "2",
        "--attention",
        "none",
        "--device",
        "cpu",
    ]
    extra = [o for o in tiny_overrides(photo_folder, out) if not o.startswith(("data.path", "out"))]
    extra = [o for o in extra if not o.startswith(("tensorboard", "steps"))]
    assert main([*args, *extra, "image_every=1"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    _, meta = load_weights(out)
    assert meta["step"] == 2 and meta["config"]["model"]["kwargs"]["width"] == 4
    # resume from the run folder with a larger budget: the stored config is reused
    assert main(["train", "inpaint", "--resume", "--out", str(out), "--steps", "3"]) == 0
    _, meta = load_weights(out)
    assert meta["step"] == 3 and meta["config"]["model"]["kwargs"]["width"] == 4

    report = tmp_path / "m.json"
    assert (
        main(
            [
                "eval",
                "inpaint",
                "--checkpoint",
                str(out),
                "--data",
                str(photo_folder),
                "--json",
                str(report),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "psnr" in table and "l1_hole" in table
    payload = json.loads(report.read_text())
    assert payload["metrics"]["images"] == 4 and payload["image_size"] == 32
    assert 0 < payload["metrics"]["l1"] < payload["metrics"]["l1_hole"] < 1
    # the same numbers as the Python API
    model = Inpainter.from_checkpoint(out, device="cpu")
    ds = InpaintingFolder(
        sorted(photo_folder.rglob("*.*")), 32, MaskGenerator("rect", 32), fixed=True
    )
    assert evaluate(model, ds)["psnr"] == pytest.approx(payload["metrics"]["psnr"], rel=1e-5)


def test_cli_errors(photo_folder, tmp_path, capsys):
    assert main(["train", "inpaint", "--out", str(tmp_path)]) == 1
    assert "data.path (--data) must be a folder of training images" in capsys.readouterr().err
    assert main(["train", "inpaint", "--resume", "--out", str(tmp_path / "none")]) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "inpaint", "--data", str(photo_folder), "model.nope=1"]) == 1
    assert "unknown config key 'model.nope'" in capsys.readouterr().err
    assert (
        main(
            [
                "eval",
                "inpaint",
                "--checkpoint",
                str(tmp_path / "x.safetensors"),
                "--data",
                str(photo_folder),
            ]
        )
        == 1
    )
    assert "does not exist" in capsys.readouterr().err


def test_mixed_precision_path_on_cpu(photo_folder, tmp_path):
    # the autocast code path (bfloat16 on CPU here; CUDA uses it by default)
    cfg = _config(photo_folder, tmp_path, **{"optim.amp": "bf16", "optim.grad_clip": 1.0})
    trainer = Trainer(cfg)
    logs, (out, _) = trainer.train_step()
    assert trainer.runtime.amp_dtype == torch.bfloat16 and out.coarse.dtype == torch.bfloat16
    assert "g_grad_norm" in logs and "d_grad_norm" in logs
    assert all(np.isfinite(v) for k, v in logs.items() if not k.endswith("grad_norm"))
    assert all(torch.isfinite(p).all() for p in trainer.task.generator.parameters())
    with pytest.raises(ValueError, match=r"optim\.amp"):
        Trainer(_config(photo_folder, tmp_path, **{"optim.amp": "int8"}))


@pytest.mark.parametrize("clip", [10.0, 0.0])
def test_non_finite_gradients_skip_the_update(photo_folder, tmp_path, clip):
    # clip 0 with amp off (the CPU defaults): the norm was not taken and a NaN gradient
    # reached the weights (the run then stopped on a NaN loss at the next step)
    trainer = Trainer(_config(photo_folder, tmp_path, **{"optim.grad_clip": clip}))
    assert trainer.runtime.amp_dtype is None
    params = list(trainer.task.generator.parameters())
    rt = trainer.runtime
    before = [p.detach().clone() for p in params]
    # a finite loss whose gradient is not
    hook = params[0].register_hook(lambda g: torch.full_like(g, float("nan")))
    norm = rt.step(params[0].sum() + params[2].sum(), "generator")
    hook.remove()
    assert not np.isfinite(norm) and rt.skipped_steps == 1
    assert all(torch.equal(a, p) for a, p in zip(before, params))
    loss = params[2].sum()
    assert np.isfinite(rt.step(loss, "generator"))
    assert rt.skipped_steps == 1 and not torch.equal(before[2], params[2])


@pytest.mark.parametrize(
    ("key", "value"), [("optim.scheduler", "cosine"), ("optim.warmup_steps", 10)]
)
def test_a_schedule_inpaint_does_not_make_is_refused(photo_folder, tmp_path, key, value):
    # inpaint trains at constant rates; a schedule or warm-up asked for was ignored
    with pytest.raises(ValueError, match=rf"^{key} must be .* for inpaint"):
        Trainer(_config(photo_folder, tmp_path / "s", **{key: value}))
    assert not (tmp_path / "s").exists()

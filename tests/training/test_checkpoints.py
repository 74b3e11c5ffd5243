"""Checkpoints: old format, another task's, corrupt training states, where resume writes;
training that diverges; attention settings that would silently switch attention off."""

import json
import random
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from psal.cli import main
from psal.models import DeepFillV1, Inpainter, load_weights, save_weights

TINY = [
    "--steps", "1", "--batch-size", "2", "--width", "4", "--attention", "none", "--device", "cpu",
    "--image-size", "32", "--num-workers", "0", "--no-progress", "--no-tensorboard",
    "model.critic_width=4", "optim.n_critic=1", "data.hole_size=8", "data.max_delta=2",
    "data.val_fraction=0", "val_every=0", "save_every=0",
]  # fmt: skip


def _train(data, out, *extra):
    return main(["train", "inpaint", "--data", str(data), "--out", str(out), *TINY, *extra])


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("psal: error: ") and "\n" not in err, err
    return err


@pytest.fixture(scope="module")
def legacy_run(photo_folder, tmp_path_factory):
    """A run in the exact layout psal < 0.2 wrote (checkpoint format 1)."""
    out = tmp_path_factory.mktemp("legacy") / "run"
    assert _train(photo_folder, out, "model.kwargs.stage2_dilated=legacy") == 0
    folder = out / "checkpoints"
    weights_file = folder / "step_00000001.safetensors"
    with safe_open(str(weights_file), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(meta["config"])
    kwargs = config["model"].pop("kwargs")
    del kwargs["stage2_dilated"]
    config["model"] = {
        "generator": config["model"].pop("name"),
        **kwargs,
        **config["model"],
    }  # model.generator, width, attention, attention_options, critic, critic_width
    config["optim"] = {k: v for k, v in config["optim"].items()
                       if k not in ("scheduler", "warmup_steps")}  # fmt: skip
    del config["loss"]["discount"]
    old_meta = {
        "format": "psal.inpaint/1",
        "generator": json.dumps({"name": "deepfill_v1", "kwargs": kwargs}),
        "image_size": meta["image_size"],
        "config": json.dumps(config),
        "step": meta["step"],
    }
    save_file(tensors, str(weights_file), metadata=old_meta)
    state_file = folder / "step_00000001.state.pt"
    state = torch.load(state_file, weights_only=True)
    for key in ("format_version", "task", "schedulers"):
        del state[key]
    state["config"] = config
    torch.save(state, state_file)
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_legacy_checkpoint_infers_and_resumes(photo_folder, legacy_run, tmp_path, capsys):
    _, meta = load_weights(legacy_run)
    assert meta["task"] == "inpaint" and meta["format_version"] == 1
    net = Inpainter.from_checkpoint(legacy_run, device="cpu")
    assert net.generator.stage2_dilated == "legacy"
    img = torch.rand(1, 3, 32, 32)
    hole = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    hole[..., 8:16, 8:16] = True
    assert net(img, hole).shape == img.shape
    run = tmp_path / "run"
    shutil.copytree(legacy_run, run)
    assert main(["train", "inpaint", "--resume", "--out", str(run), "--steps", "2",
                 "--no-progress"]) == 0  # fmt: skip
    assert "trained 1 step (now at step 2)" in capsys.readouterr().out
    _, meta = load_weights(run)
    assert meta["format_version"] == 2 and meta["step"] == 2
    assert meta["config"]["model"]["kwargs"]["stage2_dilated"] == "legacy"


def test_checkpoint_of_another_task_is_one_line(photo_folder, tmp_path, capsys):
    path = tmp_path / "colorize.safetensors"
    net = DeepFillV1(width=4, attention="none")
    spec = {"name": "deepfill_v1", "kwargs": {"width": 4, "attention": "none"}}
    save_weights(path, {"generator": net.state_dict()}, {"generator": spec}, task="colorize")
    with pytest.raises(ValueError, match="was trained for task 'colorize', not 'inpaint'"):
        Inpainter.from_checkpoint(path)
    args = ["eval", "inpaint", "--checkpoint", str(path), "--data", str(photo_folder)]
    assert main(args) == 1
    assert f"checkpoint {str(path)!r} was trained for task 'colorize', not 'inpaint'" in (
        _one_error_line(capsys)
    )
    assert main(["train", "inpaint", "--resume", str(path)]) == 1
    assert "was trained for task 'colorize', not 'inpaint'" in _one_error_line(capsys)


@pytest.fixture
def run(photo_folder, tmp_path):
    out = tmp_path / "run"
    assert _train(photo_folder, out) == 0
    return out


def test_resume_writes_only_into_the_checkpoints_folder(run, tmp_path, capsys):
    # a checkpoint naming another folder in its stored config (a downloaded one, say)
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "checkpoints").mkdir()
    (evil / "checkpoints" / "step_00000000.safetensors").write_bytes(b"precious")
    file = run / "checkpoints" / "step_00000001.safetensors"
    with safe_open(str(file), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(meta["config"])
    config["out"] = str(evil)
    meta["config"] = json.dumps(config)
    save_file(tensors, str(file), metadata=meta)
    moved = tmp_path / "downloaded"
    shutil.move(run, moved)
    before = sorted(p.name for p in evil.rglob("*"))
    assert main(["train", "inpaint", "--resume",
                 str(moved / "checkpoints" / file.name), "--steps", "2", "--no-progress",
                 "keep_checkpoints=1"]) == 0  # fmt: skip
    assert sorted(p.name for p in evil.rglob("*")) == before  # nothing written or pruned
    assert (evil / "checkpoints" / "step_00000000.safetensors").read_bytes() == b"precious"
    assert (moved / "checkpoints" / "step_00000002.safetensors").is_file()
    # --out still decides when given
    other = tmp_path / "other"
    assert main(["train", "inpaint", "--resume", str(moved), "--out", str(other),
                 "--steps", "3", "--no-progress"]) == 0  # fmt: skip
    assert (other / "checkpoints" / "step_00000003.safetensors").is_file()
    # a pointer naming a file outside its folder is refused
    (moved / "checkpoints" / "latest.json").write_text(
        json.dumps({"step": 9, "weights": "../../evil/checkpoints/x.safetensors"})
    )
    assert main(["train", "inpaint", "--resume", str(moved), "--steps", "9"]) == 1
    assert "not a file in its own folder: refused" in _one_error_line(capsys)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (random.Random(0).randbytes(2000), "is corrupt ("),
        (b"\x80\x02garbage" * 50, "is corrupt ("),
        (b"", "is corrupt"),
        ({"step": 1}, "is incomplete (missing 'world_size', 'optimizers', 'scalers', 'ranks')"),
        ({"step": 1, "world_size": 1, "optimizers": {}, "scalers": {}, "ranks": []},
         "the training state of"),
    ],
)  # fmt: skip
def test_corrupt_training_state_is_one_line(run, capsys, content, expected):
    state_file = run / "checkpoints" / "step_00000001.state.pt"
    if isinstance(content, bytes):
        state_file.write_bytes(content)
    else:
        torch.save(content, state_file)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["train", "inpaint", "--resume", "--out", str(run), "--steps", "2"]) == 1
    err = _one_error_line(capsys)
    assert expected in err and "Traceback" not in err, err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_diverging_training_stops_without_a_nan_checkpoint(photo_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(photo_folder, out, "--steps", "4", "optim.lr=1e30", "save_every=1") == 1
    err = _one_error_line(capsys)
    assert "training diverged" in err and "optim.lr" in err
    for file in (out / "checkpoints").glob("*.safetensors"):
        states, _ = load_weights(file)
        assert all(torch.isfinite(t).all() for s in states.values() for t in s.values())


def test_attention_k_beyond_the_key_patches_is_refused(photo_folder, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--attention", "psal", "model.kwargs.attention_options.k=100000"]
    assert _train(photo_folder, out, *args) == 1
    err = _one_error_line(capsys)
    assert "model.kwargs.attention_options.k must be at most 48" in err and "100000" in err
    assert not out.exists()

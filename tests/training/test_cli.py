"""``psal train inpaint`` / ``psal eval inpaint``: one-line errors, nothing written on failure."""

import argparse
import json
import shutil

import pytest
from train_helpers import tiny_overrides

from psal.cli import main
from psal.cli._common import CLIError, resolve_device, run_command
from psal.training import TrainConfig, Trainer, apply_overrides

TINY = [
    "--steps", "2", "--batch-size", "2", "--width", "4", "--attention", "none", "--device", "cpu",
    "--image-size", "32", "--num-workers", "0", "--no-progress", "--no-tensorboard",
]  # fmt: skip
TINY_OVERRIDES = [
    "model.critic_width=4", "optim.n_critic=1", "data.hole_size=8", "data.max_delta=2",
    "data.val_fraction=0.25", "val_every=0", "save_every=0",
]  # fmt: skip


def _train(data, out, *extra, overrides=()):
    return main(
        ["train", "inpaint", "--data", str(data), "--out", str(out), *TINY, *extra,
         *TINY_OVERRIDES, *overrides]
    )  # fmt: skip


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("psal: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def tiny_run(photo_folder, tmp_path_factory):
    """A run folder trained for one step (copy it before changing it)."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    assert _train(photo_folder, out, "--steps", "1") == 0
    return out


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    return out


def test_resume_with_another_architecture_is_a_one_line_error(photo_folder, run_copy, capsys):
    before = _snapshot(run_copy)
    assert _train(photo_folder, run_copy, "--resume", "--steps", "2", "--image-size", "36") == 1
    err = _one_error_line(capsys)
    assert "does not match the config" in err
    assert "data.image_size (--image-size) 32 in the checkpoint, 36 now" in err
    assert main(["train", "inpaint", "--out", str(run_copy), "--resume", "--steps", "2",
                 "--no-progress", "model.width=8"]) == 1  # fmt: skip
    err = _one_error_line(capsys)
    assert "model.kwargs.width (--width) 4 in the checkpoint, 8 now" in err
    assert _snapshot(run_copy) == before  # nothing written, config.json included


def test_run_command_one_line_and_debug_traceback(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("Error(s) in loading state_dict:\n\tsize mismatch for w")

    args = argparse.Namespace(func=boom)
    monkeypatch.delenv("PSAL_DEBUG", raising=False)
    assert run_command(args) == 1
    err = _one_error_line(capsys)
    assert "Error(s) in loading state_dict" in err and "PSAL_DEBUG=1" in err
    monkeypatch.setenv("PSAL_DEBUG", "1")
    with pytest.raises(RuntimeError, match="size mismatch"):
        run_command(args)


@pytest.mark.parametrize("name", ["meta", "cuda:x", "cpu:0", "xla", " cpu", ""])
def test_resolve_device_accepts_only_real_devices(name):
    with pytest.raises(CLIError, match=r"^--device must be auto, cpu, cuda, cuda:N or mps"):
        resolve_device(name)


def test_resolve_device_known_names():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")


def test_train_device_meta_is_one_line(photo_folder, tmp_path, capsys):
    assert _train(photo_folder, tmp_path / "r", "--steps", "1", "--device", "meta") == 1
    assert "--device must be" in _one_error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_bad_image_size_on_resume_keeps_config_json(photo_folder, run_copy, capsys):
    before = _snapshot(run_copy)
    assert _train(photo_folder, run_copy, "--resume", "--steps", "2", "--image-size", "30") == 1
    err = _one_error_line(capsys)
    assert "data.image_size (--image-size) must be a multiple of 4" in err and "got 30" in err
    assert _snapshot(run_copy) == before
    assert json.loads((run_copy / "config.json").read_text())["data"]["image_size"] == 32


def test_bad_image_size_writes_nothing(photo_folder, tmp_path, capsys):
    out = tmp_path / "new"
    assert _train(photo_folder, out, "--steps", "1", "--image-size", "30") == 1
    assert "--image-size" in _one_error_line(capsys)
    # with psal attention the generator needs larger images (4 x the patch size)
    assert (
        _train(photo_folder, out, "--steps", "1", "--image-size", "8", "--attention", "psal") == 1
    )
    assert "at least 12" in _one_error_line(capsys)
    assert not out.exists()


def test_refuses_a_run_folder_without_resume(photo_folder, run_copy, capsys):
    before = _snapshot(run_copy)
    assert _train(photo_folder, run_copy, "--steps", "2") == 1
    err = _one_error_line(capsys)
    assert err == (
        f"psal: error: --out {run_copy} already holds a run (step 1); pass --resume to "
        "continue it or choose another --out (in Python: Trainer(config, "
        "resume=config.out), or another config.out)"
    )
    assert _snapshot(run_copy) == before
    # the Python API refuses too, and says how in Python
    cfg = apply_overrides(TrainConfig(), tiny_overrides(run_copy.parent, run_copy))
    with pytest.raises(ValueError, match=r"already holds a run.*resume=config\.out"):
        Trainer(cfg)


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_images_are_skipped_and_named(photo_folder, tmp_path, capfd, workers):
    data = tmp_path / "data"
    shutil.copytree(photo_folder, data)
    good = (data / "a.png").read_bytes()
    (data / "a.png").write_bytes(good[: len(good) // 2])  # truncated PNG: found when decoded
    (data / "empty.png").write_bytes(b"")  # no header: found before training
    (data / "notes.jpg").write_text("not an image")
    out = tmp_path / "run"
    # batch 4 = every image, so the first batch (read by a worker process) holds it
    args = ["--steps", "1", "--num-workers", str(workers), "--batch-size", "4"]
    assert _train(data, out, *args, overrides=["data.val_fraction=0"]) == 0
    err = capfd.readouterr().err
    assert "2 unreadable image file(s) skipped" in err and "empty.png" in err, err
    assert f"cannot read image {str(data / 'a.png')!r}" in err, err
    assert "another image takes its place" in err and "Traceback" not in err


def test_no_readable_image_is_one_line(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes(b"")
    (data / "b.jpg").write_text("no")
    assert _train(data, tmp_path / "run") == 1
    err = _one_error_line(capsys)
    assert "none of the 2 image files can be read" in err and "--data" in err, err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--seed", "-1"], "seed (--seed) must be in [0, 2**63), got -1"),
        (["--batch-size", "0"], "batch_size (--batch-size) must be >= 1, got 0"),
        (["--steps", "-1"], "steps (--steps) must be >= 0, got -1"),
        (["--width", "1"], "model.kwargs.width (--width) must be >= 2, got 1"),
        (["--num-workers", "-1"], "data.num_workers (--num-workers) must be >= 0, got -1"),
        (["--image-size", "0"], "data.image_size (--image-size) must be >= 4, got 0"),
    ],
)
def test_train_numeric_flag_errors(photo_folder, tmp_path, capsys, flags, expected):
    assert _train(photo_folder, tmp_path / "r", *flags) == 1
    assert _one_error_line(capsys) == f"psal: error: {expected}"
    assert not (tmp_path / "r").exists()


def test_train_override_errors_name_the_key(photo_folder, tmp_path, capsys):
    assert _train(photo_folder, tmp_path / "r", overrides=["optim.lr=0"]) == 1
    assert "optim.lr must be a finite number > 0, got 0.0" in _one_error_line(capsys)
    assert _train(photo_folder, tmp_path / "r", overrides=["data.hole_size=40"]) == 1
    assert "data.hole_size must be None or in [1, data.image_size = 32]" in _one_error_line(capsys)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--batch-size", "0"], "batch_size (--batch-size) must be >= 1, got 0"),
        (["--image-size", "0"], "image_size (--image-size) must be >= 8, got 0"),
        (["--limit", "0"], "limit (--limit) must be >= 1, got 0"),
        (["--mask-seed", "-1"], "mask_seed (--mask-seed) must be >= 0, got -1"),
        (["--seed", "-2"], "seed (--seed) must be >= 0, got -2"),
    ],
)
def test_eval_numeric_flag_errors(photo_folder, tiny_run, capsys, flags, expected):
    args = ["eval", "inpaint", "--checkpoint", str(tiny_run), "--data", str(photo_folder)]
    assert main([*args, "--device", "cpu", *flags]) == 1
    assert _one_error_line(capsys) == f"psal: error: {expected}"


def test_eval_repeats_exactly_with_psal_attention(photo_folder, tmp_path, capsys):
    out = tmp_path / "psal"
    attention = ["--attention", "psal"]
    assert _train(photo_folder, out, "--steps", "1", *attention,
                  overrides=['model.attention_options={"iters": 2}']) == 0  # fmt: skip
    report = tmp_path / "m.json"

    def metrics(*extra):
        args = ["eval", "inpaint", "--checkpoint", str(out), "--data", str(photo_folder)]
        assert main([*args, "--device", "cpu", "--json", str(report), *extra]) == 0
        return json.loads(report.read_text())

    first, second = metrics(), metrics()
    assert first == second and first["seed"] == 0
    # PatchMatch's randomness does matter: another seed gives other numbers
    other = metrics("--seed", "1")
    assert other["metrics"] != first["metrics"] and other["seed"] == 1


def test_help_has_examples(capsys):
    for command in (["train", "inpaint"], ["eval", "inpaint"]):
        with pytest.raises(SystemExit) as info:
            main([*command, "--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"psal {' '.join(command)} --" in text
        assert "PSAL_DEBUG=1" in text


def test_no_step_to_run_writes_nothing(photo_folder, run_copy, tmp_path, capsys):
    out = tmp_path / "zero"
    assert _train(photo_folder, out, "--steps", "0") == 0
    assert "nothing to train" in capsys.readouterr().out
    assert not out.exists()
    before = _snapshot(run_copy)
    assert _train(photo_folder, run_copy, "--resume", "--steps", "1") == 0
    assert "nothing to train: the run is at step 1" in capsys.readouterr().out
    assert _snapshot(run_copy) == before
    assert _train(photo_folder, run_copy, "--resume", "--steps", "2") == 0
    assert "trained 1 step (now at step 2); checkpoints in" in capsys.readouterr().out


def test_overrides_may_sit_between_options(photo_folder, tmp_path, capsys):
    # argparse alone takes only the first run of KEY=VALUE; the rest must not be lost
    argv = ["train", "inpaint", "model.width=8", "--data", str(photo_folder), "--out",
            str(tmp_path / "r"), "model.nope=1", "--steps", "1"]  # fmt: skip
    assert main(argv) == 1
    assert "model.nope" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["train", "inpaint", "--data", str(photo_folder), "--bogus", "model.width=8"])
    assert info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_an_out_that_cannot_be_a_folder_is_refused_before_any_work(photo_folder, tmp_path, capsys):
    # it used to be found after the first training step, as a bare OS error
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert _train(photo_folder, afile) == 1
    assert "out (--out)" in _one_error_line(capsys) and afile.read_text() == "x"
    assert _train(photo_folder, afile / "run") == 1
    assert "is a file, not a folder" in _one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no probe left


def test_after_sigterm_only_the_dead_workers_report_is_dropped(monkeypatch):
    # a SIGTERM to the process group kills the data workers too; torch's report of it
    # came twenty lines after "psal: terminated"
    import sys
    from types import SimpleNamespace

    from psal.cli._common import _quiet_data_workers

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    _quiet_data_workers()
    dead = RuntimeError("DataLoader worker (pid 7) is killed by signal: Terminated. ")
    sys.unraisablehook(SimpleNamespace(exc_value=dead))
    other = SimpleNamespace(exc_value=ValueError("something else"))
    sys.unraisablehook(other)
    assert seen == [other]

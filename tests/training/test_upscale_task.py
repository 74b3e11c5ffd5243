from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from psal.cli import main
from psal.models import Upscaler


@pytest.fixture
def folder(tmp_path):
    from skimage import data

    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    for i, name in enumerate(["astronaut", "coffee", "chelsea"]):
        im = getattr(data, name)()[:64, :72]
        Image.fromarray(im).save(d / ("sub" if i else ".") / f"{name}.png")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(d / "tiny.png")
    return d


def _train(folder, out, *extra):
    return main(["train", "upscale", "--data", str(folder), "--out", str(out), "--steps", "2",
                 "--patch", "12", "--width", "4", "--blocks", "1", "--no-tensorboard",
                 "--no-progress", "batch_size=2", "data.num_workers=0", "device=cpu",
                 "data.val_fraction=0.34", *extra])  # fmt: skip


def test_train_eval_upscale_and_errors(folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(folder, run, "--attention", "none") == 0
    err = capsys.readouterr().err
    assert "1 image(s) smaller than the 24 HR crop skipped" in err
    net = Upscaler.from_checkpoint(run, device="cpu")
    assert net.scale == 2
    js = tmp_path / "eval.json"
    code = main(["eval", "upscale", "--checkpoint", str(run), "--data", str(folder / "sub"),
                 "--json", str(js)])  # fmt: skip
    assert code == 0
    report = json.loads(js.read_text())
    assert set(report["rows"]) == {"network", "bicubic", "psal.upscale"}
    assert report["rows"]["psal.upscale"]["y_psnr"] > report["rows"]["bicubic"]["y_psnr"]
    out = tmp_path / "x2.png"
    img = folder / "sub" / "coffee.png"
    assert (
        main(["upscale", str(img), "--scale", "2", "--checkpoint", str(run), "-o", str(out)]) == 0
    )
    assert Image.open(out).size == (144, 128)
    capsys.readouterr()
    bad = tmp_path / "x3.png"
    assert (
        main(["upscale", str(img), "--scale", "3", "--checkpoint", str(run), "-o", str(bad)]) == 1
    )
    assert "trained for x2" in capsys.readouterr().err and not bad.exists()


def test_bad_scale_and_no_usable_image(folder, tmp_path, capsys):
    assert _train(folder, tmp_path / "r", "--scale", "5") == 1
    assert "data.scale (--scale)" in capsys.readouterr().err
    assert _train(folder, tmp_path / "r2", "--patch", "200") == 1
    assert "smaller than the 400x400 HR crop" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()


def test_checkpoint_of_another_task_is_refused(folder, tmp_path, capsys):
    from psal.models import save_weights

    other = tmp_path / "inpaint.safetensors"
    save_weights(other, {"generator": {}}, {"generator": {"name": "deepfill_v1"}}, task="inpaint")
    out = tmp_path / "o.png"
    img = folder / "sub" / "coffee.png"
    assert main(["upscale", str(img), "--checkpoint", str(other), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'inpaint', not 'upscale'" in err and not out.exists()


def test_guide_option_and_runs_stored_before_it(folder, tmp_path):
    """--guide picks the cross-scale search; a stored config without it meant features."""
    from psal.training.tasks.upscale import UpscaleTask

    run = tmp_path / "run"
    assert _train(folder, run, "--attention", "none", "--guide", "features") == 0
    assert Upscaler.from_checkpoint(run, device="cpu").network.guide is None
    old = {"model": {"name": "edsr_psal", "kwargs": {"width": 4, "attention": "psal"}}}
    new = UpscaleTask.upgrade_config(old, 3)
    assert new["model"]["kwargs"]["guide"] == "features" and "guide" not in old["model"]["kwargs"]
    assert new["model"]["kwargs"]["guide_gate"] is False
    kept = {"model": {"kwargs": {"guide": "image"}}}  # stored with guide, before the gate
    assert UpscaleTask.upgrade_config(kept, 3)["model"]["kwargs"] == {
        "guide": "image",
        "guide_gate": False,
    }
    kw = UpscaleTask.config_class().model.kwargs  # new runs
    assert kw["guide"] == "image" and kw["guide_gate"] is True


def test_eval_a_shipped_network_by_name(folder, tmp_path, capsys):
    js = tmp_path / "eval.json"
    code = main(["eval", "upscale", "--model", "edsr-x2", "--data", str(folder / "sub"),
                 "--limit", "1", "--json", str(js)])  # fmt: skip
    assert code == 0
    report = json.loads(js.read_text())
    assert report["model"] == "edsr-x2" and "checkpoint" not in report
    assert report["scale"] == 2 and report["images"] == 1
    capsys.readouterr()
    assert main(["eval", "upscale", "--data", str(folder)]) == 1
    assert "--checkpoint (or --model" in capsys.readouterr().err
    both = ["eval", "upscale", "--model", "edsr-x2", "--checkpoint", "x", "--data", str(folder)]
    assert main(both) == 1
    assert "give one" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: not a shipped name
        main(["eval", "upscale", "--model", "nope", "--data", str(folder)])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_eval_skips_a_truncated_image_before_any_work(folder, tmp_path, capsys):
    # its header reads, its data does not: named and skipped up front, not met
    # half-way through the table
    good = (folder / "sub" / "coffee.png").read_bytes()
    (folder / "sub" / "broken.png").write_bytes(good[: len(good) // 2])
    js = tmp_path / "eval.json"
    code = main(["eval", "upscale", "--model", "edsr-x2", "--data", str(folder / "sub"),
                 "--json", str(js)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "1 unreadable image file(s) skipped" in err and "broken.png" in err, err
    assert json.loads(js.read_text())["images"] == 2


def test_eval_limit_counts_scored_images_and_names_the_small_ones(folder, tmp_path, capsys):
    # a 14x14 image comes first: too small to score at x2 (SSIM's 11-pixel window after
    # 2 pixels shaved at each border); it used to take the only place under --limit 1
    # silently, or stop the whole evaluation with SSIM's error
    Image.fromarray(np.zeros((14, 14, 3), np.uint8)).save(folder / "a_tiny.png")
    js = tmp_path / "eval.json"
    code = main(["eval", "upscale", "--model", "edsr-x2", "--data", str(folder),
                 "--limit", "1", "--json", str(js)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert json.loads(js.read_text())["images"] == 1
    assert "1 image(s) smaller than 15 pixels a side skipped" in err, err
    only_tiny = tmp_path / "tiny_only"
    only_tiny.mkdir()
    (only_tiny / "tiny.png").write_bytes((folder / "a_tiny.png").read_bytes())
    code = main(["eval", "upscale", "--model", "edsr-x2", "--data", str(only_tiny)])
    err = capsys.readouterr().err
    assert code == 1 and "--data: all 1 readable images are smaller than 15 pixels" in err, err


def test_eval_means_leave_out_what_a_flat_image_cannot_score(folder, tmp_path, capsys):
    # a flat image upscales exactly (infinite PSNR) and has no gradient to match: its
    # values used to turn the means into inf / -inf and a gradient ratio of 5e5
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "coffee.png").write_bytes((folder / "sub" / "coffee.png").read_bytes())
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(flat / "gray.png")
    js = tmp_path / "eval.json"
    code = main(["eval", "upscale", "--model", "edsr-x2", "--data", str(flat),
                 "--json", str(js)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads(js.read_text())
    assert report["images"] == 2
    for name, row in report["rows"].items():  # coffee's scores: finite, plausible
        assert 5 < row["y_psnr"] < 60 and 5 < row["rgb_psnr"] < 60, (name, row)
        assert 0 < row["grad_ratio"] < 3, (name, row)
    assert isinstance(report["metrics"]["gain_vs_bicubic"], float)


def test_model_settings_that_the_network_refuses_are_named(folder, tmp_path, capsys):
    for override, needle in (("model.kwargs.widht=3", "unexpected keyword argument 'widht'"),
                             ("model.name=deepfill_v1", "model.name='deepfill_v1'")):  # fmt: skip
        out = tmp_path / "run"
        assert _train(folder, out, override) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after the tiny.png warning
        assert err.startswith("psal: error: model (model.name=") and needle in err, err
        assert not out.exists()


def test_validation_means_leave_out_infinite_values():
    import math

    from psal.training.tasks.upscale.task import _finite_mean

    assert _finite_mean([30.0, math.inf, 40.0]) == 35.0  # a flat crop: exact, infinite PSNR
    assert math.isnan(_finite_mean([math.inf]))


def test_data_scan_reads_each_header_once(folder, monkeypatch, capsys):
    import PIL.Image

    from psal.training.runtime import Runtime
    from psal.training.tasks.upscale import UpscaleTask

    (folder / "empty.png").write_bytes(b"")  # unreadable: skipped and named
    opened = []
    real_open = PIL.Image.open

    def counting_open(fp, *args, **kwargs):
        opened.append(str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counting_open)
    cfg = UpscaleTask.config_class()
    cfg.data.path, cfg.data.patch = str(folder), 12
    cfg.model.kwargs.update(width=4, blocks=1)
    with pytest.warns(UserWarning, match=r"1 unreadable image file\(s\) skipped: .*empty\.png"):
        task = UpscaleTask(cfg, Runtime("cpu"))
    assert sorted(opened) == sorted(set(opened)) and len(opened) == 5, opened
    assert "1 image(s) smaller than the 24 HR crop skipped" in capsys.readouterr().err
    assert len(task.train_set) + len(task.val_set or []) == 3


def test_validation_split_is_fixed_by_the_files_not_the_run(tmp_path):
    """Seeds, scales (size filters) and unreadable files do not mix train and val."""
    from psal.training.runtime import Runtime
    from psal.training.tasks.upscale import UpscaleTask

    rng = np.random.default_rng(0)
    for i in range(40):  # half of them too small for x4's 48-pixel HR crop
        side = 64 if i % 2 else 32
        Image.fromarray(rng.integers(0, 256, (side, side, 3), np.uint8)).save(
            tmp_path / f"img{i:02d}.png"
        )

    def split(seed=0, scale=2, val_max=200):
        cfg = UpscaleTask.config_class()
        cfg.data.path, cfg.data.patch, cfg.data.scale, cfg.seed = str(tmp_path), 12, scale, seed
        cfg.data.val_fraction, cfg.data.val_max = 0.25, val_max
        cfg.model.kwargs.update(width=4, blocks=1)
        task = UpscaleTask(cfg, Runtime("cpu"))
        return set(task.train_set.files), set(task.val_set.files if task.val_set else [])

    train, val = split()
    assert val and split(seed=1) == (train, val)
    for val_max in (200, 3):  # with and without the cap on the validation size
        t2, v2 = split(val_max=val_max)
        t4, v4 = split(scale=4, val_max=val_max)
        assert not (t2 & v4) and not (t4 & v2)
    victim = sorted(train)[0]
    victim.write_bytes(b"")
    with pytest.warns(UserWarning, match="unreadable"):
        assert split() == (train - {victim}, val)

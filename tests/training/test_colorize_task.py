"""``psal train colorize`` / ``psal eval colorize`` / ``psal colorize --checkpoint``."""

import json

import numpy as np
import pytest
from PIL import Image

from psal.cli import main

TINY = [
    "--steps", "2", "--batch-size", "2", "--width", "4", "--device", "cpu", "--image-size", "24",
    "--num-workers", "0", "--no-progress", "--no-tensorboard", "data.val_fraction=0.25",
    "save_every=0", "model.kwargs.value_width=2",
]  # fmt: skip


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("psal: error: ") and "\n" not in err, err
    return err


@pytest.fixture(scope="module")
def colour_run(photo_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("col") / "run"
    code = main(["train", "colorize", "--data", str(photo_folder), "--out", str(out), *TINY,
                 "--attention", "none"])  # fmt: skip
    assert code == 0
    return out


def test_train_eval_and_colorize_with_the_run(colour_run, photo_folder, tmp_path, capsys):
    assert (colour_run / "config.json").is_file()
    cfg = json.loads((colour_run / "config.json").read_text())
    assert cfg["model"]["kwargs"]["attention"] == "none"
    capsys.readouterr()
    js = tmp_path / "m.json"
    code = main(["eval", "colorize", "--checkpoint", str(colour_run), "--data",
                 str(photo_folder), "--device", "cpu", "--json", str(js)])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "chroma_psnr" in out and "colourfulness" in out
    metrics = json.loads(js.read_text())
    metrics = metrics.get("metrics", metrics)
    assert np.isfinite(metrics["chroma_psnr"]) and metrics["pairs"] == 4
    src = sorted(photo_folder.rglob("*.png"))[0]
    gray = tmp_path / "g.png"
    Image.open(src).convert("L").save(gray)
    res = tmp_path / "out.png"
    code = main(["colorize", str(gray), "--reference", str(src), "--checkpoint",
                 str(colour_run), "-o", str(res), "--device", "cpu", "-q"])  # fmt: skip
    assert code == 0
    im = Image.open(res)
    assert im.mode == "RGB" and im.size == Image.open(src).size


def test_wrong_task_checkpoint_and_no_pairs(colour_run, photo_folder, tmp_path, capsys):
    from psal.models import save_weights

    other = tmp_path / "deepfill.safetensors"
    save_weights(other, {"generator": {"w": __import__("torch").zeros(1)}}, {}, task="inpaint")
    src = sorted(photo_folder.rglob("*.png"))[0]
    res = tmp_path / "out.png"
    code = main(["colorize", str(src), "--reference", str(src), "--checkpoint", str(other),
                 "-o", str(res)])  # fmt: skip
    assert code == 1
    err = _one_error_line(capsys)
    assert "'inpaint'" in err and "'colorize'" in err
    assert not res.exists()
    code = main(["eval", "colorize", "--checkpoint", str(other), "--data", str(photo_folder)])
    assert code == 1
    assert "'inpaint', not 'colorize'" in _one_error_line(capsys)
    # a folder whose images share no folder has no video pairs
    lone = tmp_path / "lone"
    for i, f in enumerate(sorted(photo_folder.rglob("*.png"))):
        (lone / str(i)).mkdir(parents=True)
        Image.open(f).save(lone / str(i) / "frame.png")
    out = tmp_path / "run"
    code = main(["train", "colorize", "--data", str(lone), "--out", str(out), *TINY,
                 "--pairs", "video"])  # fmt: skip
    assert code == 1
    assert "no pairs" in _one_error_line(capsys)
    assert not out.exists() or not any(out.rglob("*.safetensors"))


def test_eval_the_shipped_colorizer_by_name(photo_folder, tmp_path, capsys):
    js = tmp_path / "m.json"
    code = main(["eval", "colorize", "--model", "psal-w8", "--data", str(photo_folder),
                 "--limit", "2", "--device", "cpu", "--json", str(js)])  # fmt: skip
    assert code == 0
    assert "psal-w8" in capsys.readouterr().out  # the table's row
    report = json.loads(js.read_text())
    assert report["model"] == "psal-w8" and report["metrics"]["pairs"] == 2
    assert np.isfinite(report["metrics"]["chroma_psnr"])


def test_colorize_metrics_leave_out_infinite_psnrs():
    # an exactly coloured pair (a white frame) has an infinite PSNR: it used to count as
    # 0 in the sum and 1 in the divisor, halving the mean
    from types import SimpleNamespace

    import torch

    from psal.training.tasks.colorize.task import colorize_metrics

    class _Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            chroma = torch.zeros(2, 16, 16) if i == 0 else 0.1 * torch.rand(2, 16, 16, generator=g)
            return {"y": torch.full((1, 16, 16), 0.5), "chroma": chroma,
                    "reference": torch.rand(3, 16, 16, generator=g)}  # fmt: skip

    gray = lambda y, ref: SimpleNamespace(chroma=torch.zeros(y.shape[0], 2, *y.shape[2:]))  # noqa: E731
    both = colorize_metrics(gray, _Pairs(), "cpu", batch_size=1)
    second = colorize_metrics(gray, torch.utils.data.Subset(_Pairs(), [1]), "cpu")
    assert both["pairs"] == 2.0
    assert both["chroma_psnr"] == pytest.approx(second["chroma_psnr"])  # the finite one only

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from psal.cli import main

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("psal: error: ")
    return lines[0]


def _outputs(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.startswith(("out", ".out"))}


@pytest.mark.parametrize("src", ["rgb.png", "rgb.jpg", "rgb.webp", "rgba.png", "gray.png"])
def test_inpaint_formats_and_modes(files, capsys, src):
    out = files["dir"] / f"out{Path(src).suffix}"
    code, err = _run(capsys, "inpaint", files[src], "--mask", files["mask.png"], "-o", out)
    assert code == 0, err
    a, b = Image.open(files[src]), Image.open(out)
    assert b.size == a.size and b.mode == a.mode
    m = np.asarray(Image.open(files["mask.png"])) > 127
    if src.endswith((".png", ".webp")):  # lossless: known pixels exactly kept
        assert np.array_equal(np.asarray(b)[~m], np.asarray(a)[~m])
    assert _outputs(files["dir"]) == {out.name}


def test_inpaint_format_change_and_dilate(files, capsys):
    out = files["dir"] / "out.webp"
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["mask.png"], "-o", out,
                     "--dilate", "2", "--seed", "3", "--patch-size", "5")  # fmt: skip
    assert code == 0, err
    assert Image.open(out).format == "WEBP"


def test_colorize_and_upscale(files, capsys):
    out = files["dir"] / "out_c.jpg"
    code, err = _run(
        capsys, "colorize", files["gray.png"], "--reference", files["rgb.png"], "-o", out
    )
    assert code == 0, err
    assert Image.open(out).mode == "RGB" and Image.open(out).size == (56, 40)
    for scale in ("2", "3"):
        out = files["dir"] / f"out_u{scale}.png"
        code, err = _run(capsys, "upscale", files["rgba.png"], "--scale", scale, "-o", out)
        assert code == 0, err
        im = Image.open(out)
        assert im.mode == "RGBA" and im.size == (56 * int(scale), 40 * int(scale))


def test_empty_mask_writes_input_unchanged_with_warning(files, capsys):
    out = files["dir"] / "out.png"
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["empty.png"], "-o", out)
    assert code == 0
    assert "warning" in err and "empty" in err
    assert out.read_bytes() == files["rgb.png"].read_bytes()
    out_j = files["dir"] / "out.webp"  # another format: same pixels
    assert _run(capsys, "inpaint", files["rgb.png"], "-m", files["empty.png"], "-o", out_j)[0] == 0
    assert np.array_equal(np.asarray(Image.open(out_j)), np.asarray(Image.open(files["rgb.png"])))


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["inpaint", "{dir}/missing.png", "-m", "{mask.png}"], "no such file"),
        (["inpaint", "{rgb.png}", "-m", "{small.png}"], "same size"),
        (["inpaint", "{rgb.png}", "-m", "{full.png}"], "whole image"),
        (["inpaint", "{rgb.png}", "-m", "{dir}/nomask.png"], "no such file"),
        (["inpaint", "{rgb.png}", "-m", "{notimage}"], "cannot read"),
        (["inpaint", "{rgba.png}", "-m", "{mask.png}", "--ext", ".jpg"], "alpha"),
        (["inpaint", "{rgb.png}", "-m", "{mask.png}", "--ext", ".bmp"], "unsupported"),
        (["upscale", "{rgb.png}", "--scale", "5"], "--scale"),
        (["upscale", "{rgb.png}", "--scale", "2.5"], "--scale"),
        (["colorize", "{gray.png}", "--reference", "{gray.png}"], "colour"),
        (["inpaint", "{rgb.png}", "-m", "{mask.png}", "--device", "cuda:7"], "device"),
    ],
)
def test_errors_are_one_line_and_leave_nothing(files, capsys, argv, match):
    (files["dir"] / "notimage.png").write_text("hello")
    files = {**files, "notimage": files["dir"] / "notimage.png"}
    ext = ".png"
    if "--ext" in argv:
        ext = argv[argv.index("--ext") + 1]
        argv = argv[: argv.index("--ext")]
    if "cuda" in " ".join(argv):
        import torch

        if torch.cuda.is_available():
            pytest.skip("a CUDA device exists")
    args = []
    for a in argv:
        for key, path in files.items():
            a = a.replace("{" + key + "}", str(path))
        args.append(a)
    code, err = _run(capsys, *args, "-o", files["dir"] / f"out{ext}")
    assert code == 1
    assert match in _error_line(err)
    assert _outputs(files["dir"]) == set()


def test_failure_while_writing_leaves_nothing(files, capsys, monkeypatch):
    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["mask.png"], "-o",
                     files["dir"] / "out.png")  # fmt: skip
    assert code == 1 and "No space left" in _error_line(err)
    assert _outputs(files["dir"]) == set()
    # an output whose folder cannot be made (its parent is a file)
    code, err = _run(capsys, "upscale", files["rgb.png"], "-o", files["rgb.png"] / "out.png")
    assert code == 1 and _error_line(err)


def test_checkpoint_uses_learned_inpainter(files, capsys, monkeypatch):
    calls = {}

    class FakeInpainter:
        @classmethod
        def from_checkpoint(cls, path, device=None):
            calls["load"] = (str(path), str(device))
            return cls()

        def inpaint(self, image, mask):
            calls["mask"] = mask.sum()
            arr = np.asarray(image).copy()
            arr[mask] = 0
            return Image.fromarray(arr)

    monkeypatch.setitem(sys.modules, "psal.models", types.SimpleNamespace(Inpainter=FakeInpainter))
    out = files["dir"] / "out.png"
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["mask.png"], "-o", out,
                     "--checkpoint", "w.safetensors", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert calls["load"] == ("w.safetensors", "cpu") and calls["mask"] == 12 * 14
    assert (np.asarray(Image.open(out))[12:24, 20:34] == 0).all()
    monkeypatch.setitem(sys.modules, "psal.models", None)  # import fails
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["mask.png"], "-o",
                     files["dir"] / "out2.png", "--checkpoint", "w.safetensors")  # fmt: skip
    assert code == 1 and "unavailable" in _error_line(err)


def test_help_has_examples(capsys):
    for cmd in ("inpaint", "colorize", "upscale"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out and f"psal {cmd}" in out and "--seed" in out


def test_python_m_psal_subprocess(files):
    out = files["dir"] / "out.png"
    env = {**os.environ, "PYTHONPATH": SRC, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    ok = subprocess.run(
        [sys.executable, "-m", "psal", "upscale", str(files["gray.png"]), "--scale", "2",
         "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert Image.open(out).size == (112, 80) and Image.open(out).mode == "L"
    bad = subprocess.run(
        [sys.executable, "-m", "psal", "inpaint", str(files["rgb.png"]), "-m",
         str(files["full.png"]), "-o", str(files["dir"] / "out2.png")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and bad.stderr.startswith("psal: error:")

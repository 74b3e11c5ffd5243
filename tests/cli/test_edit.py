from __future__ import annotations

import os
import subprocess
import sys
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


def _filled(argv: list[str], files: dict) -> list[str]:
    """``argv`` with each ``{name}`` replaced by the path of ``files[name]``."""
    out = []
    for a in argv:
        for key, path in files.items():
            a = a.replace("{" + key + "}", str(path))
        out.append(a)
    return out


def _outputs(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.startswith(("out", ".out"))}


@pytest.mark.parametrize("src", ["rgb.png", "rgb.jpg", "rgb.webp", "rgba.png", "gray.png"])
def test_inpaint_formats_and_modes(files, capsys, src):
    out = files["dir"] / f"out{Path(src).suffix}"
    code, err = _run(capsys, "inpaint", files[src], "--mask", files["mask.png"], "-o", out)
    assert code == 0, err
    with Image.open(files[src]) as a, Image.open(out) as b:
        assert b.size == a.size and b.mode == a.mode
        a, b = np.asarray(a), np.asarray(b)
    m = np.asarray(Image.open(files["mask.png"])) > 127
    grown = np.pad(m, 2)  # --dilate 2 by default: the hole grows by two pixels (5x5)
    grown = np.max([grown[i : i + m.shape[0], j : j + m.shape[1]] for i in range(5)
                    for j in range(5)], axis=0)  # fmt: skip
    if src.endswith((".png", ".webp")):  # lossless: known pixels exactly kept
        assert np.array_equal(b[~grown], a[~grown])
    assert _outputs(files["dir"]) == {out.name}


def test_inpaint_format_change_and_dilate(files, capsys):
    out = files["dir"] / "out.webp"
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["mask.png"], "-o", out,
                     "--dilate", "2", "--seed", "3", "--patch-size", "5")  # fmt: skip
    assert code == 0, err
    with Image.open(out) as im:
        assert im.format == "WEBP"


def test_colorize_and_upscale(files, capsys):
    out = files["dir"] / "out_c.jpg"
    code, err = _run(
        capsys, "colorize", files["gray.png"], "--reference", files["rgb.png"], "-o", out
    )
    assert code == 0, err
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.size == (56, 40)
    for scale in ("2", "3"):
        out = files["dir"] / f"out_u{scale}.png"
        code, err = _run(capsys, "upscale", files["rgba.png"], "--scale", scale, "-o", out)
        assert code == 0, err
        with Image.open(out) as im:
            assert im.mode == "RGBA" and im.size == (56 * int(scale), 40 * int(scale))


def test_colorize_with_shipped_model(files, capsys):
    out = files["dir"] / "out_m.png"
    code, err = _run(capsys, "colorize", files["gray.png"], "--reference", files["rgb.png"],
                     "--model", "psal-w8", "-o", out)  # fmt: skip
    assert code == 0, err
    im = np.asarray(Image.open(out).convert("RGB")).astype(np.float64)
    gray = np.asarray(Image.open(files["gray.png"]).convert("L")).astype(np.float64)
    assert im.shape[:2] == gray.shape
    y = 0.299 * im[..., 0] + 0.587 * im[..., 1] + 0.114 * im[..., 2]
    assert np.abs(y - gray).max() <= 1.0  # luminance kept (8-bit rounding of R, G, B)


def test_empty_mask_writes_input_unchanged_with_warning(files, capsys):
    out = files["dir"] / "out.png"
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["empty.png"], "-o", out)
    assert code == 0
    assert "warning" in err and "empty" in err
    assert out.read_bytes() == files["rgb.png"].read_bytes()
    out_j = files["dir"] / "out.webp"  # another format: same pixels
    assert _run(capsys, "inpaint", files["rgb.png"], "-m", files["empty.png"], "-o", out_j)[0] == 0
    assert np.array_equal(np.asarray(Image.open(out_j)), np.asarray(Image.open(files["rgb.png"])))


def test_mask_that_covers_everything_once_dilated_says_so(files, capsys):
    rim = np.full((40, 56), 255, np.uint8)
    rim[:2, :] = 0  # two known rows: the default 2-pixel growth covers them
    path = files["dir"] / "rim.png"
    Image.fromarray(rim).save(path)
    out = files["dir"] / "out.png"
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", path, "-o", out)
    assert code == 1
    assert "covers the whole image once grown by --dilate 2 (try --dilate 0)" in _error_line(err)
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["full.png"], "-o", out)
    assert "covers the whole image:" in _error_line(err)  # drawn that way: nothing to undo
    assert not out.exists()


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
        (["colorize", "{gray.png}", "--reference", "{rgb.png}", "--k", "100000"], "[1, 32]"),
        (["colorize", "{gray.png}", "--reference", "{rgb.png}", "--model", "nope"], "psal-w8"),
        (
            [
                "colorize",
                "{gray.png}",
                "--reference",
                "{rgb.png}",
                "--model",
                "psal-w8",
                "--checkpoint",
                "{dir}",
            ],
            "give one",
        ),
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
    code, err = _run(capsys, *_filled(argv, files), "-o", files["dir"] / f"out{ext}")
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

        def inpaint(self, image, mask, **kwargs):
            calls["mask"] = mask.sum()
            calls["kwargs"] = kwargs
            arr = np.asarray(image).copy()
            arr[mask] = 0
            return Image.fromarray(arr)

    monkeypatch.setattr("psal.models.Inpainter", FakeInpainter)
    out = files["dir"] / "out.png"
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["mask.png"], "-o", out,
                     "--checkpoint", "w.safetensors", "--device", "cpu", "--dilate", "0")  # fmt: skip
    assert code == 0, err
    assert calls["load"] == ("w.safetensors", "cpu") and calls["mask"] == 12 * 14
    assert calls["kwargs"]["seed"] == 0 and callable(calls["kwargs"]["progress"])
    assert (np.asarray(Image.open(out))[12:24, 20:34] == 0).all()


@pytest.fixture
def psal_checkpoint(tmp_path):
    """A tiny untrained DeepFill generator with PSAL attention (seeds matter)."""
    import torch

    from psal.models import DeepFillV1, save_weights

    torch.manual_seed(0)
    kwargs = {"width": 4, "attention": "psal", "attention_options": {"k": 2, "iters": 2}}
    net = DeepFillV1(**kwargs)
    path = tmp_path / "w.safetensors"
    save_weights(path, {"generator": net.state_dict()},
                 {"generator": {"name": "deepfill_v1", "kwargs": kwargs}, "image_size": 32})  # fmt: skip
    return path


def test_checkpoint_seed_and_dilate_are_used(files, capsys, psal_checkpoint):
    import torch

    from psal.models import Inpainter

    d = files["dir"]
    outs = {}
    torch.manual_seed(11)
    Inpainter.from_checkpoint(psal_checkpoint, device="cpu")  # draws its initial weights
    expected = torch.random.get_rng_state()
    torch.manual_seed(11)
    for name, extra in {
        "a": ["--seed", "3"], "b": ["--seed", "3"], "c": ["--seed", "4"],
        "dil": ["--seed", "3", "--dilate", "2"],
    }.items():  # fmt: skip
        code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["mask.png"], "-o",
                         d / f"out_{name}.png", "--checkpoint", psal_checkpoint, *extra)  # fmt: skip
        assert code == 0, err
        if name == "a":  # the seed goes to the inpainter: torch's generator is not reseeded
            assert torch.equal(torch.random.get_rng_state(), expected)
        outs[name] = np.asarray(Image.open(d / f"out_{name}.png")).astype(int)
    assert np.array_equal(outs["a"], outs["b"])  # repeatable with a seed
    assert not np.array_equal(outs["a"], outs["c"])
    changed = (outs["dil"] != np.asarray(Image.open(files["rgb.png"]))).any(2)
    assert changed[10:26, 18:36].sum() > 12 * 14  # the hole grew by 2 pixels a side
    assert not changed[:8].any() and not changed[30:].any()


@pytest.mark.parametrize("command", ["inpaint", "upscale"])
@pytest.mark.parametrize("mode", ["P", "CMYK", "LAB"])
def test_other_modes_are_written_as_rgb(files, capsys, command, mode):
    src = Image.open(files["rgb.png"]).convert(mode)
    path = files["dir"] / ("in.jpg" if mode == "CMYK" else "in.tif" if mode == "LAB" else "in.png")
    src.save(path)
    out = files["dir"] / "out.jpg"
    extra = ["-m", files["mask.png"]] if command == "inpaint" else ["--scale", "2"]
    code, err = _run(capsys, command, path, *extra, "-o", out, "--patch-size", "5")
    assert code == 0, err
    with Image.open(out) as im:
        assert im.mode == "RGB"


def test_empty_mask_of_a_palette_image_is_written_as_rgb(files, capsys):
    src = files["dir"] / "pal.png"
    Image.open(files["rgb.png"]).convert("P").save(src)
    for out in ("out.png", "out.jpg"):
        code, err = _run(capsys, "inpaint", src, "-m", files["empty.png"], "-o",
                         files["dir"] / out)  # fmt: skip
        assert code == 0 and "empty" in err
        with Image.open(files["dir"] / out) as im:
            assert im.mode == "RGB"


def test_zero_one_png_mask(files, capsys):
    m = (np.asarray(Image.open(files["mask.png"])) > 0).astype(np.uint8)  # values 0 and 1
    Image.fromarray(m).save(files["dir"] / "mask01.png")
    out = files["dir"] / "out.png"
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["dir"] / "mask01.png",
                     "-o", out, "--dilate", "0")  # fmt: skip
    assert code == 0 and "empty" not in err
    # read as the 0/255 mask is (comparing with the input instead fails when the fill
    # is perfect: on this periodic image with a ramp, one finest EM iteration and the
    # gradient-domain step give the truth back exactly)
    ref = files["dir"] / "ref.png"
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["mask.png"],
                     "-o", ref, "--dilate", "0")  # fmt: skip
    assert code == 0 and "empty" not in err
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(ref)))


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--dilate", "-1"], "--dilate must be >= 0, got -1"),
        (["--mask-threshold", "1.5"], "--mask-threshold must be in (0, 1), got 1.5"),
        (["--patch-size", "4"], "--patch-size must be a positive odd integer, got 4"),
        (["--seed", "-1"], "--seed must be in [0, 2**63), got -1"),
        (["-o", "{dir}/folder.png"], "is a folder; give a file name"),
        (["-o", "{rgb.png}/x.png"], "is a file, not a directory"),
    ],
)
def test_option_errors_name_the_flag(files, capsys, extra, match):
    (files["dir"] / "folder.png").mkdir()
    extra = [str(e).replace("{dir}", str(files["dir"])).replace("{rgb.png}", str(files["rgb.png"]))
             for e in extra]  # fmt: skip
    out = [] if "-o" in extra else ["-o", files["dir"] / "out.png"]
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["mask.png"], *out, *extra)
    assert code == 1 and match in _error_line(err)
    assert _outputs(files["dir"]) == set()


def test_upscale_tiny_image(files, capsys):
    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).save(files["dir"] / "t.png")
    out = files["dir"] / "out.png"
    code, err = _run(capsys, "upscale", files["dir"] / "t.png", "--scale", "4", "--patch-size",
                     "1", "-o", out)  # fmt: skip
    assert code == 0, err
    with Image.open(out) as im:
        assert im.size == (8, 8)


@pytest.mark.parametrize("command", ["inpaint", "colorize", "upscale"])
def test_a_patch_larger_than_the_image_names_the_flag(files, capsys, command):
    # the library's message names its keyword (patch_size=7); the command names its flag
    tiny = files["dir"] / "tiny.png"
    Image.fromarray(np.full((5, 6, 3), 90, np.uint8)).save(tiny)
    mask = files["dir"] / "tiny_mask.png"
    Image.fromarray(np.pad(np.full((1, 1), 255, np.uint8), ((2, 2), (2, 3)))).save(mask)
    extra = {"inpaint": ["-m", mask], "colorize": ["--reference", files["rgb.png"]],
             "upscale": ["--scale", "2"]}[command]  # fmt: skip
    out = files["dir"] / "out.png"
    code, err = _run(capsys, command, tiny, *extra, "--patch-size", "7", "-o", out)
    assert code == 1
    assert _error_line(err) == "psal: error: " + (f"--patch-size 7 is larger than {'TARGET' if command == 'colorize' else 'IMAGE'} "
                                f"{tiny} (6x5 pixels): give a --patch-size of at most 5")  # fmt: skip
    assert not out.exists()


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
    with Image.open(out) as im:
        assert im.size == (112, 80) and im.mode == "L"
    bad = subprocess.run(
        [sys.executable, "-m", "psal", "inpaint", str(files["rgb.png"]), "-m",
         str(files["full.png"]), "-o", str(files["dir"] / "out2.png")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and bad.stderr.startswith("psal: error:")


def test_colorize_colour_target_warns_once(files, capsys):
    out = files["dir"] / "out_w.png"
    code, err = _run(capsys, "colorize", files["rgb.png"], "--reference", files["rgb.png"],
                     "-o", out, "--patch-size", "5")  # fmt: skip
    assert code == 0
    lines = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(lines) == 1 and "luminance" in lines[0], err


def _folder(tmp_path, names=("a.png", "b.jpg", "c.png"), masks=("a.png", "b.png")):
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    for n in names:
        Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)).save(tmp_path / "in" / n)
    m = np.zeros((32, 40), np.uint8)
    m[10:18, 12:22] = 255
    for n in masks:
        Image.fromarray(m).save(tmp_path / "masks" / n)
    return tmp_path / "in", tmp_path / "masks", m > 127


def test_inpaint_folder_pairs_masks_and_reports_what_failed(tmp_path, capsys):
    images, masks, m = _folder(tmp_path)
    out = tmp_path / "out"
    code, err = _run(capsys, "inpaint", images, "--mask", masks, "-o", out, "--dilate", "0")
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[0].startswith("psal: error: c.png: --mask: no mask named c.")
    assert "masks" in lines[0]
    assert "1 of 3 images failed" in lines[-1]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg"]  # nothing else, no tmp
    a_in, a_out = np.asarray(Image.open(images / "a.png")), np.asarray(Image.open(out / "a.png"))
    assert np.array_equal(a_in[~m], a_out[~m]) and not np.array_equal(a_in[m], a_out[m])
    # one mask for every image
    out2 = tmp_path / "out2"
    code, err = _run(capsys, "inpaint", images, "--mask", masks / "a.png", "-o", out2, "-q")
    assert code == 0, err
    assert sorted(p.name for p in out2.iterdir()) == ["a.png", "b.jpg", "c.png"]


def test_inpaint_folder_errors(tmp_path, capsys):
    images, masks, _ = _folder(tmp_path)
    afile = tmp_path / "afile.png"
    afile.write_bytes(b"x")
    code, err = _run(capsys, "inpaint", images, "--mask", masks, "-o", afile)
    assert code == 1 and "is a file" in _error_line(err) and afile.read_bytes() == b"x"
    code, err = _run(capsys, "inpaint", images, "--mask", masks, "-o", images)
    assert code == 1 and "overwritten" in _error_line(err)
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = _run(capsys, "inpaint", empty, "--mask", masks, "-o", tmp_path / "o")
    assert code == 1 and "no image file" in _error_line(err)
    code, err = _run(capsys, "inpaint", images / "a.png", "--mask", masks, "-o", tmp_path / "o.png")
    assert code == 1 and "is a folder" in _error_line(err)


def test_upscale_folder_and_its_failures(tmp_path, capsys):
    images, _, _ = _folder(tmp_path)
    (images / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    code, err = _run(capsys, "upscale", images, "--scale", "2", "-o", out, "-q")
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[0].startswith("psal: error: bad.png: ") and "1 of 4 images failed" in lines[-1]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg", "c.png"]
    for name in ("a.png", "b.jpg", "c.png"):
        with Image.open(out / name) as im:
            assert im.size == (80, 64)
    a = np.asarray(Image.open(out / "a.png"))
    single = tmp_path / "a_x2.png"  # the same result as the command on one file
    assert _run(capsys, "upscale", images / "a.png", "--scale", "2", "-o", single)[0] == 0
    assert np.array_equal(np.asarray(Image.open(single)), a)


def test_colorize_folder_with_one_reference_or_paired_ones(tmp_path, capsys):
    images, _, _ = _folder(tmp_path)
    gray = tmp_path / "gray"
    gray.mkdir()
    for p in images.iterdir():
        Image.open(p).convert("L").save(gray / p.name)
    out = tmp_path / "out"
    code, err = _run(capsys, "colorize", gray, "--reference", images / "a.png", "-o", out, "-q")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg", "c.png"]
    with Image.open(out / "b.jpg") as im:
        assert im.mode == "RGB"
    # a folder of references, paired by name: b's own colours come back closer
    paired = tmp_path / "paired"
    code, err = _run(capsys, "colorize", gray, "--reference", images, "-o", paired, "-q")
    assert code == 0, err
    truth = np.asarray(Image.open(images / "c.png"), dtype=float)
    one = np.abs(np.asarray(Image.open(out / "c.png"), dtype=float) - truth).mean()
    own = np.abs(np.asarray(Image.open(paired / "c.png"), dtype=float) - truth).mean()
    assert own < one
    (images / "c.png").unlink()
    code, err = _run(capsys, "colorize", gray, "--reference", images, "-o", tmp_path / "o3", "-q")
    assert code == 1 and "no reference named c.* in the folder" in err
    code, err = _run(capsys, "colorize", gray / "a.png", "--reference", images, "-o",
                     tmp_path / "x.png")  # fmt: skip
    assert code == 1 and "is a folder" in _error_line(err)


def test_upscale_folder_writes_png_where_the_format_is_too_small(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (4, 8200, 3), dtype=np.uint8)).save(
        d / "long.webp", lossless=True
    )  # x2: 16400 pixels wide, WebP holds 16383
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(
        d / "small.webp", lossless=True
    )
    out = tmp_path / "out"
    code, err = _run(capsys, "upscale", d, "-o", out, "-q")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["long.png", "small.webp"]
    assert "long.webp: the x2 result is too large for its format; written as long.png" in err
    # one file: the user chose the name, so the same case is an error
    code, err = _run(capsys, "upscale", d / "long.webp", "-o", tmp_path / "x.webp")
    assert code == 1 and "x.webp" not in {p.name for p in tmp_path.iterdir()}


def test_folder_runs_refuse_what_would_lose_files(tmp_path, capsys):
    images, masks, _ = _folder(tmp_path)
    # two inputs written under one name (a.bmp is written as a.png)
    Image.open(images / "a.png").save(images / "a.bmp")
    out = tmp_path / "out"
    code, err = _run(capsys, "upscale", images, "-o", out)
    assert code == 1 and "a.bmp and a.png would both be written as" in _error_line(err), err
    assert not out.exists()
    (images / "a.bmp").unlink()
    # the output folder is an input folder of another argument
    code, err = _run(capsys, "inpaint", images, "--mask", masks, "-o", masks)
    assert code == 1 and "is the --mask folder" in _error_line(err)
    gray = tmp_path / "gray"
    gray.mkdir()
    Image.open(images / "a.png").convert("L").save(gray / "a.png")
    code, err = _run(capsys, "colorize", gray, "--reference", images, "-o", images)
    assert code == 1 and "is the --reference folder" in _error_line(err)
    # a single --reference file that one output would overwrite (a key frame kept in out/)
    keyed = tmp_path / "keyed"
    keyed.mkdir()
    Image.open(images / "a.png").save(keyed / "a.png")
    before = (keyed / "a.png").read_bytes()
    code, err = _run(capsys, "colorize", gray, "--reference", keyed / "a.png", "-o", keyed)
    assert code == 1 and "would overwrite the --reference file" in _error_line(err)
    assert (keyed / "a.png").read_bytes() == before
    # a bad network fails once, before any work or output folder
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    code, err = _run(capsys, "inpaint", images, "--mask", masks, "-o", out, "--checkpoint", bad)
    assert code == 1 and _error_line(err).startswith("psal: error: --checkpoint: ")
    assert not out.exists()


def test_an_output_never_overwrites_another_input_of_the_command(files, capsys):
    d = files["dir"]
    mask_before = files["mask.png"].read_bytes()
    code, err = _run(capsys, "inpaint", files["rgb.png"], "--mask", files["mask.png"], "-o",
                     files["mask.png"])  # fmt: skip
    assert code == 1 and "is the --mask file" in _error_line(err)
    assert files["mask.png"].read_bytes() == mask_before
    ref_before = files["rgb.png"].read_bytes()
    code, err = _run(capsys, "colorize", files["gray.png"], "--reference", files["rgb.png"],
                     "-o", files["rgb.png"])  # fmt: skip
    assert code == 1 and "is the --reference file" in _error_line(err)
    assert files["rgb.png"].read_bytes() == ref_before
    # an image that is its own mask (its transparent part, erased) is edited in place
    rgba = np.asarray(Image.open(files["rgb.png"]).convert("RGBA")).copy()
    rgba[12:24, 20:34, 3] = 0
    erased = d / "erased.png"
    Image.fromarray(rgba).save(erased)
    code, err = _run(capsys, "inpaint", erased, "--mask", erased, "-o", erased, "-q")
    assert code == 0, err
    assert np.asarray(Image.open(erased))[12:24, 20:34, 3].min() > 0  # filled
    # an existing folder as the output of one image
    folder = d / "outdir"
    folder.mkdir()
    code, err = _run(capsys, "upscale", files["rgb.png"], "-o", folder)
    assert code == 1 and "is a folder; give a file name" in _error_line(err)


def test_a_folder_run_needs_a_folder_name_and_leaves_none_when_all_fail(tmp_path, capsys):
    images, _, _ = _folder(tmp_path)
    code, err = _run(capsys, "upscale", images, "-o", tmp_path / "single.jpg")
    assert code == 1 and "names an image file" in _error_line(err)
    assert not (tmp_path / "single.jpg").exists()
    full = tmp_path / "full.png"
    Image.fromarray(np.full((32, 40), 255, np.uint8)).save(full)  # no known pixel: fails
    out = tmp_path / "none" / "a" / "b"  # three folders made for the run, all removed
    code, err = _run(capsys, "inpaint", images, "--mask", full, "-o", out, "-q")
    assert code == 1 and "all 3 images failed" in err and not (tmp_path / "none").exists()
    kept = tmp_path / "kept"  # a folder the user had is kept
    kept.mkdir()
    code, err = _run(capsys, "inpaint", images, "--mask", full, "-o", kept, "-q")
    assert code == 1 and kept.is_dir()


def test_folder_runs_skip_hidden_files_and_a_mask_among_the_photos(tmp_path, capsys):
    images, masks, _ = _folder(tmp_path)
    (images / "._a.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (images / ".b.tmp.png").write_bytes(b"")  # what a killed run may leave
    Image.open(masks / "a.png").save(images / "mask.png")  # one mask kept with the photos
    out = tmp_path / "out"
    code, err = _run(capsys, "inpaint", images, "--mask", images / "mask.png", "-o", out, "-q")
    assert code == 0, err
    assert "mask.png is the --mask file; it is not edited" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg", "c.png"]
    code, err = _run(capsys, "upscale", images, "-o", tmp_path / "up", "-q")
    assert code == 0, err  # mask.png is an image like any other here
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == [
        "a.png", "b.jpg", "c.png", "mask.png"]  # fmt: skip


def test_an_interrupted_folder_run_leaves_no_empty_folder(tmp_path, monkeypatch):
    from psal.cli import edit

    images, _, _ = _folder(tmp_path)
    out = tmp_path / "new" / "out"
    calls = []

    def one(path, output):
        calls.append(path)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        edit._each_image(sorted(images.iterdir()), out, "upscale", True, one)
    assert calls and not (tmp_path / "new").exists()

    def first_then_stop(path, output):  # one output written: its folder stays
        if calls:
            raise KeyboardInterrupt
        calls.append(path)
        Image.open(path).save(output)

    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        edit._each_image(sorted(images.iterdir()), out, "upscale", True, first_then_stop)
    assert [p.name for p in out.iterdir()] == ["a.png"]


def test_library_messages_name_the_flags(files, capsys):
    d = files["dir"]
    source = np.zeros((40, 56), np.uint8)
    source[30:32, 2:4] = 255  # no whole patch inside
    Image.fromarray(source).save(d / "tiny_source.png")
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["mask.png"],
                     "--source-mask", d / "tiny_source.png", "-o", d / "out.png")  # fmt: skip
    assert code == 1
    assert _error_line(err).startswith("psal: error: --source-mask leaves no 7x7 patch"), err
    code, err = _run(capsys, "colorize", files["gray.png"], "--reference", files["rgb.png"],
                     "--k", "100", "-o", d / "out.png")  # fmt: skip
    assert code == 1 and "--k must be in [1, 32]" in _error_line(err)


@pytest.mark.parametrize("k", ["0", "-3", "33", "100000"])
def test_k_out_of_range_gives_both_bounds(files, capsys, k):
    code, err = _run(capsys, "colorize", files["gray.png"], "--reference", files["rgb.png"],
                     "--k", k, "-o", files["dir"] / "out.png")  # fmt: skip
    assert code == 1
    assert _error_line(err) == (
        f"psal: error: --k must be in [1, 32] (reference patches averaged), got {k}"
    )


def test_folder_warnings_name_their_image(tmp_path, capsys):
    images, _, _ = _folder(tmp_path)  # colour targets: each warns, named
    ref = tmp_path / "ref.png"
    Image.open(images / "a.png").save(ref)
    code, err = _run(capsys, "colorize", images, "--reference", ref, "-o", tmp_path / "o", "-q")
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if "colour image" in ln]
    assert [ln.split(":")[2].strip() for ln in lines] == ["a.png", "b.jpg", "c.png"], err


def test_inpaint_source_mask(files, capsys):
    d = files["dir"]
    source = np.zeros((40, 56), np.uint8)
    source[:, 36:] = 255
    Image.fromarray(source).save(d / "source.png")
    Image.fromarray(np.zeros_like(source)).save(d / "nosource.png")
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["mask.png"],
                     "--source-mask", d / "source.png", "-o", d / "out.png")  # fmt: skip
    assert code == 0, err
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["mask.png"],
                     "--source-mask", d / "nosource.png", "-o", d / "out2.png")  # fmt: skip
    assert code == 1 and "nothing to copy from" in _error_line(err)
    assert _outputs(d) == {"out.png"}


def test_inpaint_reads_exif_orientation_and_keeps_exif_and_icc(tmp_path, capsys):
    from PIL import ImageCms

    rng = np.random.default_rng(0)
    stored = Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8))  # landscape
    exif = stored.getexif()
    exif[0x0112] = 6  # displayed rotated: 24 wide, 40 high
    exif[0x010F] = "PhoneMaker"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    stored.save(tmp_path / "phone.jpg", exif=exif.tobytes(), icc_profile=icc, quality=95)
    mask = np.zeros((40, 24), np.uint8)  # drawn on the displayed (upright) photo
    mask[10:30, 6:16] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    for suffix in (".jpg", ".png"):
        out = tmp_path / f"out{suffix}"
        code, err = _run(capsys, "inpaint", tmp_path / "phone.jpg", "-m", tmp_path / "mask.png",
                         "-o", out)  # fmt: skip
        assert code == 0, err
        with Image.open(out) as res:
            assert res.size == (24, 40)
            assert res.getexif().get(0x010F) == "PhoneMaker"
            assert res.getexif().get(0x0112, 1) == 1  # already upright: not rotated twice
            assert res.info.get("icc_profile") == icc


def test_upscale_and_colorize_keep_exif_and_tiff_keeps_icc(tmp_path, capsys):
    # upscale and colorize used to drop the EXIF block that inpaint keeps; TIFF outputs
    # dropped both; the pixel dimensions the block records follow the output
    from PIL import ImageCms

    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8))
    exif = photo.getexif()
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(0x8769)[0xA002] = 40  # PixelXDimension
    exif.get_ifd(0x8769)[0xA003] = 24
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo.save(tmp_path / "photo.jpg", exif=exif.tobytes(), icc_profile=icc, quality=95)
    photo.save(tmp_path / "photo.tif", exif=exif.tobytes(), icc_profile=icc)
    with Image.open(tmp_path / "photo.jpg") as im:
        written_sub = dict(im.getexif().get_ifd(0x8769))
    cases = [
        (["upscale", tmp_path / "photo.jpg", "--scale", "2"], "up.jpg", (80, 48)),
        (["upscale", tmp_path / "photo.jpg", "--scale", "2"], "up.tif", (80, 48)),
        (["colorize", tmp_path / "photo.jpg", "--reference", tmp_path / "photo.tif"], "c.png",
         (40, 24)),
    ]  # fmt: skip
    for argv, name, size in cases:
        out = tmp_path / name
        code, err = _run(capsys, *argv, "-o", out)
        assert code == 0, err
        with Image.open(out) as res:
            assert res.size == size
            got = res.getexif()
            assert got.get(0x010F) == "PhoneMaker", name
            if written_sub:  # Pillow < 10.1 writes no Exif sub-IFD from getexif() edits
                sub = got.get_ifd(0x8769)
                assert (sub.get(0xA002), sub.get(0xA003)) == size
            assert res.info.get("icc_profile") == icc, name
    out = tmp_path / "tif.tif"  # TIFF to TIFF: the profile stays (its tags are not EXIF)
    code, err = _run(capsys, "upscale", tmp_path / "photo.tif", "--scale", "2", "-o", out)
    assert code == 0, err
    with Image.open(out) as im:
        assert im.info.get("icc_profile") == icc


def _dpi_photo(path, orientation=None):
    """A 30x20 photo stating 300x200 dpi, in its own fields and in its EXIF block."""
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x011A], exif[0x011B], exif[0x0128] = 300.0, 200.0, 2  # X/YResolution, inch
    if orientation is not None:
        exif[0x0112] = orientation
    photo.save(path, dpi=(300, 200), exif=exif.tobytes())


def _resolution(path):
    """(dpi, EXIF (XResolution, YResolution)) of an image file."""
    with Image.open(path) as im:
        exif = im.getexif()
        res = tuple(float(exif[t]) if t in exif else None for t in (0x011A, 0x011B))
        assert exif.get(0x010F) == "PhoneMaker"
        return im.info.get("dpi"), res


@pytest.mark.parametrize("src", ["photo.jpg", "photo.png"])
def test_upscale_scales_the_dpi_and_inpaint_and_colorize_keep_it(tmp_path, capsys, src):
    # the DPI (JFIF density, pHYs, TIFF tags) was not written and the EXIF resolution
    # was copied unchanged: an upscaled 300 dpi photo read back as 300 dpi at twice the
    # pixels, twice the printed size
    _dpi_photo(tmp_path / src)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:12, 8:18] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    runs = [(["upscale", tmp_path / src, "--scale", "2"], (600, 400), ("jpg", "png", "tif")),
            (["inpaint", tmp_path / src, "-m", tmp_path / "mask.png", "--patch-size", "5"],
             (300, 200), ("jpg", "png")),
            (["colorize", tmp_path / src, "--reference", tmp_path / src, "--patch-size", "5"],
             (300, 200), ("png",))]  # fmt: skip
    for argv, want, suffixes in runs:
        for suffix in (*suffixes, "webp"):
            out = tmp_path / f"out_{argv[0]}.{suffix}"
            code, err = _run(capsys, *argv, "-q", "-o", out)
            assert code == 0, err
            dpi, res = _resolution(out)
            assert res == want, out.name  # exact: a PNG's 299.9994 is read as the 300 meant
            if suffix != "webp":  # Pillow writes no DPI in a WebP file
                assert dpi == pytest.approx(want, rel=1e-4), out.name


def test_a_turned_photo_exchanges_its_x_and_y_dpi_and_none_is_made_up(tmp_path, capsys):
    # EXIF orientation 6: the 30x20 stored pixels are shown (and edited) 20x30, so the
    # stored x resolution is the shown y one
    _dpi_photo(tmp_path / "phone.jpg", orientation=6)
    for suffix in ("png", "jpg"):
        out = tmp_path / f"out.{suffix}"
        code, err = _run(capsys, "upscale", tmp_path / "phone.jpg", "--scale", "2", "-q",
                         "-o", out)  # fmt: skip
        assert code == 0, err
        assert Image.open(out).size == (40, 60)
        dpi, res = _resolution(out)
        assert dpi == pytest.approx((400, 600), rel=1e-4) and res == pytest.approx((400, 600))
    # Pillow reads (1, 1) dpi from a TIFF without resolution tags and (72, 72) from a
    # JPEG whose EXIF block has none: neither is the file's, neither is written
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    photo.save(tmp_path / "a.tif")
    photo.save(tmp_path / "b.jpg", exif=exif.tobytes())
    for src in ("a.tif", "b.jpg"):
        out = tmp_path / f"out_{src}.png"
        code, err = _run(capsys, "upscale", tmp_path / src, "--scale", "2", "-q", "-o", out)
        assert code == 0, err
        assert "dpi" not in Image.open(out).info, src


def test_a_command_registers_only_its_module_and_help_lists_all():
    from psal.cli import build_parser

    sub = next(a for a in build_parser(["inpaint", "x"])._actions if a.dest == "command")
    assert sorted(sub.choices) == ["colorize", "inpaint", "upscale"]
    for argv in ([], ["--help"], ["inpant"], None):
        sub = next(a for a in build_parser(argv)._actions if a.dest == "command")
        assert {"inpaint", "train", "eval", "app"} <= set(sub.choices)


def test_top_level_help_is_the_same_shallow_and_imports_no_torch():
    import subprocess
    import sys

    from psal.cli import build_parser

    full, shallow = build_parser(None), build_parser(["--help"])
    assert shallow.format_help() == full.format_help()
    code = (
        "import sys\nfrom psal.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    status = e.code\n"
        "print(status, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == "0 False"


@pytest.mark.parametrize("command", ["inpaint", "colorize", "upscale"])
@pytest.mark.parametrize("content", [b"", b"\x10" + bytes(7) + b'{"a":1}', b"not a checkpoint"])
def test_an_unreadable_checkpoint_is_one_line_naming_the_flag(files, capsys, command, content):
    bad = files["dir"] / "bad.safetensors"
    bad.write_bytes(content)
    out = files["dir"] / "out.png"
    args = {
        "inpaint": ["inpaint", files["rgb.png"], "--mask", files["mask.png"]],
        "colorize": ["colorize", files["gray.png"], "--reference", files["rgb.png"]],
        "upscale": ["upscale", files["rgb.png"], "--scale", "2"],
    }[command]
    code, err = _run(capsys, *args, "--checkpoint", bad, "-o", out)
    assert code != 0
    assert _error_line(err).startswith("psal: error: --checkpoint: ")
    assert _outputs(files["dir"]) == set()


def test_a_checkpoint_with_non_finite_weights_is_one_line_naming_the_flag(files, capsys, tmp_path):
    import torch

    from psal.models import DeepFillV1, save_weights

    kwargs = {"width": 4, "attention": "none"}
    state = DeepFillV1(**kwargs).state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = torch.full_like(state[key], float("nan"))
    bad = tmp_path / "nan.safetensors"
    save_weights(bad, {"generator": state},
                 {"generator": {"name": "deepfill_v1", "kwargs": kwargs}, "image_size": 32})  # fmt: skip
    code, err = _run(capsys, "inpaint", files["rgb.png"], "--mask", files["mask.png"],
                     "--checkpoint", bad, "-o", files["dir"] / "out.png")  # fmt: skip
    assert code == 1
    line = _error_line(err)
    assert line.startswith("psal: error: --checkpoint: ") and "nan.safetensors" in line
    assert f"generator.{key}" in line and "NaN or inf" in line
    assert _outputs(files["dir"]) == set()


@pytest.mark.parametrize("flag", ["--mask", "--source-mask"])
@pytest.mark.parametrize("problem", ["missing", "not an image"])
def test_mask_file_errors_name_their_flag(files, capsys, flag, problem):
    path = files["dir"] / "nomask.png"
    if problem == "not an image":
        path.write_text("hello")
    given = {"--mask": files["mask.png"], "--source-mask": None, flag: path}
    args = [a for f, v in given.items() if v is not None for a in (f, v)]
    code, err = _run(capsys, "inpaint", files["rgb.png"], *args, "-o", files["dir"] / "out.png")
    assert code == 1
    line = _error_line(err)
    assert line.startswith(f"psal: error: {flag}: "), line
    assert "mask: " not in line.removeprefix(f"psal: error: {flag}: ")  # the flag once
    assert str(path) in line


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_output_onto_a_fifo_is_refused_and_left_alone(files, capsys):
    """The atomic write would rename a regular file onto it (as root: onto /dev/null too)."""
    import stat

    fifo = files["dir"] / "out.png"
    os.mkfifo(fifo)
    code, err = _run(capsys, "inpaint", files["rgb.png"], "-m", files["mask.png"], "-o", fifo)
    assert code == 1
    assert "--output" in err and "not a regular file" in err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.parametrize(
    "argv",
    [
        ["inpaint", "{rgb.png}", "-m", "{mask.png}", "--checkpoint", "{dir}/no_run"],
        ["upscale", "{rgb.png}", "--scale", "2", "--checkpoint", "{dir}/no_run"],
        ["colorize", "{gray.png}", "--reference", "{rgb.png}", "--checkpoint", "{dir}/no_run"],
        ["inpaint", "{dir}/missing.png", "-m", "{mask.png}"],
    ],
)
def test_bad_output_type_is_said_before_anything_is_loaded(files, capsys, argv):
    """The output's file type is known from its name: a typo fails at once, before a
    network or an image is read (here both are missing: their errors would come first)."""
    code, err = _run(capsys, *_filled(argv, files), "-o", files["dir"] / "out.gif")
    assert code == 1
    assert "unsupported file type '.gif'" in _error_line(err)


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["inpaint", "{rgb.png}", "-m", "{mask.png}", "--dialte", "2"], "--dialte: did you mean --dilate?"),
        (["upscale", "{rgb.png}", "--scael=2"], "--scael: did you mean --scale?"),
        (["train", "upscale", "--stesp", "3", "--patchh", "32"],
         "--stesp: did you mean --steps?; --patchh: did you mean --patch?"),
        (["train", "upscale", "--image-size", "96"], "--image-size: did you mean --patch?"),
        (["train", "colorize", "--patch", "64"], "--patch: did you mean --image-size?"),
        (["inpaint", "{rgb.png}", "-m", "{mask.png}", "--zzz"], None),
    ],
)  # fmt: skip
def test_a_misspelt_option_gets_a_suggestion(files, capsys, argv, hint):
    with pytest.raises(SystemExit) as info:
        main([*_filled(argv, files), "-o", str(files["dir"] / "out.png")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err
    assert (hint in err) if hint else ("did you mean" not in err)
    assert _outputs(files["dir"]) == set()

"""Fuzz the editing commands in-process: hostile files, masks and options.

The promise checked on every draw: either a correct result (exit 0, one output file of
the right size and mode, known pixels bit for bit in lossless formats) or a one-line
error (exit 1, the last stderr line ``psal: error: ...``, every other line a
``psal: warning: ...``) and nothing left in the output folder, hidden files included.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fuzz_inputs import bomb_file, fuzz_settings, image_files, mask_arrays, write
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image

from psal.cli import main
from psal.editing._pyramid import dilate
from psal.utils.convert import from_tensor, to_tensor
from psal.utils.io import full_depth, load_image, load_mask

LOSSLESS = (".png", ".tif", ".webp")
SUFFIXES = (".png", ".png", ".tif", ".webp", ".jpg", ".bmp", "")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread_module):
    """Every case here is a tiny input: one numba and one torch thread."""


def _run(capsys, argv: list) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _check_failure(code: int, err: str, out_dir: Path) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1, (code, err)
    assert lines and lines[-1].startswith("psal: error: "), err
    assert all(ln.startswith("psal: warning: ") for ln in lines[:-1]), err
    assert sorted(p.name for p in out_dir.iterdir()) == [], "files left behind"


def _check_output(code: int, err: str, out_dir: Path, out: Path) -> Image.Image:
    assert code == 0, err
    assert all(ln.startswith("psal: warning: ") for ln in err.splitlines() if ln.strip()), err
    assert [p.name for p in out_dir.iterdir()] == [out.name], "stray files in the output folder"
    result = Image.open(out)
    result.load()
    return result


def _run_checked(capsys, argv: list, out_dir: Path, out: Path) -> Image.Image | None:
    """Run a command: its output image, or None after checking its failure was clean."""
    code, err = _run(capsys, argv)
    event(f"exit {code}")
    if code != 0:
        _check_failure(code, err, out_dir)
        return None
    return _check_output(code, err, out_dir, out)


def _values(image: Image.Image) -> np.ndarray:
    arr = np.asarray(image)
    return arr.astype(np.int64) if arr.dtype.kind in "uib" else arr


#: Good option values; one draw in three then breaks one of them (each broken value must
#: give a one-line error before any work).
GOOD = {"suffix": ".png", "patch": None, "seed": None, "max_pixels": None, "device": None}
BAD = [
    ("suffix", ".jpg"),  # good or bad, depending on the mode
    ("suffix", ".bmp"),
    ("suffix", ""),
    ("patch", 2),
    ("patch", -3),
    ("patch", 3),
    ("seed", -1),
    ("seed", 2**63),
    ("seed", 7),
    ("max_pixels", 100),
    ("max_pixels", 10**9),
    ("device", "meta"),
    ("device", "cuda:99"),
    ("device", "cpu"),
]


@st.composite
def options(draw) -> dict:
    opts = dict(GOOD, suffix=draw(st.sampled_from([".png", ".png", ".tif", ".webp"])))
    if draw(st.integers(0, 2)) == 0:
        key, value = draw(st.sampled_from(BAD))
        opts[key] = value
    return opts


def _common(opts: dict, out: Path) -> list:
    argv = ["-o", out, "-q"]
    for flag, key in (("--patch-size", "patch"), ("--seed", "seed"),
                      ("--max-pixels", "max_pixels"), ("--device", "device")):  # fmt: skip
        if opts[key] is not None:
            argv += [flag, opts[key]]
    return argv


@fuzz_settings(60)
@given(
    image=image_files(),
    mask=st.data(),
    opts=options(),
    dilate_by=st.sampled_from([0, 0, 0, 1, 3, -1]),
    threshold=st.sampled_from([None] * 6 + [0.25, 0.0, 1.0]),
    mask_size=st.sampled_from(["same"] * 9 + ["other"]),
)
def test_fuzz_inpaint(capsys, image, mask, opts, dilate_by, threshold, mask_size):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (out_dir := tmp / "out").mkdir()
        name, data, _ = image
        src = write(tmp, name, data)
        try:
            with Image.open(src) as im:
                w, h = im.size
        except Exception:
            w, h = 8, 8
        w, h = min(max(w, 1), 64), min(max(h, 1), 64)
        if mask_size == "other":
            w, h = w + 1, h
        m, _ = mask.draw(mask_arrays(h, w))
        mpath = tmp / ("mask.tif" if m.dtype in (np.float32, np.int32) else "mask.png")
        Image.fromarray(m).save(mpath)
        out = out_dir / f"result{opts['suffix']}"
        argv = ["inpaint", src, "--mask", mpath, "--dilate", dilate_by, *_common(opts, out)]
        if threshold is not None:
            argv += ["--mask-threshold", threshold]
        result = _run_checked(capsys, argv, out_dir, out)
        if result is None:
            return
        source = load_image(src)
        assert result.size == source.size
        if out.suffix not in LOSSLESS:
            return
        ref = from_tensor(*to_tensor(source))  # the input as psal reads it
        hole = load_mask(mpath, threshold=0.5 if threshold is None else threshold)
        hole = dilate(torch.from_numpy(hole)[None, None], dilate_by)[0, 0].numpy()
        known = ~hole
        if out.suffix == ".webp" and ref.mode in ("L", "LA") and result.mode != ref.mode:
            # WebP has no gray mode: Pillow stores L as RGB with equal channels
            rgb = np.asarray(result)
            assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all()
            result = result.convert(ref.mode)
        got, want = _values(result), _values(ref)
        if isinstance(full_depth(source), np.ndarray):  # 16-bit colour: all 16 bits kept
            got, want = full_depth(load_image(out)), full_depth(source)
            assert isinstance(got, np.ndarray), "16-bit colour written at 8 bits"
        assert got.shape == want.shape, (result.mode, ref.mode)
        assert np.array_equal(got[known], want[known]), "known pixels changed"


@fuzz_settings(20)
@given(target=image_files(max_side=16), reference=image_files(16, False, ("P", "RGB", "RGBA", "CMYK", "RGB16")),
       opts=options(), k=st.sampled_from([None, None, 1, 3, 0]))  # fmt: skip
def test_fuzz_colorize(capsys, target, reference, opts, k):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (out_dir := tmp / "out").mkdir()
        src = write(tmp, "t_" + target[0], target[1])
        ref = write(tmp, "r_" + reference[0], reference[1])
        out = out_dir / f"result{opts['suffix']}"
        argv = ["colorize", src, "--reference", ref, *_common(opts, out)]
        if k is not None:
            argv += ["--k", k]
        result = _run_checked(capsys, argv, out_dir, out)
        if result is None:
            return
        assert result.size == load_image(src).size
        assert result.mode in ("RGB", "RGBA")


@fuzz_settings(20)
@given(image=image_files(max_side=12), opts=options(),
       scale=st.sampled_from(["2", "2", "3", "4", "1", "x", "2.0"]))  # fmt: skip
def test_fuzz_upscale(capsys, image, opts, scale):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (out_dir := tmp / "out").mkdir()
        src = write(tmp, image[0], image[1])
        out = out_dir / f"result{opts['suffix']}"
        argv = ["upscale", src, "--scale", scale, *_common(opts, out)]
        result = _run_checked(capsys, argv, out_dir, out)
        if result is None:
            return
        w, h = load_image(src).size
        assert result.size == (w * int(scale), h * int(scale))


@pytest.mark.parametrize("kind", ["png", "tif"])
@pytest.mark.parametrize("role", ["IMAGE", "--mask", "--reference"])
def test_huge_headers_are_one_line_errors(capsys, tmp_path, kind, role):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    bomb = write(tmp_path, *bomb_file(kind))
    small = tmp_path / "small.png"
    Image.new("RGB", (8, 8), (90, 40, 20)).save(small)
    argv = {
        "IMAGE": ["inpaint", bomb, "--mask", small],
        "--mask": ["inpaint", small, "--mask", bomb],
        "--reference": ["colorize", small, "--reference", bomb],
    }[role]
    code, err = _run(capsys, [*argv, "-o", out_dir / "o.png", "-q"])
    _check_failure(code, err, out_dir)
    assert "above the limit" in err

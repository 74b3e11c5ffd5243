import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from psal.utils.atomic import atomic_path, terminate_gracefully

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_success_renames_and_keeps_suffix(tmp_path):
    dest = tmp_path / "sub" / "out.png"
    with atomic_path(dest) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == dest.parent and not dest.exists()
        tmp.write_bytes(b"data")
    assert dest.read_bytes() == b"data"
    assert [p.name for p in dest.parent.iterdir()] == ["out.png"]


def test_failure_leaves_nothing_and_keeps_the_old_file(tmp_path):
    dest = tmp_path / "out.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_new_file_mode_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "new.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o644


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_new_file_mode_is_found_without_setting_the_umask(tmp_path, monkeypatch):
    # umask(0) then restore left a window in which a file made by another thread (an
    # upload of the web app, say) got mode 0666; on Linux the umask is read from /proc
    set_to = []
    real = os.umask

    def spy(mask):
        set_to.append(mask)
        return real(mask)

    old = real(0o027)
    try:
        monkeypatch.setattr(os, "umask", spy)
        with atomic_path(tmp_path / "new.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        real(old)
    assert set_to == []
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o640


def test_umask_fallback_restores_the_umask(monkeypatch):
    import builtins

    from psal.utils import atomic

    def no_proc(path, *args, **kwargs):
        raise OSError("no /proc")

    old = os.umask(0o027)
    try:
        monkeypatch.setattr(builtins, "open", no_proc)
        assert atomic._umask() == 0o027
        monkeypatch.undo()
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(old)


def test_replaced_file_keeps_its_mode(tmp_path):
    dest = tmp_path / "keep.bin"
    dest.write_bytes(b"a")
    dest.chmod(0o640)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"b")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640 and dest.read_bytes() == b"b"


# -- SIGTERM: a killed writer leaves nothing behind (issue 15, item 6) ------------------

_KILLED_CLI = """
import sys, time
import psal.utils.atomic as atomic
from psal.cli import main

def hold(tmp):  # the output is written to its temporary file: wait here to be killed
    print("WRITTEN", tmp.name, flush=True)
    time.sleep(120)

atomic._before_rename = hold
sys.exit(main(sys.argv[1:]))
"""

_KILLED_WRITER = """
import signal, sys, time
import psal, psal.cli
from psal.utils.atomic import atomic_path, terminate_gracefully

assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # importing psal sets nothing

with terminate_gracefully(), atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as fh:  # a checkpoint half written, then a slow writer
        fh.write(b"x" * 1_000_000)
        fh.flush()
        print("WRITING", flush=True)
        time.sleep(120)
"""


def _kill_when(script: str, args: list[str], token: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()  # blocks until the child reaches the slow point
        assert token in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # pragma: no cover - only if the test fails
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_sigterm_during_cli_output_write_leaves_nothing(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    m = np.zeros((20, 24), np.uint8)
    m[5:9, 6:10] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    out = tmp_path / "out"
    out.mkdir()
    res = _kill_when(
        _KILLED_CLI,
        ["inpaint", "a.png", "--mask", "m.png", "-o", "out/result.png", "-q"],
        "WRITTEN .result.png.",
        tmp_path,
    )
    assert res.returncode == 128 + signal.SIGTERM, res.stderr
    assert res.stderr.strip().splitlines()[-1] == "psal: terminated", res.stderr
    assert list(out.iterdir()) == []


def test_sigterm_during_a_checkpoint_write_leaves_nothing(tmp_path):
    res = _kill_when(_KILLED_WRITER, ["step_5.state.pt"], "WRITING", tmp_path)
    assert res.returncode == 128 + signal.SIGTERM, res.stderr
    assert list(tmp_path.iterdir()) == []


def test_terminate_gracefully_restores_the_previous_handler():
    def mine(signum, frame):  # pragma: no cover - never called
        pass

    before = signal.signal(signal.SIGTERM, mine)
    try:
        with terminate_gracefully():
            assert signal.getsignal(signal.SIGTERM) is not mine
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_the_python_api_refuses_a_fifo_and_leaves_it_in_place(tmp_path):
    """Not only the CLI: a library writer renaming onto a FIFO would replace it (as
    root, ``/dev/null`` alike) by a regular file."""
    import torch

    import psal.viz
    from psal.utils.atomic import check_writable
    from psal.utils.io import save_image

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"output .*pipe\.png: is not a regular file"):
        check_writable(fifo)
    with pytest.raises(ValueError, match="is not a regular file"), atomic_path(fifo) as tmp:
        tmp.write_bytes(b"never")
    with pytest.raises(ValueError, match="is not a regular file"):
        save_image(np.zeros((4, 4, 3), np.uint8), fifo)
    with pytest.raises(ValueError, match="is not a regular file"):
        psal.viz.save_flow_visualization(torch.rand(1, 3, 4, 4), torch.zeros(1, 2, 4, 4), fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe.png"]  # no temporary left

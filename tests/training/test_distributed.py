"""Two CPU processes with the gloo backend, started by torchrun, train together."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import tiny_overrides

from psal.training import load_checkpoint

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_torchrun_two_processes(photo_folder, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(photo_folder, data)
    (data / "empty.png").write_bytes(b"")  # skipped, and named once (not once per rank)
    out = tmp_path / "run"
    overrides = tiny_overrides(data, out, steps=2, save_every=1, **{"data.val_fraction": 0})
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "psal", "train", "inpaint", "--data", str(data), "--out", str(out),
        "--device", "cpu", *overrides,
    ]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    # faulthandler: a rank killed by a signal prints where each of its threads was
    env.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-6000:])
    # rank 0 alone printed and saved
    assert proc.stdout.count("trained 2 steps") == 1
    assert proc.stderr.count("1 unreadable image file(s) skipped") == 1, proc.stderr[-3000:]
    _, meta, state = load_checkpoint(out)
    assert state["world_size"] == 2 and meta["step"] == 2
    ranks = state["ranks"]
    assert len(ranks) == 2
    assert ranks[0]["position"] == ranks[1]["position"] == 2 * 2 * 2  # steps x batches x size
    assert ranks[0]["digest"] != ranks[1]["digest"]  # the ranks saw different images
    assert not torch.equal(ranks[0]["rng"]["torch"], ranks[1]["rng"]["torch"])
    # the ranks trained on different images, yet hold the same weights (gradients were
    # averaged): without the gradient synchronisation these digests differ
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert sorted(p.name for p in (out / "checkpoints").glob("*.safetensors")) == [
        "step_00000001.safetensors",
        "step_00000002.safetensors",
    ]


@pytest.mark.parametrize("wait", [True, False])
def test_cleanup_waits_for_the_others_only_after_a_normal_end(monkeypatch, wait):
    """After an error a barrier could hang (the others sit in another collective)."""
    from psal.training import distributed

    calls = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: calls.append("destroy"))
    distributed.cleanup(wait=wait)
    assert calls == (["barrier", "destroy"] if wait else ["destroy"])


def test_a_failed_barrier_still_leaves_the_group(monkeypatch):
    from psal.training import distributed

    calls = []

    def barrier():
        raise RuntimeError("connection closed by peer")

    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "barrier", barrier)
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: calls.append("destroy"))
    distributed.cleanup()
    assert calls == ["destroy"]

"""Training on CUDA: mixed precision (float16 with gradient scaling, bfloat16) and NCCL.

These run only where CUDA exists (two GPUs for NCCL) and skip cleanly elsewhere.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import tiny_overrides

from psal.training import TrainConfig, Trainer, apply_overrides, load_checkpoint

CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not CUDA, reason="no CUDA device")]
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_mixed_precision_training_on_cuda(photo_folder, tmp_path, amp):
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bfloat16 on this GPU")
    extra = {"device": "cuda", "optim.amp": amp, "save_every": 1, "steps": 3}
    cfg = apply_overrides(TrainConfig(), tiny_overrides(photo_folder, tmp_path, **extra))
    trainer = Trainer(cfg)
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    assert trainer.runtime.amp_dtype == dtype and trainer.device.type == "cuda"
    logs, (out, _) = trainer.train_step()
    assert out.coarse.dtype == dtype and "g_grad_norm" in logs
    trainer.fit()
    trainer.close()
    _, _, state = load_checkpoint(tmp_path)
    scaler = state["scalers"]["generator"]
    assert bool(scaler) == (amp == "fp16")  # the float16 gradient scaler is saved
    assert "cuda" in state["ranks"][0]["rng"]
    for p in trainer.task.generator.parameters():
        assert p.dtype == torch.float32 and torch.isfinite(p).all()
    # resuming on CUDA continues exactly
    resumed = Trainer(cfg, resume=tmp_path)
    assert resumed.step == 3 and resumed.stream.position == trainer.stream.position


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs two CUDA devices")
def test_torchrun_nccl_two_gpus(photo_folder, tmp_path):
    out = tmp_path / "run"
    overrides = tiny_overrides(photo_folder, out, steps=2, **{"data.val_fraction": 0})
    overrides = [o for o in overrides if not o.startswith("device=")]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "psal", "train", "inpaint", "--device", "cuda", *overrides,
    ]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, _, state = load_checkpoint(out)
    ranks = state["ranks"]
    assert state["world_size"] == 2 and ranks[0]["weights"] == ranks[1]["weights"]
    assert ranks[0]["digest"] != ranks[1]["digest"]

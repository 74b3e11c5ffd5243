"""The GPU benchmark script's logic, checked on the CPU (no GPU here)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _load_gpu_py():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "benchmarks" / "gpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device would run the real thing")
def test_gpu_sh_skips_cleanly_without_cuda():
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PSAL_GPU_DRY_RUN": "0"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "no CUDA device" in out.stdout and "skipping" in out.stdout


def test_gpu_py_without_cuda_times_nothing(capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert _load_gpu_py().main(["--device", "cuda"]) == []
    assert "no CUDA device" in capsys.readouterr().out


@pytest.mark.slow
def test_gpu_py_dry_run_on_cpu_prints_one_table(capsys):
    """About 10 s on an idle machine (three benchmarks on 32x32 maps, one run each)."""
    rows = _load_gpu_py().main(["--device", "cpu", "--quick", "--sizes", "32"])
    assert [(r["bench"], r.get("backend")) for r in rows] == [
        ("engine", "torch"),
        ("engine", "numba"),
        ("attention", "numba"),
        ("deepfill", "numba"),
    ]
    for r in rows:
        assert float(r["time (s)"]) > 0 and float(r["peak MB"]) >= 0
    for r in rows[:2]:  # the search quality against the exact search
        assert 1.0 <= float(r["dist ratio"]) < 1.5 and 0 < float(r["NN recall"]) <= 1
    out = capsys.readouterr().out
    assert "| bench | size | backend | time (s) | peak MB | dist ratio | NN recall |" in out

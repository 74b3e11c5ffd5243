"""The runtime keeps the process's torch thread count (and so bit-exact resumes)."""

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

SCRIPT = """
import torch
from psal.training.runtime import Runtime
before = torch.get_num_threads()
Runtime("cpu", "off")
q = torch.randn(1, 2, 8, 8)
conv = torch.nn.Conv2d(8, 4, 1)
x = torch.randn(2, 8, 12, 12)
a = conv(x)
import psal
psal.patchmatch(q, q, k=2, patch_size=3, iters=2, seed=0)  # numba's first kernel
b = conv(x)
print(before, torch.get_num_threads(), torch.equal(a, b))
"""


def test_numba_starting_does_not_change_torch_threads():
    """numba's OpenMP layer set torch's thread count to all cores when it started.

    That happened in the middle of a run's first step (its first PSAL search): torch's
    ``OMP_NUM_THREADS`` / ``set_num_threads`` was undone and convolutions changed their
    float results, so a run resumed in a fresh process no longer matched an unbroken one.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="2")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["1", "1", "True"], proc.stdout

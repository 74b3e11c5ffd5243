"""Where the time of a whole ``psal inpaint`` command goes, part by part (and ``psal upscale``'s).

Each part runs in a fresh Python process (min of ``--repeats``): the interpreter,
numpy + Pillow, numba, numba's first call of a cached kernel (a trivial one, compiled
once into a temporary folder) with numba's full set-up and with the lean one that
``psal inpaint`` uses (:func:`psal.utils.parallel.start_numba_lean`), psal's CLI and
inpainting modules, and ``import torch``, which the command no longer pays; then
``psal.inpaint`` in a fresh process on a numpy image (first and second call) and on a
tensor (the tensor path, which imports torch: what the command cost before), and the
whole command, on the astronaut photo at 512x680 with a person-shaped hole of about 9%
(the benchmark's ``object_mask``).

    PYTHONPATH=src python benchmarks/startup.py            # ~1 minute
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _editing as C
import inpaint as B

_KERNEL = """
from numba import njit


@njit(cache=True, nogil=True)
def f(a):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i]
    return s
"""

_INPROCESS = """
import time
t0 = time.perf_counter()
import numpy as np
from PIL import Image
import psal
im = np.array(Image.open({photo!r})); m = np.array(Image.open({mask!r})) > 127
t = time.perf_counter(); psal.inpaint(im, m, seed=0); t1 = time.perf_counter() - t
t = time.perf_counter(); psal.inpaint(im, m, seed=0); t2 = time.perf_counter() - t
print(time.perf_counter() - t0 - t2, t1, t2)
"""

_TENSOR = """
import time
t0 = time.perf_counter()
import numpy as np, torch
from PIL import Image
import psal
im = torch.from_numpy(np.array(Image.open({photo!r}))).permute(2, 0, 1)
m = torch.from_numpy(np.array(Image.open({mask!r})) > 127)
psal.inpaint(im, m, seed=0)
print(time.perf_counter() - t0)
"""


def _best(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "trivial_kernel.py").write_text(_KERNEL)
        im = C.load_photo("astronaut", (512, 680))
        mask = B.object_mask((512, 680), np.random.default_rng(3), area=0.10)
        photo, mpath, out = (str(Path(tmp) / n) for n in ("photo.png", "mask.png", "out.png"))
        Image.fromarray(im).save(photo)
        Image.fromarray(mask.astype(np.uint8) * 255).save(mpath)
        py = sys.executable
        first = f"import numpy, PIL.Image, numba, sys; sys.path.insert(0, {tmp!r}); "
        call = "import trivial_kernel; trivial_kernel.f(numpy.ones(3))"
        lean = "from psal.utils.parallel import start_numba_lean; start_numba_lean(); "
        subprocess.run([py, "-c", first + call], check=True)  # compile and cache it once
        parts = [
            ("python -c pass", "pass"),
            ("+ numpy, Pillow", "import numpy, PIL.Image"),
            ("+ numba", "import numpy, PIL.Image, numba"),
            ("+ numba's first call of a cached kernel (full set-up)", first + call),
            ("+ the same, lean set-up (SciPy BLAS, cffi hidden)", first + lean + call),
            ("+ psal.cli, psal.editing.inpaint (no torch)",
             "import numba, psal.cli, psal.editing.inpaint"),
            ("import torch (alone; not paid by the command)", "import torch"),
        ]  # fmt: skip
        rows = [[name, _best([py, "-c", code], args.repeats)] for name, code in parts]
        runs = [subprocess.run([py, "-c", _INPROCESS.format(photo=photo, mask=mpath)],
                               check=True, capture_output=True, text=True).stdout.split()
                for _ in range(args.repeats)]  # fmt: skip
        t0, t1, t2 = (min(float(r[i]) for r in runs) for i in range(3))
        rows += [["fresh process: imports + psal.inpaint on a numpy image", t0],
                 ["  the first psal.inpaint call alone", t1],
                 ["  a second call (no start-up)", t2]]  # fmt: skip
        code = [py, "-c", _TENSOR.format(photo=photo, mask=mpath)]
        tensor = min(
            float(subprocess.run(code, check=True, capture_output=True, text=True).stdout)
            for _ in range(args.repeats)
        )
        rows.append(["fresh process: the same on a tensor (imports torch)", tensor])
        cmd = [py, "-m", "psal", "inpaint", photo, "--mask", mpath, "-o", out]
        rows.append(["whole command: psal inpaint", _best(cmd, args.repeats)])
        # the training-free upscaler also runs without torch (same photo, x2)
        cmd = [py, "-m", "psal", "upscale", photo, "--scale", "2", "-o", out]
        rows.append(["whole command: psal upscale --scale 2 (to 1024x1360)",
                     _best(cmd, args.repeats)])  # fmt: skip
    print(f"hole: {100 * mask.mean():.1f}% of 512x680")
    C.print_table(["part (fresh process unless in-process)", "seconds"], rows, "Start-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())

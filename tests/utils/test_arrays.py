"""psal.utils.arrays: the operations numpy and torch spell differently, and the lean start."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from psal.utils import arrays as A


def test_each_operation_gives_the_same_on_both():
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    t = torch.from_numpy(x.copy())
    assert A.is_tensor(t) and not A.is_tensor(x)
    assert A.namespace(x) is np and A.namespace(t) is torch
    for f in (A.copy, A.contiguous):
        assert np.array_equal(f(x), f(t).numpy())
    c = A.copy(x)
    c[0, 0, 0, 0] = -1
    assert x[0, 0, 0, 0] == 0
    m = x > 10
    for a, b in zip(A.nonzero(m), A.nonzero(torch.from_numpy(m))):
        assert a.dtype == np.int64 and np.array_equal(a, b.numpy())
    assert np.array_equal(A.concat([x, x], 1), A.concat([t, t], 1).numpy())
    assert np.array_equal(A.pad2d(x, (1, 2, 3, 0)), A.pad2d(t, (1, 2, 3, 0)).numpy())
    assert A.pad2d(x, (1, 2, 3, 0)).shape == (1, 2, 6, 7)
    assert A.astype(m, "float64").dtype == np.float64
    assert A.astype(torch.from_numpy(m), t).dtype == torch.float32
    assert A.dtype_name(t) == A.dtype_name(x) == "float32"
    assert np.array_equal(A.full(x, (2, 3), 7, "int64"), A.full(t, (2, 3), 7, "int64").numpy())
    assert np.array_equal(A.arange(x, 5), A.arange(t, 5).numpy())


def _fresh_words(code: str) -> list[str]:
    """What ``code`` prints in a fresh Python process (numba set up there first), split."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)  # fmt: skip
    return out.stdout.split()


def test_lean_numba_start_hides_scipy_linalg_and_cffi_and_kernels_still_run():
    code = (
        "import sys\n"
        "from psal.utils.parallel import start_numba_lean\n"
        "first = start_numba_lean()\n"
        "import numpy as np\n"
        "from psal.utils.filters import box_sum\n"
        "from psal.layers.vote import vote_arrays\n"
        "v = np.ones((1, 2, 5, 5), np.float32); idx = np.zeros((1, 1, 5, 5), np.int64)\n"
        "z = np.zeros(3, np.int64)\n"
        "out, cov = vote_arrays(v, idx, np.zeros((1, 1, 5, 5), np.float32), 1, 1.0, z, z, z)\n"
        "print(first, start_numba_lean(), bool(cov.all()), float(out.sum()),\n"
        "      [n for n in ('scipy.linalg', 'cffi') if n in sys.modules])\n"
    )
    assert _fresh_words(code) == ["True", "False", "True", "6.0", "[]"]


def test_lean_numba_start_still_hides_scipy_linalg_when_cffi_is_already_imported():
    """Pillow before 10.1 imports cffi (when installed): the lean start keeps hiding SciPy."""
    pytest.importorskip("cffi")
    code = (
        "import sys, cffi\n"
        "from psal.utils.parallel import start_numba_lean\n"
        "first = start_numba_lean()\n"
        "import numpy as np\n"
        "from psal.utils.filters import box_sum\n"
        "out = box_sum(np.ones((1, 6, 6)), 3)\n"
        "print(first, float(out.max()), 'scipy.linalg' in sys.modules)\n"
    )
    assert _fresh_words(code) == ["True", "9.0", "False"]

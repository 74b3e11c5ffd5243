"""psal.utils.simd: explicit-SIMD sums of squared differences against numpy."""

import numpy as np
import pytest
from numba import njit

from psal.utils.simd import sqdiff, sqdiff_rows, sqdiff_rows_i8


@njit(cache=False)
def _call(a, ao, b, bo, n):
    return sqdiff(a, ao, b, bo, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 15, 16, 17, 21, 63, 64, 65, 147, 192, 300])
def test_sqdiff_matches_numpy(dtype, n):
    rng = np.random.default_rng(n)
    a = rng.standard_normal(400).astype(dtype)
    b = rng.standard_normal(400).astype(dtype)
    out = _call(a, 5, b, 11, n)
    ref = ((a[5 : 5 + n].astype(np.float64) - b[11 : 11 + n]) ** 2).sum()
    assert isinstance(out, (float, np.floating))
    assert np.isclose(out, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=0)


def test_sqdiff_flat_offsets_of_a_3d_array_and_run_at_the_end():
    rng = np.random.default_rng(0)
    x = rng.random((2, 5, 21)).astype(np.float32)
    flat = x.reshape(-1)
    # a 21-value row: one vector and a masked tail of 5; the second run ends at the array's end
    out = _call(x, 21, x, flat.size - 21, 21)
    ref = ((flat[21:42].astype(np.float64) - flat[-21:]) ** 2).sum()
    assert np.isclose(out, ref, rtol=1e-6)
    assert _call(x, 0, x, 0, flat.size) == 0.0


def test_sqdiff_propagates_inf_and_nan():
    a = np.zeros(20, np.float32)
    b = np.zeros(20, np.float32)
    b[17] = np.inf
    assert _call(a, 0, b, 0, 20) == np.inf
    b[17] = np.nan
    assert np.isnan(_call(a, 0, b, 0, 20))
    assert _call(a, 0, b, 0, 17) == 0.0  # the masked tail does not read past the run


def test_sqdiff_rejects_mixed_or_integer_dtypes():
    from numba.core.errors import TypingError

    with pytest.raises(TypingError):
        _call(np.zeros(4, np.float32), 0, np.zeros(4, np.float64), 0, 4)
    with pytest.raises(TypingError):
        _call(np.zeros(4, np.int32), 0, np.zeros(4, np.int32), 0, 4)


def test_sqdiff_random_runs_against_numpy():
    # 300 random (dtype, length, offsets, scale) cases, fixed seed
    rng = np.random.default_rng(123)
    for _ in range(300):
        dtype = (np.float32, np.float64)[rng.integers(2)]
        size = int(rng.integers(1, 700))
        n = int(rng.integers(0, size + 1))
        ao, bo = (int(rng.integers(0, size - n + 1)) for _ in range(2))
        scale = 10.0 ** rng.uniform(-3, 3)
        a = (rng.standard_normal(size) * scale).astype(dtype)
        b = (rng.standard_normal(size) * scale).astype(dtype)
        ref = ((a[ao : ao + n].astype(np.float64) - b[bo : bo + n]) ** 2).sum()
        out = _call(a, ao, b, bo, n)
        tol = 2e-5 if dtype == np.float32 else 1e-12
        assert abs(out - ref) <= tol * ref + 1e-30, (dtype, size, n, ao, bo)


@njit(cache=False)
def _rows_i8(a, ao, sa, b, bo, sb, n, rows):
    return sqdiff_rows_i8(a, ao, sa, b, bo, sb, n, rows)


def _rows_ref(a, ao, sa, b, bo, sb, n, rows):
    fa, fb = a.reshape(-1).astype(np.int64), b.reshape(-1).astype(np.int64)
    return sum(
        int(((fa[ao + r * sa :][:n] - fb[bo + r * sb :][:n]) ** 2).sum()) for r in range(rows)
    )


@pytest.mark.parametrize("n", [0, 1, 21, 63, 64, 65, 127, 128, 192, 200, 576])
@pytest.mark.parametrize("rows", [0, 1, 3, 7])
def test_sqdiff_rows_i8_matches_numpy(n, rows):
    rng = np.random.default_rng(n * 10 + rows)
    a = rng.integers(-128, 128, (7, 40, 600)).astype(np.int8)
    b = rng.integers(-128, 128, (9, 30, 700)).astype(np.int8)
    out = _rows_i8(a, 1234, 600, b, 4321, 700, n, rows)
    assert isinstance(out, (int, np.integer))
    assert out == _rows_ref(a, 1234, 600, b, 4321, 700, n, rows)


def test_sqdiff_rows_i8_extremes_and_runs_at_the_end():
    # |a - b| = 255 everywhere: 255² per value, no 16-bit overflow in the difference
    lo, hi = np.full(3 * 640, -128, np.int8), np.full(3 * 640, 127, np.int8)
    assert _rows_i8(lo, 0, 640, hi, 0, 640, 640, 3) == 255**2 * 1920
    # the last run ends at the array's last element (masked tail reads nothing past it)
    a = np.arange(-100, 95, dtype=np.int8)
    b = a[::-1].copy()
    assert _rows_i8(a, 5, 60, b, 5, 60, 70, 3) == _rows_ref(a, 5, 60, b, 5, 60, 70, 3)


def test_sqdiff_rows_i8_random_runs_against_numpy():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n, rows = int(rng.integers(0, 300)), int(rng.integers(0, 8))
        sa, sb = (n + int(rng.integers(0, 100)) for _ in range(2))
        a = rng.integers(-128, 128, sa * max(rows, 1) + n + 1).astype(np.int8)
        b = rng.integers(-128, 128, sb * max(rows, 1) + n + 1).astype(np.int8)
        ao = int(rng.integers(0, a.size - (sa * max(rows - 1, 0) + n) + 1))
        bo = int(rng.integers(0, b.size - (sb * max(rows - 1, 0) + n) + 1))
        assert _rows_i8(a, ao, sa, b, bo, sb, n, rows) == _rows_ref(a, ao, sa, b, bo, sb, n, rows)


def test_sqdiff_rows_i8_rejects_other_dtypes():
    from numba.core.errors import TypingError

    with pytest.raises(TypingError):
        _rows_i8(np.zeros(4, np.uint8), 0, 4, np.zeros(4, np.uint8), 0, 4, 4, 1)
    with pytest.raises(TypingError):
        _rows_i8(np.zeros(4, np.float32), 0, 4, np.zeros(4, np.float32), 0, 4, 4, 1)


@njit(cache=False)
def _rows_f(a, ao, sa, b, bo, sb, n, rows):
    return sqdiff_rows(a, ao, sa, b, bo, sb, n, rows)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sqdiff_rows_random_runs_against_numpy(dtype):
    rng = np.random.default_rng(11)
    for _ in range(200):
        n, rows = int(rng.integers(0, 300)), int(rng.integers(0, 8))
        sa, sb = (n + int(rng.integers(0, 100)) for _ in range(2))
        a = rng.standard_normal(sa * max(rows, 1) + n + 1).astype(dtype)
        b = rng.standard_normal(sb * max(rows, 1) + n + 1).astype(dtype)
        ao = int(rng.integers(0, a.size - (sa * max(rows - 1, 0) + n) + 1))
        bo = int(rng.integers(0, b.size - (sb * max(rows - 1, 0) + n) + 1))
        fa, fb = a.astype(np.float64), b.astype(np.float64)
        ref = sum(((fa[ao + r * sa :][:n] - fb[bo + r * sb :][:n]) ** 2).sum() for r in range(rows))
        out = _rows_f(a, ao, sa, b, bo, sb, n, rows)
        tol = 2e-5 if dtype == np.float32 else 1e-12
        assert abs(out - ref) <= tol * ref + 1e-30, (n, rows, sa, sb)
    # one row is sqdiff (up to the order LLVM's reassociation picks per call site)
    a, b = rng.standard_normal(100).astype(dtype), rng.standard_normal(100).astype(dtype)
    for n in (0, 5, 21, 64, 99):
        assert np.isclose(_rows_f(a, 1, 0, b, 0, 0, n, 1), _call(a, 1, b, 0, n), rtol=1e-6)

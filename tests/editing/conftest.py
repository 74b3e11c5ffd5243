"""Small synthetic images for the editing tests."""

from __future__ import annotations

import numpy as np
import pytest


def stripes(h: int = 48, w: int = 64, period: int = 6, channels: int = 3) -> np.ndarray:
    """Vertical colour stripes: a texture a patch method can continue exactly."""
    x = np.arange(w)
    row = np.stack(
        [
            (x % period < period // 2) * 200 + 20,
            ((x + 2) % period < period // 2) * 150 + 50,
            ((x // period) % 2) * 100 + 80,
        ],
        -1,
    )[:, :channels]
    return np.broadcast_to(row, (h, w, channels)).astype(np.uint8).copy()


@pytest.fixture
def stripes_rgb() -> np.ndarray:
    return stripes()


@pytest.fixture(name="stripes")
def stripes_factory():
    """The :func:`stripes` maker, as a fixture (tests/ is not a package)."""
    return stripes


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Run these tiny-image tests on one thread.

    On inputs this small, the barriers of parallel regions (numba ``prange``, torch
    intra-op threads) cost far more than the work itself: on a loaded 2-core machine a
    48x64 inpainting took 1.8 s with 2 threads and 0.03 s with one. Restored after.
    """
    import numba
    import torch

    n_numba, n_torch = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    yield
    numba.set_num_threads(n_numba)
    torch.set_num_threads(n_torch)


@pytest.fixture
def photo_u8():
    """Maker of a scikit-image photo as a uint8 (H, W, 3) array of a given size."""

    def make(name: str, size: tuple[int, int]) -> np.ndarray:
        from PIL import Image
        from skimage import data

        im = Image.fromarray(getattr(data, name)()[..., :3])
        return np.asarray(im.resize((size[1], size[0]), Image.Resampling.LANCZOS)).copy()

    return make

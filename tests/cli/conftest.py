"""Small image files for the command-line tests."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True, scope="module")
def _single_thread(one_thread_module):
    """One numba and one torch thread: on tiny images thread start-up costs more."""


@pytest.fixture
def files(tmp_path):
    """A 40x56 photo-like RGB image (PNG, JPEG, WebP, RGBA PNG, L PNG) and masks."""
    x = np.arange(56)
    y = np.arange(40)[:, None]
    rgb = np.stack(
        [(x % 6 < 3) * 180 + 40 + 0 * y, (y % 5 < 2) * 120 + 60 + 0 * x, (x + y) % 256],
        -1,
    ).astype(np.uint8)
    im = Image.fromarray(rgb)
    paths = {}
    for name, img in {
        "rgb.png": im,
        "rgb.jpg": im,
        "rgb.webp": im,
        "rgba.png": im.convert("RGBA"),
        "gray.png": im.convert("L"),
    }.items():
        path = tmp_path / name
        img.save(path, **({"lossless": True} if name.endswith(".webp") else {}))
        paths[name] = path
    mask = np.zeros((40, 56), np.uint8)
    mask[12:24, 20:34] = 255
    for name, m in {
        "mask.png": mask,
        "empty.png": np.zeros_like(mask),
        "full.png": np.full_like(mask, 255),
        "small.png": mask[:30],
    }.items():
        Image.fromarray(m).save(tmp_path / name)
        paths[name] = tmp_path / name
    paths["dir"] = tmp_path
    return paths

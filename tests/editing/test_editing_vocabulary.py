"""The editing tools agree: ``pm_iters`` for PatchMatch iterations, one progress type."""

from __future__ import annotations

import inspect
import typing

import numpy as np
import pytest

import psal
from psal.utils.progress import ProgressCallback

TOOLS = {
    "inpaint": lambda img, **kw: psal.inpaint(img, _mask(img), **kw),
    "colorize": lambda img, **kw: psal.colorize(img.mean(2).astype(np.uint8), img, **kw),
    "upscale": lambda img, **kw: psal.upscale(img, 2, **kw),
}


def _img():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)


def _mask(img):
    m = np.zeros(img.shape[:2], np.uint8)
    m[8:14, 9:15] = 255
    return m


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_same_names_and_progress_type(name):
    fn = getattr(psal, name)
    params = inspect.signature(fn).parameters
    assert "pm_iters" in params and "iters" not in params
    hints = typing.get_type_hints(fn)
    assert hints["progress"] == ProgressCallback | None


@pytest.mark.parametrize("name", ["colorize", "upscale"])
def test_old_iters_keyword_warns_and_agrees(name):
    img = _img()
    new = TOOLS[name](img, pm_iters=1, seed=0)
    with pytest.warns(DeprecationWarning, match=r"iters=\.\.\.\) is deprecated; use pm_iters="):
        old = TOOLS[name](img, iters=1, seed=0)
    assert np.array_equal(new, old)
    with pytest.raises(TypeError, match="both 'iters'"):
        TOOLS[name](img, iters=1, pm_iters=1)


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_progress_reaches_total(name):
    calls = []
    TOOLS[name](_img(), pm_iters=1, seed=0, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]

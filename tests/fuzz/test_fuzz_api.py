"""Fuzz the Python API: arrays, tensors and PIL images of any dtype, masks, options.

The promise: a ValueError or TypeError (with a message), or a result of the input's
kind, shape and dtype whose known pixels are the input's, bit for bit.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from fuzz_inputs import fuzz_settings, mask_arrays
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image

import psal
from psal.utils.masks import to_mask

DTYPES = ("uint8", "uint16", "bool", "float16", "float32", "float64")
BAD_DTYPES = ("int32", "int64", "complex64", "uint32")
SIDES = [1, 3, *range(8, 17)]
#: One draw in three carries one defect (each must be refused with ValueError/TypeError).
DEFECTS = [None] * 16 + [
    "dtype", "nan", "inf", "channels", "wide", "mask-size", "mask-complex", "mask-nan",
    "patch", "device-meta", "device-cuda", "device-name",
]  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread_module):
    """Every case here is a tiny input: one numba and one torch thread."""


@st.composite
def arrays(draw, channels=(None, 1, 2, 3, 4), defect=None):
    h, w = draw(st.sampled_from(SIDES)), draw(st.sampled_from(SIDES))
    c = 5 if defect == "channels" else draw(st.sampled_from(channels))
    shape = (h, w) if c is None else (h, w, c)
    dtypes = {"dtype": BAD_DTYPES, "nan": ("float32", "float64"), "inf": ("float32",),
              "wide": ("float32", "float64")}.get(defect, DTYPES)  # fmt: skip
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if dtype.kind == "f":
        arr = rng.random(shape)
        if defect == "wide":  # accepted: float values are taken as they are
            arr = arr * 300 - 100
        elif defect in ("nan", "inf"):
            arr.flat[int(rng.integers(0, arr.size))] = np.nan if defect == "nan" else np.inf
        return arr.astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) > 0.5
    if dtype.kind == "c":
        return rng.random(shape).astype(dtype)
    top = 255 if dtype == np.uint8 else 65535
    return rng.integers(0, top + 1, shape).astype(dtype)


def _as_kind(arr: np.ndarray, kind: str):
    """The array as a tensor (CHW) or a PIL image when that kind can hold it."""
    if kind == "tensor" and (arr.dtype.kind in "fb" or arr.dtype == np.uint8):
        t = torch.from_numpy(np.ascontiguousarray(arr))
        return t.permute(2, 0, 1) if t.dim() == 3 else t
    if kind == "pil":
        try:
            return Image.fromarray(arr)
        except (TypeError, ValueError):
            return arr
    return arr


def _known_equal(result, image, hole: np.ndarray) -> None:
    """Known pixels of ``result`` equal those of ``image``, bit for bit."""
    if isinstance(image, Image.Image):
        assert isinstance(result, Image.Image) and result.size == image.size
        a = np.asarray(result)
        b = (
            np.asarray(image.convert(result.mode))
            if image.mode != result.mode
            else np.asarray(image)
        )
    elif isinstance(image, torch.Tensor):
        assert isinstance(result, torch.Tensor) and result.dtype == image.dtype
        assert result.shape == image.shape
        a, b = result.numpy(), image.numpy()
        if a.ndim == 3:
            a, b = np.moveaxis(a, 0, -1), np.moveaxis(b, 0, -1)
    else:
        assert isinstance(result, np.ndarray)
        assert result.dtype == image.dtype and result.shape == image.shape
        a, b = result, image
    assert np.array_equal(a[~hole], b[~hole]), "known pixels changed"


@fuzz_settings(40)
@given(
    data=st.data(),
    defect=st.sampled_from(DEFECTS),
    kind=st.sampled_from(["numpy", "numpy", "tensor", "pil"]),
    mask_kind=st.sampled_from(["numpy", "numpy", "tensor", "pil"]),
    patch=st.sampled_from([None, None, 3, 5, np.int64(3)]),
)
def test_fuzz_api_inpaint(data, defect, kind, mask_kind, patch):
    arr = data.draw(arrays(defect=defect))
    if defect == "dtype":  # a PIL image of int32 data is a mode I image: accepted
        kind = "numpy"
    if defect == "channels" and kind == "tensor":  # (C, H, W) tensors take any C
        defect = None
    image = _as_kind(arr, kind)
    h, w = arr.shape[:2]
    m, _ = data.draw(mask_arrays(h, w))
    if mask_kind == "tensor":
        m = torch.from_numpy(m if m.ndim == 2 else m.max(axis=2))
    elif mask_kind == "pil":
        m = Image.fromarray(m)
    if defect == "mask-size":
        m = np.zeros((h + 1, w), np.uint8)
    elif defect == "mask-complex":
        m = np.zeros((h, w), np.complex64)
    elif defect == "mask-nan":
        m = np.full((h, w), np.nan, np.float32)
    kw = {} if patch is None else {"patch_size": patch}
    if defect == "patch":
        kw["patch_size"] = 2
    elif defect is not None and defect.startswith("device"):
        kw["device"] = {"device-meta": "meta", "device-cuda": "cuda:7"}.get(defect, "gpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = psal.inpaint(image, m, **kw)
        except (ValueError, TypeError) as err:
            event(f"refused: {type(err).__name__}")
            assert str(err).strip()
            return
        hole = to_mask(m, h, w)[0, 0].numpy()
    event("result")
    assert defect in (None, "wide"), f"{defect} was accepted"
    _known_equal(out, image, hole)


@fuzz_settings(20)
@given(arr=arrays(channels=(None, 1, 3, 4)), kind=st.sampled_from(["numpy", "tensor", "pil"]),
       scale=st.sampled_from([2, 3, 4, 1, 5, 2.0, "2"]))  # fmt: skip
def test_fuzz_api_upscale(arr, kind, scale):
    image = _as_kind(arr, kind)
    try:
        out = psal.upscale(image, scale)
    except (ValueError, TypeError) as err:
        event(f"refused: {type(err).__name__}")
        assert str(err).strip()
        return
    event("result")
    h, w = arr.shape[:2]
    if isinstance(image, Image.Image):
        assert out.size == (w * scale, h * scale) and out.mode == image.mode
    elif isinstance(image, torch.Tensor):
        assert out.shape[-2:] == (h * scale, w * scale) and out.dtype == image.dtype
    else:
        assert out.shape[:2] == (h * scale, w * scale) and out.dtype == image.dtype


@fuzz_settings(20)
@given(target=arrays(channels=(None, 1, 2, 3)), reference=arrays(channels=(3, 4, 3, None)),
       kind=st.sampled_from(["numpy", "tensor", "pil"]))  # fmt: skip
def test_fuzz_api_colorize(target, reference, kind):
    image = _as_kind(target, kind)
    try:
        out = psal.colorize(image, _as_kind(reference, kind))
    except (ValueError, TypeError) as err:
        event(f"refused: {type(err).__name__}")
        assert str(err).strip()
        return
    event("result")
    h, w = target.shape[:2]
    if isinstance(image, Image.Image):
        assert out.size == (w, h) and out.mode in ("RGB", "RGBA")
    elif isinstance(image, torch.Tensor):
        assert out.shape[-2:] == (h, w) and out.dtype == image.dtype
    else:
        assert out.shape[:2] == (h, w) and out.dtype == target.dtype
    if target.dtype.kind == "f" and not isinstance(out, Image.Image):
        values = np.asarray(out, dtype=np.float64)
        assert values.min() >= 0.0 and values.max() <= 1.0, "float result left [0, 1]"

"""Input checks shared by every public entry point (``psal._checks``)."""

from __future__ import annotations

import functools
import re

import pytest

from psal._checks import check_progress


class _Bar:
    def __call__(self, done: int, total: int) -> None:
        pass


@pytest.mark.parametrize(
    "progress", [None, print, lambda d, t: None, _Bar(), functools.partial(print, sep="")]
)
def test_check_progress_accepts_none_and_callables(progress):
    assert check_progress(progress) is progress


@pytest.mark.parametrize("bad", [3, True, "tqdm", [print]])
def test_check_progress_names_the_argument_and_what_it_takes(bad):
    with pytest.raises(TypeError, match=r"^progress must be a callable progress\(done, total\)"):
        check_progress(bad)
    with pytest.raises(
        TypeError, match=rf"^callback must be .* or None, got {re.escape(repr(bad))}"
    ):
        check_progress(bad, "callback")


def test_check_module_dtype_names_the_argument_and_both_dtypes():
    import torch

    from psal._checks import check_module_dtype

    net = torch.nn.Conv2d(3, 4, 3)
    check_module_dtype(torch.rand(1, 3, 8, 8), "x", net)  # float32 in, float32 weights
    with pytest.raises(
        TypeError,
        match=r"^x has dtype torch\.float16 but Conv2d's parameters are torch\.float32",
    ):
        check_module_dtype(torch.rand(1, 3, 8, 8).half(), "x", net)
    # mixed precision: autocast casts the inputs of each operation itself
    with torch.autocast("cpu", dtype=torch.bfloat16):
        check_module_dtype(torch.rand(1, 3, 8, 8).half(), "x", net)
    check_module_dtype(torch.rand(1, 3, 8, 8).half(), "x", torch.nn.ReLU())  # no weights

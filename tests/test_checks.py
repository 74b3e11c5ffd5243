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


@pytest.mark.parametrize("arg", ["query_valid", "key_valid"])
def test_a_mask_of_the_wrong_rank_says_it_has_one_channel(arg):
    """A 2-D mask was refused as 'must have 4 dimensions (B, C, H, W)': masks are
    (B, 1, H, W), and the message says so."""
    import torch

    import psal

    q = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"must have 4 dimensions \(B, 1, H, W\)"):
        psal.patchmatch(q, q, **{arg: torch.ones(16, 16, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"hole must have 4 dimensions \(B, 1, H, W\)"):
        psal.ContextualAttention()(q, q, q, hole=torch.ones(16, 16, dtype=torch.bool))


def test_check_tensor_layouts():
    import torch

    from psal._checks import check_tensor

    with pytest.raises(ValueError, match=r"x must have 4 dimensions \(B, C, H, W\), got 2"):
        check_tensor(torch.zeros(2, 2), "x", ndim=4)
    with pytest.raises(ValueError, match=r"x must have 5 dimensions, got 2"):
        check_tensor(torch.zeros(2, 2), "x", ndim=5)

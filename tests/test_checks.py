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

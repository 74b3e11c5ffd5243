"""The ``>>>`` examples in psal's docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib
import warnings
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted((SRC / "psal").rglob("*.py")):
        if ">>> " in path.read_text():
            parts = path.relative_to(SRC).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = _modules_with_examples()


def test_there_are_examples():
    assert len(MODULES) > 20


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated modules still document
        try:
            module = importlib.import_module(name)
        except ImportError as err:  # an optional dependency (the web app's Gradio)
            pytest.skip(f"{name}: {err}")
        flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        failed, attempted = doctest.testmod(module, optionflags=flags, report=False)
    report = capsys.readouterr().out
    assert failed == 0, report
    runnable = [ln for ln in Path(module.__file__).read_text().splitlines()
                if ">>> " in ln and "+SKIP" not in ln]  # fmt: skip
    assert attempted > 0 or not runnable, f"{name} shows '>>> ' but doctest ran none of it"

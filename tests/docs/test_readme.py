"""The README's first Python example runs as written (from the repository root)."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_readme_python_tour_runs(monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no Python example"
    monkeypatch.chdir(ROOT)
    env = {}
    exec(compile(blocks[0], "README.md", "exec"), env)
    assert env["out"].shape == (1, 64, 128, 128)
    assert env["clean"].size == env["photo"].size


@pytest.mark.skipif(not (ROOT / "examples" / "photo.png").exists(), reason="no example")
def test_readme_commands_name_existing_examples():
    text = (ROOT / "README.md").read_text()
    for path in re.findall(r"examples/[\w./]+", text):
        assert (ROOT / path.rstrip(".")).exists(), path
    assert os.path.exists(ROOT / ".ci" / "run")

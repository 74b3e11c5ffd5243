"""The README's first Python example runs as written (from the repository root), and
every ``psal`` command the README, the docs and the commands' ``--help`` show parses."""

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


def _documented_commands():
    """Every ``psal ...`` command line of the README's and docs' shell blocks."""
    import shlex

    from psal.cli import edit
    from psal.training.tasks import get_task, list_tasks

    sources = [(md.name, md.read_text())
               for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]]  # fmt: skip
    # the examples of the commands' --help, as one more "document" each
    helps = [edit.INPAINT_EXAMPLES, edit.COLORIZE_EXAMPLES, edit.UPSCALE_EXAMPLES]
    for name in list_tasks():
        task = get_task(name)
        helps += [task.train_examples, task.eval_examples or ""]
    sources += [(f"--help of psal {i}", f"```bash\n{h}\n```") for i, h in enumerate(helps)]
    found = []
    for where, doc in sources:
        for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", doc, flags=re.S):
            text = block.replace("\\\n", " ")
            for line in text.splitlines():
                line = line.split(" #")[0].strip()
                line = re.sub(r"^torchrun .*?-m psal ", "psal ", line)
                if not line.startswith("psal ") or "<" in line or "|" in line:
                    continue
                argv = shlex.split(line)[1:]
                found.append((where, ["inpaint" if a == "TASK" else a for a in argv]))
    return found


def test_documented_commands_parse():
    """The commands the docs show are accepted by the CLI's parser (flags, choices)."""
    from psal.cli import build_parser

    commands = _documented_commands()
    assert len(commands) > 60 and any(w.startswith("--help") for w, _ in commands)
    bad = []
    for where, argv in commands:
        if "--help" in argv or "-h" in argv or argv[:1] in (["--version"], []):
            continue
        parser = build_parser(argv)
        try:
            _, extra = parser.parse_known_args(argv)
        except SystemExit:  # argparse refused it (its message is in the captured stderr)
            bad.append(f"{where}: psal {' '.join(argv)}")
            continue
        if any("=" not in e or e.startswith("-") for e in extra):
            bad.append(f"{where}: psal {' '.join(argv)}: unknown {extra}")
    assert not bad, "\n".join(bad)


def test_documented_python_compiles_and_its_names_exist():
    """Every Python block of the README and docs is valid Python, its imports import,
    and every ``psal.name`` it uses exists (renamed API is caught here)."""
    import ast
    import importlib

    import psal

    bad = []
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```python\n(.*?)```", md.read_text(), flags=re.S):
            try:
                tree = ast.parse(block)
            except SyntaxError as err:
                bad.append(f"{md.name}: {err}")
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    try:
                        exec(ast.unparse(node), {})
                    except Exception as err:  # any failure is the finding
                        bad.append(f"{md.name}: {ast.unparse(node)}: {err}")
            for name in set(re.findall(r"\bpsal\.([A-Za-z_][\w.]*)", block)):
                obj = psal
                for part in name.split("."):
                    if hasattr(obj, part):
                        obj = getattr(obj, part)
                        continue
                    try:
                        obj = importlib.import_module(f"{obj.__name__}.{part}")
                    except ImportError:
                        bad.append(f"{md.name}: psal.{name}")
                        break
    assert not bad, "\n".join(bad)


def test_upscale_doc_python_api_runs(monkeypatch, tmp_path, one_thread):
    """docs/upscale.md's API example is self-contained and runs as written (tiny images:
    one thread is faster)."""
    text = (ROOT / "docs" / "upscale.md").read_text()
    block = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    monkeypatch.chdir(tmp_path)  # reads no file of the repository
    env = {}
    exec(compile(block, "docs/upscale.md", "exec"), env)
    h, w = env["photo"].shape[:2]
    assert env["big"].shape == (2 * h, 2 * w, 3)

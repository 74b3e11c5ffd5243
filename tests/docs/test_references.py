"""What the README and docs/*.md point at exists: files of the repository they name
(raw benchmark output, scripts, tests), the tests they name, and the flags they give
the benchmark scripts."""

import glob
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Named on purpose although absent (the doc says where they went).
GONE = {"benchmarks/inpaint_variants.py"}  # kept on a git tag, docs/editing.md
#: Output prefixes (``--out docs/attention`` writes docs/attention.csv, .json, .png).
PREFIXES = {"docs/attention"}


def _expand(path: str) -> list[str]:
    """``a_{x,y}_b`` -> ``a_x_b``, ``a_y_b`` (the docs' shorthand for a family of files)."""
    parts = re.split(r"\{([^{}]*)\}", path)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def _named_paths():
    pattern = r"(?<![\w/.])((?:docs|benchmarks|tests|src|examples)/[\w./*{},-]+)"
    for md in DOCS:
        for path in set(re.findall(pattern, md.read_text())):
            path = path.rstrip(".,:)")
            if path.endswith(("_", "/")) or path in GONE or path in PREFIXES:
                continue  # a prefix in prose ("docs/train_upscale_x2_guide_...")
            yield md.name, path


def test_named_files_exist():
    missing = []
    for where, path in _named_paths():
        for one in _expand(path):
            one = re.sub(r"\.(txt|json)/(txt|json)$", r".\1", one)  # "x.txt/json"
            found = glob.glob(str(ROOT / one)) if "*" in one else (ROOT / one).exists()
            if not found:
                missing.append(f"{where}: {one}")
    assert not missing, "\n".join(sorted(set(missing)))


def test_named_tests_exist():
    tests = ROOT / "tests"
    defined = set()
    for py in tests.rglob("test_*.py"):
        defined.add(py.stem)
        defined.update(re.findall(r"^\s*def (test_\w+)", py.read_text(), flags=re.M))
    missing = []
    for md in DOCS:
        for name in set(re.findall(r"`[^`]*?\b(test_\w+)", md.read_text())):
            if name not in defined:
                missing.append(f"{md.name}: {name}")
    assert not missing, "\n".join(sorted(missing))


@pytest.mark.slow
def test_benchmark_flags_exist():
    """Every ``--flag`` written after ``benchmarks/NAME.py`` is in that script's --help."""
    from concurrent.futures import ThreadPoolExecutor

    uses = [(md.name, script, rest) for md in DOCS
            for script, rest in re.findall(r"benchmarks/(\w+)\.py([^`\n]*)",
                                           md.read_text().replace("\\\n", " "))
            if (ROOT / "benchmarks" / f"{script}.py").exists()]  # fmt: skip

    def help_text(script: str) -> str:
        path = ROOT / "benchmarks" / f"{script}.py"
        return subprocess.run([sys.executable, str(path), "--help"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120).stdout  # fmt: skip

    scripts = sorted({script for _, script, _ in uses})
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # each imports torch
        helps = dict(zip(scripts, pool.map(help_text, scripts)))
    bad = []
    for md_name, script, rest in uses:
        rest = re.split(r"\)|;|: ", rest)[0]
        for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest):
            if flag not in helps[script]:
                bad.append(f"{md_name}: benchmarks/{script}.py {flag}")
    assert not bad, "\n".join(sorted(set(bad)))

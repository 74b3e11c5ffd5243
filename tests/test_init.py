from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_import_is_lazy_and_every_public_name_resolves():
    code = (
        "import sys, psal\n"
        "assert 'torch' not in sys.modules, 'import psal loaded torch'\n"
        "import psal.editing.colorize\n"
        "from psal.editing import colorize, inpaint\n"
        "assert callable(colorize) and callable(inpaint)\n"
        "for name in psal.__all__: getattr(psal, name)\n"
        "assert psal.inpaint is inpaint\n"
    )
    res = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC},
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr


def test_the_version_is_the_package_metadata_one():
    from importlib.metadata import version

    import psal

    assert psal.__version__ == version("psal")

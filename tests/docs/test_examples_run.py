"""The Python examples of the README and docs run as written, as a reader runs them: in
a fresh folder holding a copy of ``examples/`` (the docs open ``examples/photo.png``),
the blocks of one example in order, in one namespace, with small stand-ins for what a
reader brings (their photos; for ``runs/...``, the run folder of an untrained tiny
network, as ``psal train`` writes it).

Every ```python block is either run here (``EXAMPLES``) or listed in ``NOT_RUN`` with
the reason, so a new example needs a decision and a renamed argument fails here.
"""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

#: (markdown file, indices of its ```python blocks run in order in one namespace,
#: files a reader provides -> the kind of stand-in written before they run,
#: what an earlier block of the file, not run here, defines)
README_TOUR = (
    "import psal\nfrom PIL import Image\n"
    'photo, mask = Image.open("examples/photo.png"), Image.open("examples/mask.png")\n'
)
EXAMPLES = [
    ("README.md", [1], {"runs/psal": "inpaint run", "runs/col": "colorize run",
                        "runs/sr": "upscale run"}, README_TOUR),
    ("docs/attention.md", [0], {}, ""),
    ("docs/colorize.md", [0, 1], {"old_photo.png": "gray", "colour_reference.jpg": "colour",
                                  "runs/col": "colorize run"}, ""),
    ("docs/contextual_attention.md", [0], {}, ""),
    ("docs/contextual_attention.md", [1], {}, ""),
    ("docs/deepfill.md", [0], {"runs/ca": "inpaint run"}, ""),
    ("docs/editing.md", [0], {"colour.jpg": "colour"}, ""),
    ("docs/patchmatch.md", [0, 1], {}, ""),
    ("docs/upscale.md", [0, 1], {"runs/sr": "upscale run"}, ""),
]  # fmt: skip
#: (file, block index) -> why it does not run here (test_readme.py compiles them all)
NOT_RUN = {
    ("README.md", 0): "test_readme.py::test_readme_python_tour_runs runs it",
}
#: training examples, run for one step of a tiny network: (file, block index)
TRAINING = [("docs/deepfill.md", 1), ("docs/training.md", 0)]
TINY_TRAINING = (
    '"steps=1", "batch_size=2", "data.num_workers=0", "data.image_size=32", '
    '"model.kwargs.width=2", "optim.n_critic=1", "tensorboard=false", "progress=false"'
)
#: the examples that take seconds (three learned networks on the 384x256 example photo)
SLOW = {("README.md", 1)}


def _python_blocks(md: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / md).read_text(), flags=re.S)


def _run(path: Path, task: str, prefix: str, net, meta: dict) -> None:
    """A run folder as ``psal train`` leaves it: checkpoints/ with a latest.json pointer."""
    import json

    from psal.models import save_weights

    (path / "checkpoints").mkdir(parents=True)
    weights = path / "checkpoints" / "step_00000001.safetensors"
    save_weights(weights, {prefix: net.state_dict()}, meta, task=task)
    (path / "checkpoints" / "latest.json").write_text(json.dumps({"weights": weights.name}))


def _stand_in(path: Path, kind: str) -> None:
    """What a reader brings: a small photo, or an untrained tiny network's run folder."""
    import torch

    from psal.models import EDSRPSAL, DeepFillV1, GuidedColorizer

    rng = np.random.default_rng(0)
    colour = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    torch.manual_seed(0)
    if kind == "colour":  # the reference of psal.colorize
        colour.save(path)
    elif kind == "gray":  # an old black-and-white photo
        colour.convert("L").save(path)
    elif kind == "photos":  # a folder of training photos
        path.mkdir()
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
                path / f"{i}.png"
            )
    elif kind == "inpaint run":
        kwargs = {"width": 4, "attention": "psal", "attention_options": {"k": 2}}
        spec = {"name": "deepfill_v1", "kwargs": kwargs}
        meta = {"generator": spec, "image_size": 32}
        _run(path, "inpaint", "generator", DeepFillV1(**kwargs), meta)
    elif kind == "colorize run":
        kwargs = {"width": 4, "value_width": 2}
        spec = {"name": "guided_colorizer", "kwargs": kwargs}
        _run(path, "colorize", "network", GuidedColorizer(**kwargs), {"network": spec})
    elif kind == "upscale run":
        kwargs = {"scale": 2, "width": 4, "blocks": 1}
        spec = {"name": "edsr_psal", "kwargs": kwargs}
        _run(path, "upscale", "net", EDSRPSAL(**kwargs), {"network": spec})
    else:  # pragma: no cover - a new kind of stand-in needs its lines here
        raise ValueError(kind)


@pytest.mark.skipif(not (ROOT / "examples" / "photo.png").exists(), reason="no example")
@pytest.mark.parametrize(
    ("md", "indices", "provided", "prelude"),
    [
        pytest.param(
            *example,
            id=f"{example[0]}:{'+'.join(map(str, example[1]))}",
            marks=[pytest.mark.slow] if (example[0], example[1][-1]) in SLOW else [],
        )
        for example in EXAMPLES
    ],
)
def test_documented_example_runs(md, indices, provided, prelude, tmp_path, monkeypatch, one_thread):
    from psal.patchmatch import backends

    # docs/patchmatch.md sets the process's default backend: restored after the test
    monkeypatch.setattr(backends, "_default", backends._default)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    for name, kind in provided.items():
        _stand_in(tmp_path / name, kind)
    monkeypatch.chdir(tmp_path)  # examples write their outputs into the current folder
    blocks = _python_blocks(md)
    env: dict = {"__name__": "__main__"}
    exec(prelude, env)
    for i in indices:
        assert i < len(blocks), f"{md} has no Python block {i} any more"
        exec(compile(blocks[i], f"{md} (python block {i})", "exec"), env)


@pytest.mark.slow
@pytest.mark.parametrize(("md", "index"), TRAINING, ids=[f"{m}:{i}" for m, i in TRAINING])
def test_documented_training_example_runs(md, index, tmp_path, monkeypatch, one_thread):
    """As written but for ``steps=5000``, which becomes one step of a tiny network (the
    overrides come after the example's own: the last one wins)."""
    block = _python_blocks(md)[index]
    assert '"steps=5000"' in block, f"{md}: update the shortening of its training example"
    _stand_in(tmp_path / "photos", "photos")
    monkeypatch.chdir(tmp_path)
    exec(compile(block.replace('"steps=5000"', TINY_TRAINING), md, "exec"), {})
    assert list((tmp_path / "runs").glob("*/checkpoints/latest.json"))


def test_every_python_example_is_run_or_excused():
    run = {(md, i) for md, indices, _, _ in EXAMPLES for i in indices} | set(TRAINING)
    assert not run & set(NOT_RUN)
    documented = {
        (md, i)
        for md in ["README.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md")))]
        for i in range(len(_python_blocks(md)))
    }
    assert documented - run - set(NOT_RUN) == set(), "new examples: run them here"
    assert (run | set(NOT_RUN)) - documented == set(), "examples gone: update this test"

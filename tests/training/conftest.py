import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """A folder of small scikit-image photos (PNG, JPEG, WebP, in sub-folders)."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    (root / "more").mkdir()
    names = [
        ("astronaut", "a.png"),
        ("coffee", "more/b.jpg"),
        ("chelsea", "c.webp"),
        ("rocket", "more/d.png"),
    ]
    for name, file in names:
        im = getattr(data, name)()
        Image.fromarray(np.ascontiguousarray(im[..., :3])).resize((48, 40)).save(root / file)
    return root


def tiny_overrides(data, out, **extra):
    """Config overrides for a tiny, fast run."""
    base = {
        "data.path": data,
        "out": out,
        "data.image_size": 32,
        "data.hole_size": 8,
        "data.max_delta": 2,
        "data.num_workers": 0,
        "data.val_fraction": 0.25,
        "batch_size": 2,
        "steps": 4,
        "model.width": 4,
        "model.critic_width": 4,
        "model.attention": "none",
        "optim.n_critic": 1,
        "device": "cpu",
        "tensorboard": False,
        "progress": False,
        "log_every": 1,
        "val_every": 0,
        "save_every": 0,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run faster on one thread (no OpenMP hand-offs); restored after.

    numba's OpenMP threads spin-wait after each parallel PatchMatch call and would starve
    torch's thread on a 2-core machine, so numba gets one thread too.
    """
    import numba
    import torch

    before = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(before[0])
    numba.set_num_threads(before[1])

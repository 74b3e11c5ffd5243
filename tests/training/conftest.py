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

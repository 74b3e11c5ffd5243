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
def _tiny_nets_on_one_thread(one_thread):
    """Every test here runs tiny networks: one thread is faster (see ``one_thread``)."""

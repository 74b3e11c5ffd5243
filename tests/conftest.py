"""Shared fixtures: devices and dtypes, CUDA cases skipped cleanly without a GPU."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device"))]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 - tests that use the legacy global RNG repeat


def photo(name: str = "astronaut", size: int | tuple[int, int] = 64) -> torch.Tensor:
    """A scikit-image photo as a (1, 3, H, W) float32 tensor in [0, 1]."""
    from skimage import data, transform

    im = getattr(data, name)()
    if im.ndim == 2:
        im = np.stack([im] * 3, -1)
    hw = (size, size) if isinstance(size, int) else size
    im = transform.resize(im[..., :3], hw, anti_aliasing=True)
    return torch.from_numpy(im).permute(2, 0, 1)[None].float().contiguous()


@contextlib.contextmanager
def _threads_of_one():
    import numba

    before = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])


@pytest.fixture
def one_thread():
    """Run on one torch and one numba thread, restored after.

    Tiny networks run faster on one thread (no OpenMP hand-offs between 2 busy cores).
    """
    with _threads_of_one():
        yield


@pytest.fixture(scope="module")
def one_thread_module():
    """``one_thread`` for a whole module (tiny images: thread start-up costs more)."""
    with _threads_of_one():
        yield


@pytest.fixture
def fresh_dynamo():
    """A clean torch.compile cache; skips where torch.compile cannot run."""
    dynamo = pytest.importorskip("torch._dynamo")
    try:
        torch.compile(torch.nn.Identity(), backend="eager")(torch.zeros(1))
    except Exception as err:  # e.g. a Python that this torch's dynamo does not support
        pytest.skip(f"torch.compile unavailable: {err}")
    dynamo.reset()
    yield
    dynamo.reset()


@pytest.fixture
def exif_with_thumbnail() -> tuple[bytes, bytes]:
    """``(block, thumbnail)``: an EXIF block (with its ``Exif`` header) whose IFD1 holds
    ``thumbnail``, a 16x16 JPEG.

    What phones embed: a small copy of the photo, which would still show what an edit
    removed. IFD0 holds one tag (Artist "someone").
    """
    import io
    import struct

    from PIL import Image

    def ifd(entries, next_offset):
        out = struct.pack(">H", len(entries))
        for tag, kind, count, value in entries:
            out += struct.pack(">HHI", tag, kind, count) + value
        return out + struct.pack(">I", next_offset)

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (255, 0, 0)).save(buf, "JPEG")
    thumb = buf.getvalue()
    ifd0 = ifd([(0x013B, 2, 8, struct.pack(">I", 26))], 34)  # Artist, then IFD1 at 34
    ifd1 = ifd(
        [(0x0201, 4, 1, struct.pack(">I", 64)), (0x0202, 4, 1, struct.pack(">I", len(thumb)))], 0
    )
    tiff = b"MM\x00*" + struct.pack(">I", 8) + ifd0 + b"someone\x00" + ifd1 + thumb
    return b"Exif\x00\x00" + tiff, thumb

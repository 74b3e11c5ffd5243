"""The previous psal.upscale (before the cross-scale search), for side-by-side benchmarks.

Single-image super-resolution from the image itself (Glasner et al. 2009).


Small patches of a natural image recur at other scales of the same image, so the
image's own downscaled copy teaches what detail a blurry patch lost. Each x2 step
(x3 and x4 take two steps of ``sqrt(scale)`` and 2):

1. ``U`` = the input ``L`` upsampled with bicubic interpolation: the right size but
   missing detail;
2. ``D`` = ``L`` downscaled by the same factor, and ``DU`` = ``D`` upsampled back to
   ``L``'s size: ``DU`` lacks, relative to ``L``, about what ``U`` lacks relative to
   the unknown sharp image, and ``L - DU`` is that missing detail;
3. PSAL across scales: the query is ``U``, the key ``DU``, the value the detail
   ``L - DU``; :func:`psal.patchmatch` finds each ``U`` patch's nearest ``DU`` patches
   and patch voting adds their detail to ``U``;
4. iterative back-projection (Irani & Peleg 1991): the result is corrected until
   downscaling it gives back the input.

The downscaling model is antialiased bicubic resampling (Pillow's ``BICUBIC`` resize,
``torch.nn.functional.interpolate(..., antialias=True)``): images that were made
smaller that way are restored best; ``benchmarks/upscale.py`` also measures another
kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from psal._checks import check_int, check_patch_size, check_positive_float, resolve_seed
from psal.editing._color import luma
from psal.editing._temperature import wexler_temperature
from psal.layers.vote import vote
from psal.patchmatch import patchmatch
from psal.utils.image import ImageLike, from_tensor, to_tensor

__all__ = ["SCALES", "resize", "upscale"]

#: Supported upscaling factors.
SCALES = (2, 3, 4)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of a (B, C, H, W) float tensor, antialiased when shrinking."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    if x.device.type not in ("cpu", "cuda"):  # antialias is implemented on CPU and CUDA
        shrink = False
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=shrink)


def _guide(x: torch.Tensor) -> torch.Tensor:
    """Search features: luma for colour images, the image itself otherwise."""
    return luma(x[:, :3]) if x.shape[1] >= 3 else x[:, :1]


def _back_project(
    hr: torch.Tensor, lr: torch.Tensor, iters: int, step: float = 1.0
) -> torch.Tensor:
    """Irani-Peleg: ``hr += up(lr - down(hr))`` so that ``down(hr)`` approaches ``lr``."""
    size = tuple(hr.shape[-2:])
    for _ in range(iters):
        err = lr - resize(hr, tuple(lr.shape[-2:]))
        hr = hr + step * resize(err, size)
    return hr


def _step(
    lr: torch.Tensor,
    size: tuple[int, int],
    *,
    patch_size: int,
    k: int,
    iters: int,
    temperature: float | None,
    seed: int,
    backend: str,
) -> torch.Tensor:
    h, w = lr.shape[-2:]
    fy, fx = size[0] / h, size[1] / w
    small = (max(patch_size, round(h / fy)), max(patch_size, round(w / fx)))
    up = resize(lr, size)
    blurred = resize(resize(lr, small), (h, w))  # L seen through a down-up at this factor
    detail = lr - blurred
    q, kf = _guide(up), _guide(blurred)
    k = min(k, kf.shape[-2] * kf.shape[-1])  # tiny images have fewer patches than k
    field = patchmatch(q, kf, k=k, patch_size=patch_size, iters=iters, seed=seed, backend=backend)
    t = temperature if temperature is not None else wexler_temperature(field.distances)
    hf, _ = vote(detail, field.indices, field.distances, patch_size, t)
    return up + hf


def upscale(
    image: ImageLike,
    scale: int = 2,
    *,
    patch_size: int = 7,
    k: int = 6,
    iters: int = 3,
    back_projection: int = 10,
    temperature: float | None = float("inf"),
    seed: int | None = None,
    device: torch.device | str | None = None,
    backend: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> ImageLike:
    """Enlarge an image x2, x3 or x4 with detail found in the image itself.

    Args:
        image: numpy ``(H, W[, C])``, PIL image or tensor ``(C, H, W)`` /
            ``(B, C, H, W)``; grayscale, RGB or RGBA (every channel is enlarged, the
            search runs on the luma).
        scale: 2, 3 or 4.
        patch_size: odd side of the matched patches (at most the image's sides).
        k: neighbours whose detail is averaged.
        iters: PatchMatch iterations per step.
        back_projection: iterations of back-projection after each step (0 disables it).
        temperature: voting temperature; the default ``float("inf")`` averages the
            proposed details plainly, which scored best in ``benchmarks/upscale.py``
            (borrowed detail is noisy, and averaging more of it is a safer estimate);
            None: Wexler's rule (see :func:`psal.editing._temperature.wexler_temperature`).
        seed: makes the result reproducible (None: drawn from torch's generator).
        device: torch device for the work (default: the input's, or CPU).
        backend: PatchMatch backend.
        progress: called as ``progress(done, total)`` after each step.

    Returns:
        The enlarged image, ``round(H * scale) x round(W * scale)``, same kind, dtype and
        mode as ``image``; values are clipped to the input's range (to [0, 1] for floats
        in [0, 1]).

    Raises:
        ValueError: a scale other than 2, 3, 4, or an image smaller than a patch.

    Example:
        >>> import numpy as np, psal
        >>> img = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
        >>> psal.upscale(img, 2, seed=0).shape
        (48, 64, 3)
    """
    if isinstance(scale, float) and scale.is_integer():
        scale = int(scale)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(map(str, SCALES))}, got {scale!r}")
    patch_size = check_patch_size(patch_size)
    k = check_int(k, "k", minimum=1)
    iters = check_int(iters, "iters", minimum=0)
    back_projection = check_int(back_projection, "back_projection", minimum=0)
    if temperature is not None and temperature != float("inf"):
        temperature = check_positive_float(temperature, "temperature")
    x, spec = to_tensor(image, "image", device=device)
    b, _, h, w = x.shape
    if min(h, w) < patch_size:
        raise ValueError(
            f"image is {w}x{h}; upscale with patch_size={patch_size} needs both sides "
            f">= {patch_size}"
        )
    seed = resolve_seed(seed)
    steps = max(1, math.ceil(math.log2(scale) - 1e-9))  # x2: one step; x3, x4: two
    out_size = (round(h * scale), round(w * scale))
    sizes = [
        (round(h * scale ** ((i + 1) / steps)), round(w * scale ** ((i + 1) / steps)))
        for i in range(steps)
    ]
    sizes[-1] = out_size
    lo = x.amin(dim=(0, 2, 3), keepdim=True)
    hi = x.amax(dim=(0, 2, 3), keepdim=True)
    if spec.is_integer or bool((lo >= 0).all() and (hi <= 1).all()):
        lo, hi = torch.zeros_like(lo), torch.ones_like(hi)
    outs = []
    done, total = 0, b * steps
    with torch.no_grad():
        for i in range(b):
            cur = x[i : i + 1]
            for j, size in enumerate(sizes):
                nxt = _step(
                    cur, size, patch_size=patch_size, k=k, iters=iters,
                    temperature=temperature, seed=seed + 31 * i + j, backend=backend,
                )  # fmt: skip
                cur = _back_project(nxt, cur, back_projection)
                done += 1
                if progress is not None:
                    progress(done, total)
            if steps > 1:
                cur = _back_project(cur, x[i : i + 1], back_projection)
            outs.append(torch.maximum(torch.minimum(cur, hi), lo))
    return from_tensor(torch.cat(outs, 0), spec)

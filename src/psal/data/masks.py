"""Hole masks for training and evaluating inpainting networks, drawn per sample.

Two families, both from the DeepFill papers:

* **Rectangles** (DeepFill v1): a ``hole_size`` box (128x128 at 256x256) at a uniform
  random position; the hole is the box shrunk, independently in height and width, by a
  random even amount up to ``max_delta`` (32 at 256), centred in the box, as in the v1
  reference code. The local critic sees the whole box.
* **Free-form brush strokes** (DeepFill v2): 1 to 3 strokes, each a polyline of 4 to
  12 vertices with alternating random turn angles around 2π/5, random segment lengths
  around a radius of one eighth of the image diagonal and a random width, with round
  joints; the mask is then flipped at random left-right and up-down. Lengths and widths
  given at 256 pixels (width 12 to 40) scale with the image size.

Every mask is drawn from a :class:`numpy.random.Generator` passed in by the caller, so a
sample's mask is a function of its seed (reproducible, and different for every sample
of a batch). Masks are ``(H, W)`` bool numpy arrays, True = hole.

Example:
    >>> import numpy as np
    >>> gen = MaskGenerator(kind="rect", image_size=64)
    >>> mask, box = gen(np.random.default_rng(0))
    >>> mask.shape, mask.dtype, box.height
    ((64, 64), dtype('bool'), 32)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .._checks import check_choice, check_int

__all__ = ["MASK_KINDS", "Box", "MaskGenerator", "box_mask", "brush_stroke_mask", "random_box"]

MASK_KINDS = ("rect", "free-form", "mixed")


@dataclass(frozen=True)
class Box:
    """A rectangle ``[top, top + height) x [left, left + width)`` in pixels."""

    top: int
    left: int
    height: int
    width: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        """``(top, left, height, width)``."""
        return (self.top, self.left, self.height, self.width)


def _size2(size: int | tuple[int, int], name: str) -> tuple[int, int]:
    if isinstance(size, tuple | list):
        if len(size) != 2:
            raise ValueError(f"{name} must be an int or (height, width), got {size!r}")
        return check_int(size[0], f"{name}[0]", 1), check_int(size[1], f"{name}[1]", 1)
    s = check_int(size, name, 1)
    return s, s


def random_box(
    rng: np.random.Generator, image_size: int | tuple[int, int], box_size: int | tuple[int, int]
) -> Box:
    """A ``box_size`` rectangle at a uniform random position inside the image."""
    h, w = _size2(image_size, "image_size")
    bh, bw = _size2(box_size, "box_size")
    if bh > h or bw > w:
        raise ValueError(f"box_size {(bh, bw)} does not fit in image_size {(h, w)}")
    top = int(rng.integers(0, h - bh + 1))
    left = int(rng.integers(0, w - bw + 1))
    return Box(top, left, bh, bw)


def box_mask(
    rng: np.random.Generator, image_size: int | tuple[int, int], box: Box, max_delta: int = 0
) -> np.ndarray:
    """The hole inside ``box``: the box shrunk by a random even amount up to ``max_delta``.

    Height and width shrink independently by ``2 * d``, ``d`` uniform in
    ``[0, max_delta // 2]``, the same ``d`` taken off both opposite sides (as the v1
    reference code does), so the hole stays centred in the box.
    """
    h, w = _size2(image_size, "image_size")
    max_delta = check_int(max_delta, "max_delta", 0)
    dh = int(rng.integers(0, max_delta // 2 + 1))
    dw = int(rng.integers(0, max_delta // 2 + 1))
    dh = min(dh, (box.height - 1) // 2)
    dw = min(dw, (box.width - 1) // 2)
    mask = np.zeros((h, w), dtype=bool)
    mask[box.top + dh : box.top + box.height - dh, box.left + dw : box.left + box.width - dw] = True
    return mask


def brush_stroke_mask(
    rng: np.random.Generator,
    image_size: int | tuple[int, int],
    max_strokes: int = 3,
    min_vertices: int = 4,
    max_vertices: int = 12,
    min_width: float = 12.0,
    max_width: float = 40.0,
) -> np.ndarray:
    """A free-form mask of random brush strokes (DeepFill v2).

    ``min_width`` and ``max_width`` are given for a 256-pixel image and scaled by
    ``min(H, W) / 256``; segment lengths follow a normal law around an eighth of the
    image diagonal, clipped to [0, a quarter of the diagonal].
    """
    h, w = _size2(image_size, "image_size")
    max_strokes = check_int(max_strokes, "max_strokes", 1)
    scale = min(h, w) / 256.0
    mean_angle, angle_range = 2 * math.pi / 5, 2 * math.pi / 15
    radius = math.hypot(h, w) / 8
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, max_strokes + 1))):
        n = int(rng.integers(min_vertices, max_vertices + 1))
        lo, hi = mean_angle - rng.uniform(0, angle_range), mean_angle + rng.uniform(0, angle_range)
        vertices = [(float(rng.uniform(0, w)), float(rng.uniform(0, h)))]
        for i in range(n):
            angle = rng.uniform(lo, hi)
            if i % 2 == 0:
                angle = 2 * math.pi - angle
            length = float(np.clip(rng.normal(radius, radius / 2), 0, 2 * radius))
            x, y = vertices[-1]
            vertices.append(
                (
                    float(np.clip(x + length * math.cos(angle), 0, w - 1)),
                    float(np.clip(y + length * math.sin(angle), 0, h - 1)),
                )
            )
        width = max(1, round(rng.uniform(min_width, max_width) * scale))
        draw.line(vertices, fill=255, width=width)
        r = width / 2
        for x, y in vertices:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    mask = np.asarray(canvas) > 0
    if rng.random() > 0.5:
        mask = mask[:, ::-1]
    if rng.random() > 0.5:
        mask = mask[::-1, :]
    return np.ascontiguousarray(mask)


def _box_around(mask: np.ndarray, box_size: tuple[int, int]) -> Box:
    """A ``box_size`` box centred on the hole's bounding box, moved inside the image."""
    h, w = mask.shape
    bh, bw = box_size
    ys, xs = np.nonzero(mask)
    cy = (ys.min() + ys.max() + 1) / 2 if ys.size else h / 2
    cx = (xs.min() + xs.max() + 1) / 2 if xs.size else w / 2
    top = int(np.clip(round(cy - bh / 2), 0, h - bh))
    left = int(np.clip(round(cx - bw / 2), 0, w - bw))
    return Box(top, left, bh, bw)


class MaskGenerator:
    """Draws one hole mask (and its local-critic box) per call.

    Args:
        kind: ``"rect"`` (v1 rectangles), ``"free-form"`` (v2 brush strokes) or
            ``"mixed"`` (either, with equal probability).
        image_size: side of the (square) images, or (height, width).
        hole_size: side of the rectangle box; default ``image_size // 2`` (128 at 256).
        max_delta: how much each side length of the rectangle may shrink; default
            ``image_size // 8`` (32 at 256).

    Calling it with a :class:`numpy.random.Generator` returns ``(mask, box)``: an
    (H, W) bool array (True = hole) and the :class:`Box` the local critic looks at
    (the rectangle's box, or for strokes a ``hole_size`` box centred on the hole).
    """

    def __init__(
        self,
        kind: str = "rect",
        image_size: int | tuple[int, int] = 256,
        hole_size: int | tuple[int, int] | None = None,
        max_delta: int | None = None,
    ) -> None:
        self.kind = check_choice(kind, "kind", MASK_KINDS)
        self.image_size = _size2(image_size, "image_size")
        h, w = self.image_size
        self.hole_size = (h // 2, w // 2) if hole_size is None else _size2(hole_size, "hole_size")
        if self.hole_size[0] > h or self.hole_size[1] > w or min(self.hole_size) < 1:
            raise ValueError(
                f"hole_size {self.hole_size} must fit in image_size {self.image_size} and be >= 1"
            )
        self.max_delta = (
            min(h, w) // 8 if max_delta is None else check_int(max_delta, "max_delta", 0)
        )

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, Box]:
        """Draw ``(mask, box)`` from ``rng``."""
        kind = self.kind
        if kind == "mixed":
            kind = "rect" if rng.random() < 0.5 else "free-form"
        if kind == "rect":
            box = random_box(rng, self.image_size, self.hole_size)
            return box_mask(rng, self.image_size, box, self.max_delta), box
        mask = brush_stroke_mask(rng, self.image_size)
        return mask, _box_around(mask, self.hole_size)

    def __repr__(self) -> str:
        return (
            f"MaskGenerator(kind={self.kind!r}, image_size={self.image_size}, "
            f"hole_size={self.hole_size}, max_delta={self.max_delta})"
        )

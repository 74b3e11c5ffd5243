"""Hypothesis strategies for the fuzz suite: image files, masks and command-line options.

Files are drawn as (mode, size, format, damage) and written by Pillow, or by hand where
Pillow cannot (16-bit colour PNGs, headers that claim a huge size). Damage is a
truncation or a few flipped bytes, so that both decoders' error paths and silently
wrong pixels are reached.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from PIL import Image

#: Examples per fuzz test; CI runs the default (the whole suite stays under a minute),
#: ``PSAL_FUZZ_EXAMPLES=500`` digs deeper locally.
EXAMPLES = int(os.environ.get("PSAL_FUZZ_EXAMPLES", "0")) or None

#: Pillow modes drawn for images (P = palette, with or without a transparent index).
MODES = ("1", "L", "LA", "P", "PT", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "RGB16")
#: Formats that can hold each mode (Pillow writes them, bar RGB16: a hand-made PNG).
FORMATS = {
    "1": ("png", "tif", "bmp"),
    "L": ("png", "jpg", "webp", "tif", "bmp", "gif"),
    "LA": ("png", "tif", "webp"),
    "P": ("png", "gif", "bmp", "tif"),
    "PT": ("png", "gif"),
    "RGB": ("png", "jpg", "webp", "tif", "bmp"),
    "RGBA": ("png", "webp", "tif"),
    "CMYK": ("jpg", "tif"),
    "I": ("tif", "png"),
    "I;16": ("png", "tif"),
    "F": ("tif",),
    "RGB16": ("png",),
}
_PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tif": "TIFF", "bmp": "BMP",
               "gif": "GIF"}  # fmt: skip


def fuzz_settings(max_examples: int):
    """Deterministic (derandomised) settings so that CI failures repeat."""
    return settings(
        max_examples=EXAMPLES or max_examples,
        deadline=None,
        derandomize=EXAMPLES is None,
        database=None,
        suppress_health_check=list(__import__("hypothesis").HealthCheck),
    )


def png_bytes(arr: np.ndarray, bit_depth: int, color_type: int, size=None) -> bytes:
    """A PNG written by hand (filter 0): any bit depth, or a header claiming ``size``."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    h, w = arr.shape[:2]
    if size is not None:
        w, h = size
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    rows = arr.astype(">u2" if bit_depth == 16 else "u1").reshape(arr.shape[0], -1)
    raw = b"".join(b"\0" + r.tobytes() for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))  # fmt: skip


def make_image(mode: str, width: int, height: int, seed: int, kind: str) -> Image.Image | bytes:
    """An image of ``mode``; ``kind`` picks the content (noise, flat, stripes)."""
    rng = np.random.default_rng(seed)
    shape = (height, width)
    if kind == "flat":
        base = np.full(shape, rng.integers(0, 256), np.float64) / 255
    elif kind == "stripes":
        base = ((np.arange(width)[None] // 2 + np.arange(height)[:, None]) % 5) / 4.0
    else:
        base = rng.random(shape)
    u8 = lambda a: (a * 255).round().astype(np.uint8)  # noqa: E731
    if mode == "RGB16":
        rgb = np.stack([base, base[::-1], 1 - base], -1) * 65535
        return png_bytes(rgb.round(), 16, 2)
    if mode == "1":
        return Image.fromarray(base > 0.5)
    if mode in ("L", "P", "PT", "CMYK"):
        rgb = np.stack([base, np.roll(base, 1, 1), 1 - base], -1)
        im = Image.fromarray(u8(rgb)) if mode != "L" else Image.fromarray(u8(base))
        if mode in ("P", "PT"):
            im = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
            if mode == "PT":
                im.info["transparency"] = 0
        elif mode == "CMYK":
            im = im.convert("CMYK")
        return im
    if mode in ("LA", "RGB", "RGBA"):
        chans = {"LA": 2, "RGB": 3, "RGBA": 4}[mode]
        planes = [np.roll(base, i, 1) for i in range(chans)]
        if chans in (2, 4):
            planes[-1] = np.where(rng.random(shape) < 0.2, 0.0, 1.0)  # some transparency
        return Image.fromarray(u8(np.stack(planes, -1)), mode)
    if mode == "I;16":
        return Image.fromarray((base * 65535).round().astype(np.uint16))
    if mode == "I":
        top = int(rng.choice([1, 255, 65535, 3_000_000]))  # beyond 16 bits is refused
        return Image.fromarray((base * top).round().astype(np.int32), "I")
    if mode == "F":
        scale = float(rng.choice([1.0, 255.0]))
        return Image.fromarray((base * scale).astype(np.float32), "F")
    raise AssertionError(mode)


def encode(image: Image.Image | bytes, fmt: str) -> bytes:
    if isinstance(image, bytes):
        return image
    buf = io.BytesIO()
    kwargs = {"lossless": True} if fmt == "webp" else {}
    if image.mode == "PT":  # pragma: no cover - make_image never returns it
        raise AssertionError
    if image.mode == "I" and fmt == "png":
        # Pillow 13 writes no mode I PNG (12 wrote 16 bits); a PNG holds 16 bits at most
        image = Image.fromarray(np.clip(np.asarray(image), 0, 65535).astype(np.uint16))
    transparency = image.info.get("transparency")
    if transparency is not None and fmt in ("png", "gif"):
        kwargs["transparency"] = transparency
    image.save(buf, format=_PIL_FORMAT[fmt], **kwargs)
    return buf.getvalue()


def damage(data: bytes, how: str, where: float, seed: int) -> bytes:
    """``data`` cut at a fraction ``where``, or with a few bytes flipped past the header."""
    if how == "none" or len(data) < 16:
        return data
    if how == "truncate":
        return data[: int(len(data) * where)]
    rng = np.random.default_rng(seed)
    buf = bytearray(data)
    for pos in rng.integers(min(8, len(buf) - 1), len(buf), size=3):
        buf[pos] ^= int(rng.integers(1, 256))
    return bytes(buf)


@st.composite
def image_files(draw, max_side: int = 20, damaged: bool = True, modes=MODES):
    """``(file name, bytes, mode)`` of an image file: any mode, size and format.

    Sides are mostly 8 or more (so that the default patches fit), sometimes 1 to 7.
    """
    mode = draw(st.sampled_from(modes))
    fmt = draw(st.sampled_from(FORMATS[mode]))
    sides = [1, 2, 5, 7, *range(8, max_side + 1)]
    width = draw(st.sampled_from(sides))
    height = draw(st.sampled_from(sides))
    seed = draw(st.integers(0, 2**16))
    kind = draw(st.sampled_from(["noise", "flat", "stripes"]))
    data = encode(make_image(mode, width, height, seed, kind), fmt)
    if damaged:
        how = draw(st.sampled_from(["none"] * 6 + ["truncate", "flip"]))
        data = damage(data, how, draw(st.floats(0.0, 0.99)), seed)
    return f"in_{mode.replace(';', '')}.{fmt}", data, mode


def bomb_file(kind: str) -> tuple[str, bytes]:
    """A file whose header claims a huge size but holds a few bytes."""
    if kind == "png":
        return "bomb.png", png_bytes(np.zeros((1, 3)), 8, 2, size=(100000, 100000))
    tags = [(256, 4, 1, 32), (257, 4, 1, 4456472), (258, 3, 1, 8), (259, 3, 1, 1),
            (262, 3, 1, 1), (273, 4, 1, 110), (278, 4, 1, 4456472), (279, 4, 1, 142607104)]  # fmt: skip
    ifd = struct.pack("<H", len(tags))
    for tag, typ, count, value in tags:
        ifd += struct.pack("<HHI", tag, typ, count)
        ifd += struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
    return "bomb.tif", b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0" * 12


@st.composite
def mask_arrays(draw, height: int, width: int):
    """A mask as a numpy array in one of the conventions the mask rule reads."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    hole = np.zeros((height, width), bool)
    y0, x0 = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
    hole[y0 : y0 + draw(st.integers(1, 6)), x0 : x0 + draw(st.integers(1, 6))] = True
    style = draw(st.sampled_from(["u8", "01", "01stray", "soft", "rgb", "strokes", "erased",
                                  "u16", "f32", "bool", "empty", "i32"]))  # fmt: skip
    if style == "empty":
        hole[:] = False
    if style == "u8":
        return hole.astype(np.uint8) * 255, hole
    if style == "01":
        return hole.astype(np.uint8), hole
    if style == "01stray":
        m = hole.astype(np.uint8)
        m[hole] = rng.integers(1, 3, int(hole.sum()))
        return m, hole
    if style == "soft":
        return np.where(hole, 200, rng.integers(0, 100, hole.shape)).astype(np.uint8), hole
    if style == "rgb":
        m = np.zeros((height, width, 3), np.uint8)
        m[hole, int(rng.integers(0, 3))] = 255
        return m, hole
    if style in ("strokes", "erased"):
        m = np.zeros((height, width, 4), np.uint8)
        m[..., :3] = rng.integers(0, 256, (height, width, 3))
        if style == "strokes" and hole.mean() < 0.5:
            m[..., 3] = np.where(hole, 255, 0)
        elif style == "erased" and hole.mean() <= 0.5:
            m[..., 3] = np.where(hole, 0, 255)
        else:
            m[..., 3] = 255  # an opaque layer: the colour rule applies
            m[..., :3] = np.where(hole[..., None], 255, 0)
        return m, hole
    if style == "u16":
        return hole.astype(np.uint16) * 65535, hole
    if style == "i32":  # a 32-bit integer TIFF mask holding 0/1, 0/255 or 0/65535
        return hole.astype(np.int32) * int(rng.choice([1, 255, 65535])), hole
    if style == "f32":
        return np.where(hole, 0.9, 0.1).astype(np.float32), hole
    return hole.copy(), hole


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path

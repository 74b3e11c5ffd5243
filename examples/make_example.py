"""Regenerate examples/photo.png and examples/mask.png from scikit-image's rocket photo.

The photo is scikit-image's ``data.rocket()`` (a Falcon 9 on its launch pad, public
domain, SpaceX) resized to 384x256; the mask covers the lightning mast on the right so
that ``psal inpaint`` removes it:

    python examples/make_example.py
    psal inpaint examples/photo.png --mask examples/mask.png -o out.png
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SIZE = (384, 256)
#: Outline of the mast (x, y) on the 384x256 photo, from its tip down to the bottom edge.
MAST = [
    (263, 66),
    (276, 66),
    (278, 110),
    (284, 160),
    (294, 256),
    (252, 256),
    (259, 160),
    (261, 110),
]


def main() -> None:
    from skimage import data

    photo = Image.fromarray(data.rocket()).resize(SIZE, Image.Resampling.LANCZOS)
    mask = Image.new("L", SIZE, 0)
    ImageDraw.Draw(mask).polygon(MAST, fill=255)
    mask = mask.filter(ImageFilter.MaxFilter(5))  # a margin around the lattice
    photo.save(HERE / "photo.png", optimize=True)
    mask.save(HERE / "mask.png", optimize=True)
    print(f"wrote {HERE / 'photo.png'} and {HERE / 'mask.png'}")


if __name__ == "__main__":
    main()

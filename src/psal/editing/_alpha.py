"""Premultiplied alpha for the editing tools (numpy arrays and tensors alike).

An image with transparency stores a colour under every pixel, also where it is
invisible: editors often save fully transparent pixels as black (or white). Resampling
or blending the colour channels on their own mixes that hidden colour into the
visible pixels beside it: an enlarged cut-out gets a dark (or light) fringe along its
outline, and a fill across the outline takes a smudge of the hidden colour. Working on
colour x alpha (premultiplied, what is seen over black) weighs every colour by how much
of it shows, as Pillow's own resize does; dividing by the new alpha gives straight
colour back.
"""

from __future__ import annotations

from ..utils.arrays import Array, namespace

__all__ = ["ALPHA_EPS", "has_transparency", "premultiply", "unpremultiply"]

#: Alpha (in [0, 1]) at or below which a result pixel counts as fully transparent: half
#: a level of an 8-bit alpha, which rounds to 0. Its colour is then not c / a (noise
#: divided by nothing) but the ``fallback`` given to :func:`unpremultiply`.
ALPHA_EPS = 0.5 / 255


def has_transparency(x: Array) -> bool:
    """Whether the (B, C, H, W) image ``x`` has a partly transparent alpha channel.

    That is: C = 2 (gray + alpha) or 4 (RGBA), an alpha below 1 somewhere, and every
    value in [0, 1]. Opaque images, and float images with values outside [0, 1]
    (whose last channel is no alpha), are left as they are, bit for bit.
    """
    if x.ndim != 4 or x.shape[1] not in (2, 4):
        return False
    return bool((x[:, -1:] < 1).any()) and bool((x >= 0).all()) and bool((x <= 1).all())


def premultiply(x: Array) -> Array:
    """A copy of ``x`` (B, C, H, W) with its colour channels multiplied by its alpha."""
    return _cat(x[:, :-1] * x[:, -1:], x[:, -1:])


def unpremultiply(y: Array, fallback: Array | float = 0.0) -> Array:
    """Straight colour from a premultiplied (B, C, H, W) result ``y`` (a new array).

    Colour = colour / alpha where alpha > :data:`ALPHA_EPS`, clipped to [0, 1];
    ``fallback`` (an array of the colour channels' shape, or a number) where the result
    is fully transparent.
    """
    xp = namespace(y)
    a = y[:, -1:]
    visible = a > ALPHA_EPS
    safe = xp.where(visible, a, xp.ones_like(a))
    colour = (y[:, :-1] / safe).clip(0.0, 1.0)
    if not isinstance(fallback, (int, float)):
        colour = xp.where(visible, colour, fallback)
    else:
        colour = xp.where(visible, colour, xp.zeros_like(colour) + fallback)
    return _cat(colour, a)


def _cat(colour: Array, alpha: Array) -> Array:
    """``colour`` and ``alpha`` joined along the channel axis."""
    from ..utils.arrays import concat

    return concat([colour, alpha], 1)

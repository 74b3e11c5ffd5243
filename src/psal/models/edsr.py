"""EDSR with PSAL non-local blocks: single-image super-resolution (x2, x3, x4).

The network (registered as ``"edsr_psal"``):

- head: a 3x3 convolution from RGB to ``width`` channels (images in [0, 1], the mean
  0.5 taken off);
- body at the input resolution: ``blocks`` residual blocks (conv-ReLU-conv, no batch
  norm, residual scaling ``res_scale``, Lim et al. 2017) with an **in-scale non-local
  block** in the middle: self-attention over the whole image's features
  (``block(x, x, x)``, :func:`psal.layers.build_attention`), embedded by 1x1
  convolutions, added back through a 1x1 convolution;
- a **cross-scale non-local block** (Mei et al. 2020) on the body's output ``f``: the
  queries are ``f``, the keys ``f`` shrunk by the factor ``s`` (bicubic), and the
  values the ``s x s`` blocks of ``f`` under each key pixel
  (``pixel_unshuffle(f, s)``), so that each match brings back the ``s`` times larger
  patch it came from; ``pixel_shuffle`` puts the result on the ``s`` times finer grid,
  where it is added to the upsampler's features (``s`` = the scale for x2/x3, 2 for
  x4, fused after the first x2 stage);
- or, with ``guide="image"`` (``"both"``: in addition), the cross-scale search on the
  **input image** itself (Glasner et al. 2009's internal examples, meaningful before
  any feature is learned): the image's mean-free patches against those of the image
  shrunk by ``s``, bringing back the detail of the ``s x s`` blocks they came from, to
  the upsampler's features and (through a learnable gain) to the output;
- upsampler: 3x3 convolution to ``s^2 width`` channels + pixel shuffle, per stage
  (x2, x3; x4 = two x2 stages), and a 3x3 convolution to RGB, added to the bicubic
  enlargement of the input (the network learns the residual).

``attention="psal" | "dense" | "none"`` picks the block of both non-local parts by
name; ``"none"`` keeps every convolution (the same parameters) and passes the values
through (:class:`psal.layers.IdentityBlock`), i.e. plain EDSR plus a nearest-neighbour
style cross-scale branch.

Shapes: ``forward(x)``: x (B, 3, H, W) float in [0, 1] -> (B, 3, s*H, s*W) (not
clipped). Any H, W >= 1; inputs are reflect-padded to a multiple of the cross-scale
factor and the output cropped back. ``x`` has the parameters' dtype (any under
:func:`torch.autocast`; :class:`psal.models.Upscaler` converts).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_float_tensor, check_int, check_module_dtype
from ..layers.registry import build_attention
from ..utils.resample import interpolate
from .registry import register_model

__all__ = ["ATTENTIONS", "EDSRPSAL", "GUIDES", "edsr_psal"]

#: Attention choices of the super-resolution network.
ATTENTIONS = ("psal", "dense", "none")

#: The image guide's detail gain is ``GAIN_SCALE * gain`` (``gain`` starts at 0): Adam
#: moves it ``GAIN_SCALE`` times faster than the other weights, so the detail is used
#: from the first hundred steps.
GAIN_SCALE = 10.0

#: What the cross-scale block searches (``guide``): learned features, the input image, both.
GUIDES = ("features", "image", "both")

#: Input rows of context around a strip in :meth:`EDSRPSAL.enlarge` (the tail's reach:
#: 3x3 convolutions and the bicubic base; a multiple of 6 so strips stay on the grids).
HALO = 6

#: Default options of the blocks (PSAL: k nearest patches, 3x3 patches; dense: all).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "psal": {"k": 4, "patch_size": 3},
    "dense": {"patch_size": 3},
    "none": {},
}

#: Default options of the image-guided cross-scale block (raw pixels, not normalised).
_GUIDE_DEFAULTS: dict[str, dict[str, Any]] = {
    "psal": {"k": 4, "patch_size": 3, "iters": 2, "normalize": False, "temperature": 0.03},
    "dense": {"patch_size": 3, "normalize": False, "temperature": 0.03},
}


class _ResBlock(nn.Module):
    def __init__(self, width: int, res_scale: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.conv2(F.relu(self.conv1(x)))


class _NonLocal(nn.Module):
    """In-scale self-attention over the whole feature map, residual."""

    def __init__(
        self, width: int, attention: str, options: dict[str, Any], search: int | None = None
    ) -> None:
        super().__init__()
        search = search or max(width // 2, 1)
        self.q = nn.Conv2d(width, search, 1)
        self.k = nn.Conv2d(width, search, 1)
        self.v = nn.Conv2d(width, width, 1)
        self.out = nn.Conv2d(width, width, 1)
        self.block = build_attention(attention, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.block(self.q(x), self.k(x), self.v(x))
        return x + self.out(out.to(x.dtype))


class _CrossScale(nn.Module):
    """Cross-scale attention: (B, C, H, W) -> (B, C, s*H, s*W) (H, W multiples of s)."""

    def __init__(
        self,
        width: int,
        s: int,
        attention: str,
        options: dict[str, Any],
        search: int | None = None,
    ) -> None:
        super().__init__()
        emb = max(width // 2, 1)
        search = search or emb
        self.s = s
        self.q = nn.Conv2d(width, search, 1)
        self.k = nn.Conv2d(width, search, 1)
        self.v = nn.Conv2d(width, emb, 1)
        self.out = nn.Conv2d(emb, width, 3, padding=1)
        self.block = build_attention(attention, **options)

    def attend(self, f: torch.Tensor) -> torch.Tensor:
        """The global part: (B, C, H, W) -> (B, s*s*emb, H, W), still on the coarse grid."""
        h, w = f.shape[-2:]
        s = self.s
        small = _bicubic(f, (h // s, w // s), antialias=f.device.type in ("cpu", "cuda"))
        value = F.pixel_unshuffle(self.v(f), s)  # (B, s*s*emb, H/s, W/s): the larger patches
        out, _ = self.block(self.q(f), self.k(small), value)
        return out.to(f.dtype)

    def project(self, a: torch.Tensor) -> torch.Tensor:
        """The local part: the attended blocks put on the s times finer grid, convolved."""
        return self.out(F.pixel_shuffle(a, self.s))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.project(self.attend(f))


class _ImageGuide(nn.Module):
    """Cross-scale internal examples searched on the input image (Glasner et al. 2009).

    ``attend(x)``: x (B, 3, H, W) the (padded) input image in [0, 1], H, W multiples of
    ``s`` -> (B, 3*s*s, H, W). Queries are the image's patches, keys those of the image
    shrunk by ``s`` (antialiased bicubic), both without their local mean
    (:func:`mean_free`: structure, not brightness, is compared); values are the
    ``s x s`` blocks of the image's *detail* (``x`` minus its shrunk-and-enlarged copy:
    what a patch has that its smaller copy lacks) under each key pixel, so each match
    brings back the detail of the ``s`` times larger patch it came from.

    ``project(a, size)`` puts the blocks on the ``s`` times finer grid and returns
    (features (B, width, s*H, s*W) added to the upsampler's, the detail estimate
    (B, 3, *size) added to the output): the estimate is enlarged to ``size`` (bicubic)
    if needed and weighted by a learnable per-channel gain that starts at zero
    (:data:`GAIN_SCALE`).

    The patch distances are those of the pixels scaled by ``exp(log_scale)`` (a learnable
    parameter: the softmax temperature is ``T exp(-2 log_scale)``), so the temperature
    learns while the search (PatchMatch on 3 channels) stays the same. With attention
    ``"none"`` every query takes the detail block at its own position (no search): the
    same parameters, and the baseline the search is compared with.
    """

    def __init__(
        self, width: int, s: int, attention: str, options: dict[str, Any], gate: bool = False
    ) -> None:
        super().__init__()
        self.s = s
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.gain = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.out = nn.Conv2d(3, width, 3, padding=1)
        self.gate = nn.Conv2d(width, 1, 3, padding=1) if gate else None
        self.block = build_attention(attention, **options)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The global part: (B, 3, H, W) image -> (B, 3*s*s, H, W) detail blocks."""
        h, w = x.shape[-2:]
        s = self.s
        aa = x.device.type in ("cpu", "cuda")
        small = _bicubic(x, (h // s, w // s), antialias=aa)
        detail = x - _bicubic(small, (h, w))
        value = F.pixel_unshuffle(detail, s)  # (B, 3*s*s, H/s, W/s): the larger patches
        c = self.log_scale.exp()
        out, _ = self.block(mean_free(x) * c, mean_free(small) * c, value)
        return out.to(x.dtype)

    def project(
        self, a: torch.Tensor, size: tuple[int, int], hr: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The local part: (features at s times the input grid, detail at ``size``).

        With a gate, ``hr`` (the upsampler's features on the same grid) sets a per-pixel
        weight ``sigmoid(conv(hr + features))`` of the detail (0.5 at the start).
        """
        d = F.pixel_shuffle(a, self.s)
        feat = self.out(d)
        weight = None
        if self.gate is not None:
            weight = torch.sigmoid(self.gate(feat if hr is None else hr + feat))
        if tuple(d.shape[-2:]) != tuple(size):
            d = _bicubic(d, size)
            if weight is not None:
                weight = F.interpolate(weight, size=size, mode="bilinear", align_corners=False)
        d = GAIN_SCALE * self.gain * d
        return feat, d if weight is None else weight * d


def _bicubic(x: torch.Tensor, size: tuple[int, int], antialias: bool = False) -> torch.Tensor:
    """Bicubic resize (``align_corners=False``), also for a ``.half()`` network on CPU.

    torch's CPU bicubic has no float16 or bfloat16 kernel (``NotImplementedError``):
    there it runs in float32 and is rounded back to the input's dtype.
    """
    low = x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16)
    out = interpolate(x.float() if low else x, size, mode="bicubic", antialias=antialias)
    return out.to(x.dtype)


def mean_free(x: torch.Tensor) -> torch.Tensor:
    """The image minus its 3x3 local mean (replicated border): (B, C, H, W) -> (B, C, H, W).

    What the image-guided search compares: a patch's structure, not its brightness (on
    training images, +0.2 dB for the guide's detail at x2 against raw pixels).
    """
    return x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)


class EDSRPSAL(nn.Module):
    """EDSR-style super-resolution network with PSAL non-local blocks.

    Args:
        scale: 2, 3 or 4.
        width: feature channels.
        blocks: residual blocks in the body (the in-scale non-local block sits after
            half of them).
        attention: ``"psal"``, ``"dense"`` or ``"none"``.
        attention_options: options of the attention blocks (default: ``k=4``,
            ``patch_size=3`` for psal; ``patch_size=3`` for dense).
        res_scale: residual scaling of the blocks.
        cross_scale: add the cross-scale non-local block.
        in_scale: add the in-scale non-local block.
        search_channels: channels of the query/key embeddings the attention compares
            (None: ``width // 2``); the search's cost grows with them, the values keep
            their channels.
        guide: what the cross-scale block searches: ``"features"`` (the body's learned
            features, Mei et al. 2020), ``"image"`` (the input image's own patches
            against the image shrunk by the cross-scale factor, bringing back the detail
            of the larger patches: Glasner et al. 2009's internal examples, useful from
            the first step; :class:`_ImageGuide`) or ``"both"``.
        guide_options: options of the image-guided block (default for psal: ``k=4``,
            ``patch_size=3``, ``iters=2``, ``normalize=False``, ``temperature=0.03``;
            for dense: the same without ``k`` and ``iters``).
        guide_gate: weight the image guide's detail per pixel by a gate computed from
            the upsampler's features (else one learnable gain per channel only).

    Example:
        >>> net = EDSRPSAL(scale=2, width=8, blocks=2, attention="none")
        >>> net(torch.rand(1, 3, 10, 12)).shape
        torch.Size([1, 3, 20, 24])
    """

    def __init__(
        self,
        scale: int = 2,
        width: int = 32,
        blocks: int = 6,
        attention: str = "psal",
        attention_options: dict[str, Any] | None = None,
        res_scale: float = 1.0,
        cross_scale: bool = True,
        in_scale: bool = True,
        search_channels: int | None = None,
        guide: str = "features",
        guide_options: dict[str, Any] | None = None,
        guide_gate: bool = False,
    ) -> None:
        super().__init__()
        from ..editing.upscale import check_scale

        self.scale = check_scale(scale)
        width = check_int(width, "width", minimum=1)
        blocks = check_int(blocks, "blocks", minimum=0)
        self.attention = check_choice(attention, "attention", ATTENTIONS)
        options = dict(_DEFAULTS[attention])
        options.update(attention_options or {})
        if attention == "none":
            options = {}
        self.head = nn.Conv2d(3, width, 3, padding=1)
        half = blocks // 2
        self.body1 = nn.Sequential(*[_ResBlock(width, res_scale) for _ in range(half)])
        search = (
            None
            if search_channels is None
            else check_int(search_channels, "search_channels", minimum=1)
        )
        self.nonlocal_ = _NonLocal(width, attention, options, search) if in_scale else None
        self.body2 = nn.Sequential(*[_ResBlock(width, res_scale) for _ in range(blocks - half)])
        self.body_end = nn.Conv2d(width, width, 3, padding=1)
        self.xs = 2 if self.scale == 4 else self.scale  # cross-scale factor
        self.guide_kind = check_choice(guide, "guide", GUIDES)
        features = cross_scale and guide in ("features", "both")
        self.cross = _CrossScale(width, self.xs, attention, options, search) if features else None
        gopts = {} if attention == "none" else dict(_GUIDE_DEFAULTS[attention])
        if attention != "none":
            gopts.update(guide_options or {})
        image = cross_scale and guide in ("image", "both")
        self.guide = (
            _ImageGuide(width, self.xs, attention, gopts, gate=bool(guide_gate)) if image else None
        )
        stages = [2, 2] if self.scale == 4 else [self.scale]
        self.up = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, s * s * width, 3, padding=1), nn.PixelShuffle(s))
            for s in stages
        )
        self.tail = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # starts as bicubic interpolation
        nn.init.zeros_(self.tail.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The body: (B, 3, H, W) image -> (B, width, H, W) features (global attention)."""
        f = self.head(x - 0.5)
        g = self.body1(f)
        if self.nonlocal_ is not None:
            g = self.nonlocal_(g)
        return f + self.body_end(self.body2(g))

    def upsample(
        self, f: torch.Tensor, x: torch.Tensor, attended: tuple | None = None
    ) -> torch.Tensor:
        """The tail: features and input -> the enlarged image (local operations only).

        ``attended`` is :meth:`attend`'s pair, the cross-scale blocks' global parts
        (computed here if None).
        """
        a, g = attended if attended is not None else self.attend(f, x)
        hr = self.up[0](f)
        if self.cross is not None:
            hr = hr + self.cross.project(a)
        size = (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
        detail = None
        if self.guide is not None:
            feat, detail = self.guide.project(g, size, hr)
            hr = hr + feat
        for stage in self.up[1:]:
            hr = stage(hr)
        base = _bicubic(x, size)
        out = base + self.tail(hr)
        return out if detail is None else out + detail

    def attend(
        self, f: torch.Tensor, x: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The cross-scale blocks' global parts (features, image), None where absent."""
        a = self.cross.attend(f) if self.cross is not None else None
        g = self.guide.attend(x) if self.guide is not None else None
        return a, g

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        x = check_float_tensor(x, "x", ndim=4)
        if x.shape[1] != 3:
            raise ValueError(f"x must have 3 channels (RGB), got shape {tuple(x.shape)}")
        check_module_dtype(x, "x", self)
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.xs, (-w) % self.xs
        if ph or pw:
            mode = "reflect" if min(h, w) > max(ph, pw) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return x

    def guide_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """The image guide's search result, on the cross-scale factor's finer grid.

        It depends on the input image only (and the guide's temperature), not on any
        other weight: a training loop may compute it once per training image and pass
        crops of it to :meth:`forward` (``guide=``); flips and 90-degree rotations of
        the image turn it the same way.

        Args:
            x: (B, 3, H, W) float in [0, 1], H and W multiples of the cross-scale factor
                ``xs`` (2 for x4, else the scale).

        Returns:
            (B, 3, xs*H, xs*W): for every input pixel, the ``xs x xs`` detail block it
            brings back (``pixel_shuffle`` of the guide's attended blocks).

        Raises:
            ValueError: the network has no image guide, or H, W are not multiples of xs.
            TypeError: ``x`` is not of the parameters' dtype (outside autocast).
        """
        if self.guide is None:
            raise ValueError("guide_blocks needs a network with guide='image' or 'both'")
        x = check_float_tensor(x, "x", ndim=4)
        if x.shape[1] != 3 or x.shape[-2] % self.xs or x.shape[-1] % self.xs:
            raise ValueError(f"x must be (B, 3, H, W) with H and W multiples of {self.xs}, "
                             f"got shape {tuple(x.shape)}")  # fmt: skip
        check_module_dtype(x, "x", self)
        return F.pixel_shuffle(self.guide.attend(x), self.xs)

    def forward(self, x: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, scale*H, scale*W).

        ``guide``: optional (B, 3, xs*H, xs*W), :meth:`guide_blocks` computed beforehand
        (e.g. on the whole image the crop ``x`` comes from; H, W multiples of xs), used
        instead of the image guide's search.
        """
        h, w = x.shape[-2:]
        xp = self._pad(x)
        attended = None
        if guide is not None:
            if self.guide is None:
                raise ValueError("guide is given but the network has no image guide")
            guide = check_float_tensor(guide, "guide", ndim=4)
            check_module_dtype(guide, "guide", self)
            want = (x.shape[0], 3, self.xs * h, self.xs * w)
            if tuple(guide.shape) != want or h % self.xs or w % self.xs:
                raise ValueError(f"guide must be (B, 3, {self.xs}H, {self.xs}W) for x of shape "
                                 f"{tuple(x.shape)} (H, W multiples of {self.xs}), got "
                                 f"{tuple(guide.shape)}")  # fmt: skip
            f = self.features(xp)
            attended = (self.cross.attend(f) if self.cross is not None else None,
                        F.pixel_unshuffle(guide, self.xs))  # fmt: skip
            return self.upsample(f, xp, attended)
        out = self.upsample(self.features(xp), xp)
        return out[..., : h * self.scale, : w * self.scale]

    @torch.no_grad()
    def enlarge(self, x: torch.Tensor, rows: int = 128) -> torch.Tensor:
        """Inference in bounded memory: ``forward(x)`` with the tail run in row strips.

        The global parts (the body with its non-local block, the cross-scale block's
        attention) run on the whole image at the input resolution; only the local tail
        (upsampler convolutions at the output resolution) runs in strips of ``rows``
        input rows with a halo of :data:`HALO` rows, which makes the strips exactly the
        whole (no seam): every output pixel sees the same inputs either way.

        Args:
            x: (B, 3, H, W) float in [0, 1].
            rows: input rows per strip.

        Returns:
            (B, 3, scale*H, scale*W), the same as ``forward(x)`` (to float rounding).
        """
        h, w = x.shape[-2:]
        xp = self._pad(x)
        f = self.features(xp)
        a, g = self.attend(f, xp)
        hp = xp.shape[-2]
        s = self.scale
        step = max(rows - rows % self.xs, self.xs)
        out = torch.empty(x.shape[0], 3, hp * s, xp.shape[-1] * s, dtype=x.dtype, device=x.device)
        for y0 in range(0, hp, step):
            y1 = min(y0 + step, hp)
            a0, a1 = max(y0 - HALO, 0), min(y1 + HALO, hp)  # multiples of xs: HALO is even
            part = self.upsample(f[..., a0:a1, :], xp[..., a0:a1, :],
                                 (None if a is None else a[..., a0:a1, :],
                                  None if g is None else g[..., a0:a1, :]))  # fmt: skip
            out[..., y0 * s : y1 * s, :] = part[..., (y0 - a0) * s : (y1 - a0) * s, :]
        return out[..., : h * s, : w * s]


@register_model("edsr_psal")
def edsr_psal(**kwargs: Any) -> EDSRPSAL:
    """The :class:`EDSRPSAL` network (small CPU default: width 32, 6 blocks)."""
    return EDSRPSAL(**kwargs)

"""The DeepFill v1 generator (Yu et al., CVPR 2018) with a swappable attention layer.

Two stages, images in [-1, 1]:

1. **Coarse network**: an encoder-decoder with dilated convolutions. Input: the image
   with its hole zeroed, a channel of ones and the mask (5 channels, as in the reference
   code). With ``c = width`` (32 in the paper): conv5 c; conv3/2 2c; conv3 2c; conv3/2
   4c; conv3 4c x2; dilated conv3 4c at rates 2, 4, 8, 16; conv3 4c x2; nearest x2 +
   conv3 2c; conv3 2c; nearest x2 + conv3 c; conv3 c/2; conv3 3 (no activation); clip to
   [-1, 1]. ELU after every other convolution.
2. **Refinement network**: the coarse result pasted into the hole, with the ones and
   mask channels, goes through two encoders in parallel: a dilated one (conv5 c;
   conv3/2 c; conv3 2c; conv3/2 2c; conv3 4c x2; dilated conv3 4c at rates 2, 4, 8, 16,
   as the reference code's ``xconv1``-``xconv10``) and an attention one (conv5 c;
   conv3/2 c; conv3 2c; conv3/2 4c; conv3 4c; conv3 4c with ReLU; **attention** on the
   1/4-resolution features with the hole max-pooled to that resolution; conv3 4c x2).
   Their features are concatenated and decoded like stage 1.

At ``width=32`` the generator has 3,601,542 parameters, as the reference's (1,448,227
in stage 1; 880,480 + 695,968 + 576,867 in stage 2's dilated branch, attention branch
and decoder). Generators trained by psal < 0.2 had stage 1's encoder as their dilated
branch (c, 2c/2, 2c, 4c/2, 4c, 4c; 3,739,878 parameters); ``stage2_dilated="legacy"``
rebuilds that layout, and their checkpoints (format version 1) load with it.

The attention layer is chosen by name (``"contextual"``, ``"psal"``, ``"dense"``,
``"none"``; see :mod:`psal.layers.registry`) and runs in self-attention mode inside
the hole. Zero padding ("SAME") everywhere; the
image sides must be multiples of :attr:`DeepFillV1.size_multiple` (4);
:class:`psal.models.Inpainter` pads any image to that.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_float_tensor, check_int, check_mask, check_module_dtype
from .._deprecation import keyword_only, warn_deprecated
from ..layers.registry import build_attention
from .registry import register_model

__all__ = ["CoarseNetwork", "DeepFillV1", "InpaintOutput", "RefineNetwork"]


class InpaintOutput(NamedTuple):
    """Outputs of :class:`DeepFillV1`, all (B, 3, H, W) in [-1, 1] but ``field``.

    Attributes:
        coarse: raw output of the coarse network.
        refined: raw output of the refinement network.
        completed: ``refined`` in the hole, the input image elsewhere.
        field: (B, 2, H/4, W/4) float32 attention displacement ``(dy, dx)`` in feature
            pixels (the attention block's field), or None (not requested, or attention
            ``"none"``). ``flow`` is its deprecated name.
    """

    coarse: torch.Tensor
    refined: torch.Tensor
    completed: torch.Tensor
    field: torch.Tensor | None

    @property
    def flow(self) -> torch.Tensor | None:
        """Deprecated name of :attr:`field`."""
        warn_deprecated("InpaintOutput.flow is deprecated; use InpaintOutput.field", 3)
        return self.field


class GenConv(nn.Sequential):
    """'SAME'-padded (dilated) convolution followed by an activation (ELU by default)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 3,
        stride: int = 1,
        rate: int = 1,
        activation: str | None = "elu",
        **factory: Any,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, rate * (kernel - 1) // 2, rate, **factory)
        ]
        if activation == "elu":
            layers.append(nn.ELU())
        elif activation == "relu":
            layers.append(nn.ReLU())
        super().__init__(*layers)


class GenUp(nn.Sequential):
    """Nearest-neighbour upsampling by 2 then a 3x3 convolution and ELU ("gen_deconv")."""

    def __init__(self, cin: int, cout: int, **factory: Any) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), GenConv(cin, cout, **factory))


#: Stage 2's dilated branch: channels of its first four convolutions (strides 1, 2, 1,
#: 2), in units of ``c``: the reference's, and psal < 0.2's (stage 1's encoder).
STAGE2_DILATED = {"reference": (1, 1, 2, 2), "legacy": (1, 2, 2, 4)}


def _dilated_encoder(
    cin: int, c: int, widths: tuple[int, int, int, int] = (1, 2, 2, 4), **factory: Any
) -> nn.Sequential:
    c1, c2, c3, c4 = (w * c for w in widths)
    return nn.Sequential(
        GenConv(cin, c1, 5, **factory),
        GenConv(c1, c2, 3, 2, **factory),
        GenConv(c2, c3, **factory),
        GenConv(c3, c4, 3, 2, **factory),
        GenConv(c4, 4 * c, **factory),
        GenConv(4 * c, 4 * c, **factory),
        *(GenConv(4 * c, 4 * c, rate=r, **factory) for r in (2, 4, 8, 16)),
    )


def _decoder(cin: int, c: int, **factory: Any) -> nn.Sequential:
    return nn.Sequential(
        GenConv(cin, 4 * c, **factory),
        GenConv(4 * c, 4 * c, **factory),
        GenUp(4 * c, 2 * c, **factory),
        GenConv(2 * c, 2 * c, **factory),
        GenUp(2 * c, c, **factory),
        GenConv(c, max(c // 2, 1), **factory),
        GenConv(max(c // 2, 1), 3, activation=None, **factory),
    )


class CoarseNetwork(nn.Module):
    """Stage 1: dilated encoder-decoder; (B, 5, H, W) -> (B, 3, H, W) in [-1, 1]."""

    def __init__(self, width: int = 32, in_channels: int = 5, **factory: Any) -> None:
        super().__init__()
        self.encoder = _dilated_encoder(in_channels, width, **factory)
        self.decoder = _decoder(4 * width, width, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Coarse prediction, clipped to [-1, 1]."""
        return self.decoder(self.encoder(x)).clamp(-1.0, 1.0)


class RefineNetwork(nn.Module):
    """Stage 2: dilated and attention encoders in parallel, one decoder."""

    def __init__(
        self,
        width: int = 32,
        attention: nn.Module | None = None,
        in_channels: int = 5,
        dilated: str = "reference",
        **factory: Any,
    ) -> None:
        super().__init__()
        c = width
        self.dilated = _dilated_encoder(in_channels, c, STAGE2_DILATED[dilated], **factory)
        self.attention_encoder = nn.Sequential(
            GenConv(in_channels, c, 5, **factory),
            GenConv(c, c, 3, 2, **factory),
            GenConv(c, 2 * c, **factory),
            GenConv(2 * c, 4 * c, 3, 2, **factory),
            GenConv(4 * c, 4 * c, **factory),
            GenConv(4 * c, 4 * c, activation="relu", **factory),
        )
        self.attention = attention if attention is not None else build_attention("none")
        self.attention_decoder = nn.Sequential(
            GenConv(4 * c, 4 * c, **factory), GenConv(4 * c, 4 * c, **factory)
        )
        self.decoder = _decoder(8 * c, c, **factory)

    @keyword_only(3, ("return_field",), renames={"return_flow": "return_field"})
    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, *, return_field: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Refined prediction in [-1, 1] and the attention field (or None).

        ``return_flow=`` is the deprecated name of ``return_field=``.
        """
        hallucinated = self.dilated(x)
        feats = self.attention_encoder(x)
        small = F.max_pool2d(mask.to(feats.dtype), 4, 4, ceil_mode=True) > 0
        attended, field = self.attention(feats, feats, feats, hole=small, return_field=return_field)
        attended = self.attention_decoder(attended.to(feats.dtype))
        out = self.decoder(torch.cat([hallucinated, attended], 1)).clamp(-1.0, 1.0)
        return out, field


@register_model("deepfill_v1")
class DeepFillV1(nn.Module):
    """DeepFill v1 generator: coarse network, then refinement with attention.

    Args:
        width: base channel count ``c`` (32 in the paper; 4 or 8 make tiny test nets).
        attention: attention name (:func:`psal.layers.list_attentions`):
            ``"contextual"`` (the paper), ``"psal"`` (the PSAL paper's replacement),
            ``"dense"`` (exact patch attention, small images) or ``"none"``.
        attention_options: keyword options of the attention block (for ``"psal"``: ``k``,
            ``patch_size``, ``iters``, ``temperature``, ``aggregation``, ...; for
            ``"contextual"``: ``rate``, ``softmax_scale``, ``fuse``, ...).
        stage2_dilated: ``"reference"`` (channels c, c, 2c, 2c, 4c, strides 1, 2, 1, 2, as
            the reference code) or ``"legacy"`` (stage 1's encoder: the layout of
            generators trained by psal < 0.2).
        device: where to create the parameters.
        dtype: parameter dtype.

    Shape:
        - image: (B, 3, H, W) float in [-1, 1], H and W multiples of 4, the parameters'
          dtype (any under :func:`torch.autocast`).
        - mask: (B, 1, H, W) bool (or 0/1), True = hole; each sample its own.
        - output: :class:`InpaintOutput` ``(coarse, refined, completed, field)``; ``field``
          only with ``return_field=True`` (keyword-only; ``return_flow=`` is its
          deprecated name).

    Example:
        >>> net = DeepFillV1(width=4, attention="none")
        >>> img = torch.rand(2, 3, 32, 32) * 2 - 1
        >>> hole = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
        >>> hole[0, :, 8:20, 8:20] = True; hole[1, :, 4:12, 16:30] = True
        >>> out = net(img, hole)
        >>> out.completed.shape
        torch.Size([2, 3, 32, 32])
        >>> bool((out.completed == img)[~hole.expand(-1, 3, -1, -1)].all())
        True
    """

    #: Image sides must be multiples of this.
    size_multiple = 4

    def __init__(
        self,
        width: int = 32,
        attention: str = "contextual",
        attention_options: dict[str, Any] | None = None,
        stage2_dilated: str = "reference",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.width = check_int(width, "width", 2)
        if stage2_dilated not in STAGE2_DILATED:
            raise ValueError(
                f"stage2_dilated must be one of {', '.join(STAGE2_DILATED)}, got {stage2_dilated!r}"
            )
        self.stage2_dilated = stage2_dilated
        self.attention_name = attention
        self.attention_options = dict(attention_options or {})
        factory = {"device": device, "dtype": dtype}
        adapter = build_attention(attention, **self.attention_options)
        self.coarse = CoarseNetwork(self.width, **factory)
        self.refine = RefineNetwork(self.width, adapter, dilated=stage2_dilated, **factory)
        self.reset_parameters()
        if device is not None:
            self.refine.attention.to(device)
        #: Smallest image side the attention layer can work with.
        self.min_size = max(self.size_multiple, 4 * int(getattr(adapter, "min_size", 1)))

    def reset_parameters(self) -> None:
        """He-normal convolution weights, zero biases, output convolutions scaled by 0.1.

        This departs from the TF reference (Glorot-uniform): through 17 plain ELU
        layers, Glorot's and PyTorch's default initialisations shrink the signal about
        a hundredfold, and training starts slowly; He initialisation keeps the scale of
        the activations, and the small output layers make the first outputs grey (near
        0) instead of clipped at +-1. Measured on the tiny test networks, the hole error
        falls markedly faster.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        with torch.no_grad():
            for decoder in (self.coarse.decoder, self.refine.decoder):
                decoder[-1][0].weight.mul_(0.1)

    @keyword_only(3, ("return_field",), renames={"return_flow": "return_field"})
    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, *, return_field: bool = False
    ) -> InpaintOutput:
        """Inpaint ``image`` in ``mask``; see the class docstring for shapes."""
        check_float_tensor(image, "image", ndim=4)
        b, c, h, w = image.shape
        if c != 3:
            raise ValueError(f"image must be (B, 3, H, W), got shape {tuple(image.shape)}")
        check_module_dtype(image, "image", self)
        m_ = self.size_multiple
        if h % m_ or w % m_ or min(h, w) < self.min_size:
            raise ValueError(
                f"image height and width must be multiples of {m_} and at least "
                f"{self.min_size}, got {h}x{w}; psal.models.Inpainter pads images of any size"
            )
        hole = check_mask(mask, "mask", b, h, w, image.device)
        m = hole.to(image.dtype)
        ones = torch.ones_like(m)
        x = image * (1.0 - m)
        coarse = self.coarse(torch.cat([x, ones, m], 1))
        x = coarse * m + image * (1.0 - m)
        refined, field = self.refine(torch.cat([x, ones, m], 1), hole, return_field=return_field)
        completed = torch.where(hole, refined.to(image.dtype), image)
        return InpaintOutput(coarse, refined, completed, field)

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return f"width={self.width}, attention={self.attention_name!r}"

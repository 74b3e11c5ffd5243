"""Critics (discriminators) for inpainting: DeepFill v1's WGAN-GP pair and SN-PatchGAN.

- :class:`WGANCritic`: 5x5 convolutions of stride 2 with leaky ReLU (slope 0.2), then
  a linear layer to one score per image (no normalisation, as WGAN-GP requires).
  DeepFill v1 uses two: a **global** critic on the whole image (channels 64, 128, 256,
  256) and a **local** critic on the hole's bounding box (64, 128, 256, 512). Because of
  the final linear layer, each is built for one input size.
- :class:`SNPatchGANCritic` (DeepFill v2): six spectrally normalised 5x5 convolutions of
  stride 2 with leaky ReLU (64, 128, 256, 256, 256, 256) on the image and the mask; every
  output pixel is a score (trained with the hinge loss). Any input size; suited to
  free-form masks, where a local box critic does not fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .._checks import (
    check_channels,
    check_float_tensor,
    check_int,
    check_mask,
    check_module_dtype,
)
from .registry import register_model

__all__ = ["SNPatchGANCritic", "WGANCritic"]


def _features(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``layers(x)``, with a strided convolution of a one-pixel-wide CPU input in float32.

    torch's CPU bfloat16 convolution (oneDNN, torch 2.13) returns a wrong weight
    gradient, uninitialised values (1e12, inf, NaN, or a silently wrong finite one),
    when the input is one pixel wide and the stride is 2: the last layers of a critic
    on small images (the local critic of holes up to 8 pixels, the SN-PatchGAN critic
    of images up to 32) under bfloat16 autocast. Such a layer runs with autocast off
    in float32 (float64 parameters stay float64; bfloat16 ones get a bfloat16 result):
    outside autocast a float32 or float64 critic computes exactly what it did before.
    """
    for layer in layers:
        if not (
            isinstance(layer, nn.Conv2d)
            and x.device.type == "cpu"
            and x.shape[-1] == 1
            and layer.stride[-1] > 1
        ):
            x = layer(x)
            continue
        weight, bias = layer.weight, layer.bias
        dtype = torch.promote_types(weight.dtype, torch.float32)
        with torch.autocast("cpu", enabled=False):
            x = F.conv2d(
                x.to(dtype),
                weight.to(dtype),
                None if bias is None else bias.to(dtype),
                layer.stride,
                layer.padding,
                layer.dilation,
                layer.groups,
            )
        if weight.dtype not in (torch.float32, torch.float64):
            x = x.to(weight.dtype)
    return x


class WGANCritic(nn.Module):
    """A WGAN critic: strided 5x5 convolutions, leaky ReLU, flatten, linear to 1.

    Args:
        input_size: side of the square inputs the critic is built for.
        width: channels of the first convolution (64 in the paper).
        multipliers: channel multipliers of the convolutions.
        in_channels: input channels.
        device: where to create the parameters.
        dtype: parameter dtype.

    Shape:
        - input: (B, in_channels, input_size, input_size), the parameters' dtype (any
          under :func:`torch.autocast`).
        - output: (B,) scores.

    Example:
        >>> critic = WGANCritic(input_size=32, width=8)
        >>> critic(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        input_size: int,
        width: int = 64,
        multipliers: Sequence[int] = (1, 2, 4, 4),
        in_channels: int = 3,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.input_size = check_int(input_size, "input_size", 1)
        self.in_channels = check_int(in_channels, "in_channels", 1)
        width = check_int(width, "width", 1)
        layers: list[nn.Module] = []
        cin, side = self.in_channels, self.input_size
        for mult in multipliers:
            layers += [nn.Conv2d(cin, width * mult, 5, 2, 2, **factory), nn.LeakyReLU(0.2)]
            cin, side = width * mult, math.ceil(side / 2)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin * side * side, 1, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores, one per image."""
        check_float_tensor(x, "x", ndim=4)
        check_channels(x, "x", self.in_channels)
        check_module_dtype(x, "x", self)
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"this critic is built for {self.input_size}x{self.input_size} inputs, got "
                f"{tuple(x.shape[-2:])}"
            )
        return self.head(_features(self.features, x).flatten(1)).squeeze(1)


class SNPatchGANCritic(nn.Module):
    """SN-PatchGAN critic of DeepFill v2: every output pixel is a GAN score.

    Args:
        width: channels of the first convolution (64 in the paper).
        in_channels: image channels; the mask is appended as one more channel.
        device: where to create the parameters.
        dtype: parameter dtype.

    Shape:
        - image: (B, in_channels, H, W), the parameters' dtype (any under
          :func:`torch.autocast`); mask: (B, 1, H, W) bool, True = hole.
        - output: (B, N) scores, N the pixels of the final feature map
          (``ceil(H / 64) * ceil(W / 64)``) times 256/64 * width channels.

    Example:
        >>> critic = SNPatchGANCritic(width=8)
        >>> critic(torch.rand(2, 3, 64, 64), torch.zeros(2, 1, 64, 64, dtype=torch.bool)).shape
        torch.Size([2, 32])
    """

    def __init__(
        self,
        width: int = 64,
        in_channels: int = 3,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        width = check_int(width, "width", 1)
        self.in_channels = check_int(in_channels, "in_channels", 1)
        layers: list[nn.Module] = []
        cin = self.in_channels + 1
        for mult in (1, 2, 4, 4, 4, 4):
            conv = nn.Conv2d(cin, width * mult, 5, 2, 2, **factory)
            layers += [spectral_norm(conv), nn.LeakyReLU(0.2)]
            cin = width * mult
        self.features = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Scores, (B, N)."""
        check_float_tensor(image, "image", ndim=4)
        check_channels(image, "image", self.in_channels)
        check_module_dtype(image, "image", self)
        b, _, h, w = image.shape
        m = check_mask(mask, "mask", b, h, w, image.device).to(image.dtype)
        return _features(self.features, torch.cat([image, m], 1)).flatten(1)


@register_model("wgan_global_critic")
def wgan_global_critic(input_size: int = 256, width: int = 64, **factory: Any) -> WGANCritic:
    """DeepFill v1 global critic (channels ``width`` x 1, 2, 4, 4) on the whole image."""
    return WGANCritic(input_size, width, (1, 2, 4, 4), **factory)


@register_model("wgan_local_critic")
def wgan_local_critic(input_size: int = 128, width: int = 64, **factory: Any) -> WGANCritic:
    """DeepFill v1 local critic (channels ``width`` x 1, 2, 4, 8) on the hole's box."""
    return WGANCritic(input_size, width, (1, 2, 4, 8), **factory)


@register_model("sn_patchgan_critic")
def sn_patchgan_critic(width: int = 64, **factory: Any) -> SNPatchGANCritic:
    """DeepFill v2 SN-PatchGAN critic on the image and its mask."""
    return SNPatchGANCritic(width, **factory)

"""Reference-guided colorization network with PSAL at several scales, full resolution included.

Colour space: YCbCr (ITU-R BT.601 full range, as in JPEG and :func:`psal.colorize`).
The network predicts the chroma (Cb, Cr, centred on 0); the target's luma Y is kept
exactly (:func:`psal.utils.color.luma_chroma_to_rgb` desaturates out-of-gamut
chroma instead of clipping, so the output's luma is the input's).

:class:`GuidedColorizer` (registered as ``"guided_colorizer"``):

- one **luminance encoder**, shared by the target and the reference (so that their
  features are comparable), gives features at scales 1, 1/2 and 1/4;
- a **value encoder** of the reference's colour image (Y, Cb, Cr) gives, at the same
  scales, value features; the reference's chroma itself is always part of the value;
- at each scale of ``scales`` an attention block (:func:`psal.layers.build_attention`)
  has query = target features, key = reference luminance features, value = reference
  colour features: ``"psal"`` finds each target position's k nearest reference patches
  with PatchMatch (memory linear in the pixels, so it runs at full resolution);
  ``"dense"`` is the exact attention over every patch, run only at the scales of
  ``dense_scales`` (coarse: it is quadratic); ``"none"`` takes the value at the same
  relative position (no correspondence);
- a U-Net **decoder** from the coarsest scale up, fed with the target features and the
  attended values, predicts a chroma correction added to the attended chroma of the
  finest attended scale.

Shapes: ``forward(y, reference)`` with ``y`` (B, 1, H, W) and ``reference`` (B, 3, Hr,
Wr), both in [0, 1], any sizes (the target padded to a multiple of 4 and cropped back),
returns a :class:`ColorizeOutput` with ``chroma`` (B, 2, H, W).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_float_tensor, check_int, check_module_dtype, module_dtype
from ..layers.registry import build_attention
from ..utils.color import rgb_to_luma_chroma
from ..utils.progress import ProgressCallback
from ..weights import COLORIZERS, colorizer_file
from .registry import register_model

__all__ = ["ATTENTION_MODES", "PRETRAINED", "ColorizeOutput", "Colorizer", "GuidedColorizer"]

#: Weights shipped with psal (``psal/weights/``), by name: see
#: :meth:`Colorizer.from_pretrained` and ``docs/colorize.md`` for how each was trained.
PRETRAINED = COLORIZERS

#: ``attention=`` values of :class:`GuidedColorizer`.
ATTENTION_MODES = ("psal", "dense", "none")
#: Downsampling factors of the encoder levels.
LEVELS = (1, 2, 4)


@dataclass
class ColorizeOutput:
    """What :class:`GuidedColorizer` returns.

    Attributes:
        chroma: (B, 2, H, W) predicted Cb, Cr.
        attended: (B, 2, H, W) reference chroma carried by the finest attention (what
            the decoder corrects).
        flow: (B, 2, H, W) displacement ``(dy, dx)``, in reference pixels, from each
            target pixel to the reference pixel it took its colour from at the finest
            attended scale (the target and reference grids share their top-left
            corner); None unless asked for or when the attention has no single source.
    """

    chroma: torch.Tensor
    attended: torch.Tensor
    flow: torch.Tensor | None = None


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(cout, cout, 3, 1, 1),
        nn.LeakyReLU(0.2, inplace=True),
    )


class _Encoder(nn.Module):
    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            [_block(cin, width), _block(width, 2 * width, 2), _block(2 * width, 4 * width, 2)]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for level in self.levels:
            x = level(x)
            out.append(x)
        return out


@register_model("guided_colorizer")
class GuidedColorizer(nn.Module):
    """Guided colorizer: encoders, attention at several scales, U-Net decoder.

    Args:
        width: channels of the full-resolution features (x2 and x4 below), >= 2.
        attention: ``"psal"``, ``"dense"`` or ``"none"``.
        scales: downsampling factors (among 1, 2, 4) at which ``"psal"`` attends;
            ``1`` is full resolution.
        dense_scales: the factors at which ``"dense"`` attends (coarse only: its memory
            is quadratic in the pixels; elsewhere it passes the value at the same
            relative position, as ``"none"``).
        value_width: learned value channels per scale (besides the reference chroma).
        attention_options: options of the attention blocks (``k``, ``patch_size``,
            ``iters``, ``temperature``, ``learnable_temperature``, ...).

    Example:
        >>> net = GuidedColorizer(width=8, attention="psal")
        >>> out = net(torch.rand(1, 1, 32, 40), torch.rand(1, 3, 24, 36))
        >>> out.chroma.shape
        torch.Size([1, 2, 32, 40])
    """

    size_multiple = 4
    #: Row-strip height of the full-resolution decoder level in inference (no
    #: gradients): bounds its memory; the result equals the whole-image pass.
    strip_rows = 256
    #: Rows of context a strip needs: the receptive field radius of dec1 (two 3x3
    #: convolutions) and the head (one).
    HALO = 3

    def __init__(
        self,
        width: int = 16,
        attention: str = "psal",
        scales: tuple[int, ...] | list[int] = (1, 2, 4),
        dense_scales: tuple[int, ...] | list[int] = (4,),
        value_width: int = 8,
        attention_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        width = check_int(width, "width", 2)
        value_width = check_int(value_width, "value_width", 0)
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {attention!r}")
        for name, sc in (("scales", scales), ("dense_scales", dense_scales)):
            if not all(s in LEVELS for s in sc):
                raise ValueError(f"{name} must be factors among {LEVELS}, got {list(sc)}")
        self.attention = attention
        self.scales = tuple(sorted(set(scales)))
        self.dense_scales = tuple(sorted(set(dense_scales)))
        opts = dict(attention_options or {})
        if attention == "psal":
            opts.setdefault("k", 4)
            opts.setdefault("patch_size", 3)
            opts.setdefault("learnable_temperature", True)
        elif attention == "dense":
            opts.setdefault("patch_size", 3)
        self.attention_options = opts
        attended = {"psal": self.scales, "dense": self.dense_scales, "none": ()}[attention]
        self.attended = tuple(attended)
        self.blocks = nn.ModuleDict(
            {
                str(s): build_attention(attention if s in attended else "none", **(
                    opts if s in attended else {}))
                for s in LEVELS
            }
        )  # fmt: skip
        self.encoder = _Encoder(1, width)
        self.value_encoder = _Encoder(3, value_width) if value_width else None
        self.value_width = value_width
        chans = [width, 2 * width, 4 * width]
        vch = [2 + (value_width * m) for m in (1, 2, 4)]
        # decoder: coarse (1/4) -> 1/2 -> 1
        self.dec4 = _block(chans[2] + vch[2], chans[2])
        self.dec2 = _block(chans[1] + vch[1] + chans[2], chans[1])
        self.dec1 = _block(chans[0] + vch[0] + chans[1], chans[0])
        self.head = nn.Conv2d(chans[0], 2, 3, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.width = width

    @property
    def min_size(self) -> int:
        """Smallest image side the network accepts (patches must fit at 1/4 scale)."""
        p = int(self.attention_options.get("patch_size", 3))
        return 4 * p

    def forward(
        self, y: torch.Tensor, reference: torch.Tensor, return_flow: bool = False
    ) -> ColorizeOutput:
        """Predict the chroma of ``y`` (B, 1, H, W) from ``reference`` (B, 3, Hr, Wr).

        Both are floats in [0, 1] of the network's parameter dtype (any dtype under
        :func:`torch.autocast`).

        Raises:
            TypeError: a non-float input, or one of another dtype than the network's.
            ValueError: wrong shapes, batch sizes that differ, images too small.
        """
        check_float_tensor(y, "y", ndim=None)
        check_float_tensor(reference, "reference", ndim=None)
        if y.ndim != 4 or y.shape[1] != 1:
            raise ValueError(f"y must be (B, 1, H, W), got {tuple(y.shape)}")
        if reference.ndim != 4 or reference.shape[1] != 3:
            raise ValueError(f"reference must be (B, 3, Hr, Wr), got {tuple(reference.shape)}")
        check_module_dtype(y, "y", self)
        check_module_dtype(reference, "reference", self)
        if y.shape[0] != reference.shape[0]:
            raise ValueError(
                f"y and reference must have the same batch size, got {y.shape[0]} and "
                f"{reference.shape[0]}"
            )
        low = self.min_size
        for name, t in (("target", y), ("reference", reference)):
            if min(t.shape[-2:]) < low:
                raise ValueError(
                    f"{name} must be at least {low} pixels a side, got {t.shape[-2]}x{t.shape[-1]}"
                )
        h, w = y.shape[-2:]
        y_p = _pad(y, self.size_multiple)
        ref_p = reference  # any size: the key and value grids are the reference's
        yr, cr = rgb_to_luma_chroma(ref_p)
        # level by level: the full-resolution attention runs before the coarser features
        # exist, and each level's key and value features are dropped after their block
        q, k = y_p * 2 - 1, yr * 2 - 1
        v = None if self.value_encoder is None else torch.cat([yr, cr], 1) * 2 - 1
        q_feats, attended, flow = [], [], None
        finest = min(self.attended) if self.attended else 1
        for i, s in enumerate(LEVELS):
            q, k = self.encoder.levels[i](q), self.encoder.levels[i](k)
            value = cr if s == 1 else F.avg_pool2d(cr, s, ceil_mode=True)
            if v is not None:
                v = self.value_encoder.levels[i](v)
                value = torch.cat([value, v], 1)
            want = return_flow and s == finest and s in self.attended
            out, field = self.blocks[str(s)](q, k, value, return_field=want)
            del value
            q_feats.append(q)
            attended.append(out.to(q.dtype))  # the blocks return float32 (a .half() network)
            if want:
                flow = field
        del k, v
        strips = not torch.is_grad_enabled() and self.strip_rows < y_p.shape[-2]
        x = self.dec4(torch.cat([q_feats[2], attended[2]], 1))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.dec2(torch.cat([q_feats[1], attended[1], x], 1))
        i = LEVELS.index(finest)
        base = attended[i][:, :2]
        if finest != 1:
            base = F.interpolate(base, scale_factor=finest, mode="bilinear", align_corners=False)
        if strips:
            chroma = base + self._full_res_in_strips(q_feats[0], attended[0], x)
        else:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = self.dec1(torch.cat([q_feats[0], attended[0], x], 1))
            chroma = base + self.head(x)
        if flow is not None and finest != 1:
            flow = F.interpolate(flow, scale_factor=finest, mode="nearest") * finest
        crop = (..., slice(0, h), slice(0, w))
        return ColorizeOutput(
            chroma=chroma[crop], attended=base[crop], flow=None if flow is None else flow[crop]
        )

    def _full_res_in_strips(
        self, q: torch.Tensor, att: torch.Tensor, half: torch.Tensor
    ) -> torch.Tensor:
        """``head(dec1(cat(q, att, up2(half))))`` computed in row strips (inference).

        Same result as the whole-image computation (to float rounding): each strip of
        output rows is computed from its input rows plus a halo of :attr:`HALO` rows (the
        receptive field of the three 3x3 convolutions), and the bilinear x2 upsampling of
        ``half`` (B, C, H/2, W/2) is taken from a window one coarse row wider than the
        rows it feeds, so no edge clamping differs from the whole image's. The 58-channel
        full-resolution decoder input never exists whole.

        Args:
            q: (B, Cq, H, W) target features.
            att: (B, Ca, H, W) attended values.
            half: (B, Ch, H/2, W/2) decoder features at 1/2 scale.

        Returns:
            (B, 2, H, W) the head's chroma correction.
        """
        h = q.shape[-2]
        hh = half.shape[-2]
        step = max(1, int(self.strip_rows))
        halo = self.HALO
        out = q.new_empty(q.shape[0], 2, h, q.shape[-1])
        for a in range(0, h, step):
            b = min(h, a + step)
            lo, hi = max(0, a - halo), min(h, b + halo)  # input rows of this strip
            c0, c1 = max(0, lo // 2 - 1), min(hh, (hi + 1) // 2 + 1)  # coarse window
            up = F.interpolate(half[..., c0:c1, :], scale_factor=2, mode="bilinear",
                               align_corners=False)  # fmt: skip
            up = up[..., lo - 2 * c0 : hi - 2 * c0, :]
            x = self.dec1(torch.cat([q[..., lo:hi, :], att[..., lo:hi, :], up], 1))
            del up
            out[..., a:b, :] = self.head(x)[..., a - lo : b - lo, :]
        return out


def _pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if min(h, w) > max(ph, pw) else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _pad_to(x: torch.Tensor, low: int) -> torch.Tensor:
    """``x`` padded at the bottom and right to at least ``low`` pixels a side."""
    h, w = x.shape[-2:]
    ph, pw = max(0, low - h), max(0, low - w)
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class Colorizer(nn.Module):
    """Inference wrapper of a trained colorizer: ``psal.colorize``'s inputs and outputs.

    Args:
        network: a :class:`GuidedColorizer` (put in eval mode).

    Example:
        >>> import numpy as np
        >>> net = Colorizer(GuidedColorizer(width=4))
        >>> gray = np.zeros((32, 40), np.uint8); ref = np.zeros((24, 24, 3), np.uint8)
        >>> net.colorize(gray, ref, seed=0).shape
        (32, 40, 3)
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network.eval()

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], device: torch.device | str | None = None
    ) -> Colorizer:
        """Load a colorizer from a psal weights file or a run folder (its latest one).

        Only safetensors is read (no pickle). ``device`` None picks CUDA when available.

        Raises:
            ValueError: not a psal checkpoint, or one of another task (the message names
                both tasks).
        """
        from ..utils.convert import check_device  # ValueError, not AssertionError
        from .io import build_network, load_weights

        auto = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = check_device(device) or auto
        states, meta = load_weights(path, device="cpu", task="colorize")
        spec = meta.get("network")
        if not isinstance(spec, dict) or "name" not in spec or "network" not in states:
            raise ValueError(f"{meta.get('path', path)!s} holds no colorizer description")
        net = build_network(
            meta, spec["name"], spec.get("kwargs", {}), states["network"], "network"
        )
        return cls(net).to(torch.device(device))

    @classmethod
    def from_pretrained(cls, name: str, device: torch.device | str | None = None) -> Colorizer:
        """Load weights shipped with psal, by name (a key of :data:`PRETRAINED`).

        ``"psal-w8"``: ``GuidedColorizer(width=8, attention="psal")`` trained for 10 CPU
        minutes on photo pairs of six scikit-image photos (none of the benchmark's
        held-out photos); 0.3 MB. Nothing is downloaded.

        Raises:
            ValueError: an unknown name (the message lists the known ones).
        """
        from importlib import resources

        with resources.as_file(colorizer_file(name)) as path:
            return cls.from_checkpoint(path, device=device)

    @property
    def device(self) -> torch.device:
        """The network's device."""
        return next(self.network.parameters()).device

    def forward(
        self, y: torch.Tensor, reference: torch.Tensor, return_flow: bool = False
    ) -> ColorizeOutput:
        """The network on (B, 1, H, W) luma and (B, 3, Hr, Wr) RGB, without gradients.

        Float inputs of another dtype than the network's parameters are converted to it,
        and the outputs back to ``y``'s dtype.
        """
        check_float_tensor(y, "y", ndim=None)
        check_float_tensor(reference, "reference", ndim=None)
        dtype = module_dtype(self.network) or y.dtype
        with torch.no_grad():
            out = self.network(y.to(dtype), reference.to(dtype), return_flow=return_flow)
        if y.dtype == dtype:  # nothing converted (under autocast, its dtypes are kept)
            return out
        return ColorizeOutput(
            chroma=out.chroma.to(y.dtype),
            attended=out.attended.to(y.dtype),
            flow=None if out.flow is None else out.flow.to(y.dtype),
        )

    def colorize(
        self,
        target: Any,
        reference: Any,
        *,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> Any:
        """Colour ``target`` from ``reference``, as :func:`psal.colorize` does.

        Args:
            target: grayscale image (numpy, PIL or tensor; see :func:`psal.colorize`); a
                colour image is used through its luminance (with a warning). Float
                images must be in [0, 1].
            reference: colour image (3 or 4 channels), any size; floats in [0, 1].
                Images smaller than the network's ``min_size`` (12 for ``psal-w8``) on
                a side, target or reference, are padded (mirrored) to it for the
                network, and the result cropped back to the target's size.
            seed: seeds PatchMatch in psal attention (None: torch's generator).
            progress: called as ``progress(done, total)`` after each image; None: no
                reports.

        Returns:
            The coloured image, same kind and dtype as ``target``, 3 channels (4 with
            alpha), floats in [0, 1]; its luma equals the target's (to rounding for
            integer types).

        Raises:
            ValueError: a reference without colour channels; a float ``target`` or
                ``reference`` with values outside [0, 1].
            TypeError: unsupported input types; a ``progress`` that is not callable.
        """
        from .._checks import check_progress, resolve_seed
        from ..utils.color import check_reference, luma, luma_chroma_to_rgb, warn_colour_target
        from ..utils.convert import carry_metadata, check_unit_float
        from ..utils.image import from_tensor, to_tensor

        progress = check_progress(progress)
        x, spec = to_tensor(target, "target", device=self.device)
        ref, _ = to_tensor(reference, "reference", device=self.device)
        check_unit_float(x, "target")  # as psal.colorize: floats outside [0, 1] come out gray
        check_reference(ref)
        warn_colour_target(x)
        seed = resolve_seed(seed)
        low = int(getattr(self.network, "min_size", 1))
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            # PSAL attention draws PatchMatch seeds from torch's generator: seeded here,
            # and the caller's generator is left as it was
            torch.manual_seed(seed)
            outs = []
            for i in range(x.shape[0]):
                xi = x[i : i + 1]
                y = xi[:, :1] if xi.shape[1] <= 2 else luma(xi[:, :3])
                h, w = y.shape[-2:]
                # the network needs min_size pixels a side (psal.colorize does not):
                # smaller or thin images are padded (mirrored) and the chroma cropped back
                # y and ref are float32, or float64 for float64 inputs: forward runs them
                # in the network's dtype (a float64 network gets float64, not float32)
                yp, rp = _pad_to(y, low), _pad_to(ref[:, :3], low)
                chroma = self(yp, rp).chroma[..., :h, :w].to(y.dtype)
                # in the gamut to rounding (1 + 2e-16, -1e-8): clipped into [0, 1] exactly
                rgb = luma_chroma_to_rgb(y, chroma).clamp(0, 1)
                if xi.shape[1] in (2, 4):
                    rgb = torch.cat([rgb, xi[:, -1:]], 1)
                outs.append(rgb)
                if progress is not None:
                    progress(i + 1, x.shape[0])
        out = torch.cat(outs, 0)
        # a PIL target's profile, EXIF and DPI (a gray target's profile is dropped)
        return carry_metadata(from_tensor(out, spec.with_channels(out.shape[1])), target)

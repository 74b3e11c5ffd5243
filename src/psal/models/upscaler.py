"""Inference with a trained super-resolution network: any size, numpy/PIL/tensor in and out.

:class:`Upscaler` wraps an :class:`psal.models.EDSRPSAL` (or any network with a
``scale`` and an ``enlarge(x)`` / ``forward(x)`` mapping (B, 3, H, W) in [0, 1] to
(B, 3, sH, sW)) and takes what :func:`psal.upscale` takes: numpy arrays, PIL images or
tensors, grayscale, RGB or RGBA (gray is enlarged as RGB and returned gray; alpha is
enlarged bicubically), returned in the same kind, dtype and mode.

Pretrained networks ship with psal as package data (``psal/weights``, safetensors):
:data:`PRETRAINED` names them, :meth:`Upscaler.from_pretrained` loads one (``psal
upscale --model NAME``, ``psal.upscale(..., model=NAME)``); ``docs/upscale.md`` gives
the command that trained each and its scores on held-out photos.

Memory: the network's global parts (the body and its attention) run on the whole
image at the input resolution; the upsampling tail runs in row strips that reproduce
the whole exactly (:meth:`psal.models.EDSRPSAL.enlarge`), so there is no tiling and no
seam.
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.image import ImageLike, from_tensor, to_tensor
from ..utils.progress import ProgressCallback
from ..weights import UPSCALERS, upscaler_file
from .io import build_network, load_weights

__all__ = ["PRETRAINED", "TASK", "Upscaler"]

#: Task name of super-resolution checkpoints.
TASK = "upscale"

#: Networks shipped with psal: name -> weights file in ``psal/weights``.
PRETRAINED = UPSCALERS


class Upscaler(nn.Module):
    """A trained super-resolution network ready for inference.

    Args:
        network: maps (B, 3, H, W) in [0, 1] to (B, 3, scale*H, scale*W); has ``scale``.
        ensemble: geometric self-ensemble (Lim et al. 2017, "EDSR+"): the mean of the
            network's outputs over the 8 flips and 90-degree rotations of the input,
            each turned back; 8 times the work, +0.11 dB Y-PSNR for ``edsr-x2`` on the
            held-out photos of ``docs/upscale.md``.

    Example:
        >>> import numpy as np
        >>> from psal.models import EDSRPSAL, Upscaler
        >>> up = Upscaler(EDSRPSAL(scale=2, width=4, blocks=1, attention="none"))
        >>> up.upscale(np.zeros((10, 12, 3), np.uint8), 2).shape
        (20, 24, 3)
    """

    def __init__(self, network: nn.Module, ensemble: bool = False) -> None:
        super().__init__()
        if not isinstance(ensemble, bool):
            raise TypeError(f"ensemble must be True or False, got {ensemble!r}")
        self.network = network.eval()
        self.scale = int(network.scale)
        self.ensemble = ensemble

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        device: torch.device | str | None = None,
        ensemble: bool = False,
    ) -> Upscaler:
        """Load a network trained by ``psal train upscale`` (weights file or run folder).

        Only safetensors is read. ``device`` None: CUDA when available, else CPU.

        Raises:
            ValueError: not a psal checkpoint, or one trained for another task.
        """
        from ..utils.convert import check_device  # ValueError, not AssertionError

        auto = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = check_device(device) or auto
        states, meta = load_weights(path, device="cpu", task=TASK)
        spec = meta.get("network")
        if not isinstance(spec, dict) or "name" not in spec or "net" not in states:
            raise ValueError(f"{meta.get('path', path)!s} holds no network description")
        net = build_network(meta, spec["name"], spec.get("kwargs", {}), states["net"], "network")
        return cls(net, ensemble=ensemble).to(torch.device(device))

    @classmethod
    def from_pretrained(
        cls, name: str, device: torch.device | str | None = None, ensemble: bool = False
    ) -> Upscaler:
        """Load a network shipped with psal by name (:data:`PRETRAINED`).

        ``ensemble``: the geometric self-ensemble (see the class).

        Example:
            >>> Upscaler.from_pretrained("edsr-x2", device="cpu").scale
            2

        Raises:
            ValueError: an unknown name (the message lists the available ones).
        """
        with resources.as_file(upscaler_file(name)) as file:
            return cls.from_checkpoint(file, device=device, ensemble=ensemble)

    @property
    def device(self) -> torch.device:
        """The network's device."""
        return next(self.network.parameters()).device

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1] -> (B, 3, scale*H, scale*W) clipped to [0, 1].

        Any float dtype: ``x`` is converted to the network's parameter dtype, which is
        the output's.
        """
        from .._checks import check_float_tensor, module_dtype

        check_float_tensor(x, "x", ndim=4)  # uint8 would be read as 0..255, all white
        if x.shape[0] < 1 or x.shape[1] != 3:
            raise ValueError(f"x must have shape (B >= 1, 3, H, W), got {tuple(x.shape)}")
        enlarge = getattr(self.network, "enlarge", self.network)
        x = x.to(self.device, module_dtype(self.network) or torch.float32)  # the network's
        if not self.ensemble:
            return enlarge(x).clamp(0, 1)
        total = None
        for turns in range(4):
            for flip in (False, True):
                t = torch.rot90(x, turns, (2, 3))
                y = enlarge(t.flip(-1) if flip else t)
                y = torch.rot90(y.flip(-1) if flip else y, -turns, (2, 3))
                total = y if total is None else total + y
        return (total / 8).clamp(0, 1)

    def upscale(
        self,
        image: ImageLike,
        scale: int | None = None,
        *,
        seed: int | None = None,
        device: torch.device | str | None = None,
        progress: ProgressCallback | None = None,
        **options: Any,
    ) -> ImageLike:
        """Enlarge ``image`` by the network's scale; the inputs of :func:`psal.upscale`.

        Args:
            image: numpy ``(H, W[, C])``, PIL image or tensor ``(C, H, W)`` /
                ``(B, C, H, W)``; grayscale, RGB or RGBA.
            scale: must be the network's scale (None: the network's).
            seed: seeds PatchMatch in psal attention, as :meth:`Colorizer.colorize` does
                (None: torch's generator); the same seed gives the same result.
            device: ignored (the network's device is used; move it with ``.to``).
            progress: called as ``progress(done, total)`` after each image; None: no
                reports.
            **options: :func:`psal.upscale`'s other search options (``patch_size``,
                ``k``, ...) are accepted and ignored: the network has none.

        Returns:
            The enlarged image, same kind, dtype and mode as ``image``.

        Raises:
            ValueError: ``scale`` is not the network's; values outside [0, 1].
            TypeError: an unknown option; a ``progress`` that is not callable.
        """
        from ..editing.upscale import check_scale

        if scale is not None and check_scale(scale) != self.scale:
            raise ValueError(
                f"scale {check_scale(scale)} asked, but this network was trained for x{self.scale}"
            )
        known = {"patch_size", "k", "pm_iters", "iters", "back_projection", "temperature",
                 "tile", "backend"}  # fmt: skip
        unknown = set(options) - known
        if unknown:
            raise TypeError(f"upscale() got unexpected keyword arguments {sorted(unknown)}")
        from .._checks import check_progress, resolve_seed

        progress = check_progress(progress)
        x, spec = to_tensor(image, "image")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:  # the network was trained on [0, 1]: it would clip the rest
            raise ValueError(
                f"image values must lie in [0, 1] (the full range of its dtype), got "
                f"values in [{lo:.4g}, {hi:.4g}]"
            )
        seed = resolve_seed(seed)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            # PSAL attention draws PatchMatch seeds from torch's generator: seeded here,
            # and the caller's generator is left as it was
            torch.manual_seed(seed)
            out = self._upscale(x, spec, progress)
        from ..utils.convert import carry_metadata

        return carry_metadata(out, image)  # PIL: profile, EXIF, DPI times the scale

    def _upscale(self, x: torch.Tensor, spec: Any, progress: ProgressCallback | None) -> Any:
        b, c, h, w = x.shape
        outs = []
        for i in range(b):
            xi = x[i : i + 1]
            rgb = xi[:, :3] if c >= 3 else xi[:, :1].expand(1, 3, h, w)
            y = self(rgb).to("cpu", x.dtype)
            if c < 3:
                y = y.mean(1, keepdim=True)
            if c in (2, 4):
                alpha = F.interpolate(xi[:, -1:], scale_factor=self.scale, mode="bicubic",
                                      align_corners=False).clamp(0, 1)  # fmt: skip
                y = torch.cat([y, alpha], 1)
            outs.append(y)
            if progress is not None:
                progress(i + 1, b)
        return from_tensor(torch.cat(outs, 0), spec)

"""Inference with a trained inpainting generator: any size, any batch, CPU or GPU.

:class:`Inpainter` wraps a generator (trained on ``training_size`` images, values in
[-1, 1]) and takes care of everything around it:

- values: images in [0, 1] (or uint8, PIL) in, the same type out;
- sizes: images are reflect-padded to a multiple of the generator's stride (4) and
  cropped back;
- known pixels: copied from the input, bit for bit;
- hole pixels: never seen by the network, whatever they hold (zeroed before the padding,
  left out of the downscale's averages), so the fill depends on the known pixels only;
- **large images**: a network trained at 256x256 with holes of about 128x128 sees a
  receptive field and a hole-to-context ratio of that scale. For a single image
  (:meth:`Inpainter.inpaint`), psal therefore (1) crops the hole's bounding box enlarged
  by ``context`` times its size on every side (at least ``training_size`` a side when the
  image is larger), since distant pixels hardly matter; (2) if that window is still
  larger than ``max_size`` on its long side (default twice the training size), runs the
  network on the window downscaled to ``max_size`` and upsamples the prediction
  (bicubic) before pasting it into the hole at full resolution; the known pixels are
  never resampled. Batches (:meth:`Inpainter.forward`) get step (2) only, since their
  holes differ per sample.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_float_tensor, check_int, check_mask, module_dtype
from ..utils.progress import ProgressCallback
from ..utils.resample import interpolate
from .io import build_network, load_weights

__all__ = ["Inpainter"]


class Inpainter(nn.Module):
    """A trained inpainting generator ready for inference.

    Args:
        generator: a network mapping ``(image in [-1, 1], mask)`` to an output with a
            ``completed`` field (such as :class:`psal.models.DeepFillV1`).
        training_size: side of the training images (for the large-image strategy).
        max_size: longest side the network is run at; larger inputs are downscaled
            (None: ``2 * training_size``; 0: never downscale).
        context: margin around the hole's bounding box kept by :meth:`inpaint`, as a
            fraction of the box's size on each side.

    Example:
        >>> from psal.models import DeepFillV1, Inpainter
        >>> net = Inpainter(DeepFillV1(width=4, attention="none"), training_size=32)
        >>> img = np.random.rand(50, 70, 3).astype(np.float32)
        >>> hole = np.zeros((50, 70), bool); hole[10:30, 20:40] = True
        >>> out = net.inpaint(img, hole)
        >>> out.shape, out.dtype, bool((out[~hole] == img[~hole]).all())
        ((50, 70, 3), dtype('float32'), True)
    """

    def __init__(
        self,
        generator: nn.Module,
        training_size: int = 256,
        max_size: int | None = None,
        context: float = 1.0,
    ) -> None:
        super().__init__()
        self.generator = generator.eval()
        self.training_size = check_int(training_size, "training_size", 1)
        if max_size is None:
            max_size = 2 * self.training_size
        self.max_size = check_int(max_size, "max_size", 0)
        if isinstance(context, bool) or not isinstance(context, (int, float)):
            raise TypeError(f"context must be a number >= 0, got {context!r}")
        if not 0 <= context < float("inf"):
            raise ValueError(f"context must be a finite number >= 0, got {context}")
        self.context = float(context)
        self.size_multiple = int(getattr(generator, "size_multiple", 1))
        self.min_size = int(getattr(generator, "min_size", 1))

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        device: torch.device | str | None = None,
        **kwargs: Any,
    ) -> Inpainter:
        """Load a generator from a psal weights file (or a run folder: its latest one).

        Only safetensors is read (no pickle). ``device`` None picks CUDA when available.
        ``kwargs`` go to the constructor (``max_size``, ``context``).
        """
        from ..utils.convert import check_device  # ValueError, not AssertionError

        auto = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = check_device(device) or auto
        states, meta = load_weights(path, device="cpu", task="inpaint")
        spec = meta.get("generator")
        if not isinstance(spec, dict) or "name" not in spec or "generator" not in states:
            raise ValueError(f"{meta.get('path', path)!s} holds no generator description")
        kwargs_g = spec.get("kwargs", {})
        kwargs_g = dict(kwargs_g) if isinstance(kwargs_g, dict) else kwargs_g
        legacy = meta.get("format_version") == 1 and spec["name"] == "deepfill_v1"
        if legacy and isinstance(kwargs_g, dict):  # else build_network names the file
            kwargs_g.setdefault("stage2_dilated", "legacy")  # trained by psal < 0.2
        generator = build_network(meta, spec["name"], kwargs_g, states["generator"], "generator")
        size = meta.get("image_size", 256)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"{meta.get('path', path)!s}: image_size must be a positive "
                             f"integer, got {size!r}")  # fmt: skip
        kwargs.setdefault("training_size", size)
        return cls(generator, **kwargs).to(device)

    @property
    def device(self) -> torch.device:
        """The generator's device."""
        return next(self.generator.parameters()).device

    def _run(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The network at the given size: pad to the stride, [-1, 1] in and out, crop."""
        h, w = images.shape[-2:]
        m_, low = self.size_multiple, self.min_size
        ph = max(math.ceil(h / m_) * m_, math.ceil(low / m_) * m_) - h
        pw = max(math.ceil(w / m_) * m_, math.ceil(low / m_) * m_) - w
        # the hole is zeroed before padding: the padding copies pixels next to the border,
        # and those of a hole there would otherwise reach the network as known pixels
        x = (images * 2 - 1).masked_fill(masks, 0)
        hole = masks
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
            hole = F.pad(masks.float(), (0, pw, 0, ph), mode=mode) > 0.5  # mirrored holes
        dtype = module_dtype(self.generator) or x.dtype  # run in the generator's dtype
        out = self.generator(x.to(dtype), hole).completed
        return ((out[..., :h, :w].to(images.dtype) + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Inpaint a batch, every image with its own mask.

        Args:
            images: (B, 3, H, W) float in [0, 1], any H and W and float dtype (the
                generator runs in its own).
            masks: (B, 1, H, W) bool (or 0/1), True = hole.

        Returns:
            (B, 3, H, W), the input's dtype and device: the prediction in the holes, the
            input elsewhere (exactly).
        """
        check_float_tensor(images, "images", ndim=4)
        b, c, h, w = images.shape
        if c != 3:
            raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        hole = check_mask(masks, "masks", b, h, w, images.device)
        dev = self.device
        # float32, or float64 when the images or the generator are (a float64 generator
        # run on float32-rounded images would give a float32-accurate fill)
        wide = torch.float64 in (images.dtype, module_dtype(self.generator))
        x, m = images.to(dev, torch.float64 if wide else torch.float32), hole.to(dev)
        if self.max_size and max(h, w) > self.max_size:
            f = self.max_size / max(h, w)
            sh, sw = max(1, round(h * f)), max(1, round(w * f))
            # the known pixels alone, averaged (normalised convolution): the antialiasing
            # filter reaches beyond each low-res pixel, and would mix the hole's own
            # content (what is to be removed) into the known pixels around it
            known = (~m).float()
            xs = interpolate(x * known, (sh, sw), mode="bilinear", antialias=True)
            weight = interpolate(known, (sh, sw), mode="bilinear", antialias=True)
            xs = (xs / weight.clamp_min(1e-6)).clamp(0, 1)
            ms = (F.interpolate(m.float(), (sh, sw), mode="area") > 0) | (weight < 1e-6)
            pred = self._run(xs, ms)
            pred = F.interpolate(pred, (h, w), mode="bicubic", align_corners=False).clamp(0, 1)
        else:
            pred = self._run(x, m)
        pred = pred.to(images.device, images.dtype)
        return torch.where(hole, pred, images)

    def _window(self, hole: np.ndarray) -> tuple[int, int, int, int]:
        """The part of the image (top, bottom, left, right) that :meth:`inpaint` runs on."""
        h, w = hole.shape
        ys, xs = np.nonzero(hole)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        side_h = max((y1 - y0) * (1 + 2 * self.context), min(h, self.training_size))
        side_w = max((x1 - x0) * (1 + 2 * self.context), min(w, self.training_size))
        side_h, side_w = min(h, math.ceil(side_h)), min(w, math.ceil(side_w))
        top = int(np.clip(round((y0 + y1 - side_h) / 2), 0, h - side_h))
        left = int(np.clip(round((x0 + x1 - side_w) / 2), 0, w - side_w))
        return top, top + side_h, left, left + side_w

    def inpaint(
        self,
        image: Any,
        mask: Any,
        *,
        mask_threshold: float = 0.5,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> Any:
        """Inpaint an image; returns the same kind, dtype, mode and size as ``image``.

        Takes the inputs of :func:`psal.inpaint` (see :mod:`psal.utils.image`): a numpy
        array ((H, W) or (H, W, C), uint8, uint16, bool or float in [0, 1]), a PIL image
        (gray, colour, 16-bit, with or without alpha; palette images come back RGB/RGBA)
        or a tensor ((H, W), (C, H, W) or (B, C, H, W), one mask per sample). Gray
        images go through the network as three equal channels and come back gray;
        alpha is kept as it is.

        Args:
            image: the image.
            mask: the hole (True / white = hole), read by :func:`psal.utils.image.to_mask`
                with ``mask_threshold`` (the same rule as :func:`psal.inpaint`).
            mask_threshold: fraction of the full range above which a mask pixel is hole.
            seed: seeds the PatchMatch searches of psal attention layers, so that the
                result repeats; torch's global generator is left as it was (None: a
                fresh seed drawn from it, so ``torch.manual_seed`` repeats a run).
            progress: called as ``progress(done, total)`` after each image of the batch.

        Returns:
            The inpainted image; pixels outside the hole are the input's, bit for bit.
            With an empty mask, a copy of ``image`` (and a warning).

        Raises:
            ValueError: the mask covers the whole image (of any sample), a mask of
                another size, values outside [0, 1], a bad ``seed``.
            TypeError: an unsupported image or mask type, a ``progress`` that is not
                callable.
        """
        from .._checks import check_progress, resolve_seed
        from ..utils.image import from_tensor, to_mask, to_tensor

        progress = check_progress(progress)
        seed = resolve_seed(seed)
        x, spec = to_tensor(image, "image", device="cpu")
        b, c, h, w = x.shape
        hole = to_mask(
            mask, h, w, batch=b, threshold=mask_threshold, threshold_name="mask_threshold"
        )
        colour = 3 if c >= 3 else 1  # the channels the network fills (alpha is kept)
        known = x[:, :colour]
        lo, hi = float(known.min()), float(known.max())
        if lo < 0 or hi > 1:
            raise ValueError(
                f"image values must lie in [0, 1] (the full range of its dtype), got "
                f"values in [{lo:.4g}, {hi:.4g}]"
            )
        if not bool(hole.any()):
            warnings.warn(
                "inpaint: the mask is empty; the image is returned unchanged", stacklevel=2
            )
        if any(bool(hole[i].all()) for i in range(b)):
            raise ValueError(
                "the mask covers the whole image: there is no known pixel to copy from"
            )
        out = x.clone()
        dev = self.device
        devices = [dev] if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=dev.type):
            # psal attention layers draw PatchMatch seeds from torch's generator: seeded
            # here, and the caller's generator is left as it was
            torch.manual_seed(seed)
            for i in range(b):
                sample_hole = hole[i, 0].numpy()
                if sample_hole.any():
                    top, bottom, left, right = self._window(sample_hole)
                    rgb = known[i : i + 1, :, top:bottom, left:right].expand(-1, 3, -1, -1)
                    m = hole[i : i + 1, :, top:bottom, left:right]
                    pred = self.forward(rgb.to(dev), m.to(dev)).cpu()
                    if colour == 1:
                        pred = pred.mean(1, keepdim=True)
                    window = out[i : i + 1, :colour, top:bottom, left:right]
                    window.copy_(torch.where(m, pred.to(out.dtype), window))
                if progress is not None:
                    progress(i + 1, b)
        from ..utils.convert import carry_metadata

        return carry_metadata(from_tensor(out, spec), image)  # PIL: profile, EXIF, DPI

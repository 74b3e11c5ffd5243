"""The ``inpaint`` task: DeepFill training with WGAN-GP (or SN-PatchGAN) critics.

One training **step** is ``n_critic`` critic updates, each on a fresh batch, then one
generator update on a fresh batch (the reference code's schedule). Per step:

- critic: ``wgan-gp``: global critic on the completed image and local critic on the
  hole's box, loss ``E[D(fake)] - E[D(real)]`` plus ``gp_weight`` times the (masked)
  gradient penalties; ``sn-patchgan``: hinge loss on image + mask;
- generator: spatially discounted L1 in the hole (``loss.discount``: the reference's
  box weighting for rectangles, nearest-known-pixel for free-form holes) and L1 outside
  it, for the coarse
  (x ``coarse_weight``) and refined outputs, plus ``adv_weight`` times the adversarial
  loss of the completed image.

Example:
    >>> from psal.training import InpaintConfig, Trainer
    >>> cfg = InpaintConfig(steps=10, batch_size=4)  # doctest: +SKIP
    >>> cfg.data.path, cfg.data.image_size = "photos/", 64  # doctest: +SKIP
    >>> Trainer(cfg).fit()  # doctest: +SKIP
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ...._deprecation import keyword_only
from ....data import InpaintingFolder, MaskGenerator, list_images, readable_images, split_files
from ....models import Inpainter, create_model
from ....models import losses as L
from ...runtime import Runtime
from .. import register_task
from ..base import Task, build_model
from .config import (
    EVAL_OPTIONS,
    INPAINT_OPTIONS,
    InpaintConfig,
    InpaintEvalConfig,
    check_eval_config,
    check_inpaint_config,
)
from .evaluate import evaluate

__all__ = ["InpaintTask", "crop_boxes"]

Batch = dict[str, torch.Tensor]


def crop_boxes(x: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop a ``size`` window at each sample's box ``(top, left, ...)``: (B, C, h, w)."""
    h, w = size
    return torch.stack(
        [x[i, :, t : t + h, s : s + w] for i, (t, s) in enumerate(boxes[:, :2].tolist())]
    )


@register_task("inpaint")
class InpaintTask(Task):
    """DeepFill v1 generator + WGAN-GP global/local critics (or an SN-PatchGAN critic).

    Networks (checkpoint prefixes): ``generator`` and ``critic_global`` +
    ``critic_local`` (``wgan-gp``) or ``critic_patch`` (``sn-patchgan``). Optimisers:
    ``generator`` and ``critics`` (one Adam over every critic).
    """

    help = "DeepFill-style inpainting network"
    description = (
        "Train the DeepFill v1 generator (attention: contextual, psal or none) with\n"
        "WGAN-GP global/local critics or an SN-PatchGAN critic."
    )
    train_examples = """\
  psal train inpaint --data photos/ --out runs/ca --steps 100000
  psal train inpaint --data photos/ --attention psal model.kwargs.attention_options.k=4
  psal train inpaint --data photos/ --out runs/small --image-size 128 --width 16 --batch-size 8
  psal train inpaint --data photos/ --config small.json optim.n_critic=2
  psal train inpaint --resume --out runs/ca              # continue after a kill
  psal train inpaint --resume runs/ca/checkpoints/step_00010000.safetensors --steps 200000
  torchrun --nproc_per_node 2 -m psal train inpaint --data photos/ --out runs/ddp

--image-size must be a multiple of 4 (with psal attention, at least 4 x its patch size)."""
    eval_examples = """\
  psal eval inpaint --checkpoint runs/ca --data val_photos/
  psal eval inpaint --checkpoint runs/ca/checkpoints/step_00100000.safetensors \\
      --data val_photos/ --masks free-form --json metrics.json
  psal eval inpaint --checkpoint runs/psal --data val_photos/ --image-size 256 --resize resize

Mean L1, mean L2, PSNR and total variation (DeepFill Table 1) and SSIM of the completed
images, plus L1/L2/PSNR in the hole. The masks are fixed by --mask-seed; --seed fixes the
network's own randomness (PatchMatch in psal attention), so an evaluation repeats."""
    config_class = InpaintConfig
    options = INPAINT_OPTIONS
    eval_config_class = InpaintEvalConfig
    eval_options = EVAL_OPTIONS
    progress_keys = ("d_loss", "g_loss", "l1_hole_fine")
    architecture_keys = ("model.", "data.image_size", "data.hole_size")

    @classmethod
    def check_config(cls, config: InpaintConfig) -> None:  # noqa: D102
        check_inpaint_config(config)

    @classmethod
    def upgrade_config(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Runs of format 1 (psal < 0.2) had the legacy stage-2 dilated branch."""
        if version < 2:
            model = dict(data.get("model") or {})
            kwargs = dict(model.get("kwargs") or {})
            kwargs.setdefault("stage2_dilated", "legacy")
            model["kwargs"] = kwargs
            data = {**data, "model": model}
        return data

    def __init__(self, config: InpaintConfig, runtime: Runtime) -> None:
        super().__init__(config, runtime)
        device = runtime.device
        self.generator = self._build_generator()
        self._build_data()
        self.critics = self._build_critics()
        self.networks = {"generator": self.generator, **self.critics}
        for net in self.networks.values():
            net.to(device)
        o = config.optim
        critic_params = [p for c in self.critics.values() for p in c.parameters()]
        self.optimizers = {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=o.lr, betas=o.betas),
            "critics": torch.optim.Adam(critic_params, lr=o.critic_lr, betas=o.betas),
        }
        # Distributed wrappers: used for the updates of their own network only.
        self.g_train = runtime.wrap(self.generator)
        self.d_train = {k: runtime.wrap(c) for k, c in self.critics.items()}

    # -------------------------------------------------------------- building
    def _build_generator(self) -> nn.Module:
        cfg = self.config
        generator = build_model(cfg.model.name, cfg.model.kwargs)
        size = cfg.data.image_size
        multiple = int(getattr(generator, "size_multiple", 1))
        low = int(getattr(generator, "min_size", 1))
        if size % multiple or size < low:
            attention = cfg.model.kwargs.get("attention")
            self.options.fail(
                "data.image_size",
                f"a multiple of {multiple} and at least {low} for this generator "
                f"(attention {attention!r})",
                size,
            )
        self._check_attention_k(generator)
        return generator

    def _check_attention_k(self, generator: nn.Module) -> None:
        """Refuse a neighbour count ``k`` larger than the key patches of a training hole.

        With more neighbours than valid key patches the attention could not search and
        would pass features through unchanged: training without attention, silently.
        """
        from ....patchmatch import valid_key_positions

        layer = getattr(
            getattr(getattr(generator, "refine", None), "attention", None), "layer", None
        )
        k, p = getattr(layer, "k", None), getattr(layer, "patch_size", None)
        if not isinstance(k, int) or not isinstance(p, int):
            return
        d = self.config.data
        size, hole = d.image_size, d.hole_size or d.image_size // 2
        mask = torch.zeros(1, 1, size, size, dtype=torch.bool)
        top = (size - hole) // 2
        mask[..., top : top + hole, top : top + hole] = True
        small = torch.nn.functional.max_pool2d(mask.float(), 4, 4, ceil_mode=True) > 0
        n = int(valid_key_positions(small, p).sum())
        if k > n:
            self.options.fail(
                "model.kwargs.attention_options.k",
                f"at most {n} (the key patches outside a {hole}x{hole} hole in the "
                f"{size // 4}x{size // 4} features of data.image_size {size})",
                k,
            )

    def _build_data(self) -> None:
        d = self.config.data
        self.masks = MaskGenerator(d.masks, d.image_size, d.hole_size, d.max_delta)
        with self.scanning_data():  # skipped files named once, not by every rank
            listed = list_images(d.path)
            files = readable_images(listed, "data.path (--data)")
            # by a hash of each path: the same split whatever the seed or unreadable files
            train_files, val_files = split_files(
                files, d.val_fraction, d.val_max, root=d.path, listed=listed
            )
        self.train_set = InpaintingFolder(train_files, d.image_size, self.masks, d.resize)
        self.val_set = (
            InpaintingFolder(val_files, d.image_size, self.masks, d.resize, fixed=True)
            if val_files
            else None
        )

    def _build_critics(self) -> dict[str, nn.Module]:
        m, size = self.config.model, self.config.data.image_size
        if m.critic == "sn-patchgan":
            return {"critic_patch": create_model("sn_patchgan_critic", width=m.critic_width)}
        hole = self.masks.hole_size
        if hole[0] != hole[1]:
            raise ValueError("the local WGAN critic needs a square hole_size")
        return {
            "critic_global": create_model(
                "wgan_global_critic", input_size=size, width=m.critic_width
            ),
            "critic_local": create_model(
                "wgan_local_critic", input_size=hole[0], width=m.critic_width
            ),
        }

    # ----------------------------------------------------------------- steps
    def critic_step(self, batch: Batch) -> dict[str, float]:
        """One critic update on ``batch``; returns its losses."""
        cfg, rt = self.config, self.runtime
        real = batch["image"] * 2 - 1
        mask = batch["mask"]
        with torch.no_grad(), rt.autocast():
            fake = self.generator(real, mask).completed.float()
        logs: dict[str, float] = {}
        n = real.shape[0]
        if cfg.model.critic == "wgan-gp":
            hole = self.masks.hole_size
            real_l, fake_l = (
                crop_boxes(real, batch["box"], hole),
                crop_boxes(fake, batch["box"], hole),
            )
            mask_l = crop_boxes(mask, batch["box"], hole)
            d_g, d_l = self.d_train["critic_global"], self.d_train["critic_local"]
            with rt.autocast():
                s_g = d_g(torch.cat([real, fake])).float()
                s_l = d_l(torch.cat([real_l, fake_l])).float()
            loss_g = L.wgan_critic_loss(s_g[:n], s_g[n:])
            loss_l = L.wgan_critic_loss(s_l[:n], s_l[n:])
            masked = cfg.loss.gp_masked
            gp_g = L.gradient_penalty(d_g, real, fake, mask if masked else None)
            gp_l = L.gradient_penalty(d_l, real_l, fake_l, mask_l if masked else None)
            gp = cfg.loss.gp_weight * (gp_g + gp_l)
            loss = loss_g + loss_l + gp
            logs.update(d_global=loss_g.item(), d_local=loss_l.item(), gp=gp.item())
        else:
            with rt.autocast():
                s = self.d_train["critic_patch"](torch.cat([real, fake]), torch.cat([mask, mask]))
            loss = L.hinge_critic_loss(s[:n].float(), s[n:].float())
        norm = rt.step(loss, "critics", "critic loss")
        logs["d_loss"] = loss.item()
        if norm is not None:
            logs["d_grad_norm"] = norm
        return logs

    def _adversarial(self, fake: torch.Tensor, batch: Batch) -> torch.Tensor:
        if self.config.model.critic == "wgan-gp":
            local = crop_boxes(fake, batch["box"], self.masks.hole_size)
            return self.config.loss.global_adv_weight * L.wgan_generator_loss(
                self.critics["critic_global"](fake)
            ) + L.wgan_generator_loss(self.critics["critic_local"](local))
        return L.hinge_generator_loss(self.critics["critic_patch"](fake, batch["mask"]))

    @keyword_only(3, (), renames={"return_flow": "return_field"})
    def generator_step(self, batch: Batch, return_field: bool = False) -> tuple[dict, Any]:
        """One generator update on ``batch``; returns its losses and the outputs.

        ``return_field``: also compute the attention field (``out.field``, for the image
        log); ``return_flow=`` is its deprecated name.
        """
        lc, rt = self.config.loss, self.runtime
        real = batch["image"] * 2 - 1
        mask = batch["mask"]
        box = lc.discount == "box" or (lc.discount == "auto" and self.config.data.masks == "rect")
        if box:
            size = self.masks.hole_size

            def hole_l1(pred: torch.Tensor) -> torch.Tensor:
                return L.box_discounted_l1(pred, real, batch["box"], size, lc.discount_gamma)
        else:
            weights = L.spatial_discount(mask, lc.discount_gamma)

            def hole_l1(pred: torch.Tensor) -> torch.Tensor:
                return L.discounted_l1(pred, real, mask, weights=weights)

        for c in self.critics.values():
            c.requires_grad_(False)
        try:
            with rt.autocast():
                out = self.g_train(real, mask, return_field=return_field)
                hole_c, hole_f = hole_l1(out.coarse), hole_l1(out.refined)
                known_c = L.known_l1(out.coarse, real, mask)
                known_f = L.known_l1(out.refined, real, mask)
                adv = self._adversarial(out.completed, batch)
            loss = (
                lc.l1_weight * (lc.coarse_weight * hole_c + hole_f)
                + lc.ae_weight * (lc.coarse_weight * known_c + known_f)
                + lc.adv_weight * adv.float()
            )
        finally:
            for c in self.critics.values():
                c.requires_grad_(True)
        norm = rt.step(loss, "generator", "generator loss")
        logs = {
            "g_loss": loss.item(),
            "l1_hole_coarse": hole_c.item(),
            "l1_hole_fine": hole_f.item(),
            "l1_known_coarse": known_c.item(),
            "l1_known_fine": known_f.item(),
            "adv": adv.item(),
        }
        if norm is not None:
            logs["g_grad_norm"] = norm
        return logs, out

    def train_step(self, next_batch: Callable[[], Batch], images: bool) -> tuple[dict, Any]:
        """``n_critic`` critic updates (a batch each), then one generator update."""
        n_critic = self.config.optim.n_critic
        logs: dict[str, float] = {}
        for _ in range(n_critic):
            for k, v in self.critic_step(next_batch()).items():
                logs[k] = logs.get(k, 0.0) + v / n_critic
        batch = next_batch()
        g_logs, out = self.generator_step(batch, return_field=images)
        logs.update(g_logs)
        return logs, (out, batch)

    # ------------------------------------------------------------ validation
    def inpainter(self) -> Inpainter:
        """The current generator wrapped for inference (shares its parameters)."""
        return Inpainter(self.generator, training_size=self.config.data.image_size, max_size=0)

    def validate(self) -> dict[str, float]:
        """Image and hole metrics on the validation split (fixed masks)."""
        if self.val_set is None:
            return {}
        try:
            return evaluate(
                self.inpainter(), self.val_set, self.config.batch_size, self.runtime.device
            )
        finally:
            self.generator.train()

    def summary(self, results: dict[str, float]) -> str:  # noqa: D102
        return f"val psnr {results['psnr']:.2f} dB, l1_hole {results['l1_hole']:.4f}"

    def log_images(self, writer: Any, step: int, visuals: Any) -> None:
        """Input (hole white), coarse, completed, attention field (if any), original."""
        out, batch = visuals
        n = min(4, batch["image"].shape[0])
        real = batch["image"][:n].float()
        mask = batch["mask"][:n]
        panels = [
            torch.where(mask, 1.0, real),
            (out.coarse[:n].float() + 1) / 2,
            (out.completed[:n].float() + 1) / 2,
        ]
        if out.field is not None:
            from ....viz import flow_to_color

            color = flow_to_color(out.field[:n].float())
            color = color.float() / 255 if color.dtype == torch.uint8 else color.float()
            panels.append(torch.nn.functional.interpolate(color, size=real.shape[-2:]))
        panels.append(real)
        rows = [torch.cat([p[i].clamp(0, 1).cpu() for p in panels], 2) for i in range(n)]
        writer.add_image("samples/input_coarse_refined_flow_real", torch.cat(rows, 1), step)

    def metadata(self) -> dict[str, Any]:
        """The generator's description and the training image size (for Inpainter)."""
        m = self.config.model
        return {
            "generator": {"name": m.name, "kwargs": m.kwargs},
            "image_size": self.config.data.image_size,
        }

    # ----------------------------------------------------- inference, eval
    @classmethod
    def load_inference(
        cls, path: str | os.PathLike[str], device: Any = None, **kwargs: Any
    ) -> Inpainter:
        """:meth:`psal.models.Inpainter.from_checkpoint`."""
        return Inpainter.from_checkpoint(path, device=device, **kwargs)

    @classmethod
    def evaluate(cls, config: InpaintEvalConfig, progress: bool = False) -> dict[str, Any]:
        """Metrics of a checkpoint on the images of ``config.data`` with fixed masks.

        The masks are fixed by ``mask_seed`` and the network's own randomness
        (PatchMatch seeds in psal attention) by ``seed``, so an evaluation repeats.

        Returns:
            ``{"metrics": {...}, "image_size": ..., ...}`` (the settings used).
        """
        check_eval_config(config)
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = cls.load_inference(config.checkpoint, device=device)
        size = config.image_size if config.image_size is not None else model.training_size
        dataset = InpaintingFolder(
            # decoded whole: a truncated file is skipped (named), not met half-way
            readable_images(list_images(config.data), "--data", decode=True, limit=config.limit),
            size,
            MaskGenerator(config.masks, size),
            config.resize,
            fixed=True,
            mask_seed=config.mask_seed,
        )
        random.seed(config.seed)
        torch.manual_seed(config.seed)
        metrics = evaluate(
            model, dataset, config.batch_size, device, limit=config.limit, progress=progress
        )
        return {
            "image_size": size,
            "masks": config.masks,
            "mask_seed": config.mask_seed,
            "seed": config.seed,
            "metrics": metrics,
        }

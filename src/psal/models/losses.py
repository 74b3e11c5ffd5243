"""Losses of DeepFill: spatially discounted L1, known-region L1, WGAN-GP and hinge GAN.

Spatially discounted L1 (pixels far from any known pixel are the least constrained, so
their reconstruction error counts less), two weightings:

- the reference code's (DeepFill v1.0.0 ``spatial_discounting_mask``), for rectangles:
  :func:`box_discount` weights the whole local box (the hole's ``hole_size`` box,
  known margin included) by ``max(gamma ** min(i, h - i), gamma ** min(j, w - j))`` at
  row ``i``, column ``j`` of an ``h x w`` box, and :func:`box_discounted_l1` averages
  ``|pred - target| * weight`` over the box. This weight does not depend on the hole:
  it is 1 on the box's first row and column but ``gamma`` on its last ones (the
  reference's ``min(i, H - i)``), and it is not the distance to the nearest known
  pixel.
- the nearest-known-pixel one, for free-form holes: :func:`spatial_discount` weights a
  hole pixel whose chessboard distance to the nearest known pixel is ``l`` (1 on the
  hole's rim) by ``gamma ** (l - 1)``, 0 outside the hole, and :func:`discounted_l1`
  averages ``|pred - target| * weight`` over the hole pixels.

Other terms:

- :func:`known_l1`: mean over known pixels of ``|pred - target|`` (the reference's
  "AE loss", normalised by the known fraction).
- WGAN: :func:`wgan_critic_loss` ``E[D(fake)] - E[D(real)]``,
  :func:`wgan_generator_loss` ``-E[D(fake)]``, :func:`gradient_penalty`
  ``E[(||∇D(x̂) ⊙ mask|| - 1)²]`` on random interpolates (Gulrajani et al.), masked to
  the hole as in the DeepFill reference.
- Hinge (SN-PatchGAN): :func:`hinge_critic_loss`, :func:`hinge_generator_loss`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .._checks import check_float_tensor, check_positive_float

__all__ = [
    "box_discount",
    "box_discounted_l1",
    "discounted_l1",
    "gradient_penalty",
    "hinge_critic_loss",
    "hinge_generator_loss",
    "known_l1",
    "spatial_discount",
    "wgan_critic_loss",
    "wgan_generator_loss",
]


@torch.no_grad()
def spatial_discount(mask: torch.Tensor, gamma: float = 0.99) -> torch.Tensor:
    """Per-pixel weights of the spatially discounted reconstruction loss.

    Args:
        mask: (B, 1, H, W) bool, True = hole.
        gamma: discount per pixel of distance, in (0, 1] (0.99 in the paper, 0.9 in the
            reference configuration).

    Returns:
        (B, 1, H, W) float32: ``gamma ** (l - 1)`` in the hole, 0 outside. A sample with
        no known pixel at all gets weight 1 in the whole hole.

    Example:
        >>> m = torch.zeros(1, 1, 7, 7, dtype=torch.bool); m[..., 1:6, 1:6] = True
        >>> w = spatial_discount(m, 0.5)
        >>> w[0, 0, 3].tolist()
        [0.0, 1.0, 0.5, 0.25, 0.5, 1.0, 0.0]
    """
    gamma = check_positive_float(gamma, "gamma")
    if gamma > 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    hole = mask.bool()
    known = (~hole).float()
    dist = torch.zeros(hole.shape, dtype=torch.float32, device=hole.device)
    remaining = hole.clone()
    step = 0
    while bool(remaining.any()):
        step += 1
        known = F.max_pool2d(known, 3, 1, 1)
        reached = remaining & (known > 0)
        if not bool(reached.any()):  # samples without any known pixel
            dist[remaining] = 1.0
            break
        dist[reached] = float(step)
        remaining &= ~reached
    return torch.where(hole, gamma ** (dist - 1).clamp(min=0), 0.0)


@torch.no_grad()
def box_discount(
    height: int, width: int, gamma: float = 0.99, device: torch.device | str | None = None
) -> torch.Tensor:
    """The reference's discount over an ``height x width`` box: (height, width) float32.

    ``w[i, j] = max(gamma ** min(i, height - i), gamma ** min(j, width - j))``, exactly
    as DeepFill v1.0.0's ``spatial_discounting_mask``.

    Example:
        >>> box_discount(4, 4, 0.5)[2].tolist()
        [1.0, 0.5, 0.25, 0.5]
    """
    gamma = check_positive_float(gamma, "gamma")
    if gamma > 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    i = torch.arange(height, device=device)
    j = torch.arange(width, device=device)
    wi = gamma ** torch.minimum(i, height - i).double()
    wj = gamma ** torch.minimum(j, width - j).double()
    return torch.maximum(wi[:, None], wj[None, :]).float()


def box_discounted_l1(
    pred: torch.Tensor,
    target: torch.Tensor,
    boxes: torch.Tensor,
    size: tuple[int, int],
    gamma: float = 0.99,
) -> torch.Tensor:
    """The reference's discounted L1: mean over each box of ``|pred - target| w``.

    Args:
        pred: (B, C, H, W).
        target: (B, C, H, W).
        boxes: (B, >= 2) int, ``(top, left, ...)`` of each sample's box.
        size: ``(h, w)`` of the boxes (the hole size).
        gamma: discount (see :func:`box_discount`).

    Returns:
        A scalar: the mean over samples, box pixels and channels.
    """
    check_float_tensor(pred, "pred", ndim=4)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    h, w = size
    weight = box_discount(h, w, gamma, pred.device)
    diffs = [
        (pred[i, :, t : t + h, s : s + w].float() - target[i, :, t : t + h, s : s + w].float())
        for i, (t, s) in enumerate(boxes[:, :2].tolist())
    ]
    return (torch.stack(diffs).abs() * weight).mean()


def _check_pair(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
    check_float_tensor(pred, "pred", ndim=4)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    if mask.shape[0] != pred.shape[0] or mask.shape[-2:] != pred.shape[-2:]:
        raise ValueError(
            f"mask must be (B, 1, H, W) matching pred {tuple(pred.shape)}, got {tuple(mask.shape)}"
        )


def discounted_l1(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 0.99,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Spatially discounted L1 in the hole: mean over hole pixels of ``|pred - target| w``.

    Args:
        pred: (B, C, H, W).
        target: (B, C, H, W).
        mask: (B, 1, H, W) bool, True = hole.
        gamma: discount (see :func:`spatial_discount`).
        weights: precomputed :func:`spatial_discount` weights (then ``gamma`` is unused).

    Returns:
        A scalar (0 if no sample has a hole).
    """
    _check_pair(pred, target, mask)
    w = spatial_discount(mask, gamma) if weights is None else weights
    diff = (pred.float() - target.float()).abs() * w
    count = mask.bool().sum() * pred.shape[1]
    return diff.sum() / count.clamp(min=1)


def known_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 outside the hole: mean over known pixels of ``|pred - target|``."""
    _check_pair(pred, target, mask)
    known = (~mask.bool()).float()
    diff = (pred.float() - target.float()).abs() * known
    count = known.sum() * pred.shape[1]
    return diff.sum() / count.clamp(min=1)


def wgan_critic_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN critic loss ``mean(D(fake)) - mean(D(real))``."""
    return fake.float().mean() - real.float().mean()


def wgan_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """WGAN generator loss ``-mean(D(fake))``."""
    return -fake.float().mean()


def hinge_critic_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge critic loss ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``."""
    return F.relu(1.0 - real.float()).mean() + F.relu(1.0 + fake.float()).mean()


def hinge_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """Hinge generator loss ``-mean(D(fake))``."""
    return -fake.float().mean()


def _penalty_dtype(
    critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor
) -> torch.dtype:
    """The dtype the critic takes outside autocast: its parameters', else >= float32."""
    if isinstance(critic, torch.nn.Module):
        for p in critic.parameters():
            if p.is_floating_point():
                return p.dtype
    return torch.promote_types(torch.promote_types(real.dtype, fake.dtype), torch.float32)


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """WGAN-GP gradient penalty ``mean((||∇D(x̂) ⊙ mask||₂ - 1)²)``.

    ``x̂ = α real + (1 - α) fake`` with one ``α ~ U(0, 1)`` per sample, drawn (in
    float32) from torch's generator on the inputs' device. The penalty is computed with
    autocast disabled, in the dtype of the critic's parameters (a critic that is not
    a module with floating-point parameters: float32, or float64 for float64 inputs),
    and keeps its graph (``create_graph=True``), so its
    gradient reaches the critic's parameters.

    Args:
        critic: maps (B, C, H, W) images to scores.
        real: (B, C, H, W) real images.
        fake: (B, C, H, W) generated images (detached by this function).
        mask: optional (B, 1, H, W) weights of the gradient (the hole, as in the
            DeepFill reference); None = whole image.

    Returns:
        A scalar.
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape, got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}"
        )
    dtype = _penalty_dtype(critic, real, fake)
    with torch.autocast(device_type=real.device.type, enabled=False):
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device).to(dtype)
        x = alpha * real.detach().to(dtype) + (1 - alpha) * fake.detach().to(dtype)
        x.requires_grad_()
        scores = critic(x)
        (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
        if mask is not None:
            grad = grad * mask.to(dtype)
        norm = grad.flatten(1).pow(2).sum(1).add(1e-12).sqrt()
        return (norm - 1.0).pow(2).mean()

"""Image quality metrics: L1, L2, PSNR, SSIM and total variation, optionally masked.

The metrics of the DeepFill paper's Table 1 (mean L1, mean L2, PSNR, total variation) and
SSIM (Wang et al. 2004, gaussian window 11 with sigma 1.5). Every function takes
(B, C, H, W) float tensors and returns one value per image, shape (B,), or their mean
with ``reduction="mean"``. Values are expected in ``[0, data_range]``.

Masked variants (``mask`` (B, 1, H, W) bool, True = pixels that count, e.g. the hole)
average only over the masked pixels; an image with an empty mask gets NaN.

Example:
    >>> x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    >>> psnr(x, y).shape
    torch.Size([2])
    >>> float(psnr(x, x, reduction="mean"))
    inf
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_choice, check_float_tensor, check_int, check_mask, check_positive_float

__all__ = ["l1", "l2", "psnr", "ssim", "total_variation"]

REDUCTIONS = ("none", "mean")

#: Side of :func:`ssim`'s default gaussian window: the smallest image it scores.
SSIM_WINDOW = 11


def _check_pair(x: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    x = check_float_tensor(x, "x", ndim=4)
    y = check_float_tensor(y, "y", ndim=4)
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.device != y.device:
        raise ValueError(f"x is on {x.device} but y is on {y.device}")
    return x, y


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    check_choice(reduction, "reduction", REDUCTIONS)
    return values.mean() if reduction == "mean" else values


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, C, H, W) ``values`` per image, over the pixels where ``mask`` is True."""
    if mask is None:
        return values.flatten(1).mean(1)
    m = mask.to(values.dtype).expand_as(values)
    return (values * m).flatten(1).sum(1) / m.flatten(1).sum(1)


def _mask(mask: object, x: torch.Tensor) -> torch.Tensor | None:
    if mask is None:
        return None
    b, _, h, w = x.shape
    return check_mask(mask, "mask", b, h, w, x.device)


def l1(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None, reduction: str = "none"
) -> torch.Tensor:
    """Mean absolute error per image (over channels and the masked pixels).

    Args:
        x: (B, C, H, W) float.
        y: (B, C, H, W), same shape.
        mask: optional (B, 1, H, W) bool, True = pixels that count.
        reduction: ``"none"`` (shape (B,)) or ``"mean"`` (a scalar).

    Returns:
        (B,) or a scalar tensor, in float32 or the inputs' wider dtype.
    """
    x, y = _check_pair(x, y)
    diff = (x.float() - y.float()).abs() if x.dtype != torch.float64 else (x - y).abs()
    return _reduce(_masked_mean(diff, _mask(mask, x)), reduction)


def l2(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None, reduction: str = "none"
) -> torch.Tensor:
    """Mean squared error per image (the "mean L2" of the DeepFill paper); see :func:`l1`."""
    x, y = _check_pair(x, y)
    diff = (x.float() - y.float()) ** 2 if x.dtype != torch.float64 else (x - y) ** 2
    return _reduce(_masked_mean(diff, _mask(mask, x)), reduction)


def psnr(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    mask: torch.Tensor | None = None,
    reduction: str = "none",
) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB: ``10 log10(data_range² / MSE)``.

    Identical images give ``inf``. With ``reduction="mean"`` the per-image values are
    averaged (the usual convention), not the MSEs.

    Args:
        x: (B, C, H, W) float.
        y: (B, C, H, W), same shape.
        data_range: the span of the values (1 for [0, 1] images, 255 for [0, 255]).
        mask: optional (B, 1, H, W) bool; the MSE is taken over these pixels only.
        reduction: ``"none"`` (shape (B,)) or ``"mean"``.
    """
    data_range = check_positive_float(data_range, "data_range")
    mse = l2(x, y, mask=mask)
    return _reduce(10.0 * torch.log10(data_range**2 / mse), reduction)


def _gaussian_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = SSIM_WINDOW,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    mask: torch.Tensor | None = None,
    reduction: str = "none",
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per image, averaged over channels.

    Computed in float64 (returned as float32, or float64 for float64 inputs).

    Local statistics use a normalised gaussian window (``window_size`` 11, ``sigma``
    1.5) and population (biased) variances, as in the paper; only windows that lie
    entirely inside the image are used ("valid" filtering), which matches
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``. With ``mask``, the SSIM map is averaged over the
    masked window centres; since only windows entirely inside the image have a
    centre, an image whose masked pixels all lie within ``window_size // 2`` pixels of
    its border gets NaN, as an empty mask does (left out of psal's finite-only means).

    Args:
        x: (B, C, H, W) float, H and W >= ``window_size``.
        y: (B, C, H, W), same shape.
        data_range: the span of the values (1 for [0, 1] images).
        window_size: odd side of the gaussian window.
        sigma: standard deviation of the window.
        k1: stability constant, ``C1 = (k1 * data_range)²``, > 0.
        k2: stability constant, ``C2 = (k2 * data_range)²``, > 0.
        mask: optional (B, 1, H, W) bool.
        reduction: ``"none"`` (shape (B,)) or ``"mean"``.

    Example:
        >>> x = torch.rand(1, 3, 32, 32)
        >>> round(float(ssim(x, x)), 4)
        1.0
    """
    x, y = _check_pair(x, y)
    data_range = check_positive_float(data_range, "data_range")
    k1, k2 = check_positive_float(k1, "k1"), check_positive_float(k2, "k2")
    window_size = check_int(window_size, "window_size", minimum=1)
    if window_size % 2 == 0:
        raise ValueError(f"window_size must be odd, got {window_size}")
    sigma = check_positive_float(sigma, "sigma")
    c, h, w = x.shape[1:]
    if h < window_size or w < window_size:
        raise ValueError(
            f"ssim needs images of at least window_size={window_size} pixels a side, got {h}x{w}"
        )
    m = _mask(mask, x)
    out = torch.float64 if x.dtype == torch.float64 else torch.float32
    # local statistics in float64 whatever the input: ``blur(x * x) - mu²`` cancels, and in
    # float32 on bright flat areas (values ~200 of 255) the rounding exceeds the variance
    # (SSIM above 1); the result comes back in float32 (float64 for float64 inputs)
    x, y = x.to(torch.float64), y.to(torch.float64)
    g = _gaussian_window(window_size, sigma, x)
    gx = g.view(1, 1, 1, -1).expand(c, 1, 1, window_size)
    gy = g.view(1, 1, -1, 1).expand(c, 1, window_size, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gx, groups=c), gy, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    if m is not None:
        r = window_size // 2
        m = m[:, :, r : h - r, r : w - r]
    return _reduce(_masked_mean(smap, m).to(out), reduction)


def total_variation(
    x: torch.Tensor, mask: torch.Tensor | None = None, reduction: str = "none"
) -> torch.Tensor:
    """Mean anisotropic total variation per image: mean ``|∂x| + |∂y|`` per pixel.

    The TV column of the DeepFill paper's Table 1 (lower = smoother). Differences are
    forward differences; the last row and column, which have no forward neighbour, count
    as 0 in that direction. With ``mask`` only masked pixels are averaged.

    Args:
        x: (B, C, H, W) float.
        mask: optional (B, 1, H, W) bool.
        reduction: ``"none"`` (shape (B,)) or ``"mean"``.
    """
    x = check_float_tensor(x, "x", ndim=4)
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.to(work)
    dy = F.pad((x[:, :, 1:] - x[:, :, :-1]).abs(), (0, 0, 0, 1))
    dx = F.pad((x[..., 1:] - x[..., :-1]).abs(), (0, 1))
    return _reduce(_masked_mean(dx + dy, _mask(mask, x)), reduction)

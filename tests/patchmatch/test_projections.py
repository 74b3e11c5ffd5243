"""The numba backend's projections: the separable kernel against p x p filters.

(That their distance bounds the patch distance: ``test_patchmatch.py``.)
"""

import numpy as np
import pytest
import torch

from psal.patchmatch import cpu_numba
from psal.patchmatch.distance import pad_reflect


def _reference_moments(xp: torch.Tensor, p: int) -> torch.Tensor:
    """The s spatial functions as p x p filters, one grouped convolution (B, m*s, H, W)."""
    r = p // 2
    coords = torch.arange(p, dtype=torch.float64) - r
    spatial = [torch.full((p, p), 1.0 / p, dtype=torch.float64)]
    if p >= 3:
        ramp = coords / coords.square().sum().sqrt() / p**0.5
        spatial += [ramp.view(1, p).expand(p, p), ramp.view(p, 1).expand(p, p)]
    w = torch.stack(spatial).unsqueeze(1).repeat(xp.shape[1], 1, 1, 1)
    return torch.nn.functional.conv2d(xp, w, groups=xp.shape[1])


@pytest.mark.parametrize("p", [1, 3, 5, 7])
def test_separable_moments_equal_the_filters(p):
    torch.manual_seed(p)
    b, m, h, w = 2, 3, 11, 14
    xp = pad_reflect(torch.randn(b, m, h, w, dtype=torch.float64), p // 2)
    want = _reference_moments(xp, p).permute(0, 2, 3, 1).reshape(b, h * w, -1).numpy()
    coords = torch.arange(p, dtype=torch.float64) - p // 2
    ramp = coords / coords.square().sum().sqrt() / p**0.5 if p >= 3 else torch.zeros(p)
    s = 3 if p >= 3 else 1
    got = np.full((b, h * w, m * s), np.nan)
    cpu_numba._moments_tasks(xp.contiguous().numpy(), ramp.double().numpy(), s, got, 0, b * m)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)

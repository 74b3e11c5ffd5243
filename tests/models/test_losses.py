import numpy as np
import pytest
import torch

from psal.models import losses as L


def _chessboard_distance(hole: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(~hole)
    out = np.zeros(hole.shape)
    for y, x in zip(*np.nonzero(hole)):
        out[y, x] = np.maximum(np.abs(ys - y), np.abs(xs - x)).min()
    return out


def test_spatial_discount_matches_distance_transform():
    rng = np.random.default_rng(0)
    hole = np.zeros((2, 1, 20, 24), bool)
    hole[0, 0, 3:15, 5:20] = True
    hole[1, 0] = rng.random((20, 24)) < 0.6
    w = L.spatial_discount(torch.from_numpy(hole), gamma=0.9).numpy()
    for b in range(2):
        d = _chessboard_distance(hole[b, 0])
        expected = np.where(hole[b, 0], 0.9 ** (d - 1), 0.0)
        np.testing.assert_allclose(w[b, 0], expected, rtol=1e-6)


def test_spatial_discount_edge_cases():
    full = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    assert torch.equal(L.spatial_discount(full), torch.ones(1, 1, 4, 4))
    empty = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    assert torch.equal(L.spatial_discount(empty), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="gamma"):
        L.spatial_discount(full, 1.5)


def test_reconstruction_losses():
    pred = torch.zeros(2, 3, 8, 8)
    target = torch.zeros(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[:, :, 2:6, 2:6] = True
    target[:, :, :4] = 1.0  # top half differs by 1
    # gamma 1: plain mean over hole pixels; half the hole lies in the top half
    assert float(L.discounted_l1(pred, target, mask, gamma=1.0)) == pytest.approx(0.5)
    assert float(L.discounted_l1(pred, target, mask, gamma=0.5)) < 0.5
    # known pixels: 64 - 16 = 48 per image, of which 32 - 8 = 24 differ
    assert float(L.known_l1(pred, target, mask)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same shape"):
        L.known_l1(pred, target[:, :2], mask)


def test_gan_losses():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0])
    assert float(L.wgan_critic_loss(real, fake)) == pytest.approx(-0.5 - 2.0)
    assert float(L.wgan_generator_loss(fake)) == pytest.approx(0.5)
    assert float(L.hinge_critic_loss(real, fake)) == pytest.approx(0.0 + 0.5)
    assert float(L.hinge_generator_loss(fake)) == pytest.approx(0.5)


def test_gradient_penalty_of_a_linear_critic():
    torch.manual_seed(0)
    w = torch.randn(1, 3, 6, 6, requires_grad=True)

    def critic(x):
        return (x * w).flatten(1).sum(1)

    real, fake = torch.rand(4, 3, 6, 6), torch.rand(4, 3, 6, 6)
    mask = torch.zeros(4, 1, 6, 6)
    mask[:, :, 1:4, 2:5] = 1
    gp = L.gradient_penalty(critic, real, fake, mask)
    # the gradient of a linear critic is w everywhere, whatever the interpolation
    expected = ((w * mask).flatten(1).norm(dim=1) - 1).pow(2).mean()
    torch.testing.assert_close(gp, expected)
    gp.backward()  # create_graph: the penalty has a gradient with respect to the critic
    assert w.grad is not None and w.grad.abs().sum() > 0
    unmasked = L.gradient_penalty(critic, real, fake)
    torch.testing.assert_close(unmasked, (w.detach().norm() - 1).pow(2))


def test_box_discount_is_the_references_worked_by_hand():
    # reference: w[i, j] = max(g ** min(i, H - i), g ** min(j, W - j)); g = 0.5, 4 x 5
    # rows: min(i, 4 - i) = 0, 1, 2, 1; columns: min(j, 5 - j) = 0, 1, 2, 2, 1
    w = L.box_discount(4, 5, 0.5)
    expected = torch.tensor(
        [
            [1.0, 1.0, 1.0, 1.0, 1.0],
            [1.0, 0.5, 0.5, 0.5, 0.5],
            [1.0, 0.5, 0.25, 0.25, 0.5],
            [1.0, 0.5, 0.5, 0.5, 0.5],
        ]
    )
    assert torch.equal(w, expected)
    # the loss: mean over the box (known margin included) of |pred - target| * w
    pred = torch.zeros(1, 1, 6, 7)
    target = torch.zeros(1, 1, 6, 7)
    target[0, 0, 1:5, 2:7] = 2.0  # the box at (1, 2), 4 x 5
    target[0, 0, 0, 0] = 100.0  # outside the box: ignored
    boxes = torch.tensor([[1, 2, 4, 5]])
    loss = L.box_discounted_l1(pred, target, boxes, (4, 5), 0.5)
    assert float(loss) == pytest.approx(2.0 * float(expected.sum()) / 20)  # 2 * 13.5 / 20


def test_nearest_known_pixel_discount_worked_by_hand():
    # an L-shaped free-form hole; l = chessboard distance to the nearest known pixel
    m = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    m[0, 0, 1:5, 1:3] = True  # a 4 x 2 bar
    m[0, 0, 3:5, 3:5] = True  # and a 2 x 2 foot: the L
    w = L.spatial_discount(m, 0.5)
    # every hole pixel of this L touches a known pixel (l = 1): weight 1
    assert torch.equal(w, m.float())
    m2 = torch.zeros(1, 1, 7, 7, dtype=torch.bool)
    m2[0, 0, 1:6, 1:6] = True
    m2[0, 0, 1, 1] = False  # a known pixel inside the square's corner
    w2 = L.spatial_discount(m2, 0.5)[0, 0]
    # centre (3, 3): 3 from the border, 2 from the known pixel (1, 1): l = 2
    assert w2[3, 3] == 0.5 and w2[2, 2] == 1.0 and w2[2, 3] == 0.5 and w2[1, 1] == 0
    full = m2.clone()
    full[0, 0, 1, 1] = True
    assert L.spatial_discount(full, 0.5)[0, 0, 3, 3] == 0.25  # l = 3 without it
    # the loss averages over hole pixels only
    pred, target = torch.zeros(1, 1, 7, 7), torch.ones(1, 1, 7, 7)
    assert float(L.discounted_l1(pred, target, m2, 0.5)) == pytest.approx(
        float(w2.sum()) / int(m2.sum())
    )


class _SquareCritic(torch.nn.Module):
    """``D(x) = sum(w x²)`` per sample: its gradient ``2 w x`` depends on the interpolate."""

    def __init__(self, dtype):
        super().__init__()
        self.w = torch.nn.Parameter(
            torch.linspace(0.5, 2.0, 3 * 5 * 5, dtype=dtype).view(1, 3, 5, 5)
        )

    def forward(self, x):
        if x.dtype != self.w.dtype:
            raise TypeError(f"x is {x.dtype}, the critic {self.w.dtype}")
        return (self.w * x * x).flatten(1).sum(1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_penalty_per_sample_interpolates_in_the_critics_dtype(dtype):
    # a float64 critic used to receive float32 interpolates (a dtype error naming 'x')
    critic = _SquareCritic(dtype)
    g = torch.Generator().manual_seed(1)
    real = torch.rand(3, 3, 5, 5, generator=g, dtype=dtype)
    fake = torch.rand(3, 3, 5, 5, generator=g, dtype=dtype)
    mask = torch.zeros(3, 1, 5, 5, dtype=torch.bool)
    mask[..., 1:4, 0:3] = True
    torch.manual_seed(7)
    gp = L.gradient_penalty(critic, real, fake, mask)
    assert gp.dtype == dtype
    # independently: the same per-sample alpha, x̂, the analytic gradient 2 w x̂, its
    # norm per sample over (C, H, W) in the hole, then mean((norm - 1)²)
    torch.manual_seed(7)
    alpha = torch.rand(3, 1, 1, 1).to(dtype)
    x = alpha * real + (1 - alpha) * fake
    grad = 2 * critic.w.detach() * x * mask
    norms = grad.flatten(1).norm(dim=1)
    assert len(set(norms.tolist())) == 3  # one interpolate per sample, not one for all
    torch.testing.assert_close(gp.detach(), ((norms - 1) ** 2).mean())
    gp.backward()
    assert critic.w.grad is not None and critic.w.grad.dtype == dtype

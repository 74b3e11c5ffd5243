import pytest
import torch

from psal.editing._temperature import wexler_temperature


def test_wexler_temperature():
    d = torch.arange(1, 101, dtype=torch.float32).view(1, 1, 10, 10)
    assert wexler_temperature(d) == pytest.approx(2 * 75.25)
    assert wexler_temperature(torch.zeros(1, 1, 3, 3)) == float("inf")
    where = torch.zeros(1, 1, 10, 10, dtype=torch.bool)
    where[..., 0, :4] = True
    assert wexler_temperature(d, where) == pytest.approx(2 * 3.25)

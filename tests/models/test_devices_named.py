"""Loading a network onto a device this machine lacks names the argument."""

import pytest
import torch

import psal


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "load",
    [
        lambda d: psal.models.Colorizer.from_pretrained("psal-w8", device=d),
        lambda d: psal.models.Upscaler.from_pretrained("edsr-x2", device=d),
    ],
    ids=["colorizer", "upscaler"],
)
def test_a_missing_or_unknown_device_is_a_value_error(load):
    # these raised torch's AssertionError ("Torch not compiled with CUDA") or a raw
    # RuntimeError; Inpainter.from_checkpoint already said it in one line
    with pytest.raises(ValueError, match="device='cuda': CUDA is not available"):
        load("cuda")
    with pytest.raises(ValueError, match="device must be"):
        load("gpu")

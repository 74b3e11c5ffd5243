import pytest
import torch

from psal.models import DeepFillV1, Inpainter, load_weights, save_weights


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_naming_the_file_and_tensor(tmp_path, bad):
    torch.manual_seed(0)
    kwargs = {"width": 4, "attention": "none"}
    state = DeepFillV1(**kwargs).state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone()
    state[key].view(-1)[0] = bad
    path = tmp_path / "w.safetensors"
    meta = {"generator": {"name": "deepfill_v1", "kwargs": kwargs}, "image_size": 32}
    save_weights(path, {"generator": state}, meta)
    match = rf"w\.safetensors.*'generator\.{key}'.*NaN or inf"
    with pytest.raises(ValueError, match=match) as info:
        load_weights(path)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=match):
        Inpainter.from_checkpoint(path, device="cpu")
    # integer tensors (counters) are not checked; finite weights load
    state[key].view(-1)[0] = 0.0
    save_weights(path, {"generator": state, "extra": {"n": torch.tensor([2**40])}}, meta)
    states, _ = load_weights(path)
    assert torch.equal(states["generator"][key], state[key])

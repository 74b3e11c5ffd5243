"""psal.viz: colour wheel, neighbour fields as displacements, saved side-by-side figures."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest
import torch
from PIL import Image

import psal
import psal.viz as viz
from psal.viz import (
    color_wheel,
    field_to_flow,
    flow_to_color,
    flow_to_image,
    make_colorwheel,
    save_flow_visualization,
)


def one_pixel(dy, dx, max_norm=None):
    flow = torch.tensor([float(dy), float(dx)]).view(2, 1, 1)
    return flow_to_color(flow, max_norm)[:, 0, 0]


def test_colorwheel_anchors():
    wheel = make_colorwheel()
    assert wheel.shape == (55, 3)
    # the primary and secondary colours open each segment
    for i, rgb in [(0, (255, 0, 0)), (15, (0, 255, 0)), (21, (0, 255, 0)), (25, (0, 255, 255))]:
        if i == 15:
            rgb = (255, 255, 0)
        assert wheel[i].tolist() == list(rgb), i
    assert wheel[36].tolist() == [0, 0, 255]
    assert wheel[49].tolist() == [255, 0, 255]
    assert wheel.min() >= 0 and wheel.max() <= 255


def test_zero_flow_is_white(device):
    flow = torch.zeros(2, 2, 5, 7, device=device, dtype=torch.int64)
    rgb = flow_to_color(flow)
    assert rgb.shape == (2, 3, 5, 7) and rgb.dtype == torch.float32 and rgb.device == device
    assert torch.equal(rgb, torch.ones_like(rgb))


def test_directions_follow_the_middlebury_wheel():
    wheel = torch.as_tensor(make_colorwheel() / 255.0, dtype=torch.float32)
    # u = dx, v = dy; hue at angle atan2(-v, -u): right -> entry 0 (red), left -> entry 27
    torch.testing.assert_close(one_pixel(0, 5), wheel[0])
    torch.testing.assert_close(one_pixel(0, -5), wheel[27])
    # down (dy > 0) is a quarter turn from right: (0.25 * 54) = 13.5, between 13 and 14
    torch.testing.assert_close(one_pixel(5, 0), 0.5 * (wheel[13] + wheel[14]))
    # opposite directions get clearly different colours
    for dy, dx in [(1, 0), (0, 1), (1, 1), (-2, 1)]:
        a, b = one_pixel(dy, dx), one_pixel(-dy, -dx)
        assert float((a - b).abs().max()) > 0.3, (dy, dx)


def test_saturation_grows_with_length():
    whiteness = [float(one_pixel(0, n, max_norm=4.0).min()) for n in range(5)]
    assert whiteness[0] == 1.0
    assert all(a > b for a, b in itertools.pairwise(whiteness))
    assert whiteness[-1] == pytest.approx(0.0, abs=1e-6)  # full red at max_norm
    # beyond max_norm: the full hue at 75 %
    torch.testing.assert_close(one_pixel(0, 8, max_norm=4.0), torch.tensor([0.75, 0.0, 0.0]))


def test_per_sample_normalisation_and_unknown_values():
    flow = torch.zeros(2, 2, 1, 3)
    flow[0, 1, 0, 0] = 1.0
    flow[1, 1, 0, 0] = 10.0
    flow[1, 0, 0, 2] = float("nan")
    rgb = flow_to_color(flow)
    torch.testing.assert_close(rgb[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(rgb[1, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(rgb[1, :, 0, 2], torch.zeros(3))  # NaN: black
    assert torch.equal(rgb[1, :, 0, 1], torch.ones(3))  # zero: white
    # a shared max_norm keeps lengths comparable across samples
    rgb = flow_to_color(flow, max_norm=10.0)
    assert float(rgb[0, 1:, 0, 0].min()) > 0.85


def test_flow_to_image_numpy_and_shapes():
    flow = np.zeros((2, 3, 4))
    flow[1] = 2.0
    img = flow_to_image(flow)
    assert img.dtype == np.uint8 and img.shape == (3, 4, 3)
    assert img[0, 0].tolist() == [255, 0, 0]
    assert flow_to_image(torch.zeros(5, 2, 3, 4)).shape == (5, 3, 4, 3)
    legend = color_wheel(9)
    assert legend.shape == (3, 9, 9)
    assert torch.equal(legend[:, 4, 4], torch.ones(3))  # centre: no displacement


@pytest.mark.parametrize(
    ("flow", "error", "match"),
    [
        (torch.zeros(3, 4, 4), ValueError, r"\(2, H, W\) or \(B, 2, H, W\)"),
        (torch.zeros(4, 4), ValueError, r"\(2, H, W\) or \(B, 2, H, W\)"),
        (torch.zeros(2, 4, 4, dtype=torch.bool), TypeError, "real numbers"),
        ([[0.0]], TypeError, "flow must be a torch.Tensor"),
    ],
)
def test_flow_to_color_bad_input(flow, error, match):
    with pytest.raises(error, match=match):
        flow_to_color(flow)


def test_flow_to_color_bad_max_norm():
    with pytest.raises(ValueError, match="max_norm must be a finite number > 0"):
        flow_to_color(torch.zeros(2, 3, 3), max_norm=0)


# ---------------------------------------------------------------------------- fields


def test_field_to_flow_known_shift():
    hq, wq, wk = 5, 6, 9
    dy, dx = 2, -1
    ys, xs = torch.meshgrid(torch.arange(hq), torch.arange(wq), indexing="ij")
    idx = ((ys + dy).clamp(0, 7) * wk + (xs + dx).clamp(0, wk - 1)).view(1, 1, hq, wq)
    idx = torch.cat((idx, torch.zeros_like(idx)), dim=1)  # second neighbour: key pixel 0
    idx[0, :, 0, 0] = -1  # unsearched
    flow = field_to_flow(idx, key_width=wk)
    assert flow.shape == (1, 2, hq, wq) and flow.dtype == torch.int64
    assert torch.equal(flow[0, :, 0, 0], torch.zeros(2, dtype=torch.int64))
    assert (flow[0, 0, 1:4, 1:] == dy).all() and (flow[0, 1, 1:4, 1:] == dx).all()
    second = field_to_flow(idx, key_width=wk, rank=1)
    assert torch.equal(second[0, 0, 1:], -ys[1:]) and torch.equal(second[0, 1, 1:], -xs[1:])


def test_field_to_flow_from_patchmatch():
    """End to end: a translated copy is found at its shift, and coloured uniformly."""
    key = torch.rand(1, 3, 14, 14, generator=torch.Generator().manual_seed(0))
    query = key[:, :, 3:11, 1:9]  # query(y, x) = key(y + 3, x + 1)
    res = psal.patchmatch(query, key, k=1, patch_size=3, backend="exact")
    # border query patches are completed by reflection, so only the interior is exact
    flow = field_to_flow(res.indices, key_width=14)[:, :, 1:-1, 1:-1]
    assert (flow[0, 0] == 3).all() and (flow[0, 1] == 1).all()
    rgb = flow_to_color(flow)
    assert torch.equal(rgb, rgb[:, :, :1, :1].expand_as(rgb))


def test_field_to_flow_bad_input():
    idx = torch.zeros(1, 2, 3, 3, dtype=torch.int64)
    with pytest.raises(TypeError, match="integer tensor"):
        field_to_flow(idx.float(), 3)
    with pytest.raises(ValueError, match="indices must have 4 dimensions"):
        field_to_flow(idx[0], 3)
    with pytest.raises(ValueError, match="key_width must be >= 1"):
        field_to_flow(idx, 0)
    with pytest.raises(ValueError, match="rank must be < k = 2"):
        field_to_flow(idx, 3, rank=2)
    with pytest.raises(ValueError, match=">= 0 or -1"):
        field_to_flow(idx - 2, 3)


# ---------------------------------------------------------------------------- saving


def test_save_flow_visualization(tmp_path):
    img = torch.rand(2, 3, 6, 5)
    flow = torch.randint(-3, 4, (2, 2, 6, 5))
    path = save_flow_visualization(img, flow, tmp_path / "viz.png")
    saved = np.asarray(Image.open(path))
    assert saved.shape == (12, 10, 3)
    expected_img = (img * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(saved[:6, :5], expected_img[0])
    assert np.array_equal(saved[6:, :5], expected_img[1])
    colours = flow_to_image(flow)
    assert np.array_equal(saved[:6, 5:], colours[0])
    assert np.array_equal(saved[6:, 5:], colours[1])
    # grey images and single samples
    path = save_flow_visualization(torch.rand(1, 6, 5), flow[0], tmp_path / "grey.png")
    assert np.asarray(Image.open(path)).shape == (6, 10, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grey.png", "viz.png"]


def test_save_flow_visualization_errors_leave_nothing(tmp_path):
    img = torch.rand(3, 6, 5)
    with pytest.raises(ValueError, match="same batch size and spatial size"):
        save_flow_visualization(img, torch.zeros(2, 6, 4), tmp_path / "a.png")
    with pytest.raises(ValueError, match="image extension"):
        save_flow_visualization(img, torch.zeros(2, 6, 5), tmp_path / "a.notanimage")
    with pytest.raises(ValueError, match="C = 1 or 3"):
        save_flow_visualization(torch.rand(2, 6, 5), torch.zeros(2, 6, 5), tmp_path / "a.png")
    with pytest.raises(TypeError, match="float tensor in"):
        save_flow_visualization(img.long(), torch.zeros(2, 6, 5), tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


def test_viz_imports_no_layers():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(viz))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not any("layers" in m or "patchmatch" in m for m in imported), imported


def test_docstring_examples():
    result = doctest.testmod(viz)
    assert result.attempted > 0 and result.failed == 0


def test_docs_section_runs(tmp_path, monkeypatch):
    """The README section drafted in docs/contextual_attention.md runs as written."""
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "contextual_attention.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    with psal.patchmatch.use_backend("exact"):  # the numba kernels would compile for ~15 s
        for block in blocks:
            exec(compile(block, str(doc), "exec"), {})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["contextual_offsets.png", "patchmatch_field.png"]
    assert Image.open(tmp_path / "contextual_offsets.png").size == (96, 48)


def test_rightward_flow_is_red_whatever_the_sign_of_its_zero_dy():
    # dy = -0.0 (e.g. a negated field) gave atan2(+0, -u) = +pi: wheel entry 54
    # (255, 0, 43) instead of entry 0 (red) for the same displacement
    wheel = torch.as_tensor(make_colorwheel() / 255.0, dtype=torch.float32)
    for dtype in (torch.float32, torch.float64):
        flow = torch.tensor([[[0.0, -0.0]], [[3.0, 3.0]]], dtype=dtype)  # (2, 1, 2)
        rgb = flow_to_color(flow, max_norm=3.0)
        torch.testing.assert_close(rgb[:, 0, 0], wheel[0])
        torch.testing.assert_close(rgb[:, 0, 1], wheel[0])

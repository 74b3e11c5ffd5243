"""Contextual attention (DeepFill v1) against a plain loop implementation of its definition."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import psal.layers.contextual as contextual_module
from psal.layers import ContextualAttention, contextual_attention

# ---------------------------------------------------------------------------------------
# Reference: explicit loops over pixels and patches, one sample at a time, in float64.
# ---------------------------------------------------------------------------------------


def _at(a: np.ndarray, y: int, x: int) -> np.ndarray:
    """a[:, y, x] or zeros outside the image (zero padding)."""
    if 0 <= y < a.shape[1] and 0 <= x < a.shape[2]:
        return a[:, y, x]
    return np.zeros(a.shape[0])


def _loop_one(fg, bg, hole, p, s, r, fuse_k, scale, fuse, paste_window_rule=True):
    """One sample. fg, bg: (C, H, W) float64; hole: (H, W) bool or None."""
    _, h, w = fg.shape
    hd, wd = math.ceil(h / r), math.ceil(w / r)
    fd = np.array([[fg[:, r * y, r * x] for x in range(wd)] for y in range(hd)])  # (Hd, Wd, C)
    fd = fd.transpose(2, 0, 1)
    bd = np.array([[bg[:, r * y, r * x] for x in range(wd)] for y in range(hd)]).transpose(2, 0, 1)
    hs, ws = math.ceil(hd / s), math.ceil(wd / s)
    nf, nb = hd * wd, hs * ws
    half = p // 2
    centres = [(s * (j // ws), s * (j % ws)) for j in range(nb)]

    # cosine-like scores: <f patch, b patch> / max(||b patch||, 1e-4)
    scores = np.zeros((nf, nb))
    for j, (cy, cx) in enumerate(centres):
        norm2 = 0.0
        for u in range(-half, half + 1):
            for v in range(-half, half + 1):
                norm2 += float(np.sum(_at(bd, cy + u, cx + v) ** 2))
        norm = max(math.sqrt(norm2), 1e-4)
        for q in range(nf):
            y, x = divmod(q, wd)
            acc = 0.0
            for u in range(-half, half + 1):
                for v in range(-half, half + 1):
                    acc += float(np.dot(_at(fd, y + u, x + v), _at(bd, cy + u, cx + v)))
            scores[q, j] = acc / norm

    if fuse:
        c0 = (fuse_k - 1) // 2
        # left-right: flat row-major indices, wrapping across rows like the reference
        s1 = np.zeros_like(scores)
        for q in range(nf):
            for j in range(nb):
                for a in range(fuse_k):
                    qq, jj = q + a - c0, j + a - c0
                    if 0 <= qq < nf and 0 <= jj < nb:
                        s1[q, j] += scores[qq, jj]

        # top-down: flat column-major indices (x * H + y), wrapping across columns
        def to_col(i, width, height):
            y, x = divmod(i, width)
            return x * height + y

        def from_col(j, width, height):
            x, y = divmod(j, height)
            return y * width + x

        s2 = np.zeros_like(scores)
        for q in range(nf):
            qc = to_col(q, wd, hd)
            for j in range(nb):
                jc = to_col(j, ws, hs)
                for a in range(fuse_k):
                    qq, jj = qc + a - c0, jc + a - c0
                    if 0 <= qq < nf and 0 <= jj < nb:
                        s2[q, j] += s1[from_col(qq, wd, hd), from_col(jj, ws, hs)]
        scores = s2

    valid = np.ones(nb, dtype=bool)
    if hole is not None:
        for j, (cy, cx) in enumerate(centres):
            for u in range(-half, half + 1):
                for v in range(-half, half + 1):
                    yy, xx = cy + u, cx + v
                    if 0 <= yy < hd and 0 <= xx < wd and hole[r * yy, r * xx]:
                        valid[j] = False
            if paste_window_rule:
                for ty in range(2 * r):
                    for tx in range(2 * r):
                        yy, xx = r * cy - r // 2 + ty, r * cx - r // 2 + tx
                        if 0 <= yy < h and 0 <= xx < w and hole[yy, xx]:
                            valid[j] = False

    attn = np.zeros_like(scores)
    for q in range(nf):
        z = scale * scores[q] * valid
        e = np.exp(z - z.max())
        attn[q] = e / e.sum() * valid

    out = np.zeros_like(fg)
    for q in range(nf):
        yf, xf = divmod(q, wd)
        for j, (cy, cx) in enumerate(centres):
            if attn[q, j] == 0:
                continue
            for ty in range(2 * r):
                for tx in range(2 * r):
                    oy, ox = r * yf - r // 2 + ty, r * xf - r // 2 + tx
                    if 0 <= oy < h and 0 <= ox < w:
                        src = _at(bg, r * cy - r // 2 + ty, r * cx - r // 2 + tx)
                        out[:, oy, ox] += attn[q, j] * src / 4.0

    offsets = np.zeros((2, h, w), dtype=np.int64)
    for q in range(nf):
        if not valid.any():
            break
        yf, xf = divmod(q, wd)
        best = max((j for j in range(nb) if valid[j]), key=lambda j: scores[q, j])
        cy, cx = centres[best]
        offsets[0, r * yf : r * yf + r, r * xf : r * xf + r] = r * (cy - yf)
        offsets[1, r * yf : r * yf + r, r * xf : r * xf + r] = r * (cx - xf)
    return out, offsets


def loop_contextual_attention(fg, bg, mask, p=3, s=1, r=2, fuse_k=3, scale=10.0, fuse=True, **kw):
    fg = fg.detach().double().cpu().numpy()
    bg = bg.detach().double().cpu().numpy()
    holes = None if mask is None else mask[:, 0].bool().cpu().numpy()
    outs, offs = [], []
    for n in range(fg.shape[0]):
        o, d = _loop_one(
            fg[n], bg[n], None if holes is None else holes[n], p, s, r, fuse_k, scale, fuse, **kw
        )
        outs.append(o)
        offs.append(d)
    return torch.from_numpy(np.stack(outs)), torch.from_numpy(np.stack(offs))


def random_holes(batch, h, w, gen, min_side=1):
    """A different random box hole per sample, keeping at least half the image known."""
    mask = torch.zeros(batch, 1, h, w, dtype=torch.bool)
    for n in range(batch):
        hh = int(torch.randint(min_side, max(min_side + 1, h // 2), (1,), generator=gen))
        ww = int(torch.randint(min_side, max(min_side + 1, w // 2), (1,), generator=gen))
        y0 = int(torch.randint(0, h - hh + 1, (1,), generator=gen))
        x0 = int(torch.randint(0, w - ww + 1, (1,), generator=gen))
        mask[n, 0, y0 : y0 + hh, x0 : x0 + ww] = True
    return mask


def block_corner_targets(offsets, rate):
    _, _, h, w = offsets.shape
    ys = (torch.arange(h, device=offsets.device) // rate * rate).view(1, h, 1)
    xs = (torch.arange(w, device=offsets.device) // rate * rate).view(1, 1, w)
    return ys + offsets[:, 0], xs + offsets[:, 1]


# ---------------------------------------------------------------------------------------

CASES = [
    # (H, W, patch_size, stride, rate, fuse_k, fuse, with_mask)
    (6, 6, 3, 1, 2, 3, True, False),
    (7, 5, 3, 1, 2, 3, True, True),
    (7, 5, 3, 1, 2, 3, False, True),
    (5, 6, 3, 1, 1, 3, True, True),
    (5, 5, 3, 1, 1, 3, False, False),
    (9, 7, 3, 1, 3, 3, True, True),
    (9, 8, 3, 2, 2, 3, True, True),
    (10, 9, 3, 3, 2, 3, True, True),  # the paste window is cropped at the bottom
    (7, 8, 1, 1, 2, 2, True, True),
    (6, 7, 5, 1, 2, 5, True, False),
]


@pytest.mark.parametrize(("h", "w", "p", "s", "r", "k", "fuse", "with_mask"), CASES)
def test_matches_loop_reference(h, w, p, s, r, k, fuse, with_mask, dtype, device):
    gen = torch.Generator().manual_seed(h * 100 + w * 10 + r)
    fg = torch.rand(2, 2, h, w, generator=gen, dtype=torch.float64)
    bg = torch.rand(2, 2, h, w, generator=gen, dtype=torch.float64)
    mask = random_holes(2, h, w, gen) if with_mask else None
    exp_out, exp_off = loop_contextual_attention(fg, bg, mask, p, s, r, k, 10.0, fuse)
    out, off = contextual_attention(
        fg.to(device, dtype),
        bg.to(device, dtype),
        bg.to(device, dtype),
        hole=None if mask is None else mask.to(device),
        patch_size=p,
        stride=s,
        rate=r,
        fuse_k=k,
        softmax_scale=10.0,
        fuse=fuse,
        return_field=True,
    )
    assert out.shape == fg.shape and out.dtype == dtype and out.device == device
    assert off.shape == (2, 2, h, w) and off.dtype == torch.int64
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(out.cpu().double(), exp_out, rtol=tol, atol=tol)
    if dtype == torch.float64:  # float32 rounding may swap near-ties of the argmax
        torch.testing.assert_close(off.cpu(), exp_off)


def test_mask_rule_agrees_with_reference_for_boxes():
    """rate 2, p 3, hole runs >= 2 pixels long: the paste-window rule changes nothing."""
    gen = torch.Generator().manual_seed(3)
    fg = torch.rand(2, 2, 10, 9, generator=gen, dtype=torch.float64)
    bg = torch.rand(2, 2, 10, 9, generator=gen, dtype=torch.float64)
    # unions of boxes with sides >= 2: every row and column run of the hole is >= 2 long
    mask = random_holes(2, 10, 9, gen, min_side=2) | random_holes(2, 10, 9, gen, min_side=2)
    with_rule, _ = loop_contextual_attention(fg, bg, mask, paste_window_rule=True)
    reference_rule, _ = loop_contextual_attention(fg, bg, mask, paste_window_rule=False)
    torch.testing.assert_close(with_rule, reference_rule, rtol=0, atol=0)
    out, _ = contextual_attention(fg, bg, bg, hole=mask, return_field=True)
    torch.testing.assert_close(out, with_rule, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("rate", "hole"),
    [
        (2, (slice(5, 6), slice(7, 8))),  # one pixel at odd coordinates: skipped by ::2
        (2, (slice(0, 12), slice(3, 4))),  # a one-pixel-wide vertical line
        (3, (slice(4, 6), slice(4, 6))),
        (1, (slice(3, 7), slice(2, 9))),
    ],
)
def test_no_content_from_the_hole(rate, hole, device):
    gen = torch.Generator().manual_seed(1)
    bg = torch.rand(1, 3, 12, 13, generator=gen)
    mask = torch.zeros(1, 1, 12, 13, dtype=torch.bool)
    mask[(0, 0, *hole)] = True
    bg = bg.masked_fill(mask, 1e4)  # huge, distinctive values inside the hole
    fg = bg.clone()
    out, off = contextual_attention(
        fg.to(device),
        bg.to(device),
        bg.to(device),
        hole=mask.to(device),
        rate=rate,
        return_field=True,
    )
    # weights sum to <= 1 and each pixel gets <= 4 pasted patches / 4: no 1e4 can reach it
    assert float(out.abs().max()) <= float(bg[~mask.expand_as(bg)].abs().max()) + 1e-5
    ty, tx = block_corner_targets(off, rate)
    assert not bool(mask.to(device)[0, 0, ty[0], tx[0]].any())


def test_reference_rule_alone_leaks_for_thin_holes():
    """Documents why psal adds the paste-window rule: without it the 1e4 leaks."""
    gen = torch.Generator().manual_seed(1)
    bg = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., 3, 3] = True
    bg = bg.masked_fill(mask, 1e4)
    leaky, _ = loop_contextual_attention(bg, bg, mask, paste_window_rule=False)
    assert float(leaky.abs().max()) > 100
    out, _ = contextual_attention(bg, bg, bg, hole=mask, return_field=True)
    assert float(out.abs().max()) <= 1.0


def test_per_sample_masks_and_backgrounds():
    gen = torch.Generator().manual_seed(7)
    fg = torch.rand(2, 4, 11, 10, generator=gen)
    bg = torch.rand(2, 4, 11, 10, generator=gen)
    mask = torch.zeros(2, 1, 11, 10, dtype=torch.bool)
    mask[0, :, 2:6, 1:5] = True
    mask[1, :, 5:10, 4:9] = True
    out, off = contextual_attention(fg, bg, bg, hole=mask, return_field=True)
    for n in range(2):
        alone, alone_off = contextual_attention(
            fg[n : n + 1], bg[n : n + 1], bg[n : n + 1], hole=mask[n : n + 1], return_field=True
        )
        torch.testing.assert_close(out[n : n + 1], alone, rtol=1e-5, atol=1e-6)
        assert torch.equal(off[n : n + 1], alone_off)
    # and the two masks matter: using the first mask for both changes sample 1
    first_only, _ = contextual_attention(
        fg, bg, bg, hole=mask[:1].expand(2, -1, -1, -1), return_field=True
    )
    assert not torch.allclose(first_only[1], out[1])


def test_mask_forms_agree():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(3, 2, 8, 8, generator=gen)
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., 2:5, 3:6] = True
    out_b, off_b = contextual_attention(
        x, x, x, hole=mask, return_field=True
    )  # (1, 1, H, W) is used for every sample
    out_e, off_e = contextual_attention(x, x, x, hole=mask.expand(3, 1, 8, 8), return_field=True)
    out_f, off_f = contextual_attention(
        x, x, x, hole=mask.expand(3, 1, 8, 8).float(), return_field=True
    )
    torch.testing.assert_close(out_b, out_e, rtol=0, atol=0)
    torch.testing.assert_close(out_b, out_f, rtol=0, atol=0)
    assert torch.equal(off_b, off_e) and torch.equal(off_b, off_f)
    # an empty mask is the same as no mask
    out_n, off_n = contextual_attention(x, x, x, return_field=True)
    out_z, off_z = contextual_attention(x, x, x, hole=torch.zeros(3, 1, 8, 8), return_field=True)
    torch.testing.assert_close(out_n, out_z, rtol=0, atol=0)
    assert torch.equal(off_n, off_z)


def test_self_attention_without_hole_copies_itself():
    """With a sharp softmax and no fusion, each pixel attends its own patch (offset 0)."""
    x = torch.rand(1, 8, 12, 12, generator=torch.Generator().manual_seed(4))
    x = x / x.norm(dim=1, keepdim=True)  # unit features: the own patch wins cosine similarity
    _, off = contextual_attention(x, x, x, rate=1, softmax_scale=1e3, fuse=False, return_field=True)
    assert int(off.abs().max()) == 0


def test_no_valid_patch_gives_zero():
    x = torch.rand(2, 2, 6, 6)
    mask = torch.zeros(2, 1, 6, 6, dtype=torch.bool)
    mask[0] = True  # sample 0: everything is hole
    out, off = contextual_attention(x, x, x, hole=mask, return_field=True)
    assert float(out[0].abs().max()) == 0.0 and int(off[0].abs().max()) == 0
    assert float(out[1].abs().max()) > 0


def test_module_equals_function():
    gen = torch.Generator().manual_seed(5)
    fg = torch.rand(2, 3, 9, 10, generator=gen)
    bg = torch.rand(2, 3, 9, 10, generator=gen)
    mask = random_holes(2, 9, 10, gen)
    kw = dict(patch_size=3, stride=1, rate=2, fuse_k=3, softmax_scale=7.0, fuse=True)
    layer = ContextualAttention(**kw)
    assert "softmax_scale=7.0" in repr(layer)
    out_m, off_m = layer(fg, bg, bg, hole=mask, return_field=True)
    out_f, off_f = contextual_attention(fg, bg, bg, hole=mask, **kw, return_field=True)
    torch.testing.assert_close(out_m, out_f, rtol=0, atol=0)
    assert torch.equal(off_m, off_f)
    assert list(layer.parameters()) == []


def test_gradcheck():
    gen = torch.Generator().manual_seed(6)
    fg = torch.rand(2, 2, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    bg = torch.rand(2, 2, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(2, 1, 4, 5, dtype=torch.bool)
    mask[0, :, 0:2, 3:5] = True
    mask[1, :, 3:4, 0:2] = True

    def fn(a, b):
        return contextual_attention(
            a, b, b, hole=mask, rate=2, softmax_scale=3.0, return_field=True
        )[0]

    assert torch.autograd.gradcheck(fn, (fg, bg))


def test_gradient_finite_on_zero_background():
    """All-zero background patches (ReLU features) must not give NaN gradients."""
    bg = torch.zeros(1, 2, 6, 6, requires_grad=True)
    fg = torch.rand(1, 2, 6, 6, requires_grad=True)
    out, _ = contextual_attention(fg, bg, bg, return_field=True)
    out.sum().backward()
    assert torch.isfinite(bg.grad).all() and torch.isfinite(fg.grad).all()


@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16])
def test_low_precision(low, device):
    gen = torch.Generator().manual_seed(9)
    x = torch.rand(2, 4, 9, 10, generator=gen) * 30  # float16 sums of squares would overflow
    x[:, :, :4] = 0  # all-zero background patches: eps^2 underflows in float16
    mask = random_holes(2, 9, 10, gen)
    ref, _ = contextual_attention(x, x, x, hole=mask, return_field=True)
    out, _ = contextual_attention(
        x.to(device, low),
        x.to(device, low),
        x.to(device, low),
        hole=mask.to(device),
        return_field=True,
    )
    assert out.dtype == low and torch.isfinite(out).all()
    torch.testing.assert_close(out.float().cpu(), ref, rtol=0.05, atol=0.5)


def test_non_contiguous_inputs():
    x = torch.rand(2, 7, 9, 3).permute(0, 3, 1, 2)  # (2, 3, 7, 9), not contiguous
    out, off = contextual_attention(x, x, x, return_field=True)
    out_c, off_c = contextual_attention(
        x.contiguous(), x.contiguous(), x.contiguous(), return_field=True
    )
    torch.testing.assert_close(out, out_c)
    assert torch.equal(off, off_c)


def test_cuda_matches_cpu(device):
    if device.type != "cuda":
        pytest.skip("compares a CUDA device with the CPU")
    gen = torch.Generator().manual_seed(8)
    x = torch.rand(2, 4, 15, 14, generator=gen, dtype=torch.float64)
    mask = random_holes(2, 15, 14, gen)
    out, off = contextual_attention(x, x, x, hole=mask, return_field=True)
    out_d, off_d = contextual_attention(
        x.to(device), x.to(device), x.to(device), hole=mask.to(device), return_field=True
    )
    torch.testing.assert_close(out_d.cpu(), out)
    assert torch.equal(off_d.cpu(), off)


# ------------------------------------------------------------------------- bad input


def test_bad_inputs():
    x = torch.rand(2, 3, 8, 8)
    i64 = torch.zeros(2, 3, 8, 8, dtype=torch.int64)
    meta = torch.empty(2, 3, 8, 8, device="meta")
    with pytest.raises(TypeError, match=r"query must be a torch\.Tensor"):
        contextual_attention(np.zeros((2, 3, 8, 8)), x, x)
    with pytest.raises(ValueError, match="key must have 4 dimensions"):
        contextual_attention(x, x[0], x[0])
    with pytest.raises(TypeError, match="value must be a torch"):
        contextual_attention(x, x, np.zeros((2, 3, 8, 8)))
    with pytest.raises(TypeError, match="floating-point"):
        contextual_attention(x, i64, i64)
    with pytest.raises(TypeError, match="share a dtype"):
        contextual_attention(x, x.double(), x.double())
    with pytest.raises(TypeError, match="share a dtype"):
        contextual_attention(x, x, x.double())
    with pytest.raises(ValueError, match=r"same batch size B and channels C.*\(2, 4, 8, 8\)"):
        contextual_attention(x, torch.rand(2, 4, 8, 8), torch.rand(2, 4, 8, 8))
    with pytest.raises(ValueError, match="same batch size B"):
        contextual_attention(x, torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="value must have the key's batch size and spatial"):
        contextual_attention(x, x, torch.rand(2, 3, 8, 9))
    with pytest.raises(ValueError, match="key is on meta"):
        contextual_attention(x, meta, meta)
    with pytest.raises(ValueError, match="B, C, H, W >= 1"):
        e = torch.rand(2, 3, 0, 8)
        contextual_attention(e, e, e)
    with pytest.raises(ValueError, match="hole is for self-attention"):
        contextual_attention(x, x[..., :7], x[..., :7], hole=torch.zeros(2, 1, 8, 7))


def test_bad_masks():
    x = torch.rand(2, 3, 8, 8)
    cases = [
        (ValueError, r"hole must have shape \(2, 1, 8, 8\)", torch.zeros(2, 1, 8, 7, dtype=torch.bool)),
        (ValueError, r"hole must have shape", torch.zeros(3, 1, 8, 8, dtype=torch.bool)),
        (ValueError, "hole must have 4 dimensions", torch.zeros(8, 8, dtype=torch.bool)),
        (ValueError, "only 0 and 1", torch.full((2, 1, 8, 8), 0.5)),
        (ValueError, "NaN or Inf", torch.full((2, 1, 8, 8), float("nan"))),
        (TypeError, r"hole must be a torch\.Tensor", np.zeros((2, 1, 8, 8), dtype=bool)),
        (ValueError, "hole is on meta", torch.zeros(2, 1, 8, 8, device="meta")),
    ]  # fmt: skip
    for error, match, hole in cases:
        with pytest.raises(error, match=match):
            contextual_attention(x, x, x, hole=hole)


def test_value_may_differ_from_key():
    """The paste uses value's patches: a value of other channels is pasted like the key."""
    gen = torch.Generator().manual_seed(11)
    x = torch.rand(2, 4, 10, 9, generator=gen, dtype=torch.float64)
    v = torch.rand(2, 2, 10, 9, generator=gen, dtype=torch.float64)
    mask = random_holes(2, 10, 9, gen)
    both = torch.cat([x, v], 1)
    out_all, off_all = contextual_attention(x, x, both, hole=mask, return_field=True)
    out_v, off = contextual_attention(x, x, v, hole=mask, return_field=True)
    assert out_v.shape == (2, 2, 10, 9) and torch.equal(off, off_all)
    torch.testing.assert_close(out_v, out_all[:, 4:], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(contextual_attention(x, x, x, hole=mask), out_all[:, :4])


def test_cross_attention_with_a_key_of_another_size():
    """A key of another size: each query pixel picks a key patch; a sharp softmax copies it."""
    gen = torch.Generator().manual_seed(12)
    key = torch.rand(1, 6, 9, 14, generator=gen, dtype=torch.float64)
    key = key / key.norm(dim=1, keepdim=True)
    query = key[..., 2:8, 5:12].clone()  # a crop: every query pixel's own patch is in the key
    out, off = contextual_attention(query, key, key, rate=1, softmax_scale=1e4, fuse=False,
                                    return_field=True)  # fmt: skip
    assert out.shape == query.shape and off.shape == (1, 2, 6, 7)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # zero padding at the edges
    assert bool((off[:, 0][inner[2:]] == 2).all() and (off[:, 1][inner[2:]] == 5).all())
    # with rate 1 a pixel averages the 2 x 2 pastes of its own and its top-left neighbours
    pasted = (slice(None), slice(None), slice(2, -1), slice(2, -1))
    torch.testing.assert_close(out[pasted], query[pasted], rtol=1e-6, atol=1e-6)


def test_old_spellings_warn_and_agree():
    gen = torch.Generator().manual_seed(13)
    x = torch.rand(2, 3, 8, 9, generator=gen)
    mask = random_holes(2, 8, 9, gen)
    out, off = contextual_attention(x, x, x, hole=mask, rate=1, return_field=True)
    calls = [
        lambda: contextual_attention(x, x, mask, rate=1),  # old positional mask
        lambda: contextual_attention(x, x, mask.float(), 3, 1, 1),  # float mask, options
        lambda: contextual_attention(foreground=x, background=x, mask=mask, rate=1),
        lambda: contextual_attention(x, x, mask=mask, rate=1),
        lambda: ContextualAttention(3, 1, 1)(x, x, mask),
    ]
    for call in calls:
        with pytest.warns(DeprecationWarning, match="deprecated"):
            old_out, old_off = call()
        assert torch.equal(old_out, out) and torch.equal(old_off, off)
    with pytest.warns(DeprecationWarning):
        no_mask = contextual_attention(x, x)  # old two-tensor call: (out, offsets)
    assert torch.equal(no_mask[0], contextual_attention(x, x, x))
    # a one-channel value is taken by keyword without any warning
    v1 = torch.rand(2, 1, 8, 9)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert contextual_attention(x, x, value=v1).shape == (2, 1, 8, 9)
        # ... or by position when the call names hole or return_field (new keywords)
        ref = contextual_attention(x, x, value=v1, hole=mask)
        assert torch.equal(contextual_attention(x, x, v1, hole=mask), ref)
        out1, off1 = contextual_attention(x, x, v1, return_field=True)
        assert torch.equal(out1, contextual_attention(x, x, value=v1)) and off1.shape[1] == 2
    # without them a one-channel third tensor is the old mask (the rule reads shapes and
    # dtypes, so the result's kind never depends on the values) ...
    for third in ((v1 > 0.5).float(), torch.zeros_like(v1)):
        with pytest.warns(DeprecationWarning, match="deprecated"):
            out, _ = contextual_attention(x, x, third)
        assert out.shape == x.shape
    # ... and one that cannot be a mask says how to pass a one-channel value
    with pytest.raises(TypeError, match=r"read as the old mask.*value=\.\.\."):
        contextual_attention(x, x, v1)
    # two tensors with a keyword of the new spelling: the value is missing (not the old
    # spelling's tuple)
    for kw in ({"hole": mask}, {"return_field": True}):
        with pytest.raises(TypeError, match=r"missing its value.*\(query, key, value, hole"):
            contextual_attention(x, x, **kw)
        with pytest.raises(TypeError, match=r"missing its value"):
            ContextualAttention(patch_size=3, stride=1, rate=1)(x, x, **kw)
    # ... but an old keyword makes it the old call, which may name the new ones too
    old_calls = [
        lambda: contextual_attention(x, x, mask=mask, rate=1, return_field=True),
        lambda: contextual_attention(foreground=x, background=x, hole=mask, rate=1),
        lambda: ContextualAttention(rate=1)(x, x, mask=mask, return_field=True),
    ]
    ref = contextual_attention(x, x, x, hole=mask, rate=1, return_field=True)
    for call in old_calls:
        with pytest.warns(DeprecationWarning, match="deprecated"):
            got = call()
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(patch_size=2), ValueError, "patch_size must be a positive odd integer"),
        (dict(patch_size=3.0), TypeError, "patch_size must be an integer"),
        (dict(stride=0), ValueError, "stride must be >= 1"),
        (dict(rate=0), ValueError, "rate must be >= 1"),
        (dict(rate=True), TypeError, "rate must be an integer"),
        (dict(fuse_k=0), ValueError, "fuse_k must be >= 1"),
        (dict(softmax_scale=0.0), ValueError, "softmax_scale must be a finite number > 0"),
        (dict(softmax_scale=float("inf")), ValueError, "softmax_scale"),
        (dict(softmax_scale="10"), TypeError, "softmax_scale must be a number"),
        (dict(fuse=1), TypeError, "fuse must be a bool"),
    ],
)
def test_bad_params(kwargs, error, match):
    x = torch.rand(1, 2, 6, 6)
    with pytest.raises(error, match=match):
        contextual_attention(x, x, x, **kwargs)
    with pytest.raises(error, match=match):
        ContextualAttention(**kwargs)


def test_docstring_examples():
    result = doctest.testmod(contextual_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- hostile inputs (issue 15, item 8) ---------------------------------------------------


def test_float16_large_features_do_not_overflow_to_nan():
    gen = torch.Generator().manual_seed(15)
    x = torch.randn(1, 64, 16, 16, generator=gen) * 50  # scores ~ 64*9*2500: inf in float16
    ref, ref_off = contextual_attention(x, x, x, return_field=True)
    h = x.half()
    out, off = contextual_attention(h, h, h, return_field=True)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, rtol=0.02, atol=0.5)
    assert (off == ref_off).float().mean() > 0.95


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs_are_refused(bad):
    x = torch.rand(1, 2, 8, 8)
    y = x.clone()
    y[0, 1, 3, 4] = bad
    with pytest.raises(ValueError, match="key contains NaN or Inf values"):
        contextual_attention(x, y, x)
    with pytest.raises(ValueError, match="value contains NaN or Inf values"):
        contextual_attention(x, x, y)
    with pytest.raises(ValueError, match="query contains NaN or Inf values"):
        ContextualAttention()(y, x, x)


def test_score_memory_is_estimated_and_refused(monkeypatch):
    x = torch.rand(1, 4, 200, 200)
    with pytest.raises(ValueError, match=r"about 23\.8 GiB .* above the limit of 8\.0 GiB"):
        contextual_attention(x, x, x, rate=1)  # used to allocate 24 GB
    small = torch.rand(1, 2, 16, 16)
    monkeypatch.setenv("PSAL_ATTENTION_MAX_GB", "0.000001")
    with pytest.raises(ValueError, match="PSAL_ATTENTION_MAX_GB"):
        contextual_attention(small, small, small, rate=1)
    monkeypatch.setenv("PSAL_ATTENTION_MAX_GB", "0.01")
    out = contextual_attention(small, small, small, rate=1)
    assert out.shape == small.shape
    monkeypatch.setenv("PSAL_ATTENTION_MAX_GB", "-1")
    with pytest.raises(ValueError, match="must be a number of GiB > 0"):
        contextual_attention(small, small, small)


# ---------------------------------------------------------------------------------------
# A second reference: the reference code's steps as tensor operations (TensorFlow's
# 'SAME' padding, the score matrix as an image convolved with an identity kernel, the
# reshape/transpose for the vertical pass, the mean of the mask patch == 0 rule, a
# transposed convolution). Valid where psal and the reference agree: stride 1, sizes
# divisible by rate, box holes whose runs are >= rate pixels.
# ---------------------------------------------------------------------------------------


def _same_pad(n, k, s):
    """TensorFlow 'SAME' padding (before, after) of a length-n axis, kernel k, stride s."""
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _eye_conv(img, k):
    """conv2d(img, eye(k), padding='SAME') of one 2-D score image."""
    before, after = _same_pad(1, k, 1)  # stride 1: before = (k - 1) // 2
    kernel = torch.eye(k, dtype=img.dtype).view(1, 1, k, k)
    return F.conv2d(F.pad(img[None, None], (before, after, before, after)), kernel)[0, 0]


def tf_steps_contextual_attention(fg, bg, hole, rate, p=3, fuse_k=3, scale=10.0):
    b_, c, h, w = fg.shape
    outs = []
    for n in range(b_):
        f = fg[n : n + 1, :, ::rate, ::rate]  # nearest downsampling of divisible sizes
        b = bg[n : n + 1, :, ::rate, ::rate]
        hd, wd = f.shape[-2:]
        k2 = 2 * rate
        top, bottom = _same_pad(h, k2, rate)
        left, right = _same_pad(w, k2, rate)
        raw = F.unfold(F.pad(bg[n : n + 1], (left, right, top, bottom)), k2, stride=rate)
        n_bg = raw.shape[-1]
        raw = raw[0].t().reshape(n_bg, c, k2, k2)
        wts = F.unfold(b, p, padding=p // 2)[0].t().reshape(n_bg, c, p, p)
        wts = wts / wts.flatten(1).norm(dim=1).clamp_min(1e-4).view(n_bg, 1, 1, 1)
        y = F.conv2d(f, wts, padding=p // 2)[0].permute(1, 2, 0)  # (hd, wd, L)
        y = _eye_conv(y.reshape(hd * wd, n_bg), fuse_k)
        y = y.reshape(hd, wd, hd, wd).permute(1, 0, 3, 2).reshape(hd * wd, n_bg)
        y = _eye_conv(y, fuse_k).reshape(wd, hd, wd, hd).permute(1, 0, 3, 2)
        y = y.reshape(hd, wd, n_bg)
        mm = torch.ones(n_bg, dtype=y.dtype)
        if hole is not None:
            m = hole[n : n + 1, :, ::rate, ::rate].to(y.dtype)
            mm = (F.unfold(m, p, padding=p // 2)[0].mean(0) == 0).to(y.dtype)
        y = torch.softmax(y * mm * scale, -1) * mm
        out = F.conv_transpose2d(y.permute(2, 0, 1)[None], raw, stride=rate)
        outs.append(out[:, :, top : top + h, left : left + w] / 4.0)
    return torch.cat(outs)


@pytest.mark.parametrize(
    ("h", "w", "rate", "boxes"),
    [
        (8, 10, 2, [(2, 6, 4, 8), (4, 8, 0, 4)]),  # the second on the bottom-left border
        (6, 8, 2, [(0, 2, 0, 4), (2, 6, 6, 8)]),  # top border; right border
        (7, 9, 1, [(0, 3, 6, 9), (3, 5, 2, 5)]),  # rate 1: odd sizes are divisible
        (5, 6, 1, [(4, 5, 0, 6), (0, 5, 0, 1)]),  # a whole row; a whole column
        (8, 8, 2, None),
    ],
)
def test_matches_the_reference_steps(h, w, rate, boxes):
    gen = torch.Generator().manual_seed(h * w + rate)
    fg = torch.rand(2, 3, h, w, generator=gen, dtype=torch.float64)
    bg = torch.rand(2, 3, h, w, generator=gen, dtype=torch.float64)
    hole = None
    if boxes is not None:
        hole = torch.zeros(2, 1, h, w, dtype=torch.bool)
        for n, (y0, y1, x0, x1) in enumerate(boxes):
            hole[n, 0, y0:y1, x0:x1] = True
    expected = tf_steps_contextual_attention(fg, bg, hole, rate)
    out = contextual_attention(fg, bg, bg, hole=hole, rate=rate)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("h", "w", "rate"), [(11, 9, 2), (7, 7, 1), (13, 11, 2), (16, 14, 3)])
def test_a_hole_that_leaves_one_patch(h, w, rate):
    # everything is hole but what one background patch needs (its 3x3 window on the
    # downsampled grid and its 2r x 2r paste window): in the corner for sample 0, at
    # (2, 2) of the downsampled grid for sample 1; sizes not multiples of rate
    gen = torch.Generator().manual_seed(h + w + rate)
    fg = torch.rand(2, 2, h, w, generator=gen, dtype=torch.float64)
    bg = torch.rand(2, 2, h, w, generator=gen, dtype=torch.float64)
    hole = torch.ones(2, 1, h, w, dtype=torch.bool)
    hole[0, 0, : 2 * rate, : 2 * rate] = False
    hole[1, 0, 1 : 4 * rate, 1 : 4 * rate] = False
    for fuse in (True, False):
        expected, expected_off = loop_contextual_attention(fg, bg, hole, r=rate, fuse=fuse)
        out, off = contextual_attention(fg, bg, bg, hole=hole, rate=rate, fuse=fuse,
                                        return_field=True)  # fmt: skip
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
        assert torch.equal(off, expected_off)
        for n, centre in enumerate((0, 2 * rate)):  # every pixel attends that patch
            ty, tx = block_corner_targets(off[n : n + 1], rate)
            assert ty.unique().tolist() == [centre] and tx.unique().tolist() == [centre]


def test_batch_elements_are_independent():
    gen = torch.Generator().manual_seed(11)
    x = torch.rand(2, 3, 10, 11, generator=gen, dtype=torch.float64)
    hole = torch.zeros(2, 1, 10, 11, dtype=torch.bool)
    hole[0, 0, 2:5, 3:6] = True
    hole[1, 0, 6:9, 6:10] = True
    x2 = x.clone()
    x2[1] = torch.rand(3, 10, 11, generator=gen, dtype=torch.float64) * 5
    hole2 = hole.clone()
    hole2[1] = False
    hole2[1, 0, 0:3, 0:9] = True
    results = []
    for xx, hh in ((x, hole), (x2, hole2)):
        leaf = xx.clone().requires_grad_()
        out, off = contextual_attention(leaf, leaf, leaf, hole=hh, return_field=True)
        (g,) = torch.autograd.grad((out * out).sum(), leaf)
        results.append((out.detach(), off, g))
    for a, b in zip(*results):
        assert torch.equal(a[0], b[0])

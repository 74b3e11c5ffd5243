"""One vocabulary: query/key/value, keyword-only options, ``k``, ``hole``, ``return_field``.

The old spellings (positional options, ``topk=``, ``mask=``) keep working for one
release with a DeprecationWarning and give the same results.
"""

import inspect
import warnings

import pytest
import torch

import psal
from psal.layers import (
    ContextualAttention,
    PatchAttention,
    PSAttention,
    attend,
    contextual_attention,
    patch_attention,
    ps_attention,
)


def _x():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 9, 10, generator=g)
    hole = torch.zeros(1, 1, 9, 10, dtype=torch.bool)
    hole[..., 3:6, 4:8] = True
    return x, hole


@pytest.mark.parametrize(
    "fn", [ps_attention, patch_attention, contextual_attention, attend],
    ids=lambda f: f.__name__,
)  # fmt: skip
def test_functions_take_query_key_value_then_keywords(fn):
    params = list(inspect.signature(fn).parameters.values())
    assert [p.name for p in params[:3]] == ["query", "key", "value"]
    n_pos = 4 if fn is attend else 3  # attend also takes the field's indices
    assert all(p.kind is p.KEYWORD_ONLY for p in params[n_pos:])
    names = {p.name for p in params}
    assert "topk" not in names and "mask" not in names


@pytest.mark.parametrize("cls", [PSAttention, PatchAttention, ContextualAttention])
def test_modules_take_keyword_options_and_query_key_value(cls):
    init = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert all(p.kind is p.KEYWORD_ONLY for p in init)
    fwd = list(inspect.signature(cls.forward).parameters.values())[1:]
    assert [p.name for p in fwd[:3]] == ["query", "key", "value"]
    assert all(p.kind is p.KEYWORD_ONLY for p in fwd[3:])
    assert "hole" in {p.name for p in fwd}


def test_new_spellings_do_not_warn():
    x, hole = _x()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ps_attention(x, x, x, k=2, hole=hole, seed=0, return_field=True)
        patch_attention(x, x, x, k=2, hole=hole)
        contextual_attention(x, x, x, hole=hole, return_field=True)
        PSAttention(k=2)(x, x, x, hole=hole, seed=0)
        PatchAttention(k=2)(x, x, x, hole=hole)
        ContextualAttention(rate=1)(x, x, x, hole=hole)
        psal.patchmatch(x, x, k=2, key_valid=~hole, query_valid=hole, seed=0)


def test_ps_attention_old_spellings():
    x, hole = _x()
    new = ps_attention(x, x, x, k=2, patch_size=3, iters=2, temperature=0.5, hole=hole, seed=1)
    with pytest.warns(
        DeprecationWarning, match=r"k=, patch_size=, iters=, temperature=.*by position"
    ):
        old = ps_attention(x, x, x, 2, 3, 2, 0.5, hole=hole, seed=1)
    assert torch.equal(new, old)
    with pytest.warns(DeprecationWarning, match=r"mask=\.\.\.\) is deprecated; use hole="):
        ps_attention(x, x, x, k=2, iters=2, temperature=0.5, mask=hole, seed=1)
    with pytest.raises(TypeError, match="both 'mask'"):
        ps_attention(x, x, x, mask=hole, hole=hole)
    layer = PSAttention(k=2, iters=2, temperature=0.5)
    with pytest.warns(DeprecationWarning, match="by position"):
        assert torch.equal(PSAttention(2, 3, 2, 0.5)(x, x, x, hole=hole, seed=1), new)
    with pytest.warns(DeprecationWarning, match="PSAttention.forward"):
        assert torch.equal(layer(x, x, x, hole, False, 1), new)
    with pytest.warns(DeprecationWarning, match="use hole="):
        assert torch.equal(layer(x, x, x, mask=hole, seed=1), new)


def test_patch_attention_old_spellings():
    x, hole = _x()
    new = patch_attention(x, x, x, k=3, patch_size=3, temperature=0.4, hole=hole)
    with pytest.warns(DeprecationWarning):
        old = patch_attention(x, x, x, 3, 0.4, 3, mask=hole)
    assert torch.equal(new, old)
    with pytest.warns(DeprecationWarning, match=r"topk=\.\.\.\) is deprecated; use k="):
        assert torch.equal(patch_attention(x, x, x, topk=3, temperature=0.4, hole=hole), new)
    with pytest.warns(DeprecationWarning, match="use k="):
        layer = PatchAttention(topk=3, temperature=0.4)
    assert layer.k == 3
    with pytest.warns(DeprecationWarning, match="use hole="):
        assert torch.equal(layer(x, x, x, mask=hole), new)
    with pytest.warns(DeprecationWarning, match="PatchAttention.topk"):
        assert layer.topk == 3
    with pytest.warns(DeprecationWarning, match="by position"):
        assert PatchAttention(3, 0.4, 3).k == 3
    with pytest.raises(TypeError, match="positional arguments at most"):
        patch_attention(x, x, x, 3, 0.4, 3, "center", "extra")


def test_attend_old_positional_options():
    x, _ = _x()
    idx = psal.patchmatch(x, x, k=2, seed=0).indices
    new = attend(x, x, x, idx, patch_size=3, temperature=0.3, aggregation="patch")
    with pytest.warns(DeprecationWarning, match="by position"):
        assert torch.equal(attend(x, x, x, idx, 3, 0.3, "patch"), new)


def test_valid_key_positions_old_keyword():
    _, hole = _x()
    new = psal.patchmatch.valid_key_positions(hole, 3)
    with pytest.warns(DeprecationWarning, match="use hole="):
        assert torch.equal(psal.patchmatch.valid_key_positions(key_mask=hole, patch_size=3), new)

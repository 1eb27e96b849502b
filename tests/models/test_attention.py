"""Unit tests of the attention scores and the masked softmax (hf_seq2seq/models/attention.py)."""

from __future__ import annotations

import pytest
import torch

from hf_seq2seq.models.attention import ATTENTION_SCORES, AdditiveScore, ConcatScore, attend, build_score

B, T, S, H = 3, 4, 5, 6


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(B, S, H, generator=g)
    queries = torch.randn(B, T, H, generator=g)
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, 3:] = 0
    mask[2, 1:] = 0
    return queries, keys, mask


@pytest.mark.parametrize("name", sorted(ATTENTION_SCORES))
def test_score_shapes_and_batched_equals_per_step(name, inputs):
    queries, keys, _ = inputs
    torch.manual_seed(0)
    score = build_score(name, H, H, 7)
    pre = score.precompute_keys(keys)
    all_steps = score(queries, keys, pre)
    assert all_steps.shape == (B, T, S)
    for t in range(T):
        one_step = score(queries[:, t], keys, pre)
        assert one_step.shape == (B, S)
        torch.testing.assert_close(one_step, all_steps[:, t])


@pytest.mark.parametrize("name", sorted(ATTENTION_SCORES))
def test_score_depends_on_query_and_keys(name, inputs):
    queries, keys, _ = inputs
    torch.manual_seed(0)
    score = build_score(name, H, H, 7)
    base = score(queries[:, 0], keys, score.precompute_keys(keys))
    assert not torch.allclose(base, score(queries[:, 1], keys, score.precompute_keys(keys)))
    other_keys = keys.flip(1)
    assert not torch.allclose(base, score(queries[:, 0], other_keys, score.precompute_keys(other_keys)))


def test_scores_match_paper_equations(inputs):
    queries, keys, _ = inputs
    q = queries[:, 0]
    torch.manual_seed(0)
    # Bahdanau eq. 6: v^T tanh(W s + U h)
    add = AdditiveScore(H, H, 7)
    expected = torch.einsum(
        "a,bsa->bs",
        add.energy.weight[0],
        torch.tanh((q @ add.query_proj.weight.T)[:, None] + add.key_proj(keys)),
    )
    torch.testing.assert_close(add(q, keys, add.precompute_keys(keys)), expected)
    # Luong eq. 8 dot: h_t^T h_s ; general: h_t^T W_a h_s ; concat: v^T tanh(W_a [h_t; h_s])
    dot = build_score("dot", H, H, 7)
    torch.testing.assert_close(dot(q, keys, dot.precompute_keys(keys)), torch.einsum("bh,bsh->bs", q, keys))
    gen = build_score("general", H, H, 7)
    w = gen.key_proj.weight  # (H, H)
    torch.testing.assert_close(
        gen(q, keys, gen.precompute_keys(keys)), torch.einsum("bh,hk,bsk->bs", q, w, keys)
    )
    cat = ConcatScore(H, H, 7)
    w_a = torch.cat([cat.query_proj.weight, cat.key_proj.weight], dim=1)  # W_a acting on [h_t; h_s]
    joined = torch.cat([q[:, None].expand(-1, S, -1), keys], dim=-1)
    expected = torch.tanh(joined @ w_a.T + cat.key_proj.bias) @ cat.energy.weight[0]
    torch.testing.assert_close(cat(q, keys, cat.precompute_keys(keys)), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("steps", [False, True])
def test_attend_masks_padding(inputs, dtype, steps):
    queries, keys, mask = inputs
    scores = torch.randn(B, T, S) * 50 if steps else torch.randn(B, S) * 50
    weights_shape = scores.shape
    context, weights = attend(scores.to(dtype), keys.to(dtype), mask)
    assert weights.shape == weights_shape
    w = weights if steps else weights.unsqueeze(1)
    pad = (mask == 0)[:, None, :].expand_as(w)
    assert torch.all(w[pad] == 0)
    torch.testing.assert_close(w.float().sum(-1), torch.ones(w.shape[:2]), atol=1e-2, rtol=0)
    assert torch.isfinite(context).all()
    # the context is the weighted sum of values (eq. 5)
    expected = torch.einsum("bts,bsh->bth", w.float(), keys.to(dtype).float())
    torch.testing.assert_close(context.float().reshape(expected.shape), expected, atol=2e-2, rtol=2e-2)


def test_attend_single_token_source_gets_all_weight(inputs):
    _, keys, mask = inputs
    _, weights = attend(torch.randn(B, S), keys, mask)
    assert weights[2, 0].item() == pytest.approx(1.0)


def test_precompute_is_reused_not_recomputed(inputs):
    """The step score reads the precomputed projection: passing a different one changes the result."""
    queries, keys, _ = inputs
    for name in ("bahdanau", "general", "concat"):
        score = build_score(name, H, H, 7)
        pre = score.precompute_keys(keys)
        assert not torch.allclose(score(queries[:, 0], keys, pre), score(queries[:, 0], keys, pre * 2))


def test_invalid_score_configuration():
    with pytest.raises(ValueError, match="unknown attention score 'luong'.*bahdanau"):
        build_score("luong", H, H, H)
    with pytest.raises(ValueError, match="query_size == key_size"):
        build_score("dot", H, H + 1, H)
    with pytest.raises(ValueError, match=r"\(B, Hq\) or \(B, T, Hq\)"):
        score = build_score("dot", H, H, H)
        score(torch.randn(H), torch.randn(B, S, H), torch.randn(B, S, H))

"""Unit tests of the attention scores and the masked softmax (hf_seq2seq/attention.py)."""

from __future__ import annotations

from functools import partial

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


def test_cpu_inference_kernels_compute_the_same_function(inputs):
    """fast_linear / fast_tanh / the additive score's sigmoid form (taken under no_grad on CPU) equal the plain
    ops they replace (taken when autograd records), up to rounding; and they record no graph."""
    from hf_seq2seq.models.attention import cpu_inference, fast_linear, fast_tanh

    queries, keys, _ = inputs
    x, w, b = torch.randn(5, 3, 6), torch.randn(4, 6), torch.randn(4)  # 15 rows: oneDNN, tanh fused
    with torch.no_grad():
        assert cpu_inference(x) and not cpu_inference(x.double())
        torch.testing.assert_close(fast_linear(x, w, b), nn_linear(x, w, b))
        torch.testing.assert_close(fast_linear(x, w, None, "tanh"), torch.tanh(nn_linear(x, w)))
        big = torch.randn(8192) * 10  # above the size where the sigmoid form starts
        torch.testing.assert_close(fast_tanh(big), torch.tanh(big), atol=1e-6, rtol=0)
    assert not cpu_inference(x)  # autograd on: the plain ops
    for name in ("bahdanau", "concat"):
        torch.manual_seed(0)
        score = build_score(name, H, H, 7)
        pre = score.precompute_keys(keys)
        recorded = score(queries, keys, pre)
        with torch.no_grad():
            torch.testing.assert_close(score(queries, keys, pre), recorded, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(score(queries[:, 1], keys, pre), recorded[:, 1], atol=1e-5, rtol=1e-5)


def nn_linear(x, w, b=None):
    return torch.nn.functional.linear(x, w, b)


@pytest.mark.parametrize("rows", [1, 5])
def test_fast_linear_relaid_weights_follow_updates(rows):
    """Weights above the re-layout size are laid out once for the kernel (W^T for one row, oneDNN's packing for
    more) and kept: an in-place update, a new ``.data`` and another weight of the same shape must all be seen."""
    from hf_seq2seq.models.attention import _RELAY_MIN_WEIGHT, fast_linear

    layer = torch.nn.Linear(400, _RELAY_MIN_WEIGHT // 400 + 8)
    x = torch.randn(rows, 400)
    close = partial(
        torch.testing.assert_close, atol=1e-4, rtol=1e-4
    )  # rounding; a stale layout is off by O(1)
    with torch.no_grad():
        for _ in range(2):  # the second call reads the kept layout
            close(fast_linear(x, layer.weight, layer.bias), layer(x))
        close(fast_linear(x[None], layer.weight, None, "tanh"), torch.tanh(x @ layer.weight.T)[None])
        layer.weight.mul_(-2.0)  # in place: the version counter moves
        close(fast_linear(x, layer.weight, layer.bias), layer(x))
        layer.weight.data = torch.randn_like(layer.weight)  # new storage
        close(fast_linear(x, layer.weight, layer.bias), layer(x))
        other = torch.randn_like(layer.weight)
        close(fast_linear(x, other), x @ other.T)

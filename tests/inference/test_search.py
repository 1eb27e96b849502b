"""hf_seq2seq.inference.search: eole's beam search (``length_penalty: avg``) as a ``generate()`` decoding method, on
tiny random models of both families. Equality with eole's own search is proven on trained models in
tests/convert/test_convert_eole.py; here its invariants: cached == uncached, a padded batch == each sentence alone,
one beam == greedy, the n-best list starts with the best, and what it does not return is one line."""

from __future__ import annotations

import pytest
import torch

from hf_seq2seq import (
    RNNSeq2SeqConfig,
    RNNSeq2SeqForConditionalGeneration,
    TransformerSeq2SeqConfig,
    TransformerSeq2SeqForConditionalGeneration,
)
from hf_seq2seq.inference.search import average_length_beam_search

VOCAB = 24


def _model(family: str):
    torch.manual_seed(0)
    if family == "transformer":
        config = TransformerSeq2SeqConfig(
            vocab_size=VOCAB, d_model=16, encoder_layers=1, decoder_layers=2, num_attention_heads=2, ffn_dim=32,
            init_std=0.5, output_bias=True,
        )  # fmt: skip
        return TransformerSeq2SeqForConditionalGeneration(config).eval()
    config = RNNSeq2SeqConfig(
        vocab_size=VOCAB, embedding_size=8, hidden_size=16, encoder_layers=2, decoder_layers=2, dropout=0.0,
        cell="lstm", attention="general", input_feeding=True, decoder_init="final", output_bias=True,
    )  # fmt: skip
    model = RNNSeq2SeqForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)  # peaked distributions: search paths differ
    return model


def _batch():
    """Three right-padded sources of lengths 6, 4, 2 ending in </s> (2)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (3, 6), generator=g)
    mask = torch.ones_like(ids)
    for row, length in ((1, 4), (2, 2)):
        ids[row, length:], mask[row, length:] = 0, 0
    ids[torch.arange(3), mask.sum(1) - 1] = 2
    return {"input_ids": ids, "attention_mask": mask}


def _search(model, inputs, **options):
    options = {"num_beams": 4, "length_penalty": 1.0, "max_new_tokens": 10, **options}
    with torch.no_grad():
        return model.generate(**inputs, custom_generate=average_length_beam_search, **options)


def _strip(rows: torch.Tensor) -> list[list[int]]:
    return [[t for t in row if t != 0] for row in rows.tolist()]


@pytest.mark.parametrize("family", ["transformer", "rnn"])
def test_cached_equals_uncached_and_padded_equals_alone(family):
    model, inputs = _model(family), _batch()
    for alpha in (0.0, 1.0, 0.6):
        out = _search(model, inputs, length_penalty=alpha)
        assert torch.equal(out, _search(model, inputs, length_penalty=alpha, use_cache=False)), alpha
        for i, length in enumerate(inputs["attention_mask"].sum(1).tolist()):
            alone = {k: v[i : i + 1, :length] for k, v in inputs.items()}
            assert _strip(_search(model, alone, length_penalty=alpha)) == _strip(out[i : i + 1]), (alpha, i)
    assert len({tuple(row) for row in _strip(_search(model, inputs))}) > 1  # not one repeated output


@pytest.mark.parametrize("family", ["transformer", "rnn"])
def test_one_beam_is_greedy_and_n_best_starts_with_the_best(family):
    model, inputs = _model(family), _batch()
    with torch.no_grad():
        greedy = model.generate(**inputs, num_beams=1, do_sample=False, max_new_tokens=10)
    assert _strip(_search(model, inputs, num_beams=1)) == _strip(greedy)
    best = _strip(_search(model, inputs))
    n_best = _strip(_search(model, inputs, num_return_sequences=3))
    assert len(n_best) == 9 and n_best[::3] == best
    assert all(
        len({tuple(r) for r in n_best[i : i + 3]}) == 3 for i in (0, 3, 6)
    )  # three different hypotheses


def test_a_length_penalty_changes_what_wins():
    """alpha 0 (eole's none) and a large alpha rank hypotheses of different lengths differently somewhere."""
    model, inputs = _model("rnn"), _batch()
    assert _strip(_search(model, inputs, length_penalty=0.0)) != _strip(
        _search(model, inputs, length_penalty=3.0)
    )


def test_what_it_does_not_return_is_one_line():
    model, inputs = _model("transformer"), _batch()
    with pytest.raises(ValueError, match="return_dict_in_generate") as info:
        _search(model, inputs, return_dict_in_generate=True)
    assert "\n" not in str(info.value)

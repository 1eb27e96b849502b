"""hf_seq2seq.inference: the one loader and the one translate loop (the engines' agreement with each other is in
export/test_export.py; the commands' behaviour in commands/test_commands.py and the test_bad_*_input.py files)."""

from __future__ import annotations

import pytest
import torch
from hub_server import tiny_model, tiny_tokenizer

from hf_seq2seq.hub import save_model_folder
from hf_seq2seq.inference import GenerateEngine, Translation, load_engine, load_model, translate_lines

LINES = ["drei und zwanzig", "", "neun tausend neun hundert sieben und achtzig", "   ", "neun", "zwanzig"]


@pytest.fixture(scope="module", params=["transformer", "rnn"])
def folder(request, tmp_path_factory):
    tokenizer = tiny_tokenizer()
    model = tiny_model(request.param, len(tokenizer))
    return save_model_folder(model, tokenizer, tmp_path_factory.mktemp("inference") / request.param)


@pytest.fixture(scope="module")
def engine(folder):
    return load_engine(folder, device="cpu")


def test_translate_keeps_order_empty_lines_and_batching_changes_nothing(engine):
    results = engine.translate(LINES, num_beams=2, batch_size=2)
    assert [type(r) for r in results] == [Translation] * len(LINES)
    assert results[1].hypotheses == results[3].hypotheses == [""] and results[1].scores is None
    alone = [engine.translate([line], num_beams=2)[0] for line in LINES]
    assert results == alone
    assert [r.text for r in results] == [
        h[0] for h in translate_lines(engine.model, engine.tokenizer, LINES, num_beams=2)
    ]


def test_n_best_scores_are_the_search_order(engine):
    results = engine.translate(LINES, num_beams=4, n_best=3, return_scores=True)
    for r in results:
        assert len(r.hypotheses) == len(r.scores) == 3
        assert r.scores == sorted(r.scores, reverse=True)  # best first
    assert results[1].hypotheses == ["", "", ""] and results[1].scores == [0.0, 0.0, 0.0]
    # n_best above num_beams raises the beam: a beam search returns at most num_beams hypotheses
    assert [len(r.hypotheses) for r in engine.translate(LINES[:1], num_beams=1, n_best=2)] == [2]


def test_greedy_score_is_the_models_length_normalised_log_probability(engine):
    """The score of a greedy hypothesis equals its teacher-forced log-probability (up to and including </s>)
    divided by its length (length_penalty 1), computed here from a plain forward pass."""
    model, tok = engine.model, engine.tokenizer
    model.generation_config.length_penalty = 1.0
    [result] = engine.translate(LINES[:1], num_beams=1, return_scores=True)
    enc = tok(LINES[:1], return_tensors="pt")
    with torch.no_grad():
        sequence = model.generate(**enc, num_beams=1, do_sample=False)[0]
        logits = model(**enc, decoder_input_ids=sequence[None, :-1]).logits[0]
    targets = sequence[1:]
    eos = (targets == model.generation_config.eos_token_id).nonzero()
    length = int(eos[0]) + 1 if len(eos) else len(targets)
    log_probs = torch.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None])[:length, 0]
    assert result.scores[0] == pytest.approx(float(log_probs.sum()) / length, abs=1e-4)


def test_one_loader_for_a_folder_and_a_model_in_memory(folder, engine):
    model, tokenizer = load_model(folder, "cpu", cpu_kernels=False)
    in_memory = GenerateEngine.from_model(model, tokenizer)
    assert in_memory.max_source_length == engine.max_source_length
    assert in_memory.default_beams == engine.default_beams
    # the CPU inference optimisation (on by default) changes no output
    assert in_memory.translate(LINES, n_best=2) == engine.translate(LINES, n_best=2)


def test_bad_arguments_are_one_clear_line(engine):
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        engine.translate(LINES, batch_size=0)
    with pytest.raises(ValueError, match="n_best must be >= 1, got 0"):
        engine.translate(LINES, n_best=0)
    with pytest.raises(ValueError, match="--engine='tensorrt' is invalid; valid choices: torch, ctranslate2"):
        load_engine(engine.path, "tensorrt")


def test_encode_and_translate_ids_are_what_translate_does_per_batch(engine):
    """A caller that groups lines itself (the server): encode → translate_ids gives translate's results."""
    ids = engine.encode(LINES)
    assert [i is None for i in ids] == [not line.strip() for line in LINES]
    grouped = engine.translate_ids([i for i in ids if i], num_beams=2, n_best=2, return_scores=True)
    expected = [
        r
        for r, line in zip(engine.translate(LINES, num_beams=2, n_best=2, return_scores=True), LINES)
        if line.strip()
    ]
    assert grouped == expected
    assert all(r.token_ids and len(r.token_ids) == 2 for r in grouped)
    assert engine.translate_ids([]) == []


def test_cross_attention_of_a_hypothesis(engine):
    (source,) = engine.encode(["neun tausend"])
    (result,) = engine.translate_ids([source], num_beams=1)
    weights = engine.cross_attention(source, result.token_ids[0])
    config = engine.model.config
    layers = getattr(config, "decoder_layers", 1) if config.model_type != "rnn_seq2seq" else 1
    assert weights.shape[0] == layers and weights.shape[2:] == (len(result.token_ids[0]) + 1, len(source))
    assert weights.sum(axis=-1) == pytest.approx(1.0, abs=1e-4)  # each row is a distribution over the source

"""Contract tests of the RNN encoder-decoder family on tiny configs (issue 3).

Invariants, not golden numbers: cached == uncached decoding (greedy, beam), teacher-forced == step-by-step logits,
fast path == step loop, padded batch == each sentence alone, save -> load (in-process and remote code) == same
generations, attention weights sum to 1 off padding, every generate mode, config validation; and a learning test
on the embedded reordering task.
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from _output_bias import check_output_bias
from conftest import run_without_package
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForSeq2SeqLM

from hf_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
from hf_seq2seq.models.modeling_rnn_seq2seq import BahdanauDecoder, ChoDecoder, LuongDecoder, RNNDecoderCache

VOCAB, PAD, BOS, EOS = 20, 0, 1, 2

# every attention x cell x bidirectional, plus input feeding and encoder/decoder layer mismatches
GRID = [
    {"attention": a, "cell": c, "bidirectional_encoder": b}
    for a, c, b in itertools.product(
        ["none", "bahdanau", "dot", "general", "concat"], ["gru", "lstm"], [True, False]
    )
] + [
    {"attention": "dot", "cell": "gru", "bidirectional_encoder": True, "input_feeding": True},
    {"attention": "general", "cell": "lstm", "bidirectional_encoder": False, "input_feeding": True},
    {
        "attention": "concat",
        "cell": "lstm",
        "bidirectional_encoder": True,
        "encoder_layers": 1,
        "decoder_layers": 3,
    },
    {
        "attention": "none",
        "cell": "lstm",
        "bidirectional_encoder": True,
        "encoder_layers": 1,
        "decoder_layers": 2,
    },
    # JoeyNMT's decoder (models converted from it): attentional-layer bias, every layer started from the top
    {
        "attention": "general",
        "cell": "lstm",
        "bidirectional_encoder": False,
        "input_feeding": True,
        "combine_bias": True,
        "decoder_init": "top_bridge",
        "encoder_layers": 2,
        "decoder_layers": 2,
    },
    {
        "attention": "concat",
        "cell": "gru",
        "bidirectional_encoder": True,
        "input_feeding": True,
        "combine_bias": True,
        "decoder_init": "top",
    },
    {"attention": "dot", "cell": "lstm", "bidirectional_encoder": True, "decoder_init": "zero"},
    # OpenNMT-py's / eole's decoder: every layer starts from its encoder layer's final state, no bridge
    {
        "attention": "general",
        "cell": "lstm",
        "bidirectional_encoder": True,
        "input_feeding": True,
        "decoder_init": "final",
        "encoder_layers": 2,
        "decoder_layers": 2,
    },
    {"attention": "dot", "cell": "gru", "bidirectional_encoder": False, "decoder_init": "final"},
    # eole's default RNN: scaled embeddings with sinusoidal positions, LSTM, general attention, input feeding
    {
        "attention": "general",
        "cell": "lstm",
        "bidirectional_encoder": False,
        "input_feeding": True,
        "decoder_init": "final",
        "scale_embedding": True,
        "position_embedding": "sinusoidal",
        "output_bias": True,
    },
    # eole's mlp attention: concat score, W_c with a bias and without tanh
    {
        "attention": "concat",
        "cell": "lstm",
        "bidirectional_encoder": False,
        "input_feeding": True,
        "combine_bias": True,
        "combine_activation": "none",
        "decoder_init": "final",
    },
]


def _id(kw: dict) -> str:
    parts = [kw["attention"], kw["cell"], "bi" if kw["bidirectional_encoder"] else "uni"]
    if kw.get("input_feeding"):
        parts.append("feed")
    if "decoder_layers" in kw:
        parts.append(f"{kw['encoder_layers']}to{kw['decoder_layers']}")
    if kw.get("combine_bias"):
        parts.append("cbias")
    if "combine_activation" in kw:
        parts.append(f"c{kw['combine_activation']}")
    if kw.get("position_embedding") == "sinusoidal":
        parts.append("positions")
    if "decoder_init" in kw:
        parts.append(kw["decoder_init"])
    return "-".join(parts)


def make_model(seed: int = 0, **overrides) -> RNNSeq2SeqForConditionalGeneration:
    kw = dict(
        vocab_size=VOCAB,
        embedding_size=8,
        hidden_size=16,
        encoder_layers=2,
        decoder_layers=1,
        dropout=0.0,
        attention="bahdanau",
        cell="gru",
        bidirectional_encoder=True,
    )
    kw.update(overrides)
    torch.manual_seed(seed)
    model = RNNSeq2SeqForConditionalGeneration(RNNSeq2SeqConfig(**kw))
    with (
        torch.no_grad()
    ):  # sharper output distributions, so decoding paths actually differ between tokens/beams
        model.lm_head.weight.mul_(4.0)
    return model.eval()


def make_batch(seed: int = 0):
    """Three sources of lengths 6, 4, 2 (each ending in </s>), right-padded."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (3, 6), generator=g)
    mask = torch.ones_like(ids)
    for row, length in ((1, 4), (2, 2)):
        ids[row, length:] = PAD
        mask[row, length:] = 0
    ids[torch.arange(3), mask.sum(1) - 1] = EOS
    return ids, mask


@pytest.mark.parametrize("kw", GRID, ids=_id)
def test_cached_equals_uncached_greedy_and_beam(kw):
    model = make_model(**kw)
    ids, mask = make_batch()
    for extra in ({"num_beams": 1}, {"num_beams": 3, "num_return_sequences": 2}):
        common = dict(input_ids=ids, attention_mask=mask, max_new_tokens=7, do_sample=False, **extra)
        cached = model.generate(**common, use_cache=True)
        uncached = model.generate(**common, use_cache=False)
        assert torch.equal(cached, uncached), extra


def test_broken_reorder_is_caught(monkeypatch):
    """The beam check above can fail: with a no-op reorder, cached beam search diverges from uncached."""
    differs = False
    for seed in range(4):
        model = make_model(seed=seed, attention="bahdanau", cell="lstm")
        ids, mask = make_batch(seed)
        common = dict(input_ids=ids, attention_mask=mask, max_new_tokens=8, num_beams=4, do_sample=False)
        reference = model.generate(**common, use_cache=False)
        with monkeypatch.context() as m:
            m.setattr(RNNDecoderCache, "reorder_cache", lambda self, beam_idx: None)
            broken = model.generate(**common, use_cache=True)
        differs |= not torch.equal(reference, broken)
    assert differs


@pytest.mark.parametrize("kw", GRID, ids=_id)
def test_teacher_forced_equals_step_by_step(kw):
    model = make_model(**kw)
    ids, mask = make_batch()
    dec = torch.randint(3, VOCAB, (3, 5), generator=torch.Generator().manual_seed(1))
    dec[:, 0] = BOS
    full = model(
        input_ids=ids, attention_mask=mask, decoder_input_ids=dec, use_cache=False, output_attentions=True
    )
    assert full.logits.shape == (3, 5, VOCAB)
    assert full.cache is None

    encoder_outputs = model.get_encoder()(ids, mask)
    cache, logits, attns = None, [], []
    for t in range(dec.shape[1]):
        out = model(
            encoder_outputs=encoder_outputs,
            attention_mask=mask,
            decoder_input_ids=dec[:, t : t + 1],
            cache=cache,
            use_cache=True,
            output_attentions=True,
        )
        cache = out.cache
        assert isinstance(cache, RNNDecoderCache) and cache.get_seq_length() == t + 1
        logits.append(out.logits)
        attns.append(out.cross_attentions)
    torch.testing.assert_close(torch.cat(logits, dim=1), full.logits, atol=1e-5, rtol=1e-5)
    if kw["attention"] == "none":
        assert full.cross_attentions is None and all(a is None for a in attns)
    else:
        torch.testing.assert_close(torch.cat([a[0] for a in attns], dim=2), full.cross_attentions[0])


@pytest.mark.parametrize("kw", [k for k in GRID if k["attention"] != "bahdanau"], ids=_id)
def test_fast_path_equals_step_loop(kw):
    model = make_model(**kw)
    assert isinstance(model.decoder, ChoDecoder | LuongDecoder)
    ids, mask = make_batch()
    dec = torch.randint(3, VOCAB, (3, 6), generator=torch.Generator().manual_seed(2))
    enc = model.get_encoder()(ids, mask)
    memory = model.decoder.memory(enc)
    fast = model.decoder(dec, model.decoder.initial_state(enc), memory, mask, fast=True)
    slow = model.decoder(dec, model.decoder.initial_state(enc), memory, mask, fast=False)
    torch.testing.assert_close(fast[0], slow[0], atol=1e-5, rtol=1e-5)  # outputs
    for a, b in zip(fast[1], slow[1]):  # final state
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    if fast[2] is not None:
        torch.testing.assert_close(fast[2], slow[2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kw", GRID, ids=_id)
def test_inference_step_equals_recorded_step(kw):
    """With the package's CPU kernels applied (hf_seq2seq.inference.cpu_kernels), a step without autograd (every
    generate() step) runs the written-out cell and oneDNN matmuls; with autograd, nn.GRU / nn.LSTM and nn.Linear.
    Same function, for every decoder of the grid."""
    from hf_seq2seq.inference.cpu_kernels import optimize_for_cpu_inference

    # two layers at least: the stacked cell
    model = optimize_for_cpu_inference(make_model(**{"decoder_layers": 2, **kw}))
    ids, mask = make_batch()
    enc = model.get_encoder()(ids, mask)
    recorded_cache = fast_cache = None
    for token in (BOS, 5, 7, 9):
        step = dict(encoder_outputs=enc, attention_mask=mask, decoder_input_ids=torch.full((3, 1), token))
        recorded = model(**step, cache=recorded_cache, output_attentions=True)
        with torch.no_grad():
            fast = model(**step, cache=fast_cache, output_attentions=True)
        recorded_cache, fast_cache = recorded.cache, fast.cache
        torch.testing.assert_close(fast.logits, recorded.logits, atol=1e-5, rtol=1e-5)
        for a, b in zip(fast_cache.to_state(), recorded_cache.to_state()):
            if a is not None:
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        if recorded.cross_attentions is not None:
            torch.testing.assert_close(
                fast.cross_attentions[0], recorded.cross_attentions[0], atol=1e-5, rtol=1e-5
            )


def test_bahdanau_has_no_fast_path_and_scores_previous_state():
    model = make_model(attention="bahdanau")
    assert isinstance(model.decoder, BahdanauDecoder)
    # Step 1's weights depend only on s_0 (the encoder bridge), not on the first input token.
    ids, mask = make_batch()
    a = model(
        input_ids=ids, attention_mask=mask, decoder_input_ids=torch.full((3, 1), 5), output_attentions=True
    )
    b = model(
        input_ids=ids, attention_mask=mask, decoder_input_ids=torch.full((3, 1), 7), output_attentions=True
    )
    torch.testing.assert_close(a.cross_attentions[0], b.cross_attentions[0])
    assert not torch.allclose(a.logits, b.logits)


@pytest.mark.parametrize("kw", GRID, ids=_id)
def test_padded_batch_equals_each_sentence_alone(kw):
    model = make_model(**kw)
    ids, mask = make_batch()
    dec = torch.randint(3, VOCAB, (3, 4), generator=torch.Generator().manual_seed(3))
    batched = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, output_attentions=True)
    generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, num_beams=2)
    for row in range(3):
        n = int(mask[row].sum())
        alone = model(
            input_ids=ids[row : row + 1, :n], decoder_input_ids=dec[row : row + 1], output_attentions=True
        )
        torch.testing.assert_close(batched.logits[row : row + 1], alone.logits, atol=1e-5, rtol=1e-5)
        if alone.cross_attentions is not None:
            torch.testing.assert_close(
                batched.cross_attentions[0][row : row + 1, ..., :n], alone.cross_attentions[0]
            )
        gen_alone = model.generate(input_ids=ids[row : row + 1, :n], max_new_tokens=6, num_beams=2)[0]
        gen_row = generated[row]
        assert torch.equal(gen_row[: len(gen_alone)], gen_alone)
        # beam search fills finished rows with `pad_token_id or eos_token_id` (transformers 5.24): pad id 0 -> </s>
        assert set(gen_row[len(gen_alone) :].tolist()) <= {PAD, EOS}


@pytest.mark.parametrize("kw", [k for k in GRID if k["attention"] != "none"], ids=_id)
def test_attention_weights_sum_to_one_and_zero_on_padding(kw):
    model = make_model(**kw)
    ids, mask = make_batch()
    dec = torch.randint(3, VOCAB, (3, 5), generator=torch.Generator().manual_seed(4))
    (weights,) = model(
        input_ids=ids, attention_mask=mask, decoder_input_ids=dec, output_attentions=True
    ).cross_attentions
    assert weights.shape == (3, 1, 5, 6)
    pad = (mask == 0)[:, None, None, :].expand_as(weights)
    assert torch.all(weights[pad] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 1, 5))
    assert torch.all(weights[~pad] > 0)


def test_no_attention_model_returns_no_cross_attentions():
    model = make_model(attention="none")
    ids, mask = make_batch()
    out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=ids[:, :3], output_attentions=True)
    assert out.cross_attentions is None


def test_generate_returns_cross_attentions():
    model = make_model(attention="general", cell="lstm", input_feeding=True)
    ids, mask = make_batch()
    for beams in (1, 3):
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=4,
            num_beams=beams,
            output_attentions=True,
            return_dict_in_generate=True,
        )
        assert len(out.cross_attentions) == out.sequences.shape[1] - 1
        for (step,) in out.cross_attentions:
            assert step.shape == (3 * beams, 1, 1, 6)
            torch.testing.assert_close(step.sum(-1), torch.ones(3 * beams, 1, 1))
            assert torch.all(step[..., 2:][mask.repeat_interleave(beams, 0)[:, None, None, 2:] == 0] == 0)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("mode", [{"num_beams": 1}, {"num_beams": 3}, {"do_sample": True, "top_k": 5}])
def test_generate_has_no_decoder_attentions_rather_than_a_tuple_of_nones(cell, mode):
    """Issue 28 row 10: an RNN decoder has no self-attention, so generate()'s ``decoder_attentions`` is None (it was
    one None per step); the same sequences come out, and ``cross_attentions`` is still one tensor per step."""
    model = make_model(attention="bahdanau", cell=cell)
    ids, mask = make_batch()
    torch.manual_seed(0)
    out = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=4, output_attentions=True, return_dict_in_generate=True,
        **mode,
    )  # fmt: skip
    assert out.decoder_attentions is None and "decoder_attentions" not in out.keys()
    assert len(out.cross_attentions) == out.sequences.shape[1] - 1
    assert all(isinstance(step[0], torch.Tensor) for step in out.cross_attentions)
    torch.manual_seed(0)
    plain = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, **mode)
    assert torch.equal(plain, out.sequences)


def test_generate_modes():
    model = make_model(attention="bahdanau", cell="gru")
    ids, mask = make_batch()
    inputs = dict(input_ids=ids, attention_mask=mask)

    greedy = model.generate(**inputs, max_new_tokens=6)
    assert greedy.shape[0] == 3 and greedy.shape[1] <= 7 and torch.all(greedy[:, 0] == BOS)

    beam = model.generate(
        **inputs,
        max_new_tokens=6,
        num_beams=4,
        num_return_sequences=3,
        length_penalty=0.6,
        early_stopping=True,
        output_scores=True,
        return_dict_in_generate=True,
    )
    assert beam.sequences.shape[0] == 9
    scores = beam.sequences_scores.view(3, 3)
    assert torch.all(scores[:, :-1] >= scores[:, 1:])  # hypotheses sorted best first
    assert all(len({tuple(s.tolist()) for s in beam.sequences[i * 3 : i * 3 + 3]}) == 3 for i in range(3))

    sampling = dict(do_sample=True, top_k=5, top_p=0.9, temperature=0.7, max_new_tokens=6)
    torch.manual_seed(0)
    s1 = model.generate(**inputs, **sampling)
    torch.manual_seed(0)
    s2 = model.generate(**inputs, **sampling, use_cache=False)
    assert torch.equal(s1, s2)  # same draws, same logits: cached == uncached under sampling too
    draws = set()
    for seed in range(6):
        torch.manual_seed(seed)
        draws.add(
            tuple(model.generate(**inputs, do_sample=True, temperature=2.0, max_new_tokens=6)[0].tolist())
        )
    assert len(draws) > 1

    at_least = model.generate(**inputs, min_new_tokens=5, max_new_tokens=6)
    assert at_least.shape[1] >= 6 and not torch.any(at_least[:, 1:6] == EOS)
    short = model.generate(**inputs, max_new_tokens=2)
    assert short.shape[1] <= 3


@pytest.mark.parametrize("tie,emb", [(True, 8), (True, 16), (False, 8)])
def test_save_load_round_trip_keeps_ties(tmp_path, tie, emb):
    model = make_model(
        attention="dot", cell="lstm", tie_word_embeddings=tie, embedding_size=emb, input_feeding=True
    )
    if tie:
        assert model.lm_head.weight is model.encoder.embed_tokens.weight
        assert model.decoder.embed_tokens.weight is model.encoder.embed_tokens.weight
        assert (model.output_projection is not None) == (emb != 16)
    else:
        assert model.lm_head.weight is not model.encoder.embed_tokens.weight
    ids, mask = make_batch()
    expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, num_beams=3)
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "encoder.embed_tokens.weight" in keys
    assert ("lm_head.weight" in keys) != tie and ("decoder.embed_tokens.weight" in keys) != tie

    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, RNNSeq2SeqForConditionalGeneration)
    if tie:
        assert loaded.lm_head.weight.data_ptr() == loaded.encoder.embed_tokens.weight.data_ptr()
    for name, param in model.state_dict().items():
        assert torch.equal(param, loaded.state_dict()[name]), name
    assert torch.equal(
        loaded.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, num_beams=3), expected
    )


@pytest.mark.slow
def test_remote_code_load_without_package(tmp_path):
    RNNSeq2SeqConfig.register_for_auto_class()
    RNNSeq2SeqForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")
    cases = {
        "bahdanau": dict(attention="bahdanau", cell="lstm"),
        "luong": dict(attention="general", input_feeding=True),
    }
    ids, mask = make_batch()
    expected = {}
    for name, kw in cases.items():
        model = make_model(**kw)
        model.save_pretrained(tmp_path / name)
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert "AutoModelForSeq2SeqLM" in config["auto_map"]
        assert (tmp_path / name / "attention.py").exists()
        expected[name] = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=6, num_beams=3
        ).tolist()
    proc = run_without_package(
        f"""
        import json, torch
        from transformers import AutoModelForSeq2SeqLM
        ids, mask = torch.tensor({ids.tolist()}), torch.tensor({mask.tolist()})
        out = {{}}
        for name in {list(cases)}:
            model = AutoModelForSeq2SeqLM.from_pretrained({str(tmp_path)!r} + "/" + name, trust_remote_code=True)
            assert "hf_seq2seq" not in type(model).__module__.split(".")[0], type(model).__module__
            out[name] = model.eval().generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, num_beams=3).tolist()
        print("RESULT" + json.dumps(out))
        """
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    assert json.loads(line[len("RESULT") :]) == expected


def test_auto_classes_and_decoder_inputs_from_labels():
    config = AutoConfig.for_model("rnn_seq2seq", vocab_size=VOCAB, embedding_size=8, hidden_size=16)
    model = AutoModelForSeq2SeqLM.from_config(config)
    assert isinstance(model, RNNSeq2SeqForConditionalGeneration) and model.can_generate()
    labels = torch.tensor([[5, 6, EOS, -100], [7, EOS, -100, -100]])
    dec = model.prepare_decoder_input_ids_from_labels(labels)
    assert dec.tolist() == [[BOS, 5, 6, EOS], [BOS, 7, EOS, PAD]]


def test_loss_ignores_padding_and_uses_label_smoothing():
    ids, mask = make_batch()
    labels = torch.tensor([[5, 6, 7, EOS], [8, EOS, -100, -100], [9, 10, EOS, -100]])
    model = make_model(attention="concat")
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    keep = labels != -100
    manual = torch.nn.functional.cross_entropy(out.logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, manual)
    longer = torch.cat([labels, torch.full((3, 2), -100)], dim=1)
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask, labels=longer).loss, out.loss)
    smooth = make_model(attention="concat", label_smoothing=0.1)
    smoothed = smooth(input_ids=ids, attention_mask=mask, labels=labels).loss
    manual = torch.nn.functional.cross_entropy(out.logits[keep], labels[keep], label_smoothing=0.1)
    torch.testing.assert_close(smoothed, manual)
    out.loss.backward()  # gradients reach the encoder
    assert model.encoder.rnn.weight_ih_l0.grad.abs().sum() > 0


def test_bad_inputs_raise_clear_errors():
    model = make_model()
    ids, mask = make_batch()
    with pytest.raises(ValueError, match="labels.*decoder_input_ids"):
        model(input_ids=ids, attention_mask=mask)
    with pytest.raises(ValueError, match="right-padded"):
        model(input_ids=ids, attention_mask=mask.flip(1), decoder_input_ids=ids[:, :2])
    with pytest.raises(ValueError, match="RNNDecoderCache"):
        model(input_ids=ids, attention_mask=mask, decoder_input_ids=ids[:, :2], cache=object())


@pytest.mark.parametrize(
    "kwargs,option",
    [
        ({"cell": "rnn"}, "cell"),
        ({"attention": "luong"}, "attention"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"hidden_size": -4}, "hidden_size"),
        ({"hidden_size": 16.0}, "hidden_size"),
        ({"embedding_size": 0}, "embedding_size"),
        ({"encoder_layers": 0}, "encoder_layers"),
        ({"decoder_layers": "2"}, "decoder_layers"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"dropout": "0.1"}, "dropout"),
        ({"label_smoothing": 1.5}, "label_smoothing"),
        ({"attention": "none", "input_feeding": True}, "input_feeding"),
        ({"attention": "bahdanau", "input_feeding": True}, "input_feeding"),
        ({"input_feeding": "yes"}, "input_feeding"),
        ({"bidirectional_encoder": 1}, "bidirectional_encoder"),
        ({"bidirectional_encoder": True, "hidden_size": 15}, "hidden_size"),
        ({"tie_word_embeddings": None}, "tie_word_embeddings"),
        ({"vocab_size": 10, "eos_token_id": 10}, "eos_token_id"),
        ({"attention": "bahdanau", "combine_bias": True}, "combine_bias"),
        ({"combine_bias": "no"}, "combine_bias"),
        ({"combine_activation": "relu"}, "combine_activation"),
        ({"position_embedding": "learned"}, "position_embedding"),
        ({"position_embedding": "sinusoidal", "embedding_size": 7}, "embedding_size"),
        ({"scale_embedding": 1}, "scale_embedding"),
        ({"attention": "bahdanau", "combine_activation": "none"}, "combine_activation"),
        ({"output_bias": 1}, "output_bias"),
        ({"decoder_init": "last"}, "decoder_init"),
        ({"attention": "none", "decoder_init": "zero"}, "decoder_init"),
    ],
)
def test_invalid_config_raises(kwargs, option):
    with pytest.raises(ValueError, match=option) as info:
        RNNSeq2SeqConfig(**kwargs)
    message = str(info.value)
    assert repr(next(iter(kwargs.values()))) in message or str(list(kwargs.values())[-1]) in message
    if option == "cell":
        assert "['gru', 'lstm']" in message
    if option == "attention":
        assert "['none', 'bahdanau', 'dot', 'general', 'concat']" in message


def test_config_defaults_and_round_trip(tmp_path):
    config = RNNSeq2SeqConfig()
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id, config.decoder_start_token_id) == (
        0,
        1,
        2,
        1,
    )
    assert config.is_encoder_decoder and config.tie_word_embeddings and config.max_position_embeddings == 512
    assert config.num_hidden_layers == config.decoder_layers
    config = RNNSeq2SeqConfig(attention="dot", cell="lstm", input_feeding=True, tie_word_embeddings=False)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, RNNSeq2SeqConfig)
    assert (loaded.attention, loaded.cell, loaded.input_feeding, loaded.tie_word_embeddings) == (
        "dot",
        "lstm",
        True,
        False,
    )


# ------------------------------------------------------------------------------------------------------------------
# Learning: a tiny model learns the embedded reordering task
# ------------------------------------------------------------------------------------------------------------------


def _task(name: str, train: int, test: int):
    from hf_seq2seq import train_tokenizer
    from hf_seq2seq.tasks import make_task, task_languages

    src, tgt = task_languages(name)
    rows = [r["translation"] for r in make_task(name, train + test, seed=0)]
    pairs = [(r[src], r[tgt]) for r in rows]
    tokenizer = train_tokenizer([s for s, _ in pairs] + [t for _, t in pairs], vocab_size=200)
    return tokenizer, pairs[:train], pairs[train:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "task,attention,cell,steps",
    [
        # "23. März 2021" -> "2021-03-23": year to the front, day to the end, month name -> number
        ("dates", "bahdanau", "gru", 150),
        # "drei und zwanzig" -> "twenty-three": units and tens cross
        ("numbers", "general", "lstm", 400),
    ],
)
def test_tiny_model_learns_reordering_task(task, attention, cell, steps):
    """A tiny attention model reaches >= 95% exact match on held-out sources of the embedded task."""
    from transformers import DataCollatorForSeq2Seq

    tokenizer, train, test = _task(task, 2000, 200)
    torch.manual_seed(0)
    config = RNNSeq2SeqConfig(
        vocab_size=len(tokenizer),
        embedding_size=32,
        hidden_size=64,
        encoder_layers=1,
        decoder_layers=1,
        cell=cell,
        attention=attention,
        dropout=0.0,
    )
    model = RNNSeq2SeqForConditionalGeneration(config)
    collator = DataCollatorForSeq2Seq(tokenizer, model=model)
    features = [dict(tokenizer(s, text_target=t)) for s, t in train]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        batch = collator([features[i] for i in torch.randint(len(features), (64,), generator=g)])
        assert "decoder_input_ids" in batch
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    enc = tokenizer([s for s, _ in test], return_tensors="pt", padding=True)
    hyps = tokenizer.batch_decode(model.generate(**enc, max_new_tokens=30), skip_special_tokens=True)
    accuracy = sum(h.strip() == t.strip() for h, (_, t) in zip(hyps, test)) / len(test)
    assert accuracy >= 0.95, (accuracy, list(zip(hyps[:5], test[:5])))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("decoder_init", ["top_bridge", "top", "zero"])
def test_decoder_init_starts_every_layer_from_the_top_encoder_layer(cell, decoder_init, tmp_path):
    """JoeyNMT's initialisations: every decoder layer starts from the top encoder layer's final state (forward and
    backward joined), through one tanh bridge (top_bridge), as it is (top) or from zeros; an LSTM cell equals the
    state. Saved and loaded, the model keeps the option (and has no bridge weights where none is used)."""
    model = make_model(
        cell=cell, attention="general", decoder_init=decoder_init, encoder_layers=2, decoder_layers=3
    )
    ids, mask = make_batch()
    encoder = model.get_encoder()
    with torch.no_grad():
        out = encoder(input_ids=ids, attention_mask=mask)
        embedded = encoder.embed_tokens(ids)
        _, final_h, _, _ = encoder._run_layers(embedded, mask.sum(-1), per_layer=False)
    top = encoder._join_directions(final_h)[-1]  # (B, H)
    expected = {"top_bridge": torch.tanh(encoder.bridge(top)) if encoder.bridge is not None else None,
                "top": top, "zero": torch.zeros_like(top)}[decoder_init]  # fmt: skip
    assert out.decoder_hidden.shape == (3, 3, 16)
    for layer in range(3):
        torch.testing.assert_close(out.decoder_hidden[:, layer], expected)
    if cell == "lstm":
        torch.testing.assert_close(out.decoder_cell, out.decoder_hidden)
    assert (encoder.bridge is None) == (decoder_init != "top_bridge") and encoder.bridge_cell is None
    model.save_pretrained(tmp_path / "m")
    loaded = RNNSeq2SeqForConditionalGeneration.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.decoder_init == decoder_init
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.get_encoder()(input_ids=ids, attention_mask=mask).decoder_hidden, out.decoder_hidden
        )


def test_combine_bias_is_the_bias_of_luongs_attentional_layer():
    with_bias = make_model(attention="general", combine_bias=True)
    assert with_bias.model.decoder.combine.bias is not None
    assert make_model(attention="general").model.decoder.combine.bias is None
    ids, mask = make_batch()
    dec = torch.tensor([[BOS, 5, 6]] * 3)
    with torch.no_grad():
        before = with_bias(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        with_bias.model.decoder.combine.bias.fill_(0.5)
        after = with_bias(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    assert not torch.allclose(before, after)  # the bias reaches the output


@pytest.mark.parametrize("tie,emb", [(True, 8), (False, 16)])
def test_output_bias_is_added_to_the_logits_and_survives_save(tmp_path, tie, emb):
    """``output_bias`` (OpenNMT-py's / eole's generator bias): tests/_output_bias.py's contract."""
    options = dict(
        attention="general", cell="lstm", input_feeding=True, tie_word_embeddings=tie, embedding_size=emb
    )
    ids, mask = make_batch()
    check_output_bias(
        tmp_path,
        make_model(**options),
        make_model(**options, output_bias=True),
        {"input_ids": ids, "attention_mask": mask},
        torch.tensor([[BOS, 5, 6]] * 3),
        {"max_new_tokens": 7, "do_sample": False},
        tie,
    )


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_decoder_init_final_starts_each_layer_from_its_encoder_layer(cell, tmp_path):
    """OpenNMT-py's / eole's initialisation: decoder layer l starts from the aligned encoder layer's final state
    (forward and backward joined) as it is, an LSTM cell from that layer's final cell; no bridge weights."""
    model = make_model(
        cell=cell, attention="general", decoder_init="final", encoder_layers=3, decoder_layers=2
    )
    ids, mask = make_batch()
    encoder = model.get_encoder()
    with torch.no_grad():
        out = encoder(input_ids=ids, attention_mask=mask)
        _, final_h, final_c, _ = encoder._run_layers(encoder.embed_tokens(ids), mask.sum(-1), per_layer=False)
    joined = encoder._join_directions(final_h)  # (Le, B, H)
    assert encoder.bridge is None and encoder.bridge_cell is None
    for layer, source in enumerate((1, 2)):  # the top two encoder layers
        torch.testing.assert_close(out.decoder_hidden[:, layer], joined[source])
        if cell == "lstm":
            torch.testing.assert_close(out.decoder_cell[:, layer], encoder._join_directions(final_c)[source])
    assert (out.decoder_cell is None) == (cell == "gru")
    model.save_pretrained(tmp_path / "m")
    loaded = RNNSeq2SeqForConditionalGeneration.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.decoder_init == "final"
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.get_encoder()(input_ids=ids, attention_mask=mask).decoder_hidden, out.decoder_hidden
        )


def test_combine_activation_none_drops_the_tanh_of_luongs_attentional_layer():
    """eole's mlp attention: ``h~_t = W_c [c_t; h_t] + b_c`` without eq. (5)'s tanh; the same weights with the tanh
    give tanh of it (without input feeding the recurrence does not see h~_t)."""
    options = dict(attention="concat", combine_bias=True)
    with_tanh, without = make_model(**options), make_model(**options, combine_activation="none")
    with torch.no_grad():
        with_tanh.model.decoder.combine.weight.mul_(4.0)  # pre-activations beyond tanh's near-linear range
    without.load_state_dict(with_tanh.state_dict())
    assert isinstance(without.model.decoder.combine_activation, torch.nn.Identity)
    ids, mask = make_batch()
    dec = torch.tensor([[BOS, 5, 6]] * 3)
    seen = {}
    for name, model in (("tanh", with_tanh), ("none", without)):
        hook = model.model.decoder.combine_activation.register_forward_hook(
            lambda module, args, out, name=name: seen.__setitem__(name, out)
        )
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec)
        hook.remove()
    assert seen["none"].abs().max() > 1  # not squashed
    torch.testing.assert_close(torch.tanh(seen["none"]), seen["tanh"])


def test_scaled_embeddings_with_sinusoidal_positions_on_both_sides():
    """eole's RNN embeddings: E y * sqrt(E) plus the interleaved sinusoidal table, positions from 0 on each side (the
    decoder's continue from the cache: cached == uncached and teacher-forced == step-by-step run over GRID)."""
    from hf_seq2seq.models.modeling_seq2seq_utils import sinusoidal_table

    options = dict(attention="general", cell="lstm", scale_embedding=True, position_embedding="sinusoidal")
    model, plain = make_model(**options), make_model(attention="general", cell="lstm")
    ids, mask = make_batch()
    with torch.no_grad():
        states = model.get_encoder()(
            input_ids=ids, attention_mask=mask, output_hidden_states=True
        ).hidden_states
        expected = model.get_encoder().embed_tokens(ids) * 8**0.5 + sinusoidal_table(6, 8)
        torch.testing.assert_close(states[0], expected)
        dec = torch.tensor([[BOS, 5, 6, 7]] * 3)
        decoded = model.model.decoder._embed(dec[:, 2:], None, past_length=2)
        full = model.model.decoder._embed(dec, None)
    torch.testing.assert_close(decoded, full[:, 2:])  # a continuation gets positions 2, 3
    common = dict(input_ids=ids, attention_mask=mask, max_new_tokens=7, do_sample=False, num_beams=3)
    assert not torch.equal(model.generate(**common), plain.generate(**common))

"""The Hugging Face model contract beyond transformers' common suites (issue 13): the deprecated ``past_key_values``
alias, continuing ``generate()`` from a returned RNN cache, folders written before the headless RNN base model,
per-layer states, and a ``Seq2SeqTrainer``-saved folder loading where this package cannot be imported."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch
from conftest import run_without_package
from safetensors.torch import load_file, save_file
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

from hf_seq2seq import (
    RNNSeq2SeqConfig,
    RNNSeq2SeqForConditionalGeneration,
    TransformerSeq2SeqConfig,
    TransformerSeq2SeqForConditionalGeneration,
    train_tokenizer,
)
from hf_seq2seq.models.modeling_rnn_seq2seq import RNNDecoderCache, RNNSeq2SeqModel

RNN_VARIANTS = {
    "gru-bahdanau": dict(cell="gru", attention="bahdanau"),
    "lstm-general-feed": dict(
        cell="lstm", attention="general", input_feeding=True, bidirectional_encoder=False
    ),
    "gru-none": dict(cell="gru", attention="none"),
}


def rnn(seed: int = 0, **kw) -> RNNSeq2SeqForConditionalGeneration:
    torch.manual_seed(seed)
    config = RNNSeq2SeqConfig(vocab_size=40, embedding_size=8, hidden_size=16, dropout=0.0, **kw)
    model = RNNSeq2SeqForConditionalGeneration(config).eval()
    with torch.no_grad():  # sharper distributions, so that decoding paths differ
        model.lm_head.weight.mul_(4.0)
    return model


def transformer(seed: int = 0) -> TransformerSeq2SeqForConditionalGeneration:
    torch.manual_seed(seed)
    config = TransformerSeq2SeqConfig(
        vocab_size=40, d_model=16, num_attention_heads=2, ffn_dim=16, dropout=0.0
    )
    return TransformerSeq2SeqForConditionalGeneration(config).eval()


def batch(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 40, (3, 6), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    return ids, mask


@pytest.mark.parametrize("family", ["transformer", *RNN_VARIANTS])
def test_past_key_values_is_a_warned_alias_of_cache(family):
    model = transformer() if family == "transformer" else rnn(**RNN_VARIANTS[family])
    ids, mask = batch()
    dec = torch.full((3, 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        first = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, use_cache=True)
        nxt = first.logits[:, -1:].argmax(-1)
        step_kwargs = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=nxt, use_cache=True)
        with_new = model(**step_kwargs, cache=copy.deepcopy(first.cache)).logits
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with_old = model(**step_kwargs, past_key_values=copy.deepcopy(first.cache)).logits
        without = model(**step_kwargs, cache=None).logits  # what a silently dropped cache would give
    assert any("`past_key_values` is deprecated" in str(w.message) for w in caught)
    torch.testing.assert_close(with_old, with_new, rtol=0, atol=0)
    assert not torch.allclose(with_new, without, atol=1e-4)  # the cache matters: the alias is really used


@pytest.mark.parametrize("variant", list(RNN_VARIANTS))
def test_generate_continues_from_a_returned_rnn_cache(variant):
    """generate(3) then generate(3 more, decoder_input_ids=sequences, cache=cache) == generate(6) (greedy)."""
    model = rnn(**RNN_VARIANTS[variant])
    ids, mask = batch()
    kwargs = dict(input_ids=ids, attention_mask=mask, do_sample=False, eos_token_id=-1, pad_token_id=0)
    kwargs["return_dict_in_generate"] = True
    whole = model.generate(**kwargs, max_new_tokens=6)
    part = model.generate(**kwargs, max_new_tokens=3)
    assert isinstance(part.cache, RNNDecoderCache) and part.cache.get_seq_length() == 3
    rest = model.generate(**kwargs, max_new_tokens=3, decoder_input_ids=part.sequences, cache=part.cache)
    assert torch.equal(rest.sequences, whole.sequences)


def test_rnn_cache_is_a_transformers_cache_of_recurrent_layers():
    model = rnn(**RNN_VARIANTS["lstm-general-feed"])
    ids, mask = batch()
    out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=torch.ones(3, 2, dtype=torch.long))
    cache = out.cache
    assert all(cache.is_linear) and len(cache) == model.config.decoder_layers and not cache.is_compileable
    # stepping from the cache == teacher forcing the longer prefix (the state really is carried)
    nxt = torch.full((3, 1), 7)
    stepped = model(input_ids=ids, attention_mask=mask, decoder_input_ids=nxt, cache=cache).logits[:, -1]
    full_ids = torch.cat([torch.ones(3, 2, dtype=torch.long), nxt], dim=1)
    full = model(input_ids=ids, attention_mask=mask, decoder_input_ids=full_ids).logits[:, -1]
    torch.testing.assert_close(stepped, full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", list(RNN_VARIANTS))
def test_folder_without_the_base_model_prefix_loads_with_identical_outputs(tmp_path, variant):
    """Folders written before ``RNNSeq2SeqModel`` existed name the weights ``encoder.*`` / ``decoder.*``."""
    model = rnn(**RNN_VARIANTS[variant])
    model.save_pretrained(tmp_path)
    keys = set(load_file(tmp_path / "model.safetensors"))
    # saving converts back: folders keep one format, readable by code from before the base model too
    assert not any(k.startswith("model.") for k in keys) and any(k.startswith("encoder.") for k in keys)
    old = {k.removeprefix("model."): v.contiguous() for k, v in model.state_dict().items()}
    old = {k: v for k, v in old.items() if k in keys}
    save_file(old, tmp_path / "model.safetensors", metadata={"format": "pt"})

    loaded, info = RNNSeq2SeqForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids, mask = batch()
    dec = torch.ones(3, 4, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.eval()(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits,
            model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits,
            rtol=0,
            atol=0,
        )
        base = RNNSeq2SeqModel.from_pretrained(tmp_path).eval()
        torch.testing.assert_close(
            base(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).last_hidden_state,
            model.model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).last_hidden_state,
        )


def test_state_dict_without_the_base_model_prefix_loads():
    """A torch-level load (accelerate's load_state resuming a run started before the base model existed)."""
    model = rnn(**RNN_VARIANTS["gru-bahdanau"])
    old = {k.removeprefix("model."): v.clone() for k, v in model.state_dict().items()}
    fresh = rnn(seed=1, **RNN_VARIANTS["gru-bahdanau"])
    fresh.load_state_dict(old)  # strict: every key found
    ids, mask = batch()
    dec = torch.ones(3, 4, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(
            fresh(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits,
            model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits,
            rtol=0,
            atol=0,
        )


@pytest.mark.parametrize("variant", list(RNN_VARIANTS))
def test_rnn_hidden_states_are_embeddings_plus_one_per_layer(variant):
    model = rnn(**RNN_VARIANTS[variant], encoder_layers=3, decoder_layers=2)
    ids, mask = batch()
    dec = torch.ones(3, 4, dtype=torch.long)
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec)
        full = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, output_hidden_states=True)
    assert len(full.encoder_hidden_states) == 3 + 1 and len(full.decoder_hidden_states) == 2 + 1
    # the per-layer path computes the same thing as the fused multi-layer call
    torch.testing.assert_close(full.logits, plain.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(full.encoder_hidden_states[-1], plain.encoder_last_hidden_state)


def test_encoder_outputs_as_tuple_or_dict(tmp_path):
    model = rnn(**RNN_VARIANTS["lstm-general-feed"])
    ids, mask = batch()
    dec = torch.ones(3, 4, dtype=torch.long)
    encoder = model.get_encoder()
    ref = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    for hidden in (False, True):
        as_tuple = encoder(ids, mask, output_hidden_states=hidden, return_dict=False)
        as_dict = dict(encoder(ids, mask, output_hidden_states=hidden))
        for given in (as_tuple, as_dict):
            out = model(encoder_outputs=given, attention_mask=mask, decoder_input_ids=dec).logits
            torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match="decoder_hidden"):
        model(encoder_outputs=(as_tuple[0],), attention_mask=mask, decoder_input_ids=dec)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_seq2seq_trainer_folder_loads_without_the_package(tmp_path, family):
    texts = [f"the {w} sat on the mat {i}" for i, w in enumerate(["cat", "dog", "bird", "cow"] * 4)]
    tok = train_tokenizer(texts, vocab_size=60)
    if family == "rnn":
        config = RNNSeq2SeqConfig(vocab_size=len(tok), embedding_size=8, hidden_size=16)
        model = RNNSeq2SeqForConditionalGeneration(config)
    else:
        config = TransformerSeq2SeqConfig(vocab_size=len(tok), d_model=16, num_attention_heads=2, ffn_dim=16)
        model = TransformerSeq2SeqForConditionalGeneration(config)
    features = [{"input_ids": tok(t)["input_ids"], "labels": tok(t)["input_ids"]} for t in texts]
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        gradient_checkpointing=True,
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=features,
        data_collator=DataCollatorForSeq2Seq(tok, model=model),
        processing_class=tok,
    )
    trainer.train()
    folder = tmp_path / "saved"
    trainer.save_model(str(folder))
    assert "AutoModelForSeq2SeqLM" in json.loads((folder / "config.json").read_text())["auto_map"]
    model.eval()
    expected = model.generate(**tok(["the cat sat"], return_tensors="pt"), max_new_tokens=5).tolist()
    proc = run_without_package(
        f"""
        import json
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        folder = {str(folder)!r}
        tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        print(json.dumps(model.generate(**tok(["the cat sat"], return_tensors="pt"), max_new_tokens=5).tolist()))
        """
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == expected

"""Contract and invariant tests of the Transformer encoder-decoder, on tiny configs (d_model 16, 2 heads, 2+2 layers)."""

from __future__ import annotations

import json
import time

import pytest
import torch
from _output_bias import check_output_bias
from conftest import run_without_package
from safetensors import safe_open
from torch.nn import functional as F
from transformers import AutoConfig, AutoModelForSeq2SeqLM, CompileConfig
from transformers.cache_utils import EncoderDecoderCache, StaticCache

from hf_seq2seq import TransformerSeq2SeqConfig, TransformerSeq2SeqForConditionalGeneration

STYLES = [
    pytest.param(norm, pos, id=f"{norm}-{pos}")
    for norm in ("post", "pre")
    for pos in ("sinusoidal", "learned")
]


def tiny_config(**overrides) -> TransformerSeq2SeqConfig:
    kwargs = dict(
        vocab_size=24,
        d_model=16,
        encoder_layers=2,
        decoder_layers=2,
        num_attention_heads=2,
        ffn_dim=32,
        max_position_embeddings=64,
        init_std=0.5,  # peaked random logits: generations differ per input, no near-ties
    )
    kwargs.update(overrides)
    return TransformerSeq2SeqConfig(**kwargs)


def tiny_model(norm_style="post", position_embedding="sinusoidal", seed=0, **overrides):
    torch.manual_seed(seed)
    config = tiny_config(norm_style=norm_style, position_embedding=position_embedding, **overrides)
    return TransformerSeq2SeqForConditionalGeneration(config).eval()


def batch_inputs(lengths=(7, 4, 5), seed=1) -> dict[str, torch.Tensor]:
    """Right-padded source batch ending in </s> (2) with its attention mask."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(4, 24, (len(lengths), width), generator=g)
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    ids = ids.masked_fill(mask == 0, 0)
    ids[torch.arange(len(lengths)), torch.tensor(lengths) - 1] = 2
    return {"input_ids": ids, "attention_mask": mask}


GEN = dict(max_new_tokens=8, min_new_tokens=8)


# ------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"d_model": 18, "num_attention_heads": 4}, "d_model"),
        ({"norm_style": "sandwich"}, "norm_style"),
        ({"position_embedding": "rotary"}, "position_embedding"),
        ({"activation_function": "swiglu"}, "activation_function"),
        ({"attn_implementation": "flash_attention_9"}, "attn_implementation"),
        ({"encoder_layers": 0}, "encoder_layers"),
        ({"vocab_size": -5}, "vocab_size"),
        ({"ffn_dim": 2.5}, "ffn_dim"),
        ({"dropout": 1.0}, "dropout"),
        ({"attention_dropout": -0.1}, "attention_dropout"),
        ({"label_smoothing": 1.5}, "label_smoothing"),
        ({"scale_embedding": "yes"}, "scale_embedding"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps"),
        ({"layer_norm_eps": "1e-6"}, "layer_norm_eps"),
        ({"output_bias": "yes"}, "output_bias"),
    ],
)
def test_invalid_config_raises(kwargs, option):
    with pytest.raises(ValueError, match=option) as info:
        TransformerSeq2SeqConfig(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value) or str(next(iter(kwargs.values()))) in str(
        info.value
    )


def test_config_defaults_and_aliases():
    config = TransformerSeq2SeqConfig()
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id, config.decoder_start_token_id) == (
        0,
        1,
        2,
        1,
    )
    assert config.is_encoder_decoder and config.tie_word_embeddings
    assert config.num_hidden_layers == config.decoder_layers and config.hidden_size == config.d_model
    reloaded = TransformerSeq2SeqConfig.from_dict(config.to_dict())
    assert reloaded.to_dict() == config.to_dict()
    assert isinstance(AutoConfig.for_model("transformer_seq2seq"), TransformerSeq2SeqConfig)


def test_default_model_size_fits_multi30k():
    with torch.device("meta"):
        model = TransformerSeq2SeqForConditionalGeneration(TransformerSeq2SeqConfig())
    n = sum(p.numel() for p in model.parameters())
    assert 5e6 < n <= 10e6


# ---------------------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("norm_style, position_embedding", STYLES)
def test_cached_equals_uncached_greedy_and_beam(norm_style, position_embedding):
    model = tiny_model(norm_style, position_embedding)
    inputs = batch_inputs()
    for extra in ({}, {"num_beams": 3, "num_return_sequences": 2}):
        cached = model.generate(**inputs, **GEN, **extra)
        uncached = model.generate(**inputs, **GEN, **extra, use_cache=False)
        assert torch.equal(cached, uncached), extra
    # the outputs depend on the input (the random model is not degenerate)
    assert len({tuple(row.tolist()) for row in model.generate(**inputs, **GEN)}) > 1


@pytest.mark.parametrize("cache_implementation", [None, "static"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_cross_attention_kv_once_and_one_token_per_step(num_beams, cache_implementation):
    model = tiny_model()
    kv_calls, decoder_lengths = [], []
    hooks = [
        layer.cross_attn.kv_proj.register_forward_hook(lambda *_: kv_calls.append(1))
        for layer in model.model.decoder.layers
    ]
    hooks.append(
        model.model.decoder.register_forward_pre_hook(
            lambda mod, args: decoder_lengths.append(args[0].shape[1])
        )
    )
    try:
        out = model.generate(
            **batch_inputs(), **GEN, num_beams=num_beams, cache_implementation=cache_implementation
        )
    finally:
        for h in hooks:
            h.remove()
    assert out.shape[1] == 1 + GEN["max_new_tokens"]
    assert len(kv_calls) == model.config.decoder_layers  # once per layer for the whole generate call
    assert decoder_lengths == [1] * GEN["max_new_tokens"]  # never re-runs the prefix without the cache


def static_cache(model, max_cache_len: int, source_length: int) -> EncoderDecoderCache:
    """The cache ``generate(..., cache_implementation="static")`` builds: preallocated self- and cross-attention."""
    config = model.config
    return EncoderDecoderCache(
        StaticCache(config=config, max_cache_len=max_cache_len),
        StaticCache(config=config, max_cache_len=source_length),
    )


@pytest.mark.parametrize("norm_style, position_embedding", STYLES)
def test_static_cache_equals_dynamic_and_uncached(norm_style, position_embedding):
    """generate() with a preallocated cache (fixed shapes per step, the precondition for a compiled step) gives the
    same tokens as the default dynamic cache and as no cache, greedy and beam, sdpa and eager."""
    inputs = batch_inputs()
    for attn in ("sdpa", "eager"):
        model = tiny_model(norm_style, position_embedding, attn_implementation=attn)
        for extra in ({}, {"num_beams": 3, "num_return_sequences": 2}):
            dynamic = model.generate(**inputs, **GEN, **extra)
            static = model.generate(**inputs, **GEN, **extra, cache_implementation="static")
            uncached = model.generate(**inputs, **GEN, **extra, use_cache=False)
            assert torch.equal(static, dynamic), (attn, extra)
            assert torch.equal(static, uncached), (attn, extra)


@pytest.mark.parametrize("norm_style, position_embedding", STYLES)
def test_static_cache_steps_and_padding_mask_equal_teacher_forcing(norm_style, position_embedding):
    """forward() on a static cache: one token per step, then two at once (offset causal mask over all slots), with a
    decoder_attention_mask that hides one position; equals the teacher-forced logits."""
    model = tiny_model(norm_style, position_embedding)
    inputs = batch_inputs()
    ids = torch.randint(3, 24, (3, 6), generator=torch.Generator().manual_seed(5))
    ids[:, 0] = model.config.decoder_start_token_id
    mask = torch.ones_like(ids)
    mask[1, 2] = 0
    with torch.no_grad():
        full = model(**inputs, decoder_input_ids=ids, decoder_attention_mask=mask, use_cache=False).logits
        encoder_outputs = model.get_encoder()(**inputs)
        cache = static_cache(model, 16, inputs["input_ids"].shape[1])
        common = dict(encoder_outputs=encoder_outputs, attention_mask=inputs["attention_mask"], cache=cache)
        steps = [
            model(
                **common, decoder_input_ids=ids[:, t : t + 1], decoder_attention_mask=mask[:, : t + 1]
            ).logits
            for t in range(4)
        ]
        steps.append(model(**common, decoder_input_ids=ids[:, 4:], decoder_attention_mask=mask).logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert int(cache.get_seq_length()) == ids.shape[1]


def test_static_cache_longer_than_positions_raises():
    model = tiny_model(max_position_embeddings=8)
    with pytest.raises(ValueError, match="max_position_embeddings=8"):
        model.generate(**batch_inputs(), max_new_tokens=12, cache_implementation="static")


@pytest.mark.slow
def test_compiled_static_generate_equals_eager():
    """The decoder step compiles as one graph (fullgraph=True: no graph break) with a static cache and gives the
    same tokens. Greedy through generate()'s own compile_config (it compiles the steps after the first; forced on
    CPU), beam search (which generate() never compiles) through a compiled ``model.forward``."""
    inputs = batch_inputs()
    model = tiny_model()
    greedy = model.generate(**inputs, **GEN)
    beam = model.generate(**inputs, **GEN, num_beams=3)
    config = CompileConfig(fullgraph=True, mode="default", dynamic=False)
    config._compile_all_devices = True  # generate() compiles only on accelerators unless told otherwise
    compiled = model.generate(**inputs, **GEN, cache_implementation="static", compile_config=config)
    assert torch.equal(compiled, greedy)
    assert hasattr(model, "_compiled_call")  # the compiled path was taken
    model.forward = torch.compile(model.forward, backend="aot_eager", fullgraph=True, dynamic=False)
    assert torch.equal(model.generate(**inputs, **GEN, num_beams=3, cache_implementation="static"), beam)


@pytest.mark.parametrize("norm_style, position_embedding", STYLES)
def test_teacher_forced_equals_step_by_step(norm_style, position_embedding):
    model = tiny_model(norm_style, position_embedding)
    inputs = batch_inputs()
    decoder_input_ids = torch.randint(3, 24, (3, 6), generator=torch.Generator().manual_seed(5))
    decoder_input_ids[:, 0] = model.config.decoder_start_token_id
    with torch.no_grad():
        full = model(**inputs, decoder_input_ids=decoder_input_ids, use_cache=False).logits
        encoder_outputs = model.get_encoder()(**inputs)
        cache, steps = None, []
        for t in range(decoder_input_ids.shape[1]):
            out = model(
                encoder_outputs=encoder_outputs,
                attention_mask=inputs["attention_mask"],
                decoder_input_ids=decoder_input_ids[:, t : t + 1],
                cache=cache,
                use_cache=True,
            )
            cache = out.cache
            steps.append(out.logits)
        # two tokens at once on top of a cache (needs an explicit causal mask with an offset)
        two = model(
            encoder_outputs=encoder_outputs,
            attention_mask=inputs["attention_mask"],
            decoder_input_ids=decoder_input_ids[:, :4],
            use_cache=True,
        )
        rest = model(
            encoder_outputs=encoder_outputs,
            attention_mask=inputs["attention_mask"],
            decoder_input_ids=decoder_input_ids[:, 4:],
            cache=two.cache,
        )
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([two.logits, rest.logits], dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.get_seq_length() == decoder_input_ids.shape[1]


@pytest.mark.parametrize("norm_style, position_embedding", STYLES)
def test_padded_batch_equals_each_sentence_alone(norm_style, position_embedding):
    model = tiny_model(norm_style, position_embedding)
    inputs = batch_inputs(lengths=(7, 3, 5))
    batch_out = model.generate(**inputs, **GEN, output_scores=True, return_dict_in_generate=True)
    for i, length in enumerate((7, 3, 5)):
        alone = {"input_ids": inputs["input_ids"][i : i + 1, :length], "attention_mask": None}
        alone["attention_mask"] = torch.ones_like(alone["input_ids"])
        single = model.generate(**alone, **GEN, output_scores=True, return_dict_in_generate=True)
        assert torch.equal(single.sequences[0], batch_out.sequences[i])
        # fp32 rounding differs with the batch's matmul shapes (1.3e-5 seen under torch 2.9); a mask bug is >1e-3
        for s_batch, s_alone in zip(batch_out.scores, single.scores):
            torch.testing.assert_close(s_batch[i : i + 1], s_alone, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_decoder_attention_mask_hides_masked_positions(attn):
    """A token at a masked decoder position cannot influence any other position's logits."""
    model = tiny_model(attn_implementation=attn)
    inputs = batch_inputs()
    ids = torch.randint(4, 24, (3, 6), generator=torch.Generator().manual_seed(4))
    other = ids.clone()
    other[0, 2] = 3 if ids[0, 2] != 3 else 5
    mask = torch.ones_like(ids)
    mask[0, 2] = 0
    keep = mask.bool()
    with torch.no_grad():
        a = model(**inputs, decoder_input_ids=ids, decoder_attention_mask=mask).logits
        b = model(**inputs, decoder_input_ids=other, decoder_attention_mask=mask).logits
        unmasked_a = model(**inputs, decoder_input_ids=ids).logits
        unmasked_b = model(**inputs, decoder_input_ids=other).logits
    torch.testing.assert_close(a[keep], b[keep], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unmasked_a[0, 3:], unmasked_b[0, 3:], atol=1e-3)  # without the mask it would


@pytest.mark.parametrize("norm_style, position_embedding", STYLES)
def test_eager_equals_sdpa(norm_style, position_embedding):
    sdpa = tiny_model(norm_style, position_embedding, attn_implementation="sdpa")
    eager = tiny_model(norm_style, position_embedding, attn_implementation="eager")
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    inputs = batch_inputs()
    labels = torch.randint(3, 24, (3, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = sdpa(**inputs, labels=labels)
        b = eager(**inputs, labels=labels)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(
        sdpa.generate(**inputs, **GEN, num_beams=2), eager.generate(**inputs, **GEN, num_beams=2)
    )


# ------------------------------------------------------------------------------------------- generate
def test_generate_modes():
    model = tiny_model()
    inputs = batch_inputs()
    beams = model.generate(
        **inputs, max_new_tokens=6, num_beams=4, num_return_sequences=3, length_penalty=0.6
    )
    assert beams.shape[0] == 3 * 3 and beams.shape[1] <= 7
    assert torch.all(beams[:, 0] == model.config.decoder_start_token_id)

    def sample(seed):
        torch.manual_seed(seed)
        return model.generate(**inputs, **GEN, do_sample=True, top_k=5, top_p=0.9, temperature=1.5)

    assert torch.equal(sample(0), sample(0))
    assert any(not torch.equal(sample(0), sample(s)) for s in (1, 2, 3))
    # min_new_tokens forbids </s> before the minimum
    out = model.generate(**inputs, max_new_tokens=10, min_new_tokens=10)
    assert out.shape[1] == 11 and not (out[:, 1:-1] == model.config.eos_token_id).any()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_cross_attentions_per_layer_and_head(attn):
    model = tiny_model(attn_implementation=attn)
    inputs = batch_inputs(lengths=(7, 3, 5))
    decoder_input_ids = torch.ones(3, 4, dtype=torch.long)
    with torch.no_grad():
        out = model(**inputs, decoder_input_ids=decoder_input_ids, output_attentions=True)
    assert len(out.cross_attentions) == model.config.decoder_layers
    for weights in out.cross_attentions:
        assert weights.shape == (3, 2, 4, 7)  # (B, heads, T, S)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 4))
        assert weights[1, :, :, 3:].max() < 1e-6  # padding gets no attention
    assert len(out.encoder_attentions) == model.config.encoder_layers
    gen = model.generate(**inputs, **GEN, output_attentions=True, return_dict_in_generate=True)
    assert len(gen.cross_attentions) == GEN["max_new_tokens"]
    for step in gen.cross_attentions:
        assert len(step) == model.config.decoder_layers
        assert all(w.shape == (3, 2, 1, 7) for w in step)


def test_forward_contract():
    model = tiny_model()
    inputs = batch_inputs()
    labels = torch.randint(3, 24, (3, 5))
    out = model(**inputs, labels=labels, some_future_kwarg=True)  # **kwargs accepted
    assert out.logits.shape == (3, 5, 24) and out.encoder_last_hidden_state.shape == (3, 7, 16)
    assert out.cache is None  # labels → no cache
    shifted = model.prepare_decoder_input_ids_from_labels(torch.tensor([[5, 6, 2, -100]]))
    assert shifted.tolist() == [[1, 5, 6, 2]]
    assert model.get_encoder() is model.model.encoder
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(
            input_ids=torch.ones(1, 70, dtype=torch.long),
            decoder_input_ids=torch.ones(1, 1, dtype=torch.long),
        )


def test_label_smoothed_loss_ignores_padding():
    model = tiny_model(label_smoothing=0.1)
    inputs = batch_inputs()
    labels = torch.randint(3, 24, (3, 5), generator=torch.Generator().manual_seed(7))
    labels[1, 3:] = -100
    with torch.no_grad():
        out = model(**inputs, labels=labels)
        # the same batch with extra -100 columns gives the same loss
        padded = torch.cat([labels, torch.full((3, 3), -100)], dim=1)
        out_padded = model(**inputs, labels=padded)
    torch.testing.assert_close(out.loss, out_padded.loss)
    # independent formula: (1 - eps) * NLL + eps * mean over the vocabulary of -log p, over real tokens only
    logp = F.log_softmax(out.logits, dim=-1)
    keep = labels != -100
    nll = -logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    smooth = -logp.mean(-1)
    expected = ((0.9 * nll + 0.1 * smooth) * keep).sum() / keep.sum()
    torch.testing.assert_close(out.loss, expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------- save / load
def test_save_load_tied_and_bfloat16(tmp_path):
    model = tiny_model("pre", "learned")
    inputs = batch_inputs()
    expected = model.generate(**inputs, **GEN)
    model.save_pretrained(tmp_path)

    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, TransformerSeq2SeqForConditionalGeneration)
    assert torch.equal(loaded.generate(**inputs, **GEN), expected)
    shared = loaded.model.encoder.embed_tokens.weight
    assert loaded.lm_head.weight is shared and loaded.model.decoder.embed_tokens.weight is shared

    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    embedding_keys = [k for k in keys if k.endswith("embed_tokens.weight") or k == "lm_head.weight"]
    assert len(embedding_keys) == 1, embedding_keys
    assert not any("table" in k for k in keys)  # sinusoidal tables are computed, never stored

    bf16 = AutoModelForSeq2SeqLM.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert bf16.lm_head.weight.dtype == torch.bfloat16
    out = bf16.generate(**inputs, **GEN, num_beams=2)
    assert out.shape == (3, 1 + GEN["max_new_tokens"])


def test_untied_weights_are_separate(tmp_path):
    model = tiny_model(tie_word_embeddings=False)
    assert model.lm_head.weight is not model.model.encoder.embed_tokens.weight
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        assert {"lm_head.weight", "model.decoder.embed_tokens.weight"} <= set(f.keys())


@pytest.mark.slow
@pytest.mark.parametrize("norm_style, position_embedding", [("post", "sinusoidal")])
def test_remote_code_load_in_fresh_process(tmp_path, norm_style, position_embedding):
    model = tiny_model(norm_style, position_embedding)
    inputs = batch_inputs()
    expected = model.generate(**inputs, **GEN, num_beams=2).tolist()
    config_cls, model_cls = TransformerSeq2SeqConfig, TransformerSeq2SeqForConditionalGeneration
    config_cls.register_for_auto_class()
    model_cls.register_for_auto_class("AutoModelForSeq2SeqLM")
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "AutoModelForSeq2SeqLM" in saved["auto_map"]
    assert (tmp_path / "modeling_transformer_seq2seq.py").exists()
    assert (tmp_path / "configuration_transformer_seq2seq.py").exists()
    proc = run_without_package(
        f"""
        import json, torch
        from transformers import AutoModelForSeq2SeqLM
        model = AutoModelForSeq2SeqLM.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        ids = torch.tensor({inputs["input_ids"].tolist()})
        mask = torch.tensor({inputs["attention_mask"].tolist()})
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, num_beams=2)
        print("OUT" + json.dumps(out.tolist()))
        """
    )
    line = next(line for line in proc.stdout.splitlines() if line.startswith("OUT"))
    assert json.loads(line[3:]) == expected


# ------------------------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_learns_reordering_task():
    """A tiny model learns the embedded German→English number-words task (crossing alignments) to >= 95%."""
    from transformers import DataCollatorForSeq2Seq

    from hf_seq2seq.tasks import make_task
    from hf_seq2seq.tokenization import train_tokenizer

    rows = [r["translation"] for r in make_task("numbers", 1000, seed=0, max_number=999)]
    train, test = rows[:900], rows[900:]
    tok = train_tokenizer([r["de"] for r in rows] + [r["en"] for r in rows], vocab_size=200)
    torch.manual_seed(0)
    config = TransformerSeq2SeqConfig(
        vocab_size=len(tok),
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        num_attention_heads=4,
        ffn_dim=128,
        dropout=0.0,
        norm_style="pre",
        max_position_embeddings=64,
        label_smoothing=0.0,
    )
    model = TransformerSeq2SeqForConditionalGeneration(config)
    features = [dict(tok(r["de"], text_target=r["en"])) for r in train]
    collate = DataCollatorForSeq2Seq(tok, model=model)
    epochs, batch_size = 24, 32
    total = epochs * -(-len(features) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / total)
    g = torch.Generator().manual_seed(0)
    start = time.time()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(features), generator=g).tolist()
        for i in range(0, len(order), batch_size):
            loss = model(**collate([features[j] for j in order[i : i + batch_size]])).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    train_seconds = time.time() - start
    model.eval()
    enc = tok([r["de"] for r in test], return_tensors="pt", padding=True)
    out = model.generate(**enc, max_new_tokens=32)
    predictions = tok.batch_decode(out, skip_special_tokens=True)
    accuracy = sum(p == r["en"] for p, r in zip(predictions, test)) / len(test)
    assert accuracy >= 0.95, (accuracy, train_seconds, list(zip(predictions, [r["en"] for r in test]))[:5])


@pytest.mark.parametrize("norm_style", ["post", "pre"])
def test_layer_norm_eps_reaches_every_layer_norm_and_survives_save(tmp_path, norm_style):
    """``layer_norm_eps`` (JoeyNMT's 1e-6 for converted models) is the epsilon of every LayerNorm, is saved, and a
    folder saved without it (before the option) loads with torch's 1e-5."""
    config = TransformerSeq2SeqConfig(
        vocab_size=20, d_model=8, encoder_layers=1, decoder_layers=1, num_attention_heads=2, ffn_dim=8,
        norm_style=norm_style, layer_norm_eps=1e-6,
    )  # fmt: skip
    model = TransformerSeq2SeqForConditionalGeneration(config).eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 5 + 2 * (norm_style == "pre") and {m.eps for m in norms} == {1e-6}
    model.save_pretrained(tmp_path / "m")
    loaded = TransformerSeq2SeqForConditionalGeneration.from_pretrained(tmp_path / "m").eval()
    assert {m.eps for m in loaded.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-6}
    ids = torch.tensor([[5, 6, 7, 2]])
    with torch.no_grad():
        assert torch.equal(
            model(input_ids=ids, decoder_input_ids=ids).logits,
            loaded(input_ids=ids, decoder_input_ids=ids).logits,
        )
    assert TransformerSeq2SeqConfig.from_dict({"model_type": "transformer_seq2seq"}).layer_norm_eps == 1e-5


@pytest.mark.parametrize("tied", [True, False])
def test_output_bias_is_added_to_the_logits_and_survives_save(tmp_path, tied):
    """``output_bias`` (Marian's ``final_logits_bias``, eole's generator bias): tests/_output_bias.py's contract."""
    check_output_bias(
        tmp_path,
        tiny_model("pre", tie_word_embeddings=tied),
        tiny_model("pre", tie_word_embeddings=tied, output_bias=True),
        batch_inputs(),
        torch.tensor([[1, 5, 6, 7]] * 3),
        GEN,
        tied,
    )

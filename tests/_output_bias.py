"""The ``output_bias`` contract, the same for both families (tests/models/test_*_seq2seq.py call it)."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open
from transformers import AutoModelForSeq2SeqLM


def check_output_bias(tmp_path, plain, model, inputs: dict, decoder_input_ids, generate: dict, tied: bool):
    """``model`` is ``plain`` with ``output_bias=True``: its logits are the bias-free model's plus the bias, cached
    decoding equals uncached, the bias is saved beside the (still tied) embeddings, and a folder saved without the
    option loads without a bias."""
    assert plain.lm_head.bias is None and model.lm_head.bias is not None
    assert model.load_state_dict(plain.state_dict(), strict=False).missing_keys == ["lm_head.bias"]
    with torch.no_grad():
        size = model.lm_head.bias.shape[0]
        model.lm_head.bias.copy_(3 * torch.randn(size, generator=torch.Generator().manual_seed(0)))
        logits = model(**inputs, decoder_input_ids=decoder_input_ids).logits
        bias_free = plain(**inputs, decoder_input_ids=decoder_input_ids).logits
    torch.testing.assert_close(logits, bias_free + model.lm_head.bias)
    for extra in ({"num_beams": 1}, {"num_beams": 3, "num_return_sequences": 2}):
        cached = model.generate(**inputs, **generate, **extra)
        assert torch.equal(cached, model.generate(**inputs, **generate, **extra, use_cache=False)), extra
    expected = model.generate(**inputs, **generate, num_beams=3)
    assert not torch.equal(expected, plain.generate(**inputs, **generate, num_beams=3))  # the bias matters
    model.save_pretrained(tmp_path / "bias")
    with safe_open(str(tmp_path / "bias" / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "lm_head.bias" in keys and ("lm_head.weight" in keys) != tied
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "bias").eval()
    assert loaded.config.output_bias and torch.equal(loaded.lm_head.bias, model.lm_head.bias)
    shared = loaded.lm_head.weight.data_ptr() == loaded.get_input_embeddings().weight.data_ptr()
    assert shared == tied
    assert torch.equal(loaded.generate(**inputs, **generate, num_beams=3), expected)
    plain.save_pretrained(tmp_path / "plain")
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    config.pop("output_bias")  # a folder written before the option existed
    (tmp_path / "plain" / "config.json").write_text(json.dumps(config))
    old = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "plain").eval()
    assert not old.config.output_bias and old.lm_head.bias is None

"""LoRA with PEFT on both text families (issue 28, row 5). The Transformer's self-attention projects Q, K, V with one
fused ``qkv_proj`` and its cross-attention K, V with one ``kv_proj``, so PEFT's usual ``["q_proj", "v_proj"]`` would
adapt the cross-attention query alone; importing hf_seq2seq registers each model type's default targets with PEFT
(``families.ModelFamily.lora_target_modules``: every attention projection of the Transformer, every linear layer but
the output layer of the RNN), which ``LoraConfig()`` without ``target_modules`` uses. Then: train, save the adapter,
load it back, merge, save the merged model and load it — the same logits each time."""

from __future__ import annotations

import pytest
import torch
from hub_server import tiny_model, tiny_tokenizer
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForSeq2SeqLM

from hf_seq2seq.families import BY_MODEL_TYPE
from hf_seq2seq.hub import save_model_folder

PAIRS = [("drei und zwanzig", "twenty-three"), ("neun tausend", "nine thousand")]


def _batch(tok):
    enc = tok([s for s, _ in PAIRS], text_target=[t for _, t in PAIRS], padding=True, return_tensors="pt")
    enc["labels"] = enc["labels"].masked_fill(enc["labels"] == tok.pad_token_id, -100)
    return enc


def _logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def _load(folder):
    return AutoModelForSeq2SeqLM.from_pretrained(folder).eval()


def _expected_targets(model) -> set[str]:
    """The modules the family's registered default should adapt, found on the plain model."""
    targets = BY_MODEL_TYPE[model.config.model_type].lora_target_modules
    linear = {name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    if targets == "all-linear":
        return linear - {"lm_head"}
    return {name for name in linear if name.rsplit(".", 1)[-1] in targets}


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_lora_with_the_default_targets_trains_saves_reloads_and_merges(family, tmp_path):
    tok = tiny_tokenizer()
    batch = _batch(tok)
    expected = _expected_targets(tiny_model(family, len(tok)))
    if family == "transformer":  # every layer's self-attention (encoder and decoder) and cross-attention
        assert {n.rsplit(".", 1)[-1] for n in expected} == {"qkv_proj", "q_proj", "kv_proj"}
        assert sum(n.endswith("qkv_proj") for n in expected) == 3  # 1 encoder + 2 decoder layers

    folder = save_model_folder(tiny_model(family, len(tok)), tok, tmp_path / "base")  # as training saves it
    model = get_peft_model(_load(folder), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0))
    adapted = {
        n.removeprefix("base_model.model.") for n, m in model.named_modules() if isinstance(m, LoraLayer)
    }
    assert adapted == expected
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)

    # train: the loss falls, only the adapter moves
    before = _logits(model, batch)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    model.train()
    losses = []
    for _ in range(8):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    trained = _logits(model, batch)
    assert not torch.allclose(trained, before)

    # save the adapter, load it onto a fresh base: the same logits
    model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(_load(folder), tmp_path / "adapter")
    torch.testing.assert_close(_logits(reloaded, batch), trained, rtol=0, atol=1e-6)

    # merge into the weights, save as a plain model folder, load with the Auto class: the same logits
    merged = reloaded.merge_and_unload()
    assert not any(isinstance(m, LoraLayer) for m in merged.modules())
    torch.testing.assert_close(_logits(merged, batch), trained, rtol=1e-5, atol=1e-5)
    merged.save_pretrained(tmp_path / "merged")
    assert (tmp_path / "merged" / "pipeline_text2text.py").is_file()  # the folder still runs in its pipeline
    loaded = _load(tmp_path / "merged")
    torch.testing.assert_close(_logits(loaded, batch), trained, rtol=1e-5, atol=1e-5)
    ids = loaded.generate(**{k: batch[k] for k in ("input_ids", "attention_mask")}, max_new_tokens=4)
    assert ids.shape[0] == len(PAIRS)


def test_the_usual_names_reach_only_the_cross_attention_query_of_the_transformer():
    """What the registered default is for: PEFT's usual ``["q_proj", "v_proj"]`` finds no ``v_proj`` here (V is inside
    the fused projections), so it adapts a fraction of what the default adapts; docs/training.md says so."""
    tok = tiny_tokenizer()
    usual = get_peft_model(
        tiny_model("transformer", len(tok)), LoraConfig(target_modules=["q_proj", "v_proj"])
    )
    default = get_peft_model(tiny_model("transformer", len(tok)), LoraConfig())
    adapted = {n.rsplit(".", 1)[-1] for n, m in usual.named_modules() if isinstance(m, LoraLayer)}
    assert adapted == {"q_proj"}
    assert usual.get_nb_trainable_parameters()[0] < default.get_nb_trainable_parameters()[0] / 2

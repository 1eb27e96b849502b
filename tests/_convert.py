"""Helpers of the conversion tests (tests/convert/): a tokenizer trained on the embedded task, a tiny stock
``MarianMTModel`` and a tiny Transformer of ours, each saved as a folder, and a batch to compare them on."""

from __future__ import annotations

import torch

from hf_seq2seq.tasks import make_task
from hf_seq2seq.tokenization import train_tokenizer

TINY = {"d_model": 16, "encoder_layers": 2, "decoder_layers": 2, "max_position_embeddings": 64}


def task_pairs(n: int = 200) -> list[tuple[str, str]]:
    rows = make_task("numbers", n)
    return [tuple(row["translation"].values()) for row in rows]  # type: ignore[misc]


def tiny_tokenizer():
    return train_tokenizer([text for pair in task_pairs() for text in pair], vocab_size=120)


def tiny_marian(tokenizer, seed: int = 0, *, shared: bool = True, **overrides):
    """A randomly initialised stock MarianMTModel over ``tokenizer``'s vocabulary (Marian's own special-id layout:
    decoding starts with the pad id; init_std 0.3 so the logits are far from uniform)."""
    from transformers import MarianConfig, MarianMTModel

    options = dict(
        TINY,
        vocab_size=len(tokenizer),
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=0,
        forced_eos_token_id=2,
        scale_embedding=True,
        activation_function="swish",
        init_std=0.3,
        share_encoder_decoder_embeddings=shared,
        tie_word_embeddings=shared,
    )
    options.update(overrides)
    torch.manual_seed(seed)
    return MarianMTModel(MarianConfig(**options)).eval()


def tiny_ours(tokenizer, seed: int = 0, **overrides):
    from hf_seq2seq.families import FAMILIES

    family = FAMILIES["transformer"]
    options = dict(TINY, vocab_size=len(tokenizer), num_attention_heads=2, ffn_dim=32, init_std=0.3)
    options.update(overrides)
    torch.manual_seed(seed)
    return family.model_class(family.config_class(**options)).eval()


def batch(tokenizer, n: int = 4):
    """Source inputs (right-padded, as our tokenizer pads) and decoder inputs of ``n`` task pairs."""
    pairs = task_pairs()[:n]
    inputs = tokenizer([s for s, _ in pairs], return_tensors="pt", padding=True)
    labels = tokenizer([t for _, t in pairs], return_tensors="pt", padding=True).input_ids
    return inputs, labels

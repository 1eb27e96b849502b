"""PLACEHOLDER: replaced by the transformer family implementation."""

from transformers import PretrainedConfig


class TransformerSeq2SeqConfig(PretrainedConfig):
    model_type = "transformer_seq2seq"

    def __init__(self, vocab_size: int = 8000, **kwargs):
        self.vocab_size = vocab_size
        super().__init__(**kwargs)

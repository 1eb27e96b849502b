"""PLACEHOLDER: replaced by the rnn family implementation."""

from transformers import PretrainedConfig


class RNNSeq2SeqConfig(PretrainedConfig):
    model_type = "rnn_seq2seq"

    def __init__(self, vocab_size: int = 8000, **kwargs):
        self.vocab_size = vocab_size
        super().__init__(**kwargs)

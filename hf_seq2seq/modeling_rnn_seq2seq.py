"""PLACEHOLDER: replaced by the rnn family implementation."""

from transformers import GenerationMixin, PreTrainedModel

from .configuration_rnn_seq2seq import RNNSeq2SeqConfig


class RNNSeq2SeqForConditionalGeneration(PreTrainedModel, GenerationMixin):
    config_class = RNNSeq2SeqConfig

    def __init__(self, config):
        super().__init__(config)
        raise NotImplementedError("placeholder")

"""PLACEHOLDER: replaced by the transformer family implementation."""

from transformers import GenerationMixin, PreTrainedModel

from .configuration_transformer_seq2seq import TransformerSeq2SeqConfig


class TransformerSeq2SeqForConditionalGeneration(PreTrainedModel, GenerationMixin):
    config_class = TransformerSeq2SeqConfig

    def __init__(self, config):
        super().__init__(config)
        raise NotImplementedError("placeholder")

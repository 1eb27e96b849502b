"""hf_seq2seq: the classic sequence-to-sequence family as first-class Hugging Face models.

Importing the package registers both model types with ``AutoConfig`` / ``AutoModelForSeq2SeqLM`` and the
``"text2text"`` pipeline task.
"""

from transformers import AutoConfig, AutoModelForSeq2SeqLM

from .configuration_rnn_seq2seq import RNNSeq2SeqConfig
from .configuration_transformer_seq2seq import TransformerSeq2SeqConfig
from .modeling_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration
from .modeling_transformer_seq2seq import TransformerSeq2SeqForConditionalGeneration
from .pipeline_text2text import Text2TextPipeline, register_pipeline
from .tokenization import train_tokenizer

__version__ = "0.1.0"

__all__ = [
    "RNNSeq2SeqConfig",
    "RNNSeq2SeqForConditionalGeneration",
    "TransformerSeq2SeqConfig",
    "TransformerSeq2SeqForConditionalGeneration",
    "Text2TextPipeline",
    "train_tokenizer",
]


def _register() -> None:
    for config_cls, model_cls in (
        (RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration),
        (TransformerSeq2SeqConfig, TransformerSeq2SeqForConditionalGeneration),
    ):
        AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
        AutoModelForSeq2SeqLM.register(config_cls, model_cls, exist_ok=True)
    register_pipeline()


_register()

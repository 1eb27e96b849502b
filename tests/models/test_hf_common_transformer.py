"""transformers' own common model tests for the Transformer family (post- and pre-norm; base and LM classes).

Wired as the library's ``tests/models/bart/test_modeling_bart.py`` does: a tiny ``ModelTester`` building a
config and inputs, then ``ModelTesterMixin`` + ``GenerationTesterMixin`` + ``ConfigTester``. Skips name their
reason in one line; CONTRIBUTING.md lists them.
"""

from __future__ import annotations

import unittest

import pytest
import torch
from _hf_common import ConfigTester, GenerationTesterMixin, ModelTesterMixin, ids_tensor, register_model_names

from hf_seq2seq.models.configuration_transformer_seq2seq import TransformerSeq2SeqConfig
from hf_seq2seq.models.modeling_transformer_seq2seq import (
    TransformerSeq2SeqForConditionalGeneration,
    TransformerSeq2SeqModel,
)

# the project's pytest settings ignore FutureWarning; the common tests assert transformers' deprecation warnings
pytestmark = pytest.mark.filterwarnings("default::FutureWarning")

register_model_names(
    "transformer_seq2seq",
    base="TransformerSeq2SeqModel",
    seq2seq_lm="TransformerSeq2SeqForConditionalGeneration",
)


class TransformerSeq2SeqModelTester:
    """Tiny configs and inputs (BartModelTester's sizes): the whole suite runs in seconds per class."""

    def __init__(
        self,
        parent,
        norm_style: str = "post",
        batch_size: int = 13,
        seq_length: int = 7,
        layer_norm_eps: float = 1e-5,
        output_bias: bool = False,
    ):
        self.parent = parent
        self.output_bias = output_bias
        self.norm_style = norm_style
        self.layer_norm_eps = layer_norm_eps
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.encoder_seq_length = seq_length
        self.decoder_seq_length = seq_length
        self.is_training = True
        self.vocab_size = 99
        self.hidden_size = 16
        self.num_hidden_layers = 2
        self.num_attention_heads = 4
        self.intermediate_size = 4
        self.max_position_embeddings = 50
        self.pad_token_id, self.bos_token_id, self.eos_token_id = 1, 0, 2
        self.decoder_start_token_id = 0

    def get_config(self) -> TransformerSeq2SeqConfig:
        return TransformerSeq2SeqConfig(
            vocab_size=self.vocab_size,
            d_model=self.hidden_size,
            encoder_layers=self.num_hidden_layers,
            decoder_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            ffn_dim=self.intermediate_size,
            dropout=0.1,
            attention_dropout=0.1,
            norm_style=self.norm_style,
            layer_norm_eps=self.layer_norm_eps,
            output_bias=self.output_bias,
            max_position_embeddings=self.max_position_embeddings,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            decoder_start_token_id=self.decoder_start_token_id,
        )

    def prepare_config_and_inputs(self):
        # ids >= 3 so that no special token appears by chance, then </s> last (as BartModelTester)
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3)
        input_ids[:, -1] = self.eos_token_id
        decoder_input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3)
        config = self.get_config()
        inputs = {
            "input_ids": input_ids,
            "decoder_input_ids": decoder_input_ids,
            "attention_mask": input_ids.ne(self.pad_token_id),
            "decoder_attention_mask": decoder_input_ids.ne(self.pad_token_id),
        }
        return config, inputs

    def prepare_config_and_inputs_for_common(self):
        return self.prepare_config_and_inputs()


class _TransformerCommonTests(ModelTesterMixin, GenerationTesterMixin):
    all_model_classes = (TransformerSeq2SeqModel, TransformerSeq2SeqForConditionalGeneration)
    all_generative_model_classes = (TransformerSeq2SeqForConditionalGeneration,)
    is_encoder_decoder = True
    norm_style = "post"
    layer_norm_eps = 1e-5
    output_bias = False
    test_resize_embeddings = True
    test_missing_keys = True

    def setUp(self):
        torch.manual_seed(0)
        self.model_tester = TransformerSeq2SeqModelTester(
            self,
            norm_style=self.norm_style,
            layer_norm_eps=self.layer_norm_eps,
            output_bias=self.output_bias,
        )
        self.config_tester = ConfigTester(self, config_class=TransformerSeq2SeqConfig, d_model=16)

    def test_config(self):
        self.config_tester.run_common_tests()


class TransformerPostNormCommonTest(_TransformerCommonTests, unittest.TestCase):
    norm_style = "post"


class TransformerPreNormCommonTest(_TransformerCommonTests, unittest.TestCase):
    norm_style = "pre"
    layer_norm_eps = (
        1e-6  # JoeyNMT's epsilon (converted pre-norm models keep it): the option runs the whole suite
    )
    output_bias = (
        True  # eole's generator bias (converted eole models have it): the option runs the whole suite
    )

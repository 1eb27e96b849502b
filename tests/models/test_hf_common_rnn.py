"""transformers' own common model tests for the RNN family (base and LM classes), one test class per variant:
GRU + Bahdanau with a bidirectional encoder; LSTM + Luong general with input feeding; GRU without attention (Cho);
Luong dot; Luong concat as eole starts it, with an output-layer bias.

Wired as the library's ``tests/models/bart/test_modeling_bart.py`` does. An RNN has no self-attention and its
decoder state is a recurrent ``Cache`` (``LinearAttentionLayer`` per layer, as the library's recurrent models),
so, as transformers' own recurrent-model tests do, the classes set ``has_attentions = False`` and check the
cache layout in ``_check_past_key_values_for_generate``. Skips name their reason in one line; CONTRIBUTING.md
lists them.
"""

from __future__ import annotations

import unittest

import pytest
import torch
from _hf_common import ConfigTester, GenerationTesterMixin, ModelTesterMixin, ids_tensor, register_model_names
from transformers.cache_utils import LinearAttentionLayer

from hf_seq2seq.models.configuration_rnn_seq2seq import RNNSeq2SeqConfig
from hf_seq2seq.models.modeling_rnn_seq2seq import (
    RNNDecoderCache,
    RNNSeq2SeqForConditionalGeneration,
    RNNSeq2SeqModel,
)

# the project's pytest settings ignore FutureWarning; the common tests assert transformers' deprecation warnings
pytestmark = pytest.mark.filterwarnings("default::FutureWarning")

register_model_names("rnn_seq2seq", base="RNNSeq2SeqModel", seq2seq_lm="RNNSeq2SeqForConditionalGeneration")


class RNNSeq2SeqModelTester:
    """Tiny configs and inputs. ``embedding_size == hidden_size`` so that the embeddings (``hidden_states[0]``)
    have the shape the common hidden-states test expects of every entry."""

    def __init__(self, parent, batch_size: int = 13, seq_length: int = 7, **config_kwargs):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.encoder_seq_length = seq_length
        self.decoder_seq_length = seq_length
        self.is_training = True
        self.vocab_size = 99
        self.hidden_size = 16
        self.num_hidden_layers = 2
        self.num_attention_heads = 1  # cross_attentions are (B, 1, T, S)
        self.pad_token_id, self.bos_token_id, self.eos_token_id = 1, 0, 2
        self.decoder_start_token_id = 0
        self.config_kwargs = config_kwargs

    def get_config(self) -> RNNSeq2SeqConfig:
        return RNNSeq2SeqConfig(
            vocab_size=self.vocab_size,
            embedding_size=self.hidden_size,
            hidden_size=self.hidden_size,
            encoder_layers=self.num_hidden_layers,
            decoder_layers=self.num_hidden_layers,
            dropout=0.1,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            decoder_start_token_id=self.decoder_start_token_id,
            **self.config_kwargs,
        )

    def prepare_config_and_inputs(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3)
        input_ids[:, -1] = self.eos_token_id
        decoder_input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3)
        inputs = {
            "input_ids": input_ids,
            "decoder_input_ids": decoder_input_ids,
            "attention_mask": torch.ones_like(input_ids),
        }
        return self.get_config(), inputs

    def prepare_config_and_inputs_for_common(self):
        return self.prepare_config_and_inputs()


class _RNNCommonTests(ModelTesterMixin, GenerationTesterMixin):
    all_model_classes = (RNNSeq2SeqModel, RNNSeq2SeqForConditionalGeneration)
    all_generative_model_classes = (RNNSeq2SeqForConditionalGeneration,)
    is_encoder_decoder = True
    has_attentions = False  # no self-attention (transformers' recurrent-model tests set the same)
    test_resize_embeddings = True
    config_kwargs: dict = {}

    def setUp(self):
        torch.manual_seed(0)
        self.model_tester = RNNSeq2SeqModelTester(self, **self.config_kwargs)
        self.config_tester = ConfigTester(
            self,
            config_class=RNNSeq2SeqConfig,
            hidden_size=16,
            common_properties=["hidden_size", "num_hidden_layers"],
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def _check_past_key_values_for_generate(self, batch_size, past_key_values, seq_length, config):
        """The RNN state layout: one LinearAttentionLayer per decoder layer holding h (and c) as (B, H), the top
        layer also Luong's input feed; ``seen_tokens`` counts the target tokens consumed."""
        cache = past_key_values
        self.assertIsInstance(cache, RNNDecoderCache)
        self.assertEqual(len(cache), config.decoder_layers)
        states_per_layer = 1 + (config.cell == "lstm")
        for index, layer in enumerate(cache.layers):
            self.assertIs(type(layer), LinearAttentionLayer)
            feed = config.input_feeding and index == len(cache) - 1
            self.assertEqual(layer.number_of_states, states_per_layer + feed)
            for state in range(layer.number_of_states):
                self.assertEqual(layer.recurrent_states[state].shape, (batch_size, config.hidden_size))
        self.assertEqual(cache.get_seq_length(), seq_length)

    def _check_caches_are_equal(self, cache1, cache2):
        self.assertEqual(len(cache1), len(cache2))
        self.assertEqual(cache1.seen_tokens, cache2.seen_tokens)
        for layer1, layer2 in zip(cache1.layers, cache2.layers, strict=True):
            for state in range(layer1.number_of_states):
                torch.testing.assert_close(layer1.recurrent_states[state], layer2.recurrent_states[state])


class RNNGRUBahdanauBidirectionalCommonTest(_RNNCommonTests, unittest.TestCase):
    config_kwargs = {"cell": "gru", "attention": "bahdanau", "bidirectional_encoder": True}


class RNNLSTMLuongGeneralInputFeedingCommonTest(_RNNCommonTests, unittest.TestCase):
    # JoeyNMT's LSTM decoder (combine_bias, decoder_init="top_bridge"): converted models run the whole suite
    config_kwargs = {
        "cell": "lstm",
        "attention": "general",
        "input_feeding": True,
        "bidirectional_encoder": False,
        "combine_bias": True,
        "decoder_init": "top_bridge",
    }


class RNNGRUNoAttentionCommonTest(_RNNCommonTests, unittest.TestCase):
    config_kwargs = {"cell": "gru", "attention": "none"}


class RNNLuongDotCommonTest(_RNNCommonTests, unittest.TestCase):
    config_kwargs = {"cell": "gru", "attention": "dot", "decoder_init": "top"}  # JoeyNMT's `last`


class RNNLuongConcatCommonTest(_RNNCommonTests, unittest.TestCase):
    # eole's RNN with mlp attention (converted models have it): output_bias (the generator bias), decoder_init="final"
    # (every layer starts from its encoder layer's final state), W_c with a bias and without tanh, input feeding,
    # scaled embeddings with sinusoidal positions
    config_kwargs = {
        "cell": "lstm",
        "attention": "concat",
        "input_feeding": True,
        "combine_bias": True,
        "combine_activation": "none",
        "output_bias": True,
        "decoder_init": "final",
        "scale_embedding": True,
        "position_embedding": "sinusoidal",
    }

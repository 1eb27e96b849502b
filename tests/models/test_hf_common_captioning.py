"""transformers' own common model tests for the image-captioning model (an image-to-text encoder-decoder).

Wired as the library's image-to-text models (e.g. Pix2Struct, BLIP) wire them: ``ModelTesterMixin`` and
``GenerationTesterMixin`` with ``pixel_values`` as the main input, and ``ConfigTester`` without a text modality
check. The decoder is the RNN family's, so its cache checks are the RNN family's. Skips name their reason in one
line; CONTRIBUTING.md lists them.
"""

from __future__ import annotations

import unittest

import pytest
import torch
from _hf_common import (
    ConfigTester,
    GenerationTesterMixin,
    ModelTesterMixin,
    floats_tensor,
    ids_tensor,
    register_model_names,
)
from test_hf_common_rnn import _RNNCommonTests

from hf_seq2seq.models.configuration_rnn_captioning import ImageCaptioningConfig
from hf_seq2seq.models.modeling_rnn_captioning import ImageCaptioningForConditionalGeneration

pytestmark = pytest.mark.filterwarnings("default::FutureWarning")

register_model_names("rnn_captioning", image_text_to_text="ImageCaptioningForConditionalGeneration")


class ImageCaptioningModelTester:
    """A 32×32 image through a two-stage CNN (a 8×8 grid of regions) and a tiny LSTM decoder."""

    def __init__(self, parent, batch_size: int = 5, seq_length: int = 7):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.decoder_seq_length = seq_length
        self.encoder_seq_length = 64  # S = (32 / 2**2)**2 regions after the two stride-2 stages
        self.is_training = True
        self.image_size = 32
        self.num_channels = 3
        self.vocab_size = 99
        self.hidden_size = 16
        self.num_hidden_layers = 1
        self.num_attention_heads = 1
        self.pad_token_id, self.bos_token_id, self.eos_token_id = 1, 0, 2

    def get_config(self) -> ImageCaptioningConfig:
        return ImageCaptioningConfig(
            image_size=self.image_size,
            num_channels=self.num_channels,
            encoder_channels=[4, 8],
            vocab_size=self.vocab_size,
            embedding_size=self.hidden_size,
            hidden_size=self.hidden_size,
            decoder_layers=self.num_hidden_layers,
            dropout=0.1,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            decoder_start_token_id=self.bos_token_id,
        )

    def prepare_config_and_inputs_for_common(self):
        shape = [self.batch_size, self.num_channels, self.image_size, self.image_size]
        inputs = {
            "pixel_values": floats_tensor(shape),
            "decoder_input_ids": ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3),
        }
        return self.get_config(), inputs


class ImageCaptioningCommonTest(ModelTesterMixin, GenerationTesterMixin, unittest.TestCase):
    all_model_classes = (ImageCaptioningForConditionalGeneration,)
    all_generative_model_classes = (ImageCaptioningForConditionalGeneration,)
    is_encoder_decoder = True
    has_attentions = False  # no self-attention; the decoder is the RNN family's
    # the common resize tests write into inputs["input_ids"]; an image-to-text model takes pixel_values
    test_resize_embeddings = False

    _check_past_key_values_for_generate = _RNNCommonTests._check_past_key_values_for_generate
    _check_caches_are_equal = _RNNCommonTests._check_caches_are_equal

    def setUp(self):
        torch.manual_seed(0)
        self.model_tester = ImageCaptioningModelTester(self)
        self.config_tester = ConfigTester(
            self,
            config_class=ImageCaptioningConfig,
            has_text_modality=False,
            common_properties=["hidden_size", "vocab_size"],
            hidden_size=16,
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def _check_encoder_hidden_states_for_generate(self, hidden_states, batch_size, config, prompt_length):
        # the encoder's sequence is the S image regions, not a token prompt
        expected = (batch_size, self.model_tester.encoder_seq_length, config.hidden_size)
        self.assertEqual([tuple(h.shape) for h in hidden_states], [expected] * len(hidden_states))

    def test_model_base_model_prefix(self):
        self.skipTest(
            "the model is not a head over a base model: its CNN encoder and RNN decoder are its two halves"
        )

    def test_generate_without_input_ids(self):
        self.skipTest("captioning needs an image: generate() without pixel_values has nothing to caption")

    def test_hidden_states_output(self):
        self.skipTest(
            "the CNN encoder has no per-layer sequence states (its stages are feature maps of other shapes)"
        )

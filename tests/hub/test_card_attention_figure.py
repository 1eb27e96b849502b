"""The model card's attention figure stays readable for an under-trained model (issue 28, row 14): the example is
one whose translation ends when there is one, and a runaway translation is cut to a bounded image."""

from __future__ import annotations

import pytest
import torch
from hub_server import tiny_model, tiny_tokenizer
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList

from hf_seq2seq.hub import save_model_folder
from hf_seq2seq.plotting import CARD_ATTENTION_TOKENS, attention_figsize, example_attention

SENTENCES = ["drei und zwanzig", "neun tausend neun hundert sieben und achtzig", "sieben"]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


class EndsOnlyForCall(LogitsProcessor):
    """Stands for a model that stops on some sentences only: the ``ending``-th generate() call (one per sentence) is
    made to end after ``after`` tokens; every other call never produces ``</s>``."""

    def __init__(self, eos: int, ending: int, after: int = 3):
        self.eos, self.ending, self.after, self.call, self.last_length = eos, ending, after, -1, None

    def __call__(self, input_ids, scores):
        if self.last_length is None or input_ids.shape[1] <= self.last_length:
            self.call += 1  # a new generate() call starts from the decoder start token
        self.last_length = input_ids.shape[1]
        scores = scores.clone()
        if self.call == self.ending and input_ids.shape[1] > self.after:
            scores[:, :] = torch.finfo(scores.dtype).min
            scores[:, self.eos] = 0.0
        elif self.call != self.ending:
            scores[:, self.eos] = torch.finfo(scores.dtype).min
        return scores


def test_example_is_the_first_whose_translation_ends(tokenizer):
    model = tiny_model("rnn", len(tokenizer))
    eos = model.config.eos_token_id
    processor = EndsOnlyForCall(eos, ending=1)
    text, matrix, src, tgt = example_attention(
        model, tokenizer, SENTENCES, logits_processor=LogitsProcessorList([processor]), num_beams=1,
        max_new_tokens=20,
    )  # fmt: skip
    assert text == SENTENCES[1] and tgt[-1] == tokenizer.eos_token and len(tgt) < 20
    assert matrix.shape == (len(tgt), len(src))
    assert processor.call == 1  # it stopped trying once one ended


def test_without_an_ending_translation_the_first_of_the_shortest_is_taken(tokenizer):
    model = tiny_model("rnn", len(tokenizer))
    processor = LogitsProcessorList([EndsOnlyForCall(model.config.eos_token_id, ending=-1)])  # none ends
    text, _, _, tgt = example_attention(
        model, tokenizer, SENTENCES, logits_processor=processor, num_beams=1, max_new_tokens=9
    )
    assert text == SENTENCES[0] and len(tgt) == 9 and tgt[-1] != tokenizer.eos_token


def test_card_of_a_runaway_model_has_a_bounded_figure(tokenizer, tmp_path):
    """An untrained model that never stops (``</s>`` suppressed) with 128 new tokens: the card's heatmap is the size
    of CARD_ATTENTION_TOKENS rows, not 128, and says so in its title."""
    model = tiny_model("rnn", len(tokenizer))
    model.generation_config.update(
        max_new_tokens=128, suppress_tokens=[model.config.eos_token_id], num_beams=1
    )
    folder = save_model_folder(
        model, tokenizer, tmp_path / "m", card={"example": SENTENCES[2], "examples": []}
    )
    num_source = len(tokenizer(SENTENCES[2])["input_ids"])
    width, height = attention_figsize(num_source, CARD_ATTENTION_TOKENS)
    with Image.open(folder / "attention.png") as image:
        assert image.size == (round(width * 100), round(height * 100))
    assert height * 100 < 2000 and (folder / "README.md").is_file()

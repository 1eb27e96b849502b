"""Attention heatmaps and learning curves: the plotted matrix is the model's cross_attentions, images have the
size asked for."""

from __future__ import annotations

import pytest
import torch
from hub_server import tiny_model, tiny_tokenizer
from PIL import Image

from hf_seq2seq.plotting import attention_figsize, attention_matrix, plot_attention, plot_learning_curve

TEXT = "neun tausend neun hundert sieben und achtzig"


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.mark.parametrize(
    "family, layer, head",
    [("rnn", -1, None), ("transformer", -1, "mean"), ("transformer", 0, 1), ("transformer", 1, 0)],
)
def test_matrix_is_the_models_cross_attention(tokenizer, family, layer, head):
    model = tiny_model(family, len(tokenizer))
    matrix, src, tgt = attention_matrix(model, tokenizer, TEXT, layer=layer, head=head, num_beams=1)

    enc = tokenizer(TEXT, return_tensors="pt")
    assert src == tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    gen = model.generate(
        **enc, num_beams=1, output_attentions=True, return_dict_in_generate=True, max_new_tokens=6
    )
    sequence = gen.sequences[0]
    assert tgt == tokenizer.convert_ids_to_tokens(sequence[1:])
    assert matrix.shape == (len(tgt), len(src))

    # 1. one teacher-forced forward pass over the generated output, computed here independently
    with torch.no_grad():
        out = model(**enc, decoder_input_ids=sequence[None, :-1], output_attentions=True)
    weights = out.cross_attentions[layer][0]
    expected = weights.mean(0) if head in (None, "mean") else weights[head]
    torch.testing.assert_close(torch.from_numpy(matrix), expected.float(), rtol=0, atol=1e-6)
    # 2. the weights of the cached decoding steps that produced each token (generate's cross_attentions)
    steps = torch.stack([step[layer][0, :, -1] for step in gen.cross_attentions], dim=1)  # (heads, T, S)
    stepwise = steps.mean(0) if head in (None, "mean") else steps[head]
    torch.testing.assert_close(torch.from_numpy(matrix), stepwise.float(), rtol=1e-4, atol=1e-5)
    # attention rows are distributions over the source
    torch.testing.assert_close(torch.from_numpy(matrix).sum(-1), torch.ones(len(tgt)), rtol=0, atol=1e-5)


def test_bad_layer_or_head_is_a_clear_error(tokenizer):
    model = tiny_model("transformer", len(tokenizer))
    with pytest.raises(ValueError, match="layer=5"):
        attention_matrix(model, tokenizer, TEXT, layer=5, num_beams=1)
    with pytest.raises(ValueError, match="head=7"):
        attention_matrix(model, tokenizer, TEXT, head=7, num_beams=1)


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_heatmap_file_and_pixel_size(tmp_path, suffix):
    matrix = torch.softmax(torch.randn(4, 6), dim=-1).numpy()
    src, tgt = [f"s{i}" for i in range(6)], [f"t{i}" for i in range(4)]
    path = plot_attention(matrix, src, tgt, tmp_path / f"a{suffix}", title="x")
    assert path.is_file() and path.stat().st_size > 0
    width, height = attention_figsize(6, 4)
    if suffix == ".png":
        with Image.open(path) as image:
            assert image.size == (round(width * 100), round(height * 100))
        explicit = plot_attention(matrix, src, tgt, tmp_path / "b.png", figsize=(5, 3), dpi=80)
        with Image.open(explicit) as image:
            assert image.size == (400, 240)
    else:
        text = path.read_text()
        assert "<svg" in text and f'width="{width * 72:g}pt"' in text


def test_heatmap_rejects_mismatched_labels_and_formats(tmp_path):
    matrix = torch.rand(2, 3).numpy()
    with pytest.raises(ValueError, match="needs 2 target and 3 source"):
        plot_attention(matrix, ["a", "b"], ["x", "y"], tmp_path / "a.png")
    with pytest.raises(ValueError, match="unsupported suffix '.pdf'"):
        plot_attention(matrix, ["a", "b", "c"], ["x", "y"], tmp_path / "a.pdf")


def test_learning_curve(tmp_path):
    history = [
        {"step": 10, "train_loss": 4.0},
        {"step": 20, "train_loss": 3.0, "valid_loss": 3.5, "bleu": 1.0},
        {"step": 30, "train_loss": 2.0, "valid_loss": 2.5, "bleu": None},
    ]
    path = plot_learning_curve(history, tmp_path / "curve.png")
    with Image.open(path) as image:
        assert image.size == (640, 400)
    with pytest.raises(ValueError, match="empty"):
        plot_learning_curve([], tmp_path / "none.png")


def test_heatmap_shows_at_most_max_tokens_per_axis(tmp_path):
    """Issue 28 row 14: a runaway generation (128 tokens of a 3-token source) made a 5300-pixel-tall card image;
    with ``max_tokens`` the figure is the size of its first ``max_tokens`` rows, and its title says what was cut."""
    from hf_seq2seq.plotting import CARD_ATTENTION_TOKENS

    matrix = torch.softmax(torch.randn(128, 3), dim=-1).numpy()
    src, tgt = ["a", "b", "</s>"], [f"t{i}" for i in range(128)]
    path = plot_attention(matrix, src, tgt, tmp_path / "a.png", title="x", max_tokens=CARD_ATTENTION_TOKENS)
    width, height = attention_figsize(3, CARD_ATTENTION_TOKENS)
    with Image.open(path) as image:
        assert image.size == (round(width * 100), round(height * 100))
    svg = plot_attention(matrix, src, tgt, tmp_path / "a.svg", title="x", max_tokens=CARD_ATTENTION_TOKENS)
    text = svg.read_text()
    assert f"first {CARD_ATTENTION_TOKENS} of 128 generated tokens shown" in text
    assert f"t{CARD_ATTENTION_TOKENS - 1}" in text and f"t{CARD_ATTENTION_TOKENS}<" not in text
    # nothing to cut: the whole matrix, the title as given
    whole = plot_attention(matrix[:4], src, tgt[:4], tmp_path / "b.svg", title="x", max_tokens=40)
    assert "shown" not in whole.read_text()


def test_heatmap_labels_draw_no_missing_glyph_box(tmp_path):
    """A token the font cannot draw (CJK in DejaVu Sans) or a control character is labelled by its code point, so
    matplotlib draws no empty box (it warns "Glyph ... missing from font(s)" when it would)."""
    import warnings

    matrix = torch.softmax(torch.randn(3, 3), dim=-1).numpy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_attention(
            matrix, ["\u4e2d\u6587", "a\x07", "</s>"], ["\u2581dog", "\ufffe", "x"], tmp_path / "a.png"
        )
    assert not [w for w in caught if "missing from" in str(w.message)], [str(w.message) for w in caught]

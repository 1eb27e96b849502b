"""bertviz (the attention viewer people use) on our models' outputs, both families, as docs/alignment.md shows it:
the model's ``encoder_attentions`` / ``decoder_attentions`` / ``cross_attentions`` go into ``head_view`` and
``model_view`` unchanged, and the page bertviz builds carries exactly our weights (read back from its parameters).

The RNN has no self-attention: its ``encoder_attentions`` and ``decoder_attentions`` are ``None``, which bertviz
takes as "not given", so its views show the cross-attention (the Bahdanau / Luong alignment) alone."""

from __future__ import annotations

import json

import pytest
import torch
from hub_server import tiny_model, tiny_tokenizer

bertviz = pytest.importorskip("bertviz")

SOURCE = "drei und zwanzig"


def _params(html: str) -> dict:
    """The parameters bertviz embeds in its page (``json.dumps(params)`` in the script)."""
    start = html.index('{"attention": ')
    return json.JSONDecoder().raw_decode(html[start:])[0]


def _attend(family: str):
    tokenizer = tiny_tokenizer()
    model = tiny_model(family, len(tokenizer))
    inputs = tokenizer([SOURCE], return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=5)
        out = model(**inputs, decoder_input_ids=generated, output_attentions=True)
    tokens = dict(
        encoder_tokens=tokenizer.convert_ids_to_tokens(inputs.input_ids[0]),
        decoder_tokens=tokenizer.convert_ids_to_tokens(generated[0]),
    )
    return out, tokens


@pytest.mark.parametrize("family", ["transformer", "rnn"])
@pytest.mark.parametrize("view", ["head_view", "model_view"])
def test_bertviz_views_carry_our_attention_weights(family, view):
    out, tokens = _attend(family)
    # the three lines of docs/alignment.md
    html = getattr(bertviz, view)(
        encoder_attention=out.encoder_attentions,
        decoder_attention=out.decoder_attentions,
        cross_attention=out.cross_attentions,
        **tokens,
        html_action="return",
    ).data
    params = _params(html)
    shown = {d["name"]: d for d in params["attention"]}
    # bertviz takes its layer list from the first attention given (the encoder's) and shows those layers of each:
    # with a shallower encoder (as here: 1 encoder, 2 decoder layers) the deeper decoder's other layers are not drawn
    layers_shown = params["include_layers"]
    assert layers_shown == list(range(len(out.encoder_attentions or out.cross_attentions)))
    ours = {"Cross": out.cross_attentions}
    if family == "transformer":
        ours |= {"Encoder": out.encoder_attentions, "Decoder": out.decoder_attentions}
    else:  # no self-attention in an RNN: None, and bertviz draws the cross-attention only
        assert out.encoder_attentions is None and out.decoder_attentions is None
    assert set(shown) == set(ours)
    for name, layers in ours.items():
        expected = torch.stack([layers[i][0] for i in layers_shown])  # (layers, heads, rows, columns)
        assert torch.allclose(torch.tensor(shown[name]["attn"]), expected, atol=1e-6), name
    assert len(shown["Cross"]["left_text"]) == len(tokens["decoder_tokens"])
    assert len(shown["Cross"]["right_text"]) == len(tokens["encoder_tokens"])


def test_bertviz_without_the_shallower_encoder_draws_every_decoder_layer():
    out, tokens = _attend("transformer")
    assert len(out.encoder_attentions) < len(
        out.cross_attentions
    )  # the tiny model: 1 encoder, 2 decoder layers
    params = _params(
        bertviz.head_view(
            decoder_attention=out.decoder_attentions,
            cross_attention=out.cross_attentions,
            **tokens,
            html_action="return",
        ).data
    )
    assert params["include_layers"] == list(range(len(out.cross_attentions)))
    cross = next(d for d in params["attention"] if d["name"] == "Cross")
    expected = torch.stack([layer[0] for layer in out.cross_attentions])
    assert torch.allclose(torch.tensor(cross["attn"]), expected, atol=1e-6)

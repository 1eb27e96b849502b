"""The attention tools people use, on our models, as docs/alignment.md shows them.

bertviz, both families: the model's ``encoder_attentions`` / ``decoder_attentions`` / ``cross_attentions`` go into
``head_view`` and ``model_view`` unchanged, and the page bertviz builds carries exactly our weights (read back from
its parameters). The RNN has no self-attention: its ``encoder_attentions`` and ``decoder_attentions`` are ``None``,
which bertviz takes as "not given", so its views show the cross-attention (the Bahdanau / Luong alignment) alone.

inseq, on folders written by ``save_model_folder`` (tiny models trained to copy their input, so that attention and
gradients are not uniform): ``inseq.load_model(folder, "attention")`` on the Transformer gives exactly our cross-,
encoder and decoder attentions for the tokens our ``generate`` writes; ``"saliency"`` on both families gives exactly
the gradient of each generated token's probability with respect to the source embeddings, computed here by hand;
``"attention"`` on the RNN is refused (inseq needs self-attentions, which an RNN does not have)."""

from __future__ import annotations

import json

import inseq
import pytest
import torch
from _serving import build_models
from hub_server import tiny_model, tiny_tokenizer
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

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


# ------------------------------------------------------------------------------------------------------------ inseq
INSEQ_REFUSES_ATTENTION = "Model does not support attribution relying on attention outputs"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``{family: folder}``: the tiny Transformer and bi-GRU trained for 60 steps to copy their input, saved with
    ``save_model_folder`` (tests/_serving.py)."""
    built = build_models(tmp_path_factory.mktemp("inseq"), exports=False)
    return {"transformer": built["de-en"], "rnn": built["rnn"]}


def _load(folder, method: str):
    """docs/alignment.md's line: ``inseq.load_model`` on the folder."""
    return inseq.load_model(str(folder), method)


def _ours(folder):
    """Our model and tokenizer from the folder, and the source as our tokenizer encodes it."""
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer, tokenizer([SOURCE], return_tensors="pt")


def _checked_target(attribution, model, tokenizer, inputs) -> torch.Tensor:
    """The (1, T) target inseq attributed, checked against what our tokenizer and ``generate`` give."""
    assert [token.id for token in attribution.source] == inputs.input_ids[0].tolist()
    target = torch.tensor([[token.id for token in attribution.target]])
    with torch.no_grad():
        assert torch.equal(target, model.generate(**inputs))
    assert target.shape[1] > 2, "the copier should write more than <s> </s>"
    return target


def _saliency(model, inputs, target: torch.Tensor) -> torch.Tensor:
    """(S, T - 1, D): |d p(y_t | y_<t, x) / d e(x)| at each step t, by hand. inseq's saliency is captum's
    (the absolute gradient) of its default attributed function, the probability of the target token, with respect
    to the source embeddings (what ``get_input_embeddings()`` returns)."""
    embeddings = model.get_input_embeddings()(inputs.input_ids).detach()
    steps = []
    for t in range(1, target.shape[1]):
        leaf = embeddings.clone().requires_grad_(True)
        logits = model(
            inputs_embeds=leaf, attention_mask=inputs.attention_mask, decoder_input_ids=target[:, :t]
        ).logits
        (gradient,) = torch.autograd.grad(logits[0, -1].softmax(-1)[target[0, t]], leaf)
        steps.append(gradient[0].abs())
    return torch.stack(steps, dim=1)


def test_inseq_attention_on_the_transformer_is_our_attention(folders):
    model, tokenizer, inputs = _ours(folders["transformer"])
    attributed = _load(folders["transformer"], "attention").attribute(SOURCE, show_progress=False)
    (attribution,) = attributed.sequence_attributions
    target = _checked_target(attribution, model, tokenizer, inputs)
    with torch.no_grad():
        out = model(**inputs, decoder_input_ids=target, output_attentions=True)
    # inseq lays each out as (key position, step, layer, head); ours are per layer (batch, head, query, key). The
    # last target token (</s>) is not a step: nothing is generated after it.
    ours = {
        "cross": torch.stack(out.cross_attentions)[:, 0, :, :-1, :],
        "encoder_self_attentions": torch.stack(out.encoder_attentions)[:, 0],
        "decoder_self_attentions": torch.stack(out.decoder_attentions)[:, 0, :, :-1, :-1],
    }
    theirs = {"cross": attribution.source_attributions, **attribution.sequence_scores}
    assert set(theirs) == set(ours)
    for name, weights in ours.items():
        assert torch.allclose(theirs[name], weights.permute(3, 2, 0, 1), atol=1e-5), name
    # trained, the cross-attention is far from uniform over the source (else the comparison would prove little)
    assert ours["cross"].amax() > 2 / inputs.input_ids.shape[1]


@pytest.mark.parametrize("family", ["transformer", "rnn"])
def test_inseq_saliency_is_the_gradient_of_our_model(folders, family):
    model, tokenizer, inputs = _ours(folders[family])
    attributed = _load(folders[family], "saliency").attribute(SOURCE, show_progress=False)
    (attribution,) = attributed.sequence_attributions
    target = _checked_target(attribution, model, tokenizer, inputs)
    saliency = attribution.source_attributions
    source_length, steps = inputs.input_ids.shape[1], target.shape[1] - 1
    assert saliency.shape == (source_length, steps, model.get_input_embeddings().embedding_dim)
    # finite, and every step has a gradient
    assert torch.isfinite(saliency).all() and (saliency.sum(dim=(0, 2)) > 0).all()
    assert torch.allclose(saliency, _saliency(model, inputs, target), atol=1e-5)


def test_inseq_attention_refuses_the_rnn(folders):
    """inseq's attention method needs the encoder's and decoder's self-attentions; an RNN has none (``None``: only
    the cross-attention, its Bahdanau / Luong alignment, is returned), and it says so."""
    model, _, inputs = _ours(folders["rnn"])
    with torch.no_grad():
        out = model(**inputs, decoder_input_ids=inputs.input_ids[:, :2], output_attentions=True)
    assert out.encoder_attentions is None and out.decoder_attentions is None and out.cross_attentions
    attribution_model = inseq.load_model(str(folders["rnn"]), "attention")
    with pytest.raises(ValueError, match=INSEQ_REFUSES_ATTENTION):
        attribution_model.attribute(SOURCE, show_progress=False)


def test_inseq_feeds_our_transformer_its_embeddings_unscaled(folders):
    """inseq multiplies the embeddings it feeds a model by its encoder's ``embed_scale`` when it has one (the
    convention of models that scale only the embeddings they look up); our Transformer scales ``inputs_embeds``
    itself, so its scale is named otherwise and inseq leaves the embeddings alone (with ``embed_scale``, inseq's
    attention and gradients were those of embeddings scaled twice, up to 0.49 off)."""
    model, _, _ = _ours(folders["transformer"])
    assert model.config.scale_embedding and model.get_encoder().embedding_scale != 1.0
    assert not hasattr(model.get_encoder(), "embed_scale")
    for family in ("transformer", "rnn"):
        assert inseq.load_model(str(folders[family]), "saliency").embed_scale == 1.0

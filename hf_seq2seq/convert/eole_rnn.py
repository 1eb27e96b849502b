"""eole's RNN encoder-decoder (``architecture: rnn``, or ``custom`` with a brnn encoder) → our RNN family, read without importing eole.

The directory is read as for eole's Transformer (:mod:`.eole`: ``config.json``, ``model.00.safetensors``,
``vocab.json``, the same word-level tokenizer). eole 0.6.4's RNN maps onto ``RNNSeq2SeqForConditionalGeneration``:

- the encoder is one ``nn.LSTM`` / ``nn.GRU`` (``rnn_type``) of ``layers`` layers, bidirectional with
  ``hidden_size // 2`` units per direction for ``encoder_type: brnn`` (ours: ``bidirectional_encoder``, the same
  [forward; backward] layout);
- the decoder starts layer ``l`` from encoder layer ``l``'s final state and cell as they are
  (``decoder_init="final"``); with ``input_feed`` (eole's default) it is Luong's input-feeding decoder (stacked
  cells, ``[embedding; h~_{t-1}]`` in, ``h~_0 = 0``), without it the plain Luong decoder;
- ``global_attention`` ``dot`` / ``general`` are Luong's scores with ``h~_t = tanh(W_c [c_t; h_t])`` (eole's
  ``linear_in`` is the transpose of our ``W_a``); ``mlp`` is ``v^T tanh(W_q h_t + b_q + U h_s)``, our ``concat``
  score (the bias moved to the key side: the same sum), followed by ``h~_t = W_c [c_t; h_t] + b_c`` without tanh
  (``combine_bias=True, combine_activation="none"``);
- eole's embeddings get its ``position_encoding_type``, by default ``SinusoidalInterleaved`` for an RNN too: the
  word vectors scaled by sqrt(word_vec_size) plus the interleaved sinusoidal table, positions from 0 on each side
  (``scale_embedding=True, position_embedding="sinusoidal"``); ``null`` gives plain word vectors;
- the generator is our ``lm_head``, its bias (``generator_bias``, eole's default) our ``output_bias``;
  ``share_embeddings`` + ``share_decoder_embeddings`` (word_vec_size = hidden_size) is ``tie_word_embeddings``,
  otherwise the three matrices are kept apart.

One difference is not in the weights: eole's encoder runs ``nn.LSTM`` over the padded batch (no packing), so a
sentence's encoder states and final state depend on the padding its batch gives it; ours packs, which is eole's
function of a sentence alone (batch size 1). The proof compares with eole run one sentence at a time.

Refused in one line naming the eole option: ``position_encoding_type`` other than ``SinusoidalInterleaved`` or null
(``SinusoidalConcat``, ``Learned``, ``Rotary``...), ``embeddings.normalize``,
``bridge``, ``context_gate``, ``coverage_attn``, ``global_attention`` none (eole's decoder then sees the source
only through its initial state; ours, without attention, feeds an encoder summary at every step), ``sparsemax``, encoder and decoder of different ``layers`` or
``rnn_type``, and source and target embeddings of different sizes.
"""

from __future__ import annotations

from pathlib import Path

from .common import copy_weights, source_error

_fail = source_error
# eole's global_attention -> (our attention, combine_bias, combine_activation)
ATTENTIONS = {
    "dot": ("dot", False, "tanh"),
    "general": ("general", False, "tanh"),
    "mlp": ("concat", True, "none"),
}
# eole's position_encoding_type -> our (position_embedding, scale_embedding): eole's sinusoidal encoding scales the
# embeddings by sqrt(word_vec_size) before adding its table
POSITIONS = {"SinusoidalInterleaved": ("sinusoidal", True), None: ("none", False)}
# eole 0.6.4's defaults of the RNN options read here (config.json leaves out what was not set)
RNN_DEFAULTS = {
    "rnn_type": "LSTM",
    "global_attention": "general",
    "global_attention_function": "softmax",
    "input_feed": 1,
    "bridge": False,
    "context_gate": None,
    "coverage_attn": False,
    "layers": 2,
    "hidden_size": 512,
}


def _get(section: dict, model: dict, name: str):
    """An option as eole's RNN sees it: the section's, else the model level's, else eole's default."""
    if name in section:
        return section[name]
    return model.get(name, RNN_DEFAULTS.get(name))


def _positions(model: dict):
    """eole's position_encoding_type of the embeddings (its default: SinusoidalInterleaved, for an RNN too)."""
    embeddings = model.get("embeddings") or {}
    return embeddings.get(
        "position_encoding_type", model.get("position_encoding_type", "SinusoidalInterleaved")
    )


def check_rnn_section(model_dir: Path, model: dict) -> None:
    """Refuse (one line naming the eole option) what our RNN cannot compute, before any weight is read."""
    encoder, decoder = model.get("encoder") or {}, model.get("decoder") or {}
    embeddings = model.get("embeddings") or {}
    positions = _positions(model)
    if positions not in POSITIONS:
        raise _fail(
            model_dir,
            f"model.embeddings.position_encoding_type={positions!r} is not offered by our RNN; valid: "
            "SinusoidalInterleaved (eole's default), null",
        )
    if embeddings.get("normalize"):
        raise _fail(
            model_dir, "model.embeddings.normalize=true (scaled embeddings) is not offered by our RNN"
        )
    for name, allowed in (("bridge", (False,)), ("context_gate", (None,)), ("coverage_attn", (False,))):
        for side, section in (("encoder", encoder), ("decoder", decoder)):
            value = _get(section, model, name)
            if value not in allowed:
                raise _fail(model_dir, f"model.{side}.{name}={value!r} is not offered by our RNN")
    attention = _get(decoder, model, "global_attention")
    if attention not in ATTENTIONS:
        raise _fail(
            model_dir,
            f"model.decoder.global_attention={attention!r} is not converted; valid: {', '.join(ATTENTIONS)}",
        )
    function = _get(decoder, model, "global_attention_function")
    if function != "softmax":
        raise _fail(model_dir, f"model.decoder.global_attention_function={function!r}: ours is softmax")
    for name in ("layers", "rnn_type", "hidden_size"):
        a, b = _get(encoder, model, name), _get(decoder, model, name)
        if a != b:
            raise _fail(model_dir, f"model.encoder.{name}={a!r} differs from model.decoder.{name}={b!r}")
    sizes = {
        embeddings.get(n, embeddings.get("word_vec_size")) for n in ("src_word_vec_size", "tgt_word_vec_size")
    }
    if len(sizes) > 1:
        raise _fail(
            model_dir, f"model.embeddings: source and target word_vec_size differ ({sorted(sizes, key=str)})"
        )


def rnn_config(model_dir: Path, config: dict, vocab: list[str], matrices: tuple, shared: dict):
    """Our ``RNNSeq2SeqConfig`` for an eole RNN (checked by ``check_rnn_section``); ``matrices``: eole's source
    embeddings, target embeddings and generator weight (shared ones are one tensor); ``shared``: the values read as
    for eole's Transformer (:func:`.eole.shared_config`)."""
    from ..families import FAMILIES

    model = config["model"]
    encoder, decoder = model.get("encoder") or {}, model.get("decoder") or {}
    src = matrices[0]
    attention, combine_bias, combine_activation = ATTENTIONS[_get(decoder, model, "global_attention")]
    dropout = (config.get("training") or {}).get("dropout") or [0.3]  # eole's default
    try:
        return FAMILIES["rnn"].config_class(
            vocab_size=len(vocab),
            embedding_size=int(src.shape[1]),
            hidden_size=int(_get(encoder, model, "hidden_size")),
            encoder_layers=int(_get(encoder, model, "layers")),
            decoder_layers=int(_get(decoder, model, "layers")),
            cell=str(_get(encoder, model, "rnn_type")).lower(),
            bidirectional_encoder=encoder.get("encoder_type", "rnn") == "brnn",
            attention=attention,
            input_feeding=bool(_get(decoder, model, "input_feed")),
            combine_bias=combine_bias,
            combine_activation=combine_activation,
            decoder_init="final",
            position_embedding=POSITIONS[_positions(model)][0],
            scale_embedding=POSITIONS[_positions(model)][1],
            dropout=float(dropout[0]),
            **shared,
        )
    except (ValueError, TypeError) as err:
        raise _fail(model_dir, f"the eole configuration does not fit our RNN: {err}") from None


def rnn_weights(config, weights: dict, matrices: tuple) -> dict:
    """Every weight of our RNN as a tensor made from eole's (a missing name raises KeyError)."""
    src, tgt, generator = matrices
    values = {
        "model.encoder.embed_tokens.weight": src,
        "model.decoder.embed_tokens.weight": tgt,
        "lm_head.weight": generator,
    }
    if config.output_bias:
        values["lm_head.bias"] = weights["generator.bias"]
    for name, tensor in weights.items():  # nn.LSTM / nn.GRU: the same parameter names
        if name.startswith("encoder.rnn."):
            values[f"model.{name}"] = tensor
    for layer in range(config.decoder_layers):
        for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            eole = (
                f"decoder.rnn.layers.{layer}.{part}"
                if config.input_feeding
                else f"decoder.rnn.{part}_l{layer}"
            )
            values[f"model.decoder.rnn.{part}_l{layer}"] = weights[eole]
    score = "model.decoder.score"
    if config.attention == "general":  # eole scores (W h_t) . h_s, ours h_t . (W_a h_s): W_a = W^T
        values[f"{score}.key_proj.weight"] = weights["decoder.attn.linear_in.weight"].t().contiguous()
    elif config.attention == "concat":  # v^T tanh(W_q h_t + b_q + U h_s): the bias moves to the key side
        values[f"{score}.query_proj.weight"] = weights["decoder.attn.linear_query.weight"]
        values[f"{score}.key_proj.weight"] = weights["decoder.attn.linear_context.weight"]
        values[f"{score}.key_proj.bias"] = weights["decoder.attn.linear_query.bias"]
        values[f"{score}.energy.weight"] = weights["decoder.attn.v.weight"]
    values["model.decoder.combine.weight"] = weights["decoder.attn.linear_out.weight"]  # on [c_t; h_t]
    if config.combine_bias:
        values["model.decoder.combine.bias"] = weights["decoder.attn.linear_out.bias"]
    return values


def build_rnn_model(model_dir: Path, config, weights: dict, matrices: tuple):
    from ..families import FAMILIES

    model = FAMILIES["rnn"].model_class(config).eval()
    try:
        values = rnn_weights(config, weights, matrices)
    except KeyError as err:
        raise _fail(
            model_dir, f"the weights have no {err.args[0]} (config.json and weights disagree)"
        ) from None
    return copy_weights(model, values, model_dir, "config.json")


NOTES = [
    "eole's RNN: the decoder starts each layer from its encoder layer's final state (decoder_init='final'); mlp "
    "attention is our concat score with W_c biased and without tanh; the generator bias is our output bias.",
    "eole's encoder runs over the padded batch (no packing), so its output for a sentence depends on its batch's "
    "padding; ours packs and equals eole's on each sentence alone (batch size 1).",
    "eole's default position_encoding_type (SinusoidalInterleaved) scales the RNN's embeddings and adds positions: "
    "ours does the same (scale_embedding, position_embedding='sinusoidal'), in generate() and in an ONNX export.",
]

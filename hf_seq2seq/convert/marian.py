"""Our Transformer ↔ transformers' stock ``MarianMTModel``, with the same function on both sides.

Both are the post-norm Transformer of Vaswani et al. (2017) with sinusoidal positions, so every weight has a partner.
What differs, and how it is mapped exactly:

- **Sinusoidal layout.** Ours interleaves the table (dimension 2i = sin, 2i+1 = cos of frequency i); Marian
  concatenates it (dimension i = sin, D/2 + i = cos). The residual stream is permuted instead of the table: every
  (.., D) vector of one model is the other's with its D coordinates reordered (``MARIAN_FROM_OURS``). Attention,
  the feed-forward network and LayerNorm (mean and variance over all of D) commute with that reordering when their
  D-sided weights are reordered with it, so the two models compute the same logits and nothing is added to either
  class. A round trip (Marian → ours → Marian) gives back the very same tensors.
- **Fused projections.** Ours projects self-attention Q, K, V with one Linear (rows [Q; K; V]) and cross-attention
  K, V with one (rows [K; V]); Marian has one Linear each.
- **Embeddings.** Marian ties encoder and decoder embeddings with ``share_encoder_decoder_embeddings`` and the
  output projection with ``tie_word_embeddings``; ours ties all three or none (``tie_word_embeddings``). A Marian
  model whose three matrices are not all the same tensor becomes ours with three separate matrices, equal values.
- **final_logits_bias**: Marian adds this (1, V) buffer to the logits; ours has ``lm_head.bias`` with
  ``output_bias=True``. A non-zero one becomes our output bias (the same values), a zero one (stock Marian models)
  leaves ``output_bias=False``; ours with ``output_bias`` writes its bias into ``final_logits_bias``, without it
  zeros. The vocabulary axis is not the residual stream, so nothing is reordered.
- ``scale_embedding`` (× sqrt(D)), ``activation_function``, the dropouts, ``init_std``, the special ids and
  ``max_position_embeddings`` are the same options on both sides; LayerNorm is ``nn.LayerNorm(D)`` (eps 1e-5) in
  both, after each residual add, with no final or embedding LayerNorm.

Not expressible, refused in one line naming the option: ours with ``norm_style="pre"`` (Marian has no pre-norm
blocks nor final LayerNorms), ``position_embedding="learned"`` (Marian's positions are sinusoidal) or
``layer_norm_eps`` ≠ 1e-5 (JoeyNMT's 1e-6 in a converted model; Marian's LayerNorms use torch's default); Marian with
``decoder_vocab_size`` ≠ ``vocab_size``, encoder and decoder of different ``*_ffn_dim`` / ``*_attention_heads``, an
or an activation we do not offer.

Training-only differences (the forward pass and ``generate()`` are not affected): Marian's ``*_layerdrop`` has no
counterpart in ours (a Marian model with layerdrop > 0 is converted and the card says so), and our
``label_smoothing`` (used by ``forward(labels=...)``'s loss) has none in Marian's loss.
"""

from __future__ import annotations

import copy

import torch

from ..models.configuration_transformer_seq2seq import ACTIVATIONS, TransformerSeq2SeqConfig
from .errors import ConversionError

# Options copied unchanged between the two configurations (the same name and meaning on both sides).
SHARED_OPTIONS = (
    "vocab_size",
    "d_model",
    "encoder_layers",
    "decoder_layers",
    "dropout",
    "attention_dropout",
    "activation_dropout",
    "activation_function",
    "max_position_embeddings",
    "scale_embedding",
    "init_std",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "decoder_start_token_id",
)


def marian_permutation(d_model: int) -> torch.Tensor:
    """``perm`` (D,) with ``marian_vector = our_vector[perm]``: Marian's dimension i < D/2 is the sine of frequency
    i (our dimension 2i), its dimension D/2 + i the cosine (our 2i + 1)."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


# --------------------------------------------------------------------------------------------- configuration
def marian_refusal(config: TransformerSeq2SeqConfig) -> str | None:
    """Why a configuration of ours has no exact ``MarianMTModel`` equivalent (one line naming the option), or None."""
    if config.norm_style != "post":
        return (
            f"norm_style={config.norm_style!r} has no stock MarianMTModel equivalent (Marian is post-norm, without "
            "final LayerNorms); only norm_style='post' models convert to Marian"
        )
    if config.position_embedding != "sinusoidal":
        return (
            f"position_embedding={config.position_embedding!r} has no stock MarianMTModel equivalent (Marian's "
            "positions are sinusoidal); only position_embedding='sinusoidal' models convert to Marian"
        )
    if config.layer_norm_eps != 1e-5:
        return (
            f"layer_norm_eps={config.layer_norm_eps!r} has no stock MarianMTModel equivalent (Marian's LayerNorms "
            "use 1e-5)"
        )
    return None


def marian_config_from_ours(config: TransformerSeq2SeqConfig):
    """The ``MarianConfig`` of the same model (refused with `ConversionError` when there is none)."""
    from transformers import MarianConfig

    problem = marian_refusal(config)
    if problem:
        raise ConversionError(problem)
    tied = bool(config.tie_word_embeddings)
    return MarianConfig(
        **{option: getattr(config, option) for option in SHARED_OPTIONS},
        decoder_vocab_size=config.vocab_size,
        encoder_ffn_dim=config.ffn_dim,
        decoder_ffn_dim=config.ffn_dim,
        encoder_attention_heads=config.num_attention_heads,
        decoder_attention_heads=config.num_attention_heads,
        share_encoder_decoder_embeddings=tied,
        tie_word_embeddings=tied,
        forced_eos_token_id=None,  # MarianConfig's default (0) would force a token ours never forces
        use_cache=config.use_cache,
    )


def ours_config_from_marian(config, tied: bool, output_bias: bool = False) -> TransformerSeq2SeqConfig:
    """Our configuration of a ``MarianConfig`` (``tied``: whether its three embedding matrices are one;
    ``output_bias``: whether its ``final_logits_bias`` is not zero)."""
    vocab, decoder_vocab = config.vocab_size, config.decoder_vocab_size or config.vocab_size
    if decoder_vocab != vocab:
        raise ConversionError(
            f"decoder_vocab_size={decoder_vocab} differs from vocab_size={vocab}: our Transformer has one "
            "vocabulary for both sides"
        )
    for option in ("ffn_dim", "attention_heads"):
        encoder, decoder = getattr(config, f"encoder_{option}"), getattr(config, f"decoder_{option}")
        if encoder != decoder:
            raise ConversionError(
                f"encoder_{option}={encoder} differs from decoder_{option}={decoder}: our Transformer uses one "
                f"value for both stacks"
            )
    if config.activation_function not in ACTIVATIONS:
        raise ConversionError(
            f"activation_function={config.activation_function!r} is not offered by our Transformer; valid "
            f"choices: {', '.join(ACTIVATIONS)}"
        )
    try:
        return TransformerSeq2SeqConfig(
            **{option: getattr(config, option) for option in SHARED_OPTIONS},
            ffn_dim=config.encoder_ffn_dim,
            num_attention_heads=config.encoder_attention_heads,
            norm_style="post",
            position_embedding="sinusoidal",
            tie_word_embeddings=tied,
            output_bias=output_bias,
            use_cache=config.use_cache,
        )
    except ValueError as err:  # our own checks (an odd d_model, ...): name the Marian value that fails them
        raise ConversionError(f"the Marian configuration does not fit our Transformer: {err}") from None


# ------------------------------------------------------------------------------------------------------ weights
# How each weight of ours relates to Marian's: "in" = a Linear / Embedding reading the D-dim residual stream
# (columns reordered), "out" = a Linear writing to it (rows reordered), "vec" = a (D,) vector in the stream (a
# LayerNorm, an output bias), "none" = not in the stream (a bias of Q/K/V or of the first FFN layer).
def _layer_pairs(ours: str, marian: str, decoder: bool) -> list[tuple[str, tuple[str, ...], str]]:
    """``(our name, Marian names (concatenated along dim 0), kind)`` for the weights of one layer."""
    pairs: list[tuple[str, tuple[str, ...], str]] = []
    attentions: list[tuple[str, str, tuple[str, ...], str]] = [
        ("self_attn", "self_attn", ("q", "k", "v"), "qkv")
    ]
    if decoder:
        attentions.append(("cross_attn", "encoder_attn", ("k", "v"), "kv"))
    for our_attn, marian_attn, fused, fused_name in attentions:
        if fused_name == "kv":
            pairs += [
                (f"{ours}.{our_attn}.q_proj.weight", (f"{marian}.{marian_attn}.q_proj.weight",), "in"),
                (f"{ours}.{our_attn}.q_proj.bias", (f"{marian}.{marian_attn}.q_proj.bias",), "none"),
            ]
        for part, kind in (("weight", "in"), ("bias", "none")):
            names = tuple(f"{marian}.{marian_attn}.{p}_proj.{part}" for p in fused)
            pairs.append((f"{ours}.{our_attn}.{fused_name}_proj.{part}", names, kind))
        pairs += [
            (f"{ours}.{our_attn}.out_proj.weight", (f"{marian}.{marian_attn}.out_proj.weight",), "out"),
            (f"{ours}.{our_attn}.out_proj.bias", (f"{marian}.{marian_attn}.out_proj.bias",), "vec"),
        ]
    norms = [("self_attn_norm", "self_attn_layer_norm"), ("ffn_norm", "final_layer_norm")]
    if decoder:
        norms.append(("cross_attn_norm", "encoder_attn_layer_norm"))
    for our_norm, marian_norm in norms:
        pairs += [
            (f"{ours}.{our_norm}.{p}", (f"{marian}.{marian_norm}.{p}",), "vec") for p in ("weight", "bias")
        ]
    pairs += [
        (f"{ours}.ffn.fc1.weight", (f"{marian}.fc1.weight",), "in"),
        (f"{ours}.ffn.fc1.bias", (f"{marian}.fc1.bias",), "none"),
        (f"{ours}.ffn.fc2.weight", (f"{marian}.fc2.weight",), "out"),
        (f"{ours}.ffn.fc2.bias", (f"{marian}.fc2.bias",), "vec"),
    ]
    return pairs


def weight_pairs(encoder_layers: int, decoder_layers: int) -> list[tuple[str, tuple[str, ...], str]]:
    """Every weight of ours with its Marian partner(s) and kind (see ``_layer_pairs``)."""
    pairs: list[tuple[str, tuple[str, ...], str]] = [
        ("model.encoder.embed_tokens.weight", ("model.encoder.embed_tokens.weight",), "in"),
        ("model.decoder.embed_tokens.weight", ("model.decoder.embed_tokens.weight",), "in"),
        ("lm_head.weight", ("lm_head.weight",), "in"),
    ]
    for i in range(encoder_layers):
        pairs += _layer_pairs(f"model.encoder.layers.{i}", f"model.encoder.layers.{i}", decoder=False)
    for i in range(decoder_layers):
        pairs += _layer_pairs(f"model.decoder.layers.{i}", f"model.decoder.layers.{i}", decoder=True)
    return pairs


def _reorder(tensor: torch.Tensor, kind: str, index: torch.Tensor) -> torch.Tensor:
    """``tensor`` with its D-sided axis reordered by ``index`` (``kind`` as in ``_layer_pairs``)."""
    if kind == "in":
        return tensor[:, index]
    if kind in ("out", "vec"):
        return tensor[index]
    return tensor


def _copy_into(model: torch.nn.Module, values: dict[str, torch.Tensor]) -> None:
    """Copy ``values`` into the model's parameters of those names (tied parameters receive the same tensor)."""
    params = {
        name: param
        for name, param in model.named_parameters(remove_duplicate=False)
        if not name.endswith("embed_positions.weight")  # Marian's sinusoid: a frozen table it computes itself
    }
    missing = sorted(set(params) - set(values))
    if missing:
        raise ConversionError(f"internal: no source weight for {', '.join(missing[:3])}")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(values[name])


def _tied(model, names: tuple[str, ...]) -> bool:
    """Whether the parameters ``names`` of ``model`` are one tensor (or hold equal values)."""
    state = model.state_dict()
    first = state[names[0]]
    return all(torch.equal(first, state[n]) for n in names[1:])


# ------------------------------------------------------------------------------------------------------ models
def to_marian(model):
    """A ``MarianMTModel`` computing what our ``TransformerSeq2SeqForConditionalGeneration`` ``model`` computes."""
    from transformers import MarianMTModel

    config = marian_config_from_ours(model.config)
    marian = MarianMTModel(config).eval()
    ours = model.state_dict()
    index = marian_permutation(config.d_model)
    values: dict[str, torch.Tensor] = {}
    for our_name, marian_names, kind in weight_pairs(config.encoder_layers, config.decoder_layers):
        parts = _reorder(ours[our_name], kind, index).split(
            ours[our_name].shape[0] // len(marian_names), dim=0
        )
        values.update(zip(marian_names, parts, strict=True))
    if config.share_encoder_decoder_embeddings:
        values["model.shared.weight"] = values["model.encoder.embed_tokens.weight"]
    _copy_into(marian, values)
    with torch.no_grad():  # (1, V): our output bias, or zeros
        bias = model.lm_head.bias
        marian.final_logits_bias.copy_(
            torch.zeros_like(marian.final_logits_bias) if bias is None else bias[None]
        )
    marian.generation_config = copy.deepcopy(model.generation_config)
    return marian


def from_marian(marian):
    """Our ``TransformerSeq2SeqForConditionalGeneration`` computing what ``marian`` (a ``MarianMTModel``) does."""
    from ..families import FAMILIES

    bias = marian.final_logits_bias  # (1, V)
    output_bias = bool(torch.count_nonzero(bias))
    embeddings = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight")
    config = ours_config_from_marian(marian.config, tied=_tied(marian, embeddings), output_bias=output_bias)
    model = FAMILIES["transformer"].model_class(config).eval()
    state = marian.state_dict()
    inverse = torch.argsort(marian_permutation(config.d_model))
    values = {
        our_name: _reorder(torch.cat([state[n] for n in marian_names], dim=0), kind, inverse)
        for our_name, marian_names, kind in weight_pairs(config.encoder_layers, config.decoder_layers)
    }
    if output_bias:
        values["lm_head.bias"] = bias[0]
    _copy_into(model, values)
    model.generation_config = copy.deepcopy(marian.generation_config)
    return model


def layerdrop_note(marian_config) -> str | None:
    """A line for the card when the Marian model trained with layerdrop (training-only; ours has none)."""
    drops = {
        k: getattr(marian_config, k, 0.0)
        for k in ("encoder_layerdrop", "decoder_layerdrop")
        if getattr(marian_config, k, 0.0)
    }
    if not drops:
        return None
    shown = ", ".join(f"{k}={v}" for k, v in drops.items())
    return f"The Marian configuration had {shown}; our Transformer has no layerdrop (training only: the forward pass is unchanged)."

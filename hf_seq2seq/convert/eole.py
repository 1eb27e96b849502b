"""eole (OpenNMT-py's successor) model directory → our Transformer or RNN, read without importing eole.

An eole model directory (what ``eole train`` writes at ``model_path``) holds ``config.json`` (the run's configuration;
eole saves the options that were set, so an absent option has eole's default, ``EOLE_DEFAULTS`` below, checked
against eole 0.6.4), ``model.00.safetensors`` (one shard per tensor-parallel rank: one rank is read) and
``vocab.json`` (the ``src`` and ``tgt`` token lists in id order, the special tokens, the decoder start token).

eole's encoder-decoder Transformer in its default ("standard") form maps one to one onto ours with
``norm_style="pre"``: every encoder and decoder layer normalises before attention (``input_layernorm``,
``precontext_layernorm``) and before the feed-forward block (``post_attention_layernorm``), and both stacks end in
a LayerNorm; the embeddings are scaled by sqrt(hidden_size) and added to the interleaved sinusoidal table
(``scale_embedding``, ``position_embedding="sinusoidal"``); ``norm_eps`` is our ``layer_norm_eps``. eole's
projections have no biases by default (``add_qkvbias``, ``add_final_linear_bias``, ``add_ffnbias``): ours get
zero biases, which computes the same thing. ``share_embeddings`` with ``share_decoder_embeddings`` is our
``tie_word_embeddings``; otherwise the three matrices are kept apart. eole's output layer (``generator``) has a bias
by default (``generator_bias``): it is our ``lm_head.bias`` (``output_bias=True``); without one, ``output_bias`` is
off.

The tokenizer reproduces eole without transforms: the line stripped, split at each space, looked up in the
vocabulary (unknown words → ``<unk>``); eole gives the encoder no eos, so neither does the tokenizer.

eole's RNN (``architecture: rnn``, or ``custom`` with an ``rnn``/``brnn`` encoder and an ``rnn`` decoder: eole's
only way to a bidirectional encoder) converts to our RNN family: :mod:`.eole_rnn` says how and what it refuses.

Beam search: ``eole predict``'s length penalty (config.json's ``inference`` section, else eole's default ``avg``,
alpha 1.0) decides the search stored with the folder: eole's own search (:mod:`hf_seq2seq.inference.search`) as
``custom_generate/generate.py``, with ``avg``'s or ``wu``'s normalisation and alpha (0 for ``none``) as the generation
config's ``length_penalty``, so ``hf-seq2seq translate`` and the pipeline decode like eole.

Refused in one line naming the eole option: any other architecture (eole's ``cnn``,
language models, vision and audio encoders), an encoder ``encoder_layer_style`` other than ``standard`` or without
``final_encoder_layer_norm`` (eole's decoder is pre-norm only, ours has one norm style), ``layer_norm`` other than
``standard`` (RMSNorm), position encodings other than ``SinusoidalInterleaved``, ``normalize`` (a second
embedding scaling), gated or other activations, and the attention variants of eole's LLM support (grouped KV heads, ``head_dim``, ``attn_scaling``,
sliding windows, relative positions, query/key/value norms, mixtures of experts, parallel residuals, extra
feed-forward norms, gated queries), separate source and target vocabularies, and transforms (subword
tokenisation: ``onmt_tokenize``, ``sentencepiece``, ``bpe``...).
"""

from __future__ import annotations

import json
from pathlib import Path

from .common import copy_weights, source_error
from .errors import ConversionError

# eole's names -> ours (the same torch functions: F.relu, F.gelu, F.silu)
ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "silu": "silu"}
# eole 0.6.4's defaults of every option the converter reads (config.json leaves out what was not set)
EOLE_DEFAULTS = {
    "layer_norm": "standard",
    "norm_eps": 1e-5,
    "mlp_activation_fn": "relu",
    "position_encoding_type": "SinusoidalInterleaved",
    "encoder_layer_style": "standard",
    "final_encoder_layer_norm": True,
}
# options that must keep eole's default (the vanilla Transformer): option -> the values that compute it
VANILLA = {
    "sliding_window": (0,),
    "relative_positions_buckets": (0,),
    "query_norm": (False,),
    "key_norm": (False,),
    "value_norm": (False,),
    "attn_scaling": (None,),
    "num_experts": (0,),
    "parallel_residual": (False,),
    "ffn_layernorm": (False,),
    "q_gating": (False,),
    "interpolate_mode": (None,),
    "layer_types": (None,),
    "LM_type": ("causal",),
    "global_head_dim": (None,),
}
EMBEDDING_VANILLA: dict[str, tuple[object, ...]] = {
    "normalize": (False, None),
    "embedding_type": ("standard",),
    "embedding_layer_norm": (False,),
    "position_shift": (0, None),
    "freeze_word_vecs_enc": (False, True),  # training only
    "freeze_word_vecs_dec": (False, True),
}
# architecture -> the encoder_type / decoder_type values it converts with
LAYER_KINDS: dict[str, dict[str, tuple[str, ...]]] = {
    "transformer": {"encoder": ("transformer",), "decoder": ("transformer",)},
    "rnn": {"encoder": ("rnn", "brnn"), "decoder": ("rnn",)},
}
MODEL_VANILLA: dict[str, tuple[object, ...]] = {
    "generator_function": ("softmax",),
    "left_pad": (False,),
}


_fail = source_error


# ------------------------------------------------------------------------------------------------------ reading
def _read_json(model_dir: Path, name: str) -> dict:
    path = model_dir / name
    if not path.is_file():
        raise _fail(model_dir, f"no {name} beside config.json: not a complete eole model directory")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise _fail(model_dir, f"cannot read {name} ({first})") from None
    if not isinstance(data, dict):
        raise _fail(model_dir, f"{name} does not hold a JSON object")
    return data


def read_config(model_dir: Path) -> dict:
    config = _read_json(model_dir, "config.json")
    if not isinstance(config.get("model"), dict):
        raise _fail(model_dir, "config.json has no `model` section; is this an eole model directory?")
    return config


def read_vocabulary(model_dir: Path) -> tuple[list[str], dict, str]:
    """The joint token list, the special tokens, the decoder start token."""
    vocab = _read_json(model_dir, "vocab.json")
    src, tgt = vocab.get("src"), vocab.get("tgt")
    if not isinstance(src, list) or not isinstance(tgt, list):
        raise _fail(model_dir, "vocab.json has no `src` and `tgt` token lists")
    if src != tgt:
        raise _fail(
            model_dir,
            "vocab.json's src and tgt vocabularies differ: our Transformer has one joint vocabulary (train eole "
            "with share_vocab: true)",
        )
    specials = {
        "unk_token": "<unk>",
        "pad_token": "<blank>",
        "bos_token": "<s>",
        "eos_token": "</s>",
        **(vocab.get("specials") or {}),
    }
    start = vocab.get("decoder_start_token", "<s>")
    for name in ("unk_token", "pad_token", "eos_token"):
        if specials[name] not in src:
            raise _fail(model_dir, f"vocab.json: the {name} {specials[name]!r} is not in the vocabulary")
    if start not in src:
        raise _fail(model_dir, f"vocab.json: decoder_start_token {start!r} is not in the vocabulary")
    return src, specials, start


def read_weights(model_dir: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    shards = sorted(model_dir.glob("model.*.safetensors"))
    if not shards:
        raise _fail(model_dir, "no model.00.safetensors beside config.json (eole's weights)")
    if len(shards) > 1:
        raise _fail(
            model_dir, f"{len(shards)} weight shards (tensor-parallel training) are not merged; one is"
        )
    try:
        weights = load_file(shards[0])
    except (OSError, SafetensorError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise _fail(model_dir, f"cannot read {shards[0].name} ({first[:200]})") from None
    if "src_emb.embeddings.weight" not in weights:
        raise _fail(
            model_dir, f"{shards[0].name} holds no eole encoder-decoder (no src_emb.embeddings.weight)"
        )
    return weights


# ------------------------------------------------------------------------------------------------ configuration
def _option(section: dict, model: dict, name: str, default=None):
    """An option's value as eole's model sees it: the section's, else the model level's, else eole's default."""
    if name in section:
        return section[name]
    return model.get(name, EOLE_DEFAULTS.get(name, default))


def shared_config(
    config: dict, vocab: list[str], specials: dict, start: str, weights: dict, matrices: tuple
) -> dict:
    """The config values both families read the same way from an eole model: special-token ids, label smoothing,
    the generator's bias and whether the three embedding matrices are one (``matrices``: source, target, generator)."""
    src, tgt, generator = matrices
    return {
        "tie_word_embeddings": bool(src is tgt is generator or (src.equal(tgt) and tgt.equal(generator))),
        "output_bias": "generator.bias" in weights,  # generator_bias (eole's default: on)
        "label_smoothing": float((config.get("training") or {}).get("label_smoothing", 0.0)),
        "pad_token_id": vocab.index(specials["pad_token"]),
        "bos_token_id": vocab.index(start),
        "eos_token_id": vocab.index(specials["eos_token"]),
        "decoder_start_token_id": vocab.index(start),
    }


def _same(model_dir: Path, model: dict, name: str):
    encoder, decoder = model.get("encoder") or {}, model.get("decoder") or {}
    a, b = _option(encoder, model, name), _option(decoder, model, name)
    if a != b:
        raise _fail(
            model_dir, f"model.encoder.{name}={a!r} differs from model.decoder.{name}={b!r}: ours uses one"
        )
    return a


def check_model_section(model_dir: Path, config: dict) -> None:
    """Refuse (one line naming the eole option) what our Transformer or RNN cannot express, before any weight is
    read."""
    _check_kind(model_dir, config)
    if family(config["model"]) == "rnn":
        from .eole_rnn import check_rnn_section

        _check_vanilla(model_dir, config["model"])
        check_rnn_section(model_dir, config["model"])
        return
    _check_layers(model_dir, config["model"])
    _check_embeddings(model_dir, config["model"])


def family(model: dict) -> str:
    """The architecture an eole model section converts as: its ``architecture``, except that ``custom`` with an
    ``rnn``/``brnn`` encoder and an ``rnn`` decoder is an RNN (eole's only way to a bidirectional RNN encoder:
    ``architecture: rnn`` sets ``encoder_type: rnn`` whatever the configuration says)."""
    architecture = model.get("architecture", "transformer")
    encoder, decoder = model.get("encoder") or {}, model.get("decoder") or {}
    if (
        architecture == "custom"
        and encoder.get("encoder_type") in ("rnn", "brnn")
        and decoder.get("decoder_type") == "rnn"
    ):
        return "rnn"
    return architecture


def _check_kind(model_dir: Path, config: dict) -> None:
    """An encoder-decoder Transformer or RNN trained on space-split words."""
    model = config["model"]
    architecture = family(model)
    if architecture == "custom":
        raise _fail(
            model_dir,
            "model.architecture='custom' converts only with an rnn or brnn encoder_type and an rnn decoder_type",
        )
    if architecture not in LAYER_KINDS:
        raise _fail(
            model_dir,
            f"model.architecture={architecture!r}: only eole's encoder-decoder transformer and rnn convert",
        )
    encoder, decoder = model.get("encoder") or {}, model.get("decoder") or {}
    kinds = LAYER_KINDS[architecture]
    for side, section, key in (("encoder", encoder, "encoder_type"), ("decoder", decoder, "decoder_type")):
        kind = section.get(key, architecture)
        if kind not in kinds[side]:
            raise _fail(
                model_dir, f"model.{side}.{key}={kind!r}: a {architecture} model converts with {kinds[side]}"
            )
    transforms = sorted(
        {
            t
            for corpus in (config.get("data") or {}).values()
            if isinstance(corpus, dict)
            for t in corpus.get("transforms") or []
        }
        | set(config.get("transforms") or [])
    )
    if transforms:
        raise _fail(
            model_dir,
            f"transforms {transforms}: only models trained on space-split words without transforms convert so far",
        )


def _check_layers(model_dir: Path, model: dict) -> None:
    """Vanilla pre-norm Transformer layers, the same on both sides."""
    encoder, decoder = model.get("encoder") or {}, model.get("decoder") or {}
    style = _option(encoder, model, "encoder_layer_style")
    if style != "standard":
        raise _fail(
            model_dir,
            f"model.encoder.encoder_layer_style={style!r}: eole's decoder is pre-norm, ours has one norm style",
        )
    if not _option(encoder, model, "final_encoder_layer_norm"):
        raise _fail(
            model_dir,
            "model.encoder.final_encoder_layer_norm=false: our pre-norm encoder ends in a LayerNorm",
        )
    for side, section in (("encoder", encoder), ("decoder", decoder)):
        for name, allowed in VANILLA.items():
            value = _option(section, model, name, allowed[0])
            if value not in allowed:
                raise _fail(model_dir, f"model.{side}.{name}={value!r} is not offered by our Transformer")
        heads, hidden = _option(section, model, "heads"), _option(section, model, "hidden_size")
        if _option(section, model, "heads_kv") not in (None, heads):
            raise _fail(model_dir, f"model.{side}.heads_kv (grouped key/value heads) is not offered by ours")
        head_dim = _option(section, model, "head_dim")
        if head_dim is not None and heads and hidden and head_dim * heads != hidden:
            raise _fail(model_dir, f"model.{side}.head_dim={head_dim} is not hidden_size / heads")
    norm = _same(model_dir, model, "layer_norm")
    if norm != "standard":
        raise _fail(model_dir, f"model.layer_norm={norm!r} (not LayerNorm) is not offered by ours")
    activation = _same(model_dir, model, "mlp_activation_fn")
    if activation not in ACTIVATIONS:
        raise _fail(
            model_dir,
            f"model.mlp_activation_fn={activation!r} is not converted; valid: {', '.join(ACTIVATIONS)}",
        )
    for name in ("hidden_size", "heads", "transformer_ff", "norm_eps"):
        _same(model_dir, model, name)


def _check_embeddings(model_dir: Path, model: dict) -> None:
    """Scaled word embeddings of the model's size plus the interleaved sinusoidal table."""
    positions = _same(model_dir, model, "position_encoding_type")
    embeddings = model.get("embeddings") or {}
    positions = embeddings.get("position_encoding_type", positions)
    if positions != "SinusoidalInterleaved":
        raise _fail(
            model_dir,
            f"model.embeddings.position_encoding_type={positions!r}: only SinusoidalInterleaved converts",
        )
    _check_vanilla(model_dir, model)
    hidden = _option(model.get("encoder") or {}, model, "hidden_size")
    for name in ("src_word_vec_size", "tgt_word_vec_size"):
        size = embeddings.get(name, embeddings.get("word_vec_size", hidden))
        if size not in (hidden, -1, None):
            raise _fail(model_dir, f"model.embeddings.{name}={size} differs from hidden_size={hidden}")


def _check_vanilla(model_dir: Path, model: dict) -> None:
    """Plain word embeddings and a softmax generator (both architectures)."""
    embeddings = model.get("embeddings") or {}
    for name, allowed in EMBEDDING_VANILLA.items():
        if embeddings.get(name, allowed[0]) not in allowed:
            raise _fail(model_dir, f"model.embeddings.{name}={embeddings[name]!r} is not offered by ours")
    for name, allowed in MODEL_VANILLA.items():
        if model.get(name, allowed[0]) not in allowed:
            raise _fail(model_dir, f"model.{name}={model[name]!r} is not offered by ours")


def _embedding_matrices(model_dir: Path, model: dict, weights: dict) -> tuple:
    """eole's source embeddings, target embeddings and output layer (shared ones are saved once)."""
    src = weights["src_emb.embeddings.weight"]
    tgt = weights.get("tgt_emb.embeddings.weight")
    if tgt is None and model.get("share_embeddings"):
        tgt = src
    generator = weights.get("generator.weight")
    if generator is None and model.get("share_decoder_embeddings"):
        generator = tgt
    if tgt is None or generator is None:
        missing = "tgt_emb.embeddings.weight" if tgt is None else "generator.weight"
        raise _fail(model_dir, f"the weights have no {missing} and config.json shares none")
    return src, tgt, generator


def transformer_config(
    model_dir: Path, config: dict, vocab: list[str], specials: dict, start: str, weights: dict
):
    """Our ``TransformerSeq2SeqConfig`` for an eole Transformer (checked by ``check_model_section``)."""
    from ..families import FAMILIES

    model = config["model"]
    encoder, decoder = model.get("encoder") or {}, model.get("decoder") or {}
    scalars = [k for k, v in weights.items() if k.endswith(".layer_scalar") and not bool((v == 1).all())]
    if scalars:
        raise _fail(model_dir, f"{scalars[0]} is not 1 (a per-layer output scale): ours has none")
    src, tgt, generator = _embedding_matrices(model_dir, model, weights)
    dropout = (config.get("training") or {}).get("dropout") or [0.3]  # eole's defaults
    attention_dropout = (config.get("training") or {}).get("attention_dropout") or [0.1]
    try:
        return FAMILIES["transformer"].config_class(
            vocab_size=len(vocab),
            d_model=int(_option(encoder, model, "hidden_size")),
            encoder_layers=int(_option(encoder, model, "layers")),
            decoder_layers=int(_option(decoder, model, "layers")),
            num_attention_heads=int(_option(encoder, model, "heads")),
            ffn_dim=int(_option(encoder, model, "transformer_ff")),
            dropout=float(dropout[0]),
            attention_dropout=float(attention_dropout[0]),
            activation_dropout=float(dropout[0]),
            activation_function=ACTIVATIONS[_option(encoder, model, "mlp_activation_fn")],
            norm_style="pre",
            position_embedding="sinusoidal",
            max_position_embeddings=int(weights["src_emb.pe.pe"].shape[0])
            if "src_emb.pe.pe" in weights
            else 5000,
            scale_embedding=True,
            layer_norm_eps=float(_option(encoder, model, "norm_eps")),
            **shared_config(config, vocab, specials, start, weights, (src, tgt, generator)),
        )
    except (ValueError, TypeError) as err:
        raise _fail(model_dir, f"the eole configuration does not fit our Transformer: {err}") from None


# ------------------------------------------------------------------------------------------------------ weights
def _linear(weights: dict, name: str, rows: int):
    """eole's ``name`` Linear as (weight, bias): a Linear saved without bias gets a zero one."""
    import torch

    weight = weights[f"{name}.weight"]
    bias = weights.get(f"{name}.bias")
    return weight, (bias if bias is not None else torch.zeros(rows, dtype=weight.dtype))


def _attention(values: dict, weights: dict, ours: str, eole: str, d_model: int, cross: bool) -> None:
    import torch

    parts = {p: _linear(weights, f"{eole}.linear_{p}", d_model) for p in ("query", "keys", "values")}
    groups = (
        {"q_proj": ("query",), "kv_proj": ("keys", "values")}
        if cross
        else {"qkv_proj": ("query", "keys", "values")}
    )
    for our_name, names in groups.items():
        for index, part in enumerate(("weight", "bias")):
            values[f"{ours}.{our_name}.{part}"] = torch.cat([parts[n][index] for n in names], dim=0)
    weight, bias = _linear(weights, f"{eole}.final_linear", d_model)
    values[f"{ours}.out_proj.weight"], values[f"{ours}.out_proj.bias"] = weight, bias


def _norm(values: dict, weights: dict, ours: str, eole: str) -> None:
    for part in ("weight", "bias"):
        values[f"{ours}.{part}"] = weights[f"{eole}.{part}"]


def _ffn(values: dict, weights: dict, ours: str, eole: str, config) -> None:
    for our_fc, name, rows in (("fc1", "gate_up_proj", config.ffn_dim), ("fc2", "down_proj", config.d_model)):
        weight, bias = _linear(weights, f"{eole}.mlp.{name}", rows)
        values[f"{ours}.ffn.{our_fc}.weight"], values[f"{ours}.ffn.{our_fc}.bias"] = weight, bias


def transformer_weights(model_dir: Path, model: dict, config, weights: dict) -> dict:
    """Every weight of our Transformer as a tensor made from eole's (a missing name raises KeyError)."""
    src, tgt, generator = _embedding_matrices(model_dir, model, weights)
    values = {
        "model.encoder.embed_tokens.weight": src,
        "model.decoder.embed_tokens.weight": tgt,
        "lm_head.weight": generator,
    }
    if config.output_bias:
        values["lm_head.bias"] = weights["generator.bias"]
    d = config.d_model
    for i in range(config.encoder_layers):
        ours, eole = f"model.encoder.layers.{i}", f"encoder.transformer_layers.{i}"
        _norm(values, weights, f"{ours}.self_attn_norm", f"{eole}.input_layernorm")
        _attention(values, weights, f"{ours}.self_attn", f"{eole}.self_attn", d, cross=False)
        _norm(values, weights, f"{ours}.ffn_norm", f"{eole}.post_attention_layernorm")
        _ffn(values, weights, ours, eole, config)
    for i in range(config.decoder_layers):
        ours, eole = f"model.decoder.layers.{i}", f"decoder.transformer_layers.{i}"
        _norm(values, weights, f"{ours}.self_attn_norm", f"{eole}.input_layernorm")
        _attention(values, weights, f"{ours}.self_attn", f"{eole}.self_attn", d, cross=False)
        _norm(values, weights, f"{ours}.cross_attn_norm", f"{eole}.precontext_layernorm")
        _attention(values, weights, f"{ours}.cross_attn", f"{eole}.context_attn", d, cross=True)
        _norm(values, weights, f"{ours}.ffn_norm", f"{eole}.post_attention_layernorm")
        _ffn(values, weights, ours, eole, config)
    _norm(values, weights, "model.encoder.layer_norm", "encoder.layer_norm")
    _norm(values, weights, "model.decoder.layer_norm", "decoder.layer_norm")
    return values


def build_model(model_dir: Path, model_section: dict, config, weights: dict):
    from ..families import FAMILIES

    model = FAMILIES["transformer"].model_class(config).eval()
    try:
        values = transformer_weights(model_dir, model_section, config, weights)
    except KeyError as err:
        raise _fail(
            model_dir, f"the weights have no {err.args[0]} (config.json and weights disagree)"
        ) from None
    return copy_weights(model, values, model_dir, "config.json")


# ---------------------------------------------------------------------------------------------------- tokenizer
def build_tokenizer(vocab: list[str], specials: dict, start: str, max_length: int):
    """A fast tokenizer that gives eole's ids for the same text: stripped, split at each space, no eos."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    ids: dict[str, int] = {}
    for index, token in enumerate(vocab):
        ids.setdefault(token, index)  # eole's lookup keeps the first occurrence
    backend = Tokenizer(WordLevel(ids, unk_token=specials["unk_token"]))
    backend.normalizer = normalizers.Strip()
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(" "), behavior="removed")
    backend.decoder = None
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=specials["unk_token"],
        pad_token=specials["pad_token"],
        bos_token=start,
        eos_token=specials["eos_token"],
        model_max_length=max_length,
        padding_side="right",
        truncation_side="right",
        clean_up_tokenization_spaces=False,
    )


def beam_search(model_dir: Path, config: dict) -> tuple[str, float]:
    """``(the decoding method to store with the folder, its length_penalty)`` for the length penalty ``eole
    predict`` uses (config.json's ``inference`` section, else eole's defaults ``length_penalty: avg``, ``alpha:
    1.0``): ``avg`` and ``none`` are eole's beam search with alpha (``none``: 0), ``wu`` the same search with Wu et
    al.'s penalty."""
    inference = config.get("inference") or {}
    penalty = inference.get("length_penalty", "avg")
    if penalty not in ("avg", "none", "wu"):
        raise _fail(model_dir, f"inference.length_penalty={penalty!r} is not eole's; valid: avg, none, wu")
    if penalty == "wu":
        return "wu_length_beam_search", float(inference.get("alpha", 1.0))
    return "average_length_beam_search", float(inference.get("alpha", 1.0)) if penalty == "avg" else 0.0


def generation_config(model_config, length_penalty: float = 1.0):
    """eole's search defaults that a model directory implies: no forbidden token, eos allowed from the first step,
    at most 250 tokens (``max_length``), eole's alpha as ``length_penalty``; the beam size is a setting of ``eole
    predict``."""
    from transformers import GenerationConfig

    return GenerationConfig(
        num_beams=1,
        max_new_tokens=250,
        length_penalty=length_penalty,
        pad_token_id=model_config.pad_token_id,
        bos_token_id=model_config.bos_token_id,
        eos_token_id=model_config.eos_token_id,
        decoder_start_token_id=model_config.decoder_start_token_id,
    )


# ------------------------------------------------------------------------------------------------------ entry
def load_eole(source):
    """``(model, tokenizer, notes, search)`` of the eole model directory ``source``; ``search``: the decoding method
    to store with the folder (``custom_generate``), or None."""
    model_dir = Path(source).expanduser()
    if not model_dir.is_dir():
        raise ConversionError(
            f"{source}: " + ("is a file, not a folder" if model_dir.exists() else "folder not found")
        )
    if not (model_dir / "config.json").is_file():
        hint = " (it has config.yaml: use --from joeynmt)" if (model_dir / "config.yaml").is_file() else ""
        raise _fail(model_dir, f"no config.json: not an eole model directory{hint}")
    if not (model_dir / "vocab.json").is_file() and not any(model_dir.glob("model.*.safetensors")):
        raise _fail(model_dir, "no vocab.json nor model.00.safetensors: not an eole model directory")
    config = read_config(model_dir)
    check_model_section(model_dir, config)
    vocab, specials, start = read_vocabulary(model_dir)
    weights = read_weights(model_dir)
    search, alpha = beam_search(model_dir, config)
    if family(config["model"]) == "rnn":
        model, tokenizer, notes = _load_rnn(model_dir, config, vocab, specials, start, weights)
        model.generation_config = generation_config(model.config, alpha)
        return model, tokenizer, [*notes, beam_note(search)], search
    our_config = transformer_config(model_dir, config, vocab, specials, start, weights)
    model = build_model(model_dir, config["model"], our_config, weights)
    model.generation_config = generation_config(our_config, alpha)
    tokenizer = build_tokenizer(vocab, specials, start, our_config.max_position_embeddings)
    notes = [
        "eole's Transformer is pre-norm with interleaved sinusoidal positions and embeddings scaled by "
        "sqrt(hidden_size); its projections without bias got zero biases. Our sinusoidal table is computed in "
        "float64 where eole's is computed in float32 (they differ by float32 rounding).",
        "The tokenizer reproduces eole's ids: the source gets no eos (eole gives its encoder none), so for "
        "fine-tuning append eos to the labels yourself.",
        beam_note(search),
    ]
    return model, tokenizer, notes, search


def beam_note(search: str) -> str:
    """The card's line on beam search (``search``: what :func:`beam_search` stores)."""
    penalty = (
        "`length_penalty: wu`, a finished hypothesis' score divided by ((5 + length + 1) / 6)^alpha"
        if search == "wu_length_beam_search"
        else "`length_penalty: avg`, a finished hypothesis' score divided by (length + 1)^alpha"
    )
    return (
        f"Beam search: eole's own ({penalty}, alpha = the generation config's `length_penalty`, 0 for eole's "
        "`none`; a sentence stops when its best candidate ends) is stored with the folder as "
        "`custom_generate/generate.py`: `hf-seq2seq translate` and `hf_seq2seq.inference.load_model` use it, and so "
        "do `from_pretrained` and a pipeline given `trust_remote_code` (set to True). Greedy decoding is the same."
    )


def _load_rnn(model_dir: Path, config: dict, vocab: list[str], specials: dict, start: str, weights: dict):
    from .eole_rnn import NOTES, build_rnn_model, rnn_config

    matrices = _embedding_matrices(model_dir, config["model"], weights)
    shared = shared_config(config, vocab, specials, start, weights, matrices)
    our_config = rnn_config(model_dir, config, vocab, matrices, shared)
    model = build_rnn_model(model_dir, our_config, weights, matrices)
    tokenizer = build_tokenizer(vocab, specials, start, our_config.max_position_embeddings)
    return model, tokenizer, list(NOTES)

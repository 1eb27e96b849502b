"""JoeyNMT 2.x model directory → our Transformer, read without importing JoeyNMT.

A JoeyNMT model directory holds ``config.yaml`` (read with PyYAML), checkpoints ``N.ckpt`` / ``best.ckpt`` /
``latest.ckpt`` (read with ``torch.load(weights_only=True)``: tensors and plain containers only, no code runs) and
``src_vocab.txt`` / ``trg_vocab.txt`` (one token a line; JoeyNMT puts its special symbols first).

The Transformer maps one to one (JoeyNMT's ``transformer_layers.py`` and ours are both Vaswani et al. 2017 with
interleaved sinusoidal positions):

- ``layer_norm: post`` → ``norm_style="post"``; ``layer_norm: pre`` (given for encoder and decoder) →
  ``norm_style="pre"`` with both final LayerNorms. JoeyNMT's LayerNorms use epsilon 1e-6: ``layer_norm_eps=1e-6``.
- Q, K, V projections are concatenated into our fused ones; the FFN's own LayerNorm is our ``ffn_norm``.
- ``embeddings.scale`` → ``scale_embedding``; embeddings and output layer are tied in ours when the checkpoint holds
  one matrix for all three (``tied_embeddings`` + ``tied_softmax``), else kept as three matrices.
- Special ids (``data.special_symbols``, unk 0 / pad 1 / bos 2 / eos 3 by default) are kept; decoding starts with
  bos, and the generation config forbids what JoeyNMT's search forbids (bos always, eos before
  ``min_output_length``, unk with ``generate_unk: false``).
- The tokenizer reproduces JoeyNMT's ``BasicTokenizer`` at ``level: word``: an optional lowercasing, a split at each
  space, the vocabulary lookup (unknown words → unk) and eos appended to the source.

The RNN maps one to one too, with two options of our RNN made for it: JoeyNMT's ``bahdanau`` attention scores the
current decoder state with an MLP (our Luong ``concat``), its ``luong`` is Luong's ``general``; its attentional layer
``tanh(W [h_t; c_t] + b)`` is our ``combine`` with ``combine_bias=True`` (columns reordered to [c_t; h_t]); its
``init_hidden`` ``bridge`` / ``last`` / ``zero`` start every decoder layer from the top encoder layer
(``decoder_init="top_bridge"`` / ``"top"`` / ``"zero"``, the LSTM cell equal to the state); ``embeddings.scale``
(JoeyNMT's ``Embeddings`` multiplies the lookup by sqrt(``embedding_dim``), on both families) is our
``scale_embedding``; input feeding, GRU and LSTM, uni- and bidirectional encoders carry over (the encoder's states
must have the decoder's size).

Refused in one line naming the option: ``alpha`` ≠ 1, encoder and decoder of different sizes, heads, cells,
activations, ``layer_norm`` or ``embeddings.scale`` (and ``layer_norm`` unset on the encoder: JoeyNMT then builds
pre-norm layers without a final LayerNorm), RNN encoder states of another size than the decoder's, separate source and
target vocabularies, BPE / sentencepiece / character tokenisation, ``normalize`` and the Moses pre-tokenizer,
language tags and sep tokens.
"""

from __future__ import annotations

from pathlib import Path

from .common import copy_weights, source_error
from .errors import ConversionError

# JoeyNMT's activation names → ours (transformers' ACT2FN names; JoeyNMT's "swish" is torch's SiLU)
ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "swish": "silu"}
SPECIAL_DEFAULTS = {"unk": ("<unk>", 0), "pad": ("<pad>", 1), "bos": ("<s>", 2), "eos": ("</s>", 3)}
JOEYNMT_LAYER_NORM_EPS = 1e-6
# JoeyNMT's RNN attention and init_hidden -> ours: its "bahdanau" scores the current decoder state with an MLP (our
# Luong "concat"), its "luong" is Luong's "general"; "bridge" / "last" / "zero" start every layer from the top
RNN_ATTENTIONS = {"bahdanau": "concat", "luong": "general"}
RNN_INITS = {"bridge": "top_bridge", "last": "top", "zero": "zero"}


_fail = source_error


# ------------------------------------------------------------------------------------------------------ reading
def read_config(model_dir: Path) -> dict:
    import yaml

    path = model_dir / "config.yaml"
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise _fail(model_dir, f"cannot read config.yaml ({first})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise _fail(model_dir, "config.yaml has no `model:` section; is this a JoeyNMT model directory?")
    return config


def find_checkpoint(model_dir: Path) -> Path:
    """best.ckpt, else latest.ckpt, else the highest-numbered N.ckpt."""
    for name in ("best.ckpt", "latest.ckpt"):
        if (model_dir / name).is_file():
            return model_dir / name
    numbered = sorted(
        (p for p in model_dir.glob("*.ckpt") if p.stem.isdigit()), key=lambda p: int(p.stem), reverse=True
    )
    if not numbered:
        raise _fail(model_dir, "no checkpoint (best.ckpt, latest.ckpt or N.ckpt) beside config.yaml")
    return numbered[0]


def read_weights(model_dir: Path, checkpoint: Path) -> dict:
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as err:  # a corrupt or foreign file: OSError, RuntimeError, EOFError, the unpickler's own error
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise _fail(model_dir, f"cannot read {checkpoint.name} as a checkpoint ({first[:200]})") from None
    weights = state.get("model_state", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict) or "src_embed.lut.weight" not in weights:
        raise _fail(model_dir, f"{checkpoint.name} holds no JoeyNMT model_state (no src_embed.lut.weight)")
    return weights


def read_vocabulary(model_dir: Path, config: dict, side: str) -> list[str]:
    """The token list of ``side`` (src / trg) in id order: JoeyNMT's specials first, then the file's tokens."""
    path = model_dir / f"{side}_vocab.txt"
    if not path.is_file():
        given = ((config.get("data") or {}).get(side) or {}).get("voc_file")
        path = Path(given) if given else path
        if not path.is_absolute():
            path = model_dir / path.name if not path.is_file() else path
    if not path.is_file():
        raise _fail(model_dir, f"no {side} vocabulary ({side}_vocab.txt) beside config.yaml")
    specials = special_symbols(model_dir, config)
    tokens: list[str] = []
    seen: set[str] = set()
    ordered = [specials[name][0] for name in ("unk", "pad", "bos", "eos")]
    for token in [*ordered, *path.read_text(encoding="utf-8").splitlines()]:
        if token not in seen:  # JoeyNMT's Vocabulary.add_tokens keeps the first occurrence
            seen.add(token)
            tokens.append(token)
    for name, (token, index) in specials.items():
        if tokens.index(token) != index:
            raise _fail(
                model_dir, f"special symbol {token!r} is at id {tokens.index(token)}, not {name}_id={index}"
            )
    return tokens


def special_symbols(model_dir: Path, config: dict) -> dict[str, tuple[str, int]]:
    given = (config.get("data") or {}).get("special_symbols") or {}
    for option in ("sep_token", "lang_tags"):
        if given.get(option):
            raise _fail(
                model_dir, f"data.special_symbols.{option} (prompted / multilingual models) is not converted"
            )
    return {
        name: (given.get(f"{name}_token", token), int(given.get(f"{name}_id", index)))
        for name, (token, index) in SPECIAL_DEFAULTS.items()
    }


# ------------------------------------------------------------------------------------------------ configuration
def _same(model_dir: Path, encoder: dict, decoder: dict, option: str, default=None):
    """The value both sections give ``option`` ("embeddings.scale" reads the embeddings subsection), or one line."""
    *path, name = option.split(".")
    for key in path:
        encoder, decoder = encoder.get(key) or {}, decoder.get(key) or {}
    a, b = encoder.get(name, default), decoder.get(name, default)
    if a != b:
        raise _fail(
            model_dir,
            f"model.encoder.{option}={a!r} differs from model.decoder.{option}={b!r}: ours uses one value",
        )
    return a


def _norm_style(model_dir: Path, encoder: dict, decoder: dict) -> str:
    # JoeyNMT's encoder layers default to pre-norm while its final LayerNorm (and the decoder) default to post
    if "layer_norm" not in encoder:
        raise _fail(
            model_dir,
            "model.encoder.layer_norm is not set: JoeyNMT then builds pre-norm encoder layers without a final "
            "LayerNorm, which our Transformer does not have",
        )
    return _same(model_dir, encoder, decoder, "layer_norm", "post")


def check_model_section(model_dir: Path, config: dict) -> str:
    """Refuse (one line) what our classes cannot express, before any weight is read; returns the Transformer's
    norm style, or "rnn" for a recurrent model."""
    model = config["model"]
    encoder, decoder = model.get("encoder") or {}, model.get("decoder") or {}
    kinds = (encoder.get("type", "recurrent"), decoder.get("type", "transformer"))
    if kinds == ("recurrent", "recurrent"):
        return check_rnn_section(model_dir, encoder, decoder)
    if kinds != ("transformer", "transformer"):
        raise _fail(
            model_dir,
            f"model.encoder.type={kinds[0]!r} with model.decoder.type={kinds[1]!r} is not converted",
        )
    norm_style = _norm_style(model_dir, encoder, decoder)
    for side, section in (("encoder", encoder), ("decoder", decoder)):
        if float(section.get("alpha", 1.0)) != 1.0:
            raise _fail(
                model_dir, f"model.{side}.alpha={section['alpha']} (a scaled residual) is not offered by ours"
            )
        embedding_dim = (section.get("embeddings") or {}).get("embedding_dim")
        if embedding_dim != section.get("hidden_size"):
            raise _fail(model_dir, f"model.{side}.embeddings.embedding_dim differs from its hidden_size")
    for option in ("hidden_size", "num_heads", "ff_size"):
        _same(model_dir, encoder, decoder, option)
    activation = _same(model_dir, encoder, decoder, "activation", "relu")
    if activation not in ACTIVATIONS:
        raise _fail(
            model_dir,
            f"model.encoder.activation={activation!r} is not converted; valid: {', '.join(ACTIVATIONS)}",
        )
    _same(model_dir, encoder, decoder, "embeddings.scale", False)
    return norm_style


def transformer_config(model_dir: Path, config: dict, vocab: list[str], weights: dict):
    """Our ``TransformerSeq2SeqConfig`` for a JoeyNMT Transformer (refused in one line where there is none)."""
    from ..families import FAMILIES

    norm_style = check_model_section(model_dir, config)
    model = config["model"]
    encoder, decoder = model.get("encoder") or {}, model.get("decoder") or {}
    activation = _same(model_dir, encoder, decoder, "activation", "relu")
    scale = _same(model_dir, encoder, decoder, "embeddings.scale", False)
    specials = special_symbols(model_dir, config)
    tied = all(
        weights["src_embed.lut.weight"].equal(weights[k])
        for k in ("trg_embed.lut.weight", "decoder.output_layer.weight")
    )
    dropout = float(encoder.get("dropout", 0.0))
    try:
        return FAMILIES["transformer"].config_class(
            vocab_size=len(vocab),
            d_model=_same(model_dir, encoder, decoder, "hidden_size"),
            encoder_layers=int(encoder.get("num_layers", 8)),
            decoder_layers=int(decoder.get("num_layers", 4)),
            num_attention_heads=_same(model_dir, encoder, decoder, "num_heads"),
            ffn_dim=_same(model_dir, encoder, decoder, "ff_size"),
            dropout=dropout,
            attention_dropout=dropout,
            activation_dropout=dropout,
            activation_function=ACTIVATIONS[activation],
            norm_style=norm_style,
            position_embedding="sinusoidal",
            max_position_embeddings=int(weights["encoder.pe.pe"].shape[1]),
            scale_embedding=bool(scale),
            tie_word_embeddings=tied,
            layer_norm_eps=JOEYNMT_LAYER_NORM_EPS,
            label_smoothing=float((config.get("training") or {}).get("label_smoothing", 0.0)),
            pad_token_id=specials["pad"][1],
            bos_token_id=specials["bos"][1],
            eos_token_id=specials["eos"][1],
            decoder_start_token_id=specials["bos"][1],
        )
    except (ValueError, TypeError) as err:
        raise _fail(model_dir, f"the JoeyNMT configuration does not fit our Transformer: {err}") from None


# ------------------------------------------------------------------------------------------------------ weights
def _attention(ours: str, joey: str, cross: bool) -> dict[str, tuple[str, ...]]:
    """Our attention weights ← JoeyNMT's (concatenated along dim 0 into our fused projections)."""
    names: dict[str, tuple[str, ...]] = {}
    for part in ("weight", "bias"):
        if cross:
            names[f"{ours}.q_proj.{part}"] = (f"{joey}.q_layer.{part}",)
            names[f"{ours}.kv_proj.{part}"] = (f"{joey}.k_layer.{part}", f"{joey}.v_layer.{part}")
        else:
            names[f"{ours}.qkv_proj.{part}"] = tuple(f"{joey}.{p}_layer.{part}" for p in "qkv")
        names[f"{ours}.out_proj.{part}"] = (f"{joey}.output_layer.{part}",)
    return names


def _norm(ours: str, joey: str) -> dict[str, tuple[str, ...]]:
    return {f"{ours}.{p}": (f"{joey}.{p}",) for p in ("weight", "bias")}


def _ffn(ours: str, joey: str) -> dict[str, tuple[str, ...]]:
    names = _norm(f"{ours}.ffn_norm", f"{joey}.feed_forward.layer_norm")
    for our_fc, index in (("fc1", 0), ("fc2", 3)):
        names.update(
            {
                f"{ours}.ffn.{our_fc}.{p}": (f"{joey}.feed_forward.pwff_layer.{index}.{p}",)
                for p in ("weight", "bias")
            }
        )
    return names


def weight_names(config) -> dict[str, tuple[str, ...]]:
    """Every weight of ours ← the JoeyNMT state-dict names it is made of."""
    names: dict[str, tuple[str, ...]] = {
        "model.encoder.embed_tokens.weight": ("src_embed.lut.weight",),
        "model.decoder.embed_tokens.weight": ("trg_embed.lut.weight",),
        "lm_head.weight": ("decoder.output_layer.weight",),
    }
    for i in range(config.encoder_layers):
        ours, joey = f"model.encoder.layers.{i}", f"encoder.layers.{i}"
        names.update(_attention(f"{ours}.self_attn", f"{joey}.src_src_att", cross=False))
        names.update(_norm(f"{ours}.self_attn_norm", f"{joey}.layer_norm"))
        names.update(_ffn(ours, joey))
    for i in range(config.decoder_layers):
        ours, joey = f"model.decoder.layers.{i}", f"decoder.layers.{i}"
        names.update(_attention(f"{ours}.self_attn", f"{joey}.trg_trg_att", cross=False))
        names.update(_norm(f"{ours}.self_attn_norm", f"{joey}.x_layer_norm"))
        names.update(_attention(f"{ours}.cross_attn", f"{joey}.src_trg_att", cross=True))
        names.update(_norm(f"{ours}.cross_attn_norm", f"{joey}.dec_layer_norm"))
        names.update(_ffn(ours, joey))
    if config.norm_style == "pre":
        names.update(_norm("model.encoder.layer_norm", "encoder.layer_norm"))
        names.update(_norm("model.decoder.layer_norm", "decoder.layer_norm"))
    return names


def transformer_weights(config, weights: dict) -> dict:
    """Every weight of our Transformer as a tensor made from JoeyNMT's (a missing name raises KeyError)."""
    import torch

    return {
        name: torch.cat([weights[n] for n in parts], dim=0) for name, parts in weight_names(config).items()
    }


def build_model(model_dir: Path, config, weights: dict):
    from ..families import family_of

    family = family_of(config)
    assert family is not None  # one of our configs
    model = family.model_class(config).eval()
    make = transformer_weights if family.name == "transformer" else rnn_weights
    try:
        values = make(config, weights)
    except KeyError as err:
        raise _fail(
            model_dir, f"the checkpoint has no {err.args[0]} (config.yaml and checkpoint disagree)"
        ) from None
    return copy_weights(model, values, model_dir, "config.yaml")


# ---------------------------------------------------------------------------------------------------------- RNN
def check_rnn_section(model_dir: Path, encoder: dict, decoder: dict) -> str:
    """Refuse (one line) what our RNN cannot express, before any weight is read; returns "rnn"."""
    cell = _same(model_dir, encoder, decoder, "rnn_type", "gru")
    if cell not in ("gru", "lstm"):
        raise _fail(model_dir, f"model.encoder.rnn_type={cell!r} is not converted; valid: gru, lstm")
    attention = decoder.get("attention", "bahdanau")
    if attention not in RNN_ATTENTIONS:
        raise _fail(
            model_dir, f"model.decoder.attention={attention!r} is not converted; valid: bahdanau, luong"
        )
    init = decoder.get("init_hidden", "bridge")
    if init not in RNN_INITS:
        raise _fail(
            model_dir, f"model.decoder.init_hidden={init!r} is not converted; valid: {', '.join(RNN_INITS)}"
        )
    if decoder.get("activation", "tanh") != "tanh":
        raise _fail(model_dir, f"model.decoder.activation={decoder['activation']!r}: ours uses tanh")
    directions = 2 if encoder.get("bidirectional", True) else 1
    states = directions * int(encoder.get("hidden_size", 1))
    if states != decoder.get("hidden_size"):
        raise _fail(
            model_dir,
            f"the encoder states have size {states} (model.encoder.hidden_size x directions) but "
            f"model.decoder.hidden_size={decoder.get('hidden_size')}: ours attends over states of the decoder's size",
        )
    if _same(model_dir, encoder, decoder, "embeddings.embedding_dim") is None:
        raise _fail(model_dir, "model.encoder.embeddings.embedding_dim is not set")
    _same(model_dir, encoder, decoder, "embeddings.scale", False)
    return "rnn"


def rnn_config(model_dir: Path, config: dict, vocab: list[str], weights: dict):
    """Our ``RNNSeq2SeqConfig`` for a JoeyNMT RNN (checked by ``check_rnn_section``)."""
    from ..families import FAMILIES

    encoder, decoder = config["model"]["encoder"], config["model"]["decoder"]
    specials = special_symbols(model_dir, config)
    embedding_size = encoder["embeddings"]["embedding_dim"]
    # JoeyNMT's Embeddings: lut(x) * sqrt(embedding_dim) with scale: true, our scale_embedding's E y * sqrt(E)
    scale = bool(encoder["embeddings"].get("scale", False))
    # ours ties all three matrices (with a projection when E != H, which JoeyNMT cannot tie anyway) or none
    tied = embedding_size == decoder["hidden_size"] and all(
        weights["src_embed.lut.weight"].equal(weights[k])
        for k in ("trg_embed.lut.weight", "decoder.output_layer.weight")
    )
    try:
        return FAMILIES["rnn"].config_class(
            vocab_size=len(vocab),
            embedding_size=embedding_size,
            scale_embedding=scale,
            hidden_size=decoder["hidden_size"],
            encoder_layers=int(encoder.get("num_layers", 1)),
            decoder_layers=int(decoder.get("num_layers", 1)),
            cell=encoder.get("rnn_type", "gru"),
            bidirectional_encoder=bool(encoder.get("bidirectional", True)),
            attention=RNN_ATTENTIONS[decoder.get("attention", "bahdanau")],
            input_feeding=bool(decoder.get("input_feeding", True)),
            combine_bias=True,
            decoder_init=RNN_INITS[decoder.get("init_hidden", "bridge")],
            dropout=float(encoder.get("dropout", 0.0)),
            label_smoothing=float((config.get("training") or {}).get("label_smoothing", 0.0)),
            tie_word_embeddings=tied,
            pad_token_id=specials["pad"][1],
            bos_token_id=specials["bos"][1],
            eos_token_id=specials["eos"][1],
            decoder_start_token_id=specials["bos"][1],
        )
    except (ValueError, TypeError) as err:
        raise _fail(model_dir, f"the JoeyNMT configuration does not fit our RNN: {err}") from None


def rnn_weights(config, weights: dict) -> dict:
    """Every weight of our RNN model as a tensor made from JoeyNMT's (a missing name raises KeyError)."""
    import torch

    values = {
        "model.encoder.embed_tokens.weight": weights["src_embed.lut.weight"],
        "model.decoder.embed_tokens.weight": weights["trg_embed.lut.weight"],
        "lm_head.weight": weights["decoder.output_layer.weight"],
    }
    for side in ("encoder", "decoder"):  # torch's own GRU / LSTM parameter names on both sides
        values.update({f"model.{k}": v for k, v in weights.items() if k.startswith(f"{side}.rnn.")})
    key = weights["decoder.attention.key_layer.weight"]
    values["model.decoder.score.key_proj.weight"] = key
    if config.attention == "concat":  # JoeyNMT's bahdanau: v^T tanh(W_q h_t + W_k h_s), without biases
        values["model.decoder.score.key_proj.bias"] = torch.zeros(key.shape[0], dtype=key.dtype)
        values["model.decoder.score.query_proj.weight"] = weights["decoder.attention.query_layer.weight"]
        values["model.decoder.score.energy.weight"] = weights["decoder.attention.energy_layer.weight"]
    combine = weights["decoder.att_vector_layer.weight"]  # reads [h_t; c_t], ours [c_t; h_t]
    hidden = config.hidden_size
    values["model.decoder.combine.weight"] = torch.cat([combine[:, hidden:], combine[:, :hidden]], dim=1)
    values["model.decoder.combine.bias"] = weights["decoder.att_vector_layer.bias"]
    if config.decoder_init == "top_bridge":
        values["model.encoder.bridge.weight"] = weights["decoder.bridge_layer.weight"]
        values["model.encoder.bridge.bias"] = weights["decoder.bridge_layer.bias"]
    return values


# ---------------------------------------------------------------------------------------------------- tokenizer
def build_tokenizer(model_dir: Path, config: dict, vocab: list[str], max_length: int):
    """A fast tokenizer that gives JoeyNMT's ids for the same text (level: word)."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    data = config.get("data") or {}
    src, trg = data.get("src") or {}, data.get("trg") or {}
    for side, section in (("src", src), ("trg", trg)):
        level = section.get("level", "word")
        if level != "word":
            raise _fail(
                model_dir,
                f"data.{side}.level={level!r}: only word-level JoeyNMT tokenisation is converted so far",
            )
        if section.get("normalize"):
            raise _fail(
                model_dir, f"data.{side}.normalize=true (JoeyNMT's own normalisation) is not reproduced"
            )
        if (section.get("tokenizer_cfg") or {}).get("pretokenizer", "none") != "none":
            raise _fail(model_dir, f"data.{side}.tokenizer_cfg.pretokenizer (Moses) is not reproduced")
    if bool(src.get("lowercase", False)) != bool(trg.get("lowercase", False)):
        raise _fail(model_dir, "data.src.lowercase and data.trg.lowercase differ: ours has one tokenizer")
    specials = special_symbols(model_dir, config)
    backend = Tokenizer(WordLevel({t: i for i, t in enumerate(vocab)}, unk_token=specials["unk"][0]))
    if src.get("lowercase", False):
        backend.normalizer = normalizers.Lowercase()
    # JoeyNMT splits at every single space (str.split(" ")); runs of spaces are not in its training data
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(" "), behavior="removed")
    eos = specials["eos"][0]
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A $B {eos}", special_tokens=[(eos, specials["eos"][1])]
    )
    backend.decoder = None
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=specials["unk"][0],
        pad_token=specials["pad"][0],
        bos_token=specials["bos"][0],
        eos_token=eos,
        model_max_length=max_length,
        padding_side="right",
        truncation_side="right",
        clean_up_tokenization_spaces=False,
    )


def generation_config(config: dict, model_config, specials: dict, recurrent: bool = False):
    """JoeyNMT's search rules as ``generate()`` settings (its RNN search also forbids pad, its Transformer's not)."""
    from transformers import GenerationConfig

    testing = config.get("testing") or {}
    suppress = [specials["bos"][1]] + ([specials["pad"][1]] if recurrent else [])
    if not testing.get("generate_unk", True):
        suppress.append(specials["unk"][1])
    options = {
        "num_beams": int(testing.get("beam_size", 1)),
        "min_new_tokens": max(1, int(testing.get("min_output_length", 1))),
        "suppress_tokens": suppress,
        "pad_token_id": model_config.pad_token_id,
        "bos_token_id": model_config.bos_token_id,
        "eos_token_id": model_config.eos_token_id,
        "decoder_start_token_id": model_config.decoder_start_token_id,
    }
    if int(testing.get("max_output_length", -1)) > 0:
        options["max_new_tokens"] = int(testing["max_output_length"])
    return GenerationConfig(**options)


# ------------------------------------------------------------------------------------------------------ entry
def load_joeynmt(source):
    """``(model, tokenizer, notes)`` of the JoeyNMT model directory ``source``."""
    model_dir = Path(source).expanduser()
    if not model_dir.is_dir():
        raise ConversionError(
            f"{source}: " + ("is a file, not a folder" if model_dir.exists() else "folder not found")
        )
    if not (model_dir / "config.yaml").is_file():
        hint = (
            " (it has config.json: use --from marian or --from hf-seq2seq)"
            if (model_dir / "config.json").is_file()
            else ""
        )
        raise _fail(model_dir, f"no config.yaml: not a JoeyNMT model directory{hint}")
    config = read_config(model_dir)
    kind = check_model_section(model_dir, config)
    src_vocab, trg_vocab = (
        read_vocabulary(model_dir, config, "src"),
        read_vocabulary(model_dir, config, "trg"),
    )
    if src_vocab != trg_vocab:
        raise _fail(
            model_dir,
            "src_vocab.txt and trg_vocab.txt differ: our Transformer has one joint vocabulary (train JoeyNMT with "
            "the same voc_file on both sides)",
        )
    checkpoint = find_checkpoint(model_dir)
    weights = read_weights(model_dir, checkpoint)
    if kind == "rnn":
        our_config = rnn_config(model_dir, config, src_vocab, weights)
    else:
        our_config = transformer_config(model_dir, config, src_vocab, weights)
    model = build_model(model_dir, our_config, weights)
    specials = special_symbols(model_dir, config)
    model.generation_config = generation_config(config, our_config, specials, recurrent=kind == "rnn")
    tokenizer = build_tokenizer(model_dir, config, src_vocab, our_config.max_position_embeddings)
    notes = [f"Checkpoint: `{checkpoint.name}`."]
    if kind != "rnn":
        notes.append(
            "JoeyNMT's LayerNorm epsilon (1e-6) is kept (`layer_norm_eps`); our sinusoidal table is computed in "
            "float64 where JoeyNMT's is computed in float32 (they differ by float32 rounding, at most a few 1e-6 "
            "over the first hundred positions)."
        )
    notes.append(
        "Beam search: `generate()` ranks finished hypotheses with transformers' length penalty "
        "(score / length^length_penalty), JoeyNMT with ((5 + length) / 6)^beam_alpha; with JoeyNMT's default "
        "beam_alpha -1 (none) they agree at length_penalty=0.0. Greedy decoding is the same."
    )
    return model, tokenizer, notes

"""Export our Transformer to CTranslate2 (the engine OpenNMT, OPUS-MT and faster-whisper deploy with).

The model is converted through CTranslate2's own converter API: a loader registered for
``TransformerSeq2SeqConfig`` (``ctranslate2.converters.transformers.register_loader``, the hook every Hugging Face
architecture uses there) fills a ``TransformerSpec`` from our modules, and ``TransformersConverter`` does the rest
(loading, quantization, writing ``model.bin`` and the vocabulary). Our layout maps one to one:

- self-attention: our fused Q/K/V projection is CTranslate2's fused ``linear[0]``; cross-attention: our ``q_proj``
  and fused ``kv_proj`` are its ``linear[0]`` and ``linear[1]``;
- post-norm is ``pre_norm=False``; pre-norm is ``pre_norm=True`` with the final LayerNorm of each stack;
- positions (sinusoidal, interleaved as in the paper, or learned) are given as an explicit (N, D) table, so
  CTranslate2 does not substitute its own [sin | cos] layout;
- ``scale_embedding`` is the spec's embedding scale (sqrt(D) or 1); tied or untied embeddings and projection are
  written as three variables (CTranslate2 stores shared ones once).

The RNN family has no CTranslate2 specification (its decoders are Transformer-only): use ``--format onnx``.
"""

from __future__ import annotations

from pathlib import Path

from .common import ExportError, copy_side_files, prepare_output, read_model_config, require

QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "float16", "bfloat16", "float32")
# our config.activation_function -> CTranslate2's common_spec.Activation member name
ACTIVATIONS = {
    "relu": "RELU",
    "gelu": "GELU",
    "gelu_new": "GELUTanh",
    "silu": "SWISH",
    "swish": "SWISH",
    "tanh": "Tanh",
}
_registered = False


def _register_loader() -> None:
    """Register the ``TransformerSeq2SeqConfig`` loader with CTranslate2's converter (once per process)."""
    global _registered
    if _registered:
        return
    require("ctranslate2", "--format ctranslate2")
    from ctranslate2.converters.transformers import ModelLoader, register_loader
    from ctranslate2.specs import common_spec, transformer_spec

    @register_loader("TransformerSeq2SeqConfig")
    class TransformerSeq2SeqLoader(ModelLoader):
        @property
        def architecture_name(self):
            # the converter looks the class up on `transformers`; importing hf_seq2seq registered ours there
            return "AutoModelForSeq2SeqLM"

        def get_model_spec(self, model):
            config = model.config
            activation = getattr(common_spec.Activation, ACTIVATIONS[config.activation_function])
            spec = transformer_spec.TransformerSpec.from_config(
                (config.encoder_layers, config.decoder_layers),
                config.num_attention_heads,
                pre_norm=config.norm_style == "pre",
                activation=activation,
                **_alignment_spec(config),
            )
            self._set_stack(spec.encoder, model.get_encoder(), cross_attention=False)
            self._set_stack(spec.decoder, model.get_decoder(), cross_attention=True)
            self.set_linear(spec.decoder.projection, model.lm_head)
            return spec

        def _set_stack(self, spec, stack, cross_attention: bool) -> None:
            spec.scale_embeddings = stack.embedding_scale
            # the encoder spec holds a list (one per source feature), the decoder's a single embedding
            embeddings = spec.embeddings[0] if isinstance(spec.embeddings, list) else spec.embeddings
            self.set_embeddings(embeddings, stack.embed_tokens)
            positions = stack.embed_positions
            spec.position_encodings.encodings = getattr(positions, "table", None)
            if spec.position_encodings.encodings is None:  # learned positions: an nn.Embedding
                spec.position_encodings.encodings = positions.weight
            if stack.layer_norm is not None:  # pre-norm's final LayerNorm
                self.set_layer_norm(spec.layer_norm, stack.layer_norm)
            for layer_spec, layer in zip(spec.layer, stack.layers):
                self.set_linear(layer_spec.self_attention.linear[0], layer.self_attn.qkv_proj)
                self.set_linear(layer_spec.self_attention.linear[1], layer.self_attn.out_proj)
                self.set_layer_norm(layer_spec.self_attention.layer_norm, layer.self_attn_norm)
                if cross_attention:
                    self.set_linear(layer_spec.attention.linear[0], layer.cross_attn.q_proj)
                    self.set_linear(layer_spec.attention.linear[1], layer.cross_attn.kv_proj)
                    self.set_linear(layer_spec.attention.linear[2], layer.cross_attn.out_proj)
                    self.set_layer_norm(layer_spec.attention.layer_norm, layer.cross_attn_norm)
                self.set_linear(layer_spec.ffn.linear_0, layer.ffn.fc1)
                self.set_linear(layer_spec.ffn.linear_1, layer.ffn.fc2)
                self.set_layer_norm(layer_spec.ffn.layer_norm, layer.ffn_norm)

        def get_vocabulary(self, model, tokenizer):
            tokens = super().get_vocabulary(model, tokenizer)[: model.config.vocab_size]
            # A tokenizer smaller than the embedding: name the unused rows (never produced by the tokenizer).
            tokens += [f"<unused_{i}>" for i in range(len(tokens), model.config.vocab_size)]
            return tokens

        def set_vocabulary(self, spec, tokens):
            spec.register_source_vocabulary(tokens)
            spec.register_target_vocabulary(tokens)

        def set_config(self, config, model, tokenizer):
            ids = model.config
            config.bos_token = tokenizer.convert_ids_to_tokens(ids.bos_token_id)
            config.eos_token = tokenizer.convert_ids_to_tokens(ids.eos_token_id)
            config.unk_token = tokenizer.unk_token
            config.decoder_start_token = tokenizer.convert_ids_to_tokens(ids.decoder_start_token_id)
            config.layer_norm_epsilon = layer_norm_epsilon(ids)

    _registered = True


def layer_norm_epsilon(config) -> float | None:
    """The LayerNorm epsilon CTranslate2 must be told: a model converted from JoeyNMT keeps 1e-6; for torch's default
    (1e-5) None leaves CTranslate2's own, as before the option existed."""
    eps = getattr(config, "layer_norm_eps", 1e-5)
    return None if eps == 1e-5 else float(eps)


def _alignment_spec(config) -> dict:
    """The attention CTranslate2's ``return_attention`` gives: translate --alignments' default for the model — the
    head guided training supervised (``config.alignment_layer`` / ``alignment_heads``), else all heads of the last
    layer (hf_seq2seq.inference.alignment). CTranslate2 averages the *first* N heads of one layer: a head set it
    cannot express falls back to all heads, with one warning."""
    import sys

    from ..inference.alignment import default_alignment_layer

    layer = getattr(config, "alignment_layer", None)
    layer = default_alignment_layer(config.decoder_layers) if layer is None else layer
    heads = getattr(config, "alignment_heads", None)
    count = config.num_attention_heads
    if heads is not None and sorted(heads) == list(range(len(heads))):
        count = len(heads)
    elif heads is not None:
        print(
            f"warning: CTranslate2 averages the first N heads of a layer; the model's alignment heads {heads} "
            "are not such a set: the export's alignments average all heads",
            file=sys.stderr,
        )
    return {"alignment_layer": layer, "alignment_heads": count}


def check_convertible(config: dict) -> None:
    """Refuse, naming the option, what CTranslate2 cannot represent."""
    if config["model_type"] != "transformer_seq2seq":
        raise ExportError(
            f"--format ctranslate2 supports the Transformer family only (model_type transformer_seq2seq), got "
            f"model_type {config['model_type']!r}: CTranslate2 has no RNN decoder; use --format onnx"
        )
    activation = config.get("activation_function", "relu")
    if activation not in ACTIVATIONS:
        raise ExportError(
            f"activation_function={activation!r} cannot be converted to CTranslate2; convertible: "
            f"{', '.join(ACTIVATIONS)}"
        )


def export_ctranslate2(
    model_dir: str | Path,
    out_dir: str | Path,
    quantization: str | None = None,
    force: bool = False,
) -> Path:
    """Convert a saved Transformer folder to a CTranslate2 model folder and return its path.

    Args:
        model_dir: a folder written by ``save_model_folder`` / ``hf-seq2seq train`` (model_type
            ``transformer_seq2seq``).
        out_dir: where to write ``model.bin``, ``config.json``, ``shared_vocabulary.json``, the tokenizer files,
            ``generation_config.json`` and ``export.json``; must be empty unless ``force``.
        quantization: weight type stored in ``model.bin`` (one of ``QUANTIZATIONS``; None keeps float32). The
            compute type can still be chosen when loading (``ctranslate2.Translator(..., compute_type=...)``).
    """
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ExportError(
            f"--quantization={quantization!r} is invalid; valid choices: {', '.join(QUANTIZATIONS)}"
        )
    model_dir = Path(model_dir)
    config = read_model_config(model_dir)
    check_convertible(config)
    _register_loader()
    from ctranslate2.converters import TransformersConverter

    import hf_seq2seq  # noqa: F401  (registers our config/model with the Auto classes the converter uses)

    out_dir = prepare_output(out_dir, force)
    TransformersConverter(str(model_dir)).convert(str(out_dir), quantization=quantization, force=True)
    copy_side_files(
        model_dir,
        out_dir,
        {
            "format": "ctranslate2",
            "quantization": quantization or "float32",
            "model_type": config["model_type"],
            "max_source_length": config.get("max_position_embeddings"),
            "source": str(model_dir.resolve()),
        },
    )
    return out_dir

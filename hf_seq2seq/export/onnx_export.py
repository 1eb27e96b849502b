"""Export both families to ONNX: an encoder graph and a one-step decoder graph whose state is explicit.

The graphs are traced with ``torch.onnx.export(..., dynamo=False)`` (the TorchScript exporter) from two small
wrapper modules that call the model's own submodules and functions, so an export computes exactly what
``generate()`` computes:

- ``encoder.onnx``: ``input_ids`` (B, S), ``attention_mask`` (B, S) → what the decoder reads from the source,
  computed once per sentence, and the decoder's initial state.
  Transformer: the cross-attention keys/values of every decoder layer, ``cross_key_{i}`` / ``cross_value_{i}``
  (B, H, S, Dh). RNN: ``encoder_hidden_states`` (B, S, H), the precomputed attention keys ``attention_keys``
  (B, S, A) (Bahdanau / Luong scores) or the fixed ``context`` (B, H) (Cho), and the initial ``hidden`` (B, L, H)
  (plus ``cell`` for LSTM, ``feed`` (B, H) for Luong input feeding).
- ``decoder.onnx``: one step. ``decoder_input_ids`` (B, 1), ``attention_mask`` (B, S), the source tensors above
  and the state → ``logits`` (B, V) and the next state ``new_<name>``. Transformer state: the self-attention cache
  ``past_key_{i}`` / ``past_value_{i}`` (B, H, P, Dh), P = 0 at the first step (an empty tensor), P + 1 out; the
  position of the new token is P. RNN state: ``hidden`` (B, L, H) (and ``cell``, ``feed``), batch-first, and
  with sinusoidal positions (an RNN converted from eole) ``position`` (B,), the next target position.

Batch, source length and past length are dynamic axes. ``export.json`` lists the names, so
:class:`hf_seq2seq.export.onnx_model.ORTModelForSeq2SeqLM` drives any export without knowing the family.

The RNN encoder is traced through its packed path: ``pack_padded_sequence`` becomes the ``sequence_lens`` input of
ONNX's GRU/LSTM operators (padding never enters the recurrence, as in PyTorch). Its input checks (right padding,
no empty row) are Python ``if``s on tensor values, evaluated once on the example batch while tracing and absent
from the graph: the exported encoder trusts its ``attention_mask`` to be right-padded, which our tokenizer
guarantees. (The clean modeling change: skip those checks under ``torch.jit.is_tracing()`` /
``torch.compiler.is_compiling()``, so no tracer warning is raised; ``torch.export`` fails on them today.)
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from .common import ExportError, copy_side_files, prepare_output, read_model_config, require

OPSET = 17


# ------------------------------------------------------------------------------------------------- Transformer
class TransformerEncoderExport(nn.Module):
    """input_ids, attention_mask → cross-attention K/V of each decoder layer (computed once per source)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        memory = self.model.get_encoder()(input_ids, attention_mask).last_hidden_state  # (B, S, D)
        outputs = []
        for layer in self.model.get_decoder().layers:
            outputs += layer.cross_attn._split_heads(layer.cross_attn.kv_proj(memory), 2)  # 2 × (B, H, S, Dh)
        return tuple(outputs)


class TransformerDecoderStepExport(nn.Module):
    """One decoding step of the Transformer decoder with its self-attention cache as explicit tensors.

    The same blocks as ``TransformerSeq2SeqDecoderLayer.forward`` (its ``_sublayer_input`` / ``_residual`` helpers,
    the attention's projections and ``_split_heads``, ``eager_attention_forward``), with the cache's concatenation
    written out: one query per row needs no causal mask, the position of the new token is the past length P.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, decoder_input_ids, attention_mask, *caches):
        from hf_seq2seq.models.modeling_transformer_seq2seq import _padding_mask, eager_attention_forward

        decoder = self.model.get_decoder()
        n = len(decoder.layers)
        past, cross = caches[: 2 * n], caches[2 * n :]
        positions = torch.arange(decoder_input_ids.shape[1]) + past[0].shape[2]  # (1,): P
        x = decoder.embed_at(decoder_input_ids, positions)  # (B, 1, D)
        cross_mask = _padding_mask(attention_mask, x.dtype)  # (B, 1, 1, S)
        new_cache = []
        for i, layer in enumerate(decoder.layers):
            attn = layer.self_attn
            query, key, value = attn._split_heads(
                attn.qkv_proj(layer._sublayer_input(x, layer.self_attn_norm)), 3
            )
            key = torch.cat([past[2 * i], key], dim=2)  # (B, H, P + 1, Dh)
            value = torch.cat([past[2 * i + 1], value], dim=2)
            out, _ = eager_attention_forward(attn, query, key, value, None, attn.scaling)
            x = layer._residual(x, attn.out_proj(out.flatten(2)), layer.self_attn_norm)
            attn = layer.cross_attn
            (query,) = attn._split_heads(attn.q_proj(layer._sublayer_input(x, layer.cross_attn_norm)), 1)
            out, _ = eager_attention_forward(
                attn, query, cross[2 * i], cross[2 * i + 1], cross_mask, attn.scaling
            )
            x = layer._residual(x, attn.out_proj(out.flatten(2)), layer.cross_attn_norm)
            x = layer._residual(x, layer.ffn(layer._sublayer_input(x, layer.ffn_norm)), layer.ffn_norm)
            new_cache += [key, value]
        if decoder.layer_norm is not None:
            x = decoder.layer_norm(x)
        return (self.model.lm_head(x)[:, 0], *new_cache)


def _transformer_io(config) -> dict:
    n = config.decoder_layers
    cross = [f"cross_{kv}_{i}" for i in range(n) for kv in ("key", "value")]
    past = [f"past_{kv}_{i}" for i in range(n) for kv in ("key", "value")]
    batch, src, pst = "batch", "source_length", "past_length"
    return {
        "encoder_inputs": ["input_ids", "attention_mask"],
        "encoder_outputs": cross,
        "decoder_inputs": ["decoder_input_ids", "attention_mask", *past, *cross],
        "decoder_outputs": ["logits", *(f"new_{p}" for p in past)],
        # state name -> where its first value comes from: "empty" = a (B, H, 0, Dh) tensor
        "state": {p: "empty" for p in past},
        "empty_shape": [config.num_attention_heads, 0, config.d_model // config.num_attention_heads],
        "dynamic_axes": {
            "input_ids": {0: batch, 1: src},
            "attention_mask": {0: batch, 1: src},
            "decoder_input_ids": {0: batch},
            "logits": {0: batch},
            **{c: {0: batch, 2: src} for c in cross},
            **{p: {0: batch, 2: pst} for p in past},
            **{f"new_{p}": {0: batch, 2: "past_length_plus_1"} for p in past},
        },
    }


# --------------------------------------------------------------------------------------------------------- RNN
def _rnn_names(config) -> tuple[list[str], list[str]]:
    """(memory names, state names) of an RNN model: what the decoder reads from the source, what it carries."""
    memory = ["encoder_hidden_states", "context" if config.attention == "none" else "attention_keys"]
    state = (
        ["hidden"] + (["cell"] if config.cell == "lstm" else []) + (["feed"] if config.input_feeding else [])
    )
    if _has_positions(config):
        state.append("position")  # (B,) int64: the position of the next target token (0 at the first step)
    return memory, state


def _has_positions(config) -> bool:
    return getattr(config, "position_embedding", "none") == "sinusoidal"


def _position_table(config) -> torch.Tensor | None:
    """(max_position_embeddings, E) rows of the sinusoidal table an RNN with positions adds (the model's own), or
    None."""
    if not _has_positions(config):
        return None
    from hf_seq2seq.models.modeling_rnn_seq2seq import position_table

    return position_table(config.max_position_embeddings, config.embedding_size)


class RNNEncoderExport(nn.Module):
    """input_ids, attention_mask → the decoder's memory (values, keys or Cho's context) and its initial state,
    through the model's own ``decoder.memory`` / ``decoder.initial_state``."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.table = _position_table(model.config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        decoder = self.model.get_decoder()
        encoder_outputs = self.model.get_encoder()(input_ids, attention_mask, return_dict=True)
        memory = decoder.memory(encoder_outputs)
        state = decoder.initial_state(encoder_outputs)
        source = memory.context if self.model.config.attention == "none" else memory.keys
        outputs = [memory.values, source, state.hidden.transpose(0, 1)]  # batch-first (B, L, H)
        if state.cell is not None:
            outputs.append(state.cell.transpose(0, 1))
        if state.feed is not None:
            outputs.append(state.feed)
        if _has_positions(self.model.config):
            outputs.append(torch.zeros_like(input_ids[:, 0]))  # (B,): the first target position
        return tuple(outputs)


class RNNDecoderStepExport(nn.Module):
    """One step of the model's decoder (``decoder.step``, the function ``generate()`` runs) and its LM head.

    With ``position_embedding="sinusoidal"`` the step also carries the target position (state ``position``, (B,)):
    the token's embedding gets row ``position`` of the same sinusoidal table that ``embed_positions`` adds, here a
    constant of ``max_position_embeddings`` rows (what ``generate()`` is capped at)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.table = _position_table(model.config)  # (N, E) or None

    def forward(self, decoder_input_ids, attention_mask, values, source, *state):
        from hf_seq2seq.models.modeling_rnn_seq2seq import DecoderState, Memory

        config, decoder = self.model.config, self.model.get_decoder()
        memory = Memory(values, None, source) if config.attention == "none" else Memory(values, source)
        state = list(state)
        hidden = state.pop(0).transpose(0, 1).contiguous()  # (L, B, H) inside the decoder
        cell = state.pop(0).transpose(0, 1).contiguous() if config.cell == "lstm" else None
        feed = state.pop(0) if config.input_feeding else None
        position = state.pop(0) if self.table is not None else None
        if position is None:  # (B, E): the looked-up embedding, scaled where the config says
            embedded = decoder._embed(decoder_input_ids[:, -1:], None)[:, 0]
        else:  # embed_positions at each row's position: the (scaled) embedding plus that row of the table
            embedded = decoder.embed_tokens(decoder_input_ids[:, -1])
            if getattr(config, "scale_embedding", False):
                embedded = embedded * math.sqrt(embedded.shape[-1])
            embedded = embedded + self.table.index_select(0, position)
        output, new, _ = decoder.step(embedded, DecoderState(hidden, cell, feed), memory, attention_mask)
        hidden = self.model.dropout(output)
        if self.model.output_projection is not None:
            hidden = self.model.output_projection(hidden)
        outputs = [self.model.lm_head(hidden), new.hidden.transpose(0, 1)]
        if new.cell is not None:
            outputs.append(new.cell.transpose(0, 1))
        if new.feed is not None:
            outputs.append(new.feed)
        if position is not None:
            outputs.append(position + 1)
        return tuple(outputs)


def _rnn_io(config) -> dict:
    memory, state = _rnn_names(config)
    batch, src = "batch", "source_length"
    axes = {"input_ids": {0: batch, 1: src}, "attention_mask": {0: batch, 1: src}, "logits": {0: batch}}
    axes["decoder_input_ids"] = {0: batch}
    axes["encoder_hidden_states"] = {0: batch, 1: src}
    axes[memory[1]] = {0: batch, 1: src} if memory[1] == "attention_keys" else {0: batch}
    for name in state:
        axes[name] = axes[f"new_{name}"] = axes[f"init_{name}"] = {0: batch}
    return {
        "encoder_inputs": ["input_ids", "attention_mask"],
        "encoder_outputs": [*memory, *(f"init_{s}" for s in state)],
        "decoder_inputs": ["decoder_input_ids", "attention_mask", *memory, *state],
        "decoder_outputs": ["logits", *(f"new_{s}" for s in state)],
        "state": {s: f"init_{s}" for s in state},
        "dynamic_axes": axes,
    }


# ------------------------------------------------------------------------------------------------------ export
def _example_inputs(model, io: dict, encoder: nn.Module) -> tuple[tuple, tuple]:
    """A padded example batch (2 sentences, lengths 5 and 3) for tracing, and the decoder step's inputs.

    The Transformer's decoder example has P = 2 past positions, so the traced graph is not specialised to P = 0."""
    input_ids = torch.tensor([[5, 6, 7, 8, 2], [5, 6, 2, 0, 0]]) % model.config.vocab_size
    attention_mask = (input_ids != 0).long()
    attention_mask[:, 0] = 1
    with torch.no_grad():
        source = encoder(input_ids, attention_mask)
    step_ids = torch.full((2, 1), model.config.decoder_start_token_id)
    if "empty_shape" in io:
        heads, _, head_dim = io["empty_shape"]
        past = [torch.zeros(2, heads, 2, head_dim) for _ in io["state"]]
        return (input_ids, attention_mask), (step_ids, attention_mask, *past, *source)
    memory = source[:2]
    state = source[2:]
    return (input_ids, attention_mask), (step_ids, attention_mask, *memory, *state)


# The TorchScript exporter's C++ side says, three times per RNN export, that prim::PackPadded / prim::PadPacked have
# no shape inference. The graphs' shapes come from dynamic_axes and export_onnx runs them against torch, so the lines
# tell the user nothing; C++ prints them straight to file descriptor 2, where Python's warning filters do not reach.
_KNOWN_CPP_WARNING = re.compile(r"The shape inference of prim::(PackPadded|PadPacked) type is missing")


@contextlib.contextmanager
def _without_known_cpp_warnings():
    """Collect what C++ writes to file descriptor 2 meanwhile and write it back without `_KNOWN_CPP_WARNING`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _KNOWN_CPP_WARNING.search(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def _trace(module: nn.Module, args: tuple, path: Path, inputs: list, outputs: list, axes: dict) -> None:
    import warnings

    with warnings.catch_warnings(), _without_known_cpp_warnings():
        # the tracer warns about every Python value it freezes (shapes, the RNN encoder's input checks)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes={k: v for k, v in axes.items() if k in inputs or k in outputs},
            opset_version=OPSET,
            dynamo=False,
        )


def export_onnx(model_dir: str | Path, out_dir: str | Path, force: bool = False, check: bool = True) -> Path:
    """Export a saved model folder (either family) to ``encoder.onnx`` + ``decoder.onnx`` and return the folder.

    The folder also gets the model's ``config.json``, the tokenizer, ``generation_config.json`` and
    ``export.json`` (input/output names). With ``check`` (default) both graphs are run in onnxruntime on a padded
    example batch and compared with PyTorch; a difference above 1e-4 raises.
    """
    model_dir = Path(model_dir)
    config = read_model_config(model_dir)
    require("onnx", "--format onnx")
    from transformers import AutoModelForSeq2SeqLM

    import hf_seq2seq  # noqa: F401  (registers our model types)

    out_dir = prepare_output(out_dir, force)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the "Loading weights" bar: a line of stderr for a sub-second load
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, use_safetensors=True).eval().float()
    if config["model_type"] == "transformer_seq2seq":
        io = _transformer_io(model.config)
        encoder, step = TransformerEncoderExport(model).eval(), TransformerDecoderStepExport(model).eval()
    else:
        io = _rnn_io(model.config)
        encoder, step = RNNEncoderExport(model).eval(), RNNDecoderStepExport(model).eval()
    # eval() on the wrappers too: torch.onnx.export restores the wrapper's mode afterwards, recursively, and a
    # wrapper left in training mode would switch dropout on in the model for the check (and for the caller).
    encoder_args, step_args = _example_inputs(model, io, encoder)
    axes = io.pop("dynamic_axes")
    with torch.no_grad():
        _trace(
            encoder, encoder_args, out_dir / "encoder.onnx", io["encoder_inputs"], io["encoder_outputs"], axes
        )
        _trace(step, step_args, out_dir / "decoder.onnx", io["decoder_inputs"], io["decoder_outputs"], axes)
    model.config.save_pretrained(out_dir)
    copy_side_files(
        model_dir,
        out_dir,
        {
            "format": "onnx",
            "opset": OPSET,
            "model_type": config["model_type"],
            "max_source_length": model.config.max_position_embeddings,
            "source": str(model_dir.resolve()),
            **io,
        },
    )
    if check:
        check_onnx(out_dir, io, encoder_args, step_args, encoder, step)
    return out_dir


@torch.no_grad()
def check_onnx(out_dir: Path, io: dict, encoder_args, step_args, encoder, step, atol: float = 1e-4) -> dict:
    """Run both graphs in onnxruntime on the example batch and compare every output with PyTorch."""
    ort = require("onnxruntime", "checking an ONNX export")
    diffs = {}
    for name, module, args in (("encoder", encoder, encoder_args), ("decoder", step, step_args)):
        session = ort.InferenceSession(str(out_dir / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        used = {i.name for i in session.get_inputs()}  # the exporter drops inputs a graph does not read
        feeds = {n: a.numpy() for n, a in zip(io[f"{name}_inputs"], args) if n in used}
        got = session.run(None, feeds)
        want = module(*args)
        diffs[name] = max(float((torch.from_numpy(g) - w).abs().max()) for g, w in zip(got, want))
        if diffs[name] > atol:
            raise ExportError(
                f"{out_dir / (name + '.onnx')}: onnxruntime differs from PyTorch by {diffs[name]:.2e} (> {atol})"
            )
    return diffs

"""The RNN encoder-decoder family: Sutskever/Cho seq2seq, Bahdanau and Luong attention, as a transformers model.

Papers:
- Cho et al. (2014), "Learning Phrase Representations using RNN Encoder-Decoder for Statistical Machine
  Translation" — ``attention="none"``: one context vector ``c`` (the encoder's summary) fed at every step.
- Bahdanau et al. (2015), "Neural Machine Translation by Jointly Learning to Align and Translate" —
  ``attention="bahdanau"``: additive score with the *previous* decoder state, context fed into the RNN input.
- Luong et al. (2015), "Effective Approaches to Attention-based Neural Machine Translation" —
  ``attention="dot" | "general" | "concat"``: score with the *current* decoder state, attentional vector
  ``h~_t = tanh(W_c [c_t; h_t])`` (eq. 5), optional input feeding (sec. 3.3).

Dimension legend:
    B  batch (times beams inside generate)      S  source length        T  target length
    E  embedding size                           H  hidden size (decoder state = every encoder state)
    L  decoder layers                           Le encoder layers       V  vocabulary size

Layout conventions: everything that crosses a module boundary is batch-first (generate expands beams with
``repeat_interleave`` on dim 0); ``nn.GRU``/``nn.LSTM`` states are (L, B, H) only inside the decoder.
Source padding: ``attention_mask`` (B, S), 1 on tokens, right-padded; the encoder packs sequences so padding
never reaches the recurrence, and :func:`attend` gives padding weight exactly 0.

This file ships to the Hub as custom code: flat sibling imports only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, LinearAttentionLayer
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import WeightRenaming
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.utils.deprecation import deprecate_kwarg

from .attention import attend, build_score
from .configuration_rnn_seq2seq import RNNSeq2SeqConfig
from .modeling_seq2seq_utils import output_options, save_with_code, shift_tokens_right, sinusoidal_table

__all__ = [
    "RNNSeq2SeqPreTrainedModel",
    "RNNSeq2SeqEncoder",
    "RNNSeq2SeqEncoderOutput",
    "RNNDecoderCache",
    "ChoDecoder",
    "BahdanauDecoder",
    "LuongDecoder",
    "RNNDecoderLMMixin",
    "RNNSeq2SeqModel",
    "RNNSeq2SeqForConditionalGeneration",
    "shift_tokens_right",
]


def embed_positions(embedded: torch.Tensor, config, past_length: int = 0) -> torch.Tensor:
    """(B, T, E) token embeddings -> ``E y * sqrt(E)`` with ``scale_embedding``, plus the sinusoidal table's rows
    ``past_length .. past_length + T - 1`` with ``position_embedding="sinusoidal"`` (Vaswani et al. 2017 sec. 3.4-3.5;
    eole's RNN embeddings). Unchanged for the defaults (and for configs without the options: image captioning)."""
    if getattr(config, "scale_embedding", False):
        embedded = embedded * math.sqrt(embedded.shape[-1])
    if getattr(config, "position_embedding", "none") == "sinusoidal":
        # the table is a constant of a traced graph (ONNX), which slices it at a dynamic end; past the configured
        # positions (never while tracing) the rows are computed now
        end = past_length + embedded.shape[1]
        table = position_table(config.max_position_embeddings, config.embedding_size)
        if not torch.jit.is_tracing() and end > table.shape[0]:
            table = sinusoidal_table(end, config.embedding_size)
        embedded = embedded + table[past_length:end].to(device=embedded.device, dtype=embedded.dtype)
    return embedded


@lru_cache(maxsize=4)
def position_table(num_positions: int, dim: int) -> torch.Tensor:
    """The (num_positions, E) float32 sinusoidal table, computed once: decoding reads one row of it per step, and a
    traced graph (the ONNX export) holds it as a float32 constant that it slices (no float64 ops in the graph)."""
    return sinusoidal_table(num_positions, dim)


def _make_rnn(
    cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional=False
):
    rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
    return rnn_cls(
        input_size,
        hidden_size,
        num_layers=num_layers,
        batch_first=True,
        dropout=dropout if num_layers > 1 else 0.0,
        bidirectional=bidirectional,
    )


class CheckpointedCall(GradientCheckpointingLayer):
    """``self.checkpointed(*tensors, fn=f, **options)`` runs ``f(*tensors, **options)``; under
    ``model.gradient_checkpointing_enable()`` transformers' ``GradientCheckpointingLayer`` recomputes it in the
    backward pass instead of storing its activations. It has no parameters (the checkpoint names no weights), so
    the encoder and decoder checkpoint their recurrence without renaming a weight. Tensors that carry gradients go
    positionally (as the reentrant checkpoint requires)."""

    def forward(self, *tensors: Any, fn: Callable, **options: Any) -> Any:
        return fn(*tensors, **options)


def _single_layer_view(rnn: nn.RNNBase, input_size: int) -> nn.RNNBase:
    """A one-layer twin of ``rnn`` (same cell, hidden size, direction) reading ``input_size`` features, on the meta
    device: a weightless template for ``torch.func.functional_call`` with one layer's weights of the fused stack.
    Built once per (module, input size); kept outside the module tree, so it adds nothing to the state dict."""
    views = rnn.__dict__.setdefault("_single_layer_views", {})
    if input_size not in views:
        rnn_cls = nn.LSTM if isinstance(rnn, nn.LSTM) else nn.GRU
        views[input_size] = rnn_cls(
            input_size,
            rnn.hidden_size,
            num_layers=1,
            bias=rnn.bias,
            batch_first=rnn.batch_first,
            bidirectional=rnn.bidirectional,
            device="meta",
        )
    return views[input_size]


# ----------------------------------------------------------------------------------------------------------------
# Outputs, state and cache
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class RNNSeq2SeqEncoderOutput(BaseModelOutput):
    """Encoder output; every tensor batch-first.

    Args:
        last_hidden_state: (B, S, H) encoder states ``h_j`` (forward and backward concatenated), 0 on padding.
        decoder_hidden: (B, L, H) the decoder's initial state ``s_0`` per decoder layer (the bridge).
        decoder_cell: (B, L, H) the initial LSTM cell state, None for GRU.
    """

    decoder_hidden: torch.Tensor | None = None
    decoder_cell: torch.Tensor | None = None


class DecoderState(NamedTuple):
    """The recurrent state a decoder step consumes and returns.

    hidden: (L, B, H); cell: (L, B, H) for LSTM else None; feed: (B, H) Luong's ``h~_{t-1}`` with input feeding
    else None.
    """

    hidden: torch.Tensor
    cell: torch.Tensor | None = None
    feed: torch.Tensor | None = None


def _decoder_hidden(encoder_outputs: RNNSeq2SeqEncoderOutput) -> torch.Tensor:
    if encoder_outputs.decoder_hidden is None:
        raise ValueError(
            "RNN decoder: `encoder_outputs.decoder_hidden` (the decoder's initial state) is missing"
        )
    return encoder_outputs.decoder_hidden


class DecoderOutput(NamedTuple):
    """A teacher-forced decoder pass: outputs (B, T, H), the final :class:`DecoderState`, attention weights
    (B, T, S) or None, and (with ``output_hidden_states``) the embeddings and each layer's states, else None."""

    outputs: torch.Tensor
    state: DecoderState
    attentions: torch.Tensor | None
    hidden_states: tuple[torch.Tensor, ...] | None


class Memory(NamedTuple):
    """What the decoder reads from the source: values (B, S, H), keys (precomputed projection, computed once per
    source, or None for ``attention="none"``), context (B, H) the fixed Cho context (``attention="none"`` only)."""

    values: torch.Tensor
    keys: torch.Tensor | None = None
    context: torch.Tensor | None = None


def _state(layer: LinearAttentionLayer, index: int) -> torch.Tensor:
    state = layer.recurrent_states[index]
    if state is None:
        raise ValueError(
            "RNNDecoderCache: the cache holds no decoder state yet (run a forward with it first)"
        )
    return state


class RNNDecoderCache(Cache):
    """The decoder state carried between ``generate()`` steps (returned as ``cache``): a transformers ``Cache``
    made of one ``LinearAttentionLayer`` per decoder layer, the library's cache layer for recurrent state.

    Layer ``l`` holds recurrent state 0 = ``h_l`` (B, H), state 1 = the LSTM cell ``c_l`` (B, H); the top layer
    also holds Luong's input feed ``h~_{t-1}`` (B, H) as its last state. ``keys`` (B, S, A) are the attention
    keys projected once per source (the analogue of the Transformer's cross-attention cache); like the encoder
    states they come from, ``reorder_cache`` leaves them in place. ``seen_tokens`` counts the target tokens
    consumed: a recurrent state has no length axis, so ``generate()`` (which never slices inputs for a purely
    linear cache) relies on :meth:`RNNDecoderLMMixin.prepare_inputs_for_generation` to feed only the tokens the
    state has not seen.
    A state cannot be cropped back: assisted decoding does not apply (``_is_stateful``).
    """

    # The step reads Python ints (lengths) and is not compiled; generate() must not try to.
    is_compileable = False

    def __init__(self, num_layers: int, has_cell: bool, has_feed: bool):
        self.has_cell, self.has_feed = has_cell, has_feed
        per_layer = 1 + int(has_cell)
        layers = [LinearAttentionLayer(number_of_states=per_layer) for _ in range(num_layers - 1)]
        layers.append(LinearAttentionLayer(number_of_states=per_layer + int(has_feed)))
        super().__init__(layers=list(layers))
        self.state_layers = layers  # the same objects, typed as what they are
        self.keys: torch.Tensor | None = None
        self.seen_tokens = 0

    @classmethod
    def for_config(cls, config) -> RNNDecoderCache:
        """An empty cache shaped for ``config``'s decoder."""
        return cls(
            config.decoder_layers, config.cell == "lstm", bool(getattr(config, "input_feeding", False))
        )

    def update_state(self, state: DecoderState, keys: torch.Tensor | None, new_tokens: int) -> None:
        """Store the state after ``new_tokens`` more target tokens (copied into the layers' buffers)."""
        for index, layer in enumerate(self.state_layers):
            layer.update_recurrent_state(state.hidden[index], state_idx=0)
            if state.cell is not None:
                layer.update_recurrent_state(state.cell[index], state_idx=1)
        if state.feed is not None:
            top = self.state_layers[-1]
            top.update_recurrent_state(state.feed, state_idx=top.number_of_states - 1)
        self.keys = keys
        self.seen_tokens += new_tokens

    def to_state(self) -> DecoderState:
        """The stored state as the decoder consumes it: (L, B, H) tensors (new tensors: the buffers are
        overwritten by the next :meth:`update_state`)."""
        layers = self.state_layers
        hidden = torch.stack([_state(layer, 0) for layer in layers])
        cell = torch.stack([_state(layer, 1) for layer in layers]) if self.has_cell else None
        feed = _state(layers[-1], layers[-1].number_of_states - 1).clone() if self.has_feed else None
        return DecoderState(hidden, cell, feed)

    @property
    def is_empty(self) -> bool:
        return not self.state_layers[0].is_recurrent_states_initialized[0]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: row ``i`` of every state tensor becomes row ``beam_idx[i]``. The keys stay: like the
        encoder states they are projected from (which ``generate()`` never reorders), they are a function of the
        source, and ``beam_idx`` only picks among the beams of one source, whose rows are identical (the
        Transformer's cross-attention cache is left in place for the same reason). Copying them would cost a
        (B, S, A) copy per step, the largest tensor of a beam step after the logits."""
        super().reorder_cache(beam_idx)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def __repr__(self) -> str:
        return f"RNNDecoderCache(layers={len(self.layers)}, seen_tokens={self.seen_tokens})"


# ----------------------------------------------------------------------------------------------------------------
# Pretrained base: initialisation
# ----------------------------------------------------------------------------------------------------------------


class RNNSeq2SeqPreTrainedModel(PreTrainedModel):
    config_class = RNNSeq2SeqConfig
    config: RNNSeq2SeqConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    # the recurrences (encoder and decoder) run through CheckpointedCall, a GradientCheckpointingLayer
    supports_gradient_checkpointing = True
    # the Auto class `save_pretrained` writes into `auto_map` (see save_with_code)
    hub_auto_class: str | None = None

    def save_pretrained(self, save_directory, *args, **kwargs):
        return save_with_code(
            self,
            self.hub_auto_class,
            partial(super().save_pretrained, save_directory, *args, **kwargs),
            save_directory,
        )

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Xavier-uniform linear layers (zero bias); N(0, E^-1/2) embeddings with a zero pad row; RNNs:
        Xavier-uniform input weights, orthogonal recurrent weights per gate (Saxe et al. 2014), zero biases and an
        LSTM forget-gate bias of 1 (Jozefowicz et al. 2015). ``nn.GRU`` is not covered by transformers' default."""
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=module.embedding_dim**-0.5)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, (nn.GRU, nn.LSTM)):
            gates = 4 if isinstance(module, nn.LSTM) else 3
            for name, param in module.named_parameters():
                if name.startswith("weight_ih"):
                    init.xavier_uniform_(param)
                elif name.startswith("weight_hh"):
                    value = torch.empty(param.shape, dtype=torch.float32)
                    for chunk in value.chunk(gates, dim=0):
                        nn.init.orthogonal_(chunk)
                    init.copy_(param, value)
                elif name.startswith("bias"):
                    value = torch.zeros(param.shape, dtype=param.dtype)
                    if gates == 4 and name.startswith("bias_ih"):  # gate order i, f, g, o
                        value.chunk(4)[1].fill_(1.0)
                    init.copy_(param, value)


# ----------------------------------------------------------------------------------------------------------------
# Encoder
# ----------------------------------------------------------------------------------------------------------------


class RNNSeq2SeqEncoder(nn.Module):
    """Embeddings -> dropout -> packed multi-layer (bi)GRU/LSTM -> states ``h_j`` and the decoder's ``s_0``.

    Bidirectional: ``hidden_size // 2`` units per direction; ``h_j = [h→_j; h←_j]`` (Bahdanau et al. 2015,
    sec. 3.2). The decoder's initial state is a bridge from the encoder's final states (forward and backward
    final states concatenated, per layer): ``s_0 = tanh(W_s h_final)`` as Bahdanau et al. (2015) appendix A.2.2
    and Cho et al. (2014) ``c = tanh(V h_N)``; for LSTM the cell gets ``W_c c_final`` (no tanh: cells are
    unbounded). One bridge matrix is shared by all layers. Decoder layer ``l`` starts from encoder layer
    ``max(0, Le - L + l)`` (top layers aligned; extra decoder layers reuse the bottom encoder layer). That is
    ``decoder_init="bridge"``; JoeyNMT's initialisations start every decoder layer from the top encoder layer's
    final state: ``"top_bridge"`` (``tanh(W_s h_top + b_s)``, the LSTM cell equal to it), ``"top"`` (``h_top``
    itself) and ``"zero"``. ``"final"`` (OpenNMT-py's and eole's) starts decoder layer ``l`` from the aligned
    encoder layer's final state itself, the LSTM cell from its final cell, without a bridge.
    """

    main_input_name = "input_ids"

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__()
        self.config = config
        self.directions = 2 if config.bidirectional_encoder else 1
        self.embed_tokens = nn.Embedding(
            config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id
        )
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = _make_rnn(
            config.cell,
            config.embedding_size,
            config.hidden_size // self.directions,
            config.encoder_layers,
            config.dropout,
            bidirectional=config.bidirectional_encoder,
        )
        self.decoder_init = getattr(config, "decoder_init", "bridge")
        has_bridge = self.decoder_init in ("bridge", "top_bridge")
        self.bridge = nn.Linear(config.hidden_size, config.hidden_size) if has_bridge else None
        self.bridge_cell = (
            nn.Linear(config.hidden_size, config.hidden_size)
            if config.cell == "lstm" and self.decoder_init == "bridge"
            else None
        )
        # a plain list, not a buffer: non-persistent buffers are left uninitialised by from_pretrained
        offset = config.encoder_layers - config.decoder_layers
        self.bridge_layers = [max(0, offset + layer) for layer in range(config.decoder_layers)]
        self.checkpointed = CheckpointedCall()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_tokens = value  # type: ignore[assignment]  # any module mapping ids to (.., E)

    def _join_directions(self, final: torch.Tensor) -> torch.Tensor:
        """(Le * dirs, B, H / dirs) -> (Le, B, H): forward and backward final states concatenated per layer."""
        layers, batch = self.config.encoder_layers, final.shape[1]
        final = final.view(layers, self.directions, batch, -1)
        return torch.cat(final.unbind(1), dim=-1)

    def _lengths(self, batch: int, src_len: int, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(B,) source lengths on the CPU (what packing needs), after checking the mask is right-padded."""
        if attention_mask is None:
            return torch.full((batch,), src_len, dtype=torch.long)
        if attention_mask.shape != (batch, src_len):
            raise ValueError(
                f"RNNSeq2SeqEncoder: `attention_mask` shape {tuple(attention_mask.shape)} != the source shape "
                f"{(batch, src_len)}"
            )
        lengths = attention_mask.long().sum(-1)
        right_padded = torch.arange(src_len, device=lengths.device)[None, :] < lengths[:, None]
        if not torch.equal(right_padded, attention_mask.bool()):
            raise ValueError("RNNSeq2SeqEncoder: `attention_mask` must be right-padded (1s, then 0s)")
        if bool((lengths == 0).any()):
            raise ValueError(
                "RNNSeq2SeqEncoder: every source needs at least one token (a row of the mask is 0)"
            )
        return lengths.cpu()

    def _run_layers(self, embedded: torch.Tensor, lengths: torch.Tensor, per_layer: bool):
        """The packed recurrence: one fused multi-layer call, or (``per_layer``, for ``output_hidden_states``) the
        same weights one layer at a time through ``torch.func.functional_call`` so every layer's states are seen.
        Returns states (B, S, H), the final states (h, c or None) as (Le * dirs, B, H / dirs), and the per-layer
        states (a tuple of Le (B, S, H), or None)."""
        src_len = embedded.shape[1]
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        if not per_layer:
            packed_out, final = self.rnn(packed)
            states, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src_len)
            return (states, *(final if isinstance(final, tuple) else (final, None)), None)
        finals_h, finals_c, layer_states = [], [], []
        for layer in range(self.rnn.num_layers):
            if layer > 0:  # inter-layer dropout, as the fused call applies it
                packed = packed._replace(
                    data=nn.functional.dropout(packed.data, self.rnn.dropout, self.training)
                )
            single = _single_layer_view(self.rnn, packed.data.shape[-1])
            weights = {
                name: getattr(self.rnn, name.replace("_l0", f"_l{layer}"))
                for name in single._flat_weights_names
            }
            packed, final = torch.func.functional_call(single, weights, (packed,))
            final_h, final_c = final if isinstance(final, tuple) else (final, None)
            finals_h.append(final_h)
            finals_c.append(final_c)
            layer_states.append(pad_packed_sequence(packed, batch_first=True, total_length=src_len)[0])
        final_c = torch.cat(finals_c) if finals_c[0] is not None else None
        return layer_states[-1], torch.cat(finals_h), final_c, tuple(layer_states)

    def _encode(self, embedded: torch.Tensor, lengths: torch.Tensor, per_layer: bool = False):
        """Embedded source (B, S, E) -> states (B, S, H), the bridged decoder state (B, L, H) (and cell), and
        the per-layer states when ``per_layer``. Checkpointed as one unit under gradient checkpointing."""
        states, final_h, final_c, layer_states = self._run_layers(embedded, lengths, per_layer)
        if self.decoder_init == "final":  # per layer, the aligned encoder layer's final (h, c) as they are
            hidden = self._join_directions(final_h)[self.bridge_layers].transpose(0, 1)  # (B, L, H)
            cell = None
            if final_c is not None:
                cell = self._join_directions(final_c)[self.bridge_layers].transpose(0, 1)
            return states, hidden, cell, layer_states
        if self.decoder_init != "bridge":
            hidden = self._top_init(self._join_directions(final_h)[-1])  # (L, B, H)
            cell = (
                hidden.transpose(0, 1) if final_c is not None else None
            )  # JoeyNMT: the cell equals the state
            return states, hidden.transpose(0, 1), cell, layer_states
        assert self.bridge is not None  # decoder_init="bridge" builds it
        hidden = torch.tanh(self.bridge(self._join_directions(final_h)[self.bridge_layers]))  # (L, B, H)
        cell = None
        if final_c is not None and self.bridge_cell is not None:
            cell = self.bridge_cell(self._join_directions(final_c)[self.bridge_layers]).transpose(0, 1)
        return states, hidden.transpose(0, 1), cell, layer_states

    def _top_init(self, top: torch.Tensor) -> torch.Tensor:
        """The top encoder layer's final state (B, H) -> every decoder layer's initial state (L, B, H):
        ``tanh(W_s h + b_s)`` (top_bridge), ``h`` itself (top) or zeros (zero)."""
        if self.decoder_init == "top_bridge":
            assert self.bridge is not None
            top = torch.tanh(self.bridge(top))
        elif self.decoder_init == "zero":
            top = torch.zeros_like(top)
        return top.unsqueeze(0).repeat(len(self.bridge_layers), 1, 1)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> RNNSeq2SeqEncoderOutput | tuple:
        """input_ids (B, S) or inputs_embeds (B, S, E) (what ``embed_tokens`` returns), right-padded
        ``attention_mask`` (B, S) -> :class:`RNNSeq2SeqEncoderOutput`. ``hidden_states`` (when requested; the
        config's value when None): the embeddings and each layer's states, Le + 1 tensors. An RNN has no
        attentions (``attentions`` is None)."""
        if inputs_embeds is None:
            if input_ids is None or input_ids.dim() != 2:
                shape = None if input_ids is None else tuple(input_ids.shape)
                raise ValueError(
                    f"RNNSeq2SeqEncoder: `input_ids` must be a (batch, source_len) tensor, got {shape}"
                )
            inputs_embeds = self.embed_tokens(input_ids)
        elif input_ids is not None:
            raise ValueError("RNNSeq2SeqEncoder: pass `input_ids` or `inputs_embeds`, not both")
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        batch, src_len = inputs_embeds.shape[:2]
        lengths = self._lengths(batch, src_len, attention_mask)
        embedded = self.dropout(embed_positions(inputs_embeds, self.config))  # (B, S, E)
        states, hidden, cell, layer_states = self.checkpointed(
            embedded, lengths, fn=self._encode, per_layer=bool(output_hidden_states)
        )
        output = RNNSeq2SeqEncoderOutput(
            last_hidden_state=states,
            hidden_states=(embedded, *layer_states) if output_hidden_states else None,
            decoder_hidden=hidden,  # batch-first (B, L, H)
            decoder_cell=cell,
        )
        return output if return_dict else output.to_tuple()


# ----------------------------------------------------------------------------------------------------------------
# Decoders: one step function each; the teacher-forced pass loops over it (or takes a proven-equal fast path)
# ----------------------------------------------------------------------------------------------------------------


class _RNNDecoderBase(nn.Module):
    """Shared parts: target embeddings, the multi-layer RNN, the state layout. Subclasses define :meth:`step`."""

    has_attention = True
    score: Any  # an attention score module (attention.py), on the decoders that attend

    def __init__(self, config: RNNSeq2SeqConfig, rnn_input_size: int):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(
            config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id
        )
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = _make_rnn(
            config.cell, rnn_input_size, config.hidden_size, config.decoder_layers, config.dropout
        )
        self.checkpointed = CheckpointedCall()

    def initial_state(self, encoder_outputs: RNNSeq2SeqEncoderOutput) -> DecoderState:
        hidden = _decoder_hidden(encoder_outputs).transpose(0, 1).contiguous()
        cell = encoder_outputs.decoder_cell
        cell = None if cell is None else cell.transpose(0, 1).contiguous()
        return DecoderState(hidden, cell, None)

    def memory(self, encoder_outputs: RNNSeq2SeqEncoderOutput, keys: torch.Tensor | None = None) -> Memory:
        """Encoder states plus keys projected once per source (reused from the cache when given)."""
        values = encoder_outputs.last_hidden_state
        if keys is None:
            keys = self.score.precompute_keys(values)
        return Memory(values, keys)  # type: ignore[arg-type]  # ModelOutput fields are typed Optional

    def _rnn(self, inputs: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """inputs (B, T, in) -> outputs of the top layer (B, T, H) and the new (hidden, cell)."""
        hx = (state.hidden, state.cell) if state.cell is not None else state.hidden
        outputs, new = self.rnn(inputs, hx)
        hidden, cell = new if isinstance(new, tuple) else (new, None)
        return outputs, DecoderState(hidden, cell, state.feed)

    def step(self, input_emb, state: DecoderState, memory: Memory, mask):
        raise NotImplementedError

    def _embed(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor | None, past_length: int = 0
    ) -> torch.Tensor:
        """(B, T) ids -> dropout(E y) (B, T, E), scaled and with positions ``past_length ..`` where the config
        says (:func:`embed_positions`); ``inputs_embeds`` (what ``embed_tokens`` returns) replace the lookup."""
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("RNN decoder: pass `decoder_input_ids`, `decoder_inputs_embeds` or `labels`")
            inputs_embeds = self.embed_tokens(input_ids)
        return self.dropout(embed_positions(inputs_embeds, self.config, past_length))

    def _loop(
        self,
        embedded: torch.Tensor,
        state: DecoderState,
        memory: Memory,
        mask: torch.Tensor | None,
        per_layer: bool,
    ) -> DecoderOutput:
        """The reference loop over :meth:`step`; with ``per_layer`` it also keeps every layer's state per step."""
        outputs, weights, layers = [], [], []
        for t in range(embedded.shape[1]):
            output, state, attn = self.step(embedded[:, t], state, memory, mask)
            outputs.append(output)
            weights.append(attn)
            if per_layer:
                layers.append(state.hidden)  # (L, B, H): each layer's output at step t
        attn = torch.stack(weights, dim=1) if self.has_attention else None
        layer_states = tuple(torch.stack(layers, dim=2).unbind(0)) if per_layer else None  # L × (B, T, H)
        return DecoderOutput(torch.stack(outputs, dim=1), state, attn, layer_states)

    def _teacher_forced(
        self, embedded, state: DecoderState, memory: Memory, mask, fast: bool, per_layer: bool
    ) -> DecoderOutput:
        """Teacher forcing over all steps; subclasses with a proven-equal fast path override it."""
        return self._loop(embedded, state, memory, mask, per_layer)

    def _flat(
        self, embedded, hidden, cell, feed, values, keys, context, mask, fast: bool = True, per_layer=False
    ):
        """:meth:`_teacher_forced` over flat tensors: the gradient checkpoint sees every tensor that carries
        gradients (the state and the encoder memory) as a positional input."""
        out = self._teacher_forced(
            embedded, DecoderState(hidden, cell, feed), Memory(values, keys, context), mask, fast, per_layer
        )
        return out.outputs, *out.state, out.attentions, out.hidden_states

    def forward(
        self,
        input_ids: torch.LongTensor | None,
        state: DecoderState,
        memory: Memory,
        mask: torch.Tensor | None,
        fast: bool = True,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        past_length: int = 0,
    ) -> DecoderOutput:
        """Teacher forcing over (B, T) inputs (or ``inputs_embeds`` (B, T, E)).

        Returns :class:`DecoderOutput`: outputs (B, T, H), the final state, attention weights (B, T, S) (None
        without attention) and, with ``output_hidden_states``, the embeddings and each layer's states
        (L + 1 × (B, T, ·); the per-step loop then runs, whose states are the layers' outputs).
        """
        embedded = self._embed(input_ids, inputs_embeds, past_length)  # (B, T, E)
        per_layer = bool(output_hidden_states)
        if (
            embedded.shape[1] == 1
            and not per_layer
            and not (self.training and self.checkpointed.gradient_checkpointing)
        ):
            # One token (every generate() step): the loop of one step, without its checkpoint and stacking.
            output, state, attn = self.step(embedded[:, 0], state, memory, mask)
            return DecoderOutput(
                output.unsqueeze(1), state, None if attn is None else attn.unsqueeze(1), None
            )
        outputs, hidden, cell, feed, attn, layer_states = self.checkpointed(
            embedded, *state, *memory, mask, fn=self._flat, fast=fast and not per_layer, per_layer=per_layer
        )
        hidden_states = (embedded, *layer_states) if per_layer else None
        return DecoderOutput(outputs, DecoderState(hidden, cell, feed), attn, hidden_states)


class ChoDecoder(_RNNDecoderBase):
    """``attention="none"``: Cho et al. (2014) sec. 2.2 — ``s_t = f(s_{t-1}, y_{t-1}, c)`` and
    ``P(y_t | ...) = g(s_t, y_{t-1}, c)``, with ``c`` the encoder summary (here: the bridged top-layer final state,
    ``tanh(W_s h_N)``, which is also ``s_0``'s top layer) fed at every step.

    Readout ``o_t = tanh(W_o [s_t; c; E y_{t-1}])`` (the paper uses a maxout readout; we use tanh, as for
    Bahdanau). No alignment exists: ``attn`` is None and the model returns ``cross_attentions=None``.
    Teacher forcing takes a fast path: the context is constant, so the RNN runs over the whole target in one call.
    """

    has_attention = False

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__(config, config.embedding_size + config.hidden_size)
        self.readout = nn.Linear(2 * config.hidden_size + config.embedding_size, config.hidden_size)
        self.readout_activation = nn.Tanh()

    def memory(self, encoder_outputs: RNNSeq2SeqEncoderOutput, keys: torch.Tensor | None = None) -> Memory:
        states = encoder_outputs.last_hidden_state
        return Memory(states, None, _decoder_hidden(encoder_outputs)[:, -1])  # type: ignore[arg-type]

    def step(self, input_emb, state, memory, mask):
        context = memory.context  # (B, H)
        out, state = self._rnn(torch.cat([input_emb, context], dim=-1).unsqueeze(1), state)
        output = self.readout_activation(self.readout(torch.cat([out[:, 0], context, input_emb], dim=-1)))
        return output, state, None

    def _teacher_forced(self, embedded, state, memory, mask, fast, per_layer):
        if not fast:
            return self._loop(embedded, state, memory, mask, per_layer)
        context = memory.context.unsqueeze(1).expand(-1, embedded.shape[1], -1)  # (B, T, H)
        outs, state = self._rnn(torch.cat([embedded, context], dim=-1), state)
        outputs = self.readout_activation(self.readout(torch.cat([outs, context, embedded], dim=-1)))
        return DecoderOutput(outputs, state, None, None)


class BahdanauDecoder(_RNNDecoderBase):
    """``attention="bahdanau"`` (Bahdanau et al. 2015, sec. 3.1 and appendix A.2.2). One step:

    1. ``e_tj = v^T tanh(W s_{t-1} + U h_j)`` with the previous top-layer state (eq. 6), masked softmax
       ``α_tj`` (eq. 6), context ``c_t = Σ_j α_tj h_j`` (eq. 5);
    2. ``s_t = f(s_{t-1}, [E y_{t-1}; c_t])`` (eq. 4: the context is part of the RNN input);
    3. readout ``o_t = tanh(W_o [s_t; c_t; E y_{t-1}])``.

    Deviation: the paper's readout is a maxout of ``s_{t-1}``, ``E y_{t-1}``, ``c_t``; we use ``s_t`` and tanh
    (as Nematus/JoeyNMT). The recurrence needs ``c_t`` before ``s_t``: there is no teacher-forcing fast path.
    """

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__(config, config.embedding_size + config.hidden_size)
        size = config.hidden_size
        self.score = build_score("bahdanau", size, size, size)
        self.readout = nn.Linear(2 * size + config.embedding_size, size)
        self.readout_activation = nn.Tanh()

    def step(self, input_emb, state, memory, mask):
        scores = self.score(state.hidden[-1], memory.values, memory.keys)  # query s_{t-1}: (B, S)
        context, attn = attend(scores, memory.values, mask)  # (B, H), (B, S)
        out, state = self._rnn(torch.cat([input_emb, context], dim=-1).unsqueeze(1), state)
        output = self.readout_activation(self.readout(torch.cat([out[:, 0], context, input_emb], dim=-1)))
        return output, state, attn


class LuongDecoder(_RNNDecoderBase):
    """``attention="dot" | "general" | "concat"`` (Luong et al. 2015, sec. 3). One step:

    1. ``h_t = RNN(h_{t-1}, x_t)`` with ``x_t = E y_{t-1}``, or ``[E y_{t-1}; h~_{t-1}]`` with input feeding
       (sec. 3.3; ``h~_0 = 0``);
    2. ``a_t = softmax(score(h_t, h̄_s))`` over unmasked positions (eq. 7, scores eq. 8), ``c_t = Σ_s a_t(s) h̄_s``;
    3. ``h~_t = tanh(W_c [c_t; h_t])`` (eq. 5), the step's output (and the next input feed); with
       ``combine_activation="none"`` (OpenNMT-py's / eole's ``mlp`` attention) ``W_c [c_t; h_t] + b_c``, no tanh.

    Without input feeding nothing in the recurrence depends on attention, so teacher forcing runs the RNN over the
    whole target in one call and scores all steps in one batched matmul (the fast path; tested equal to the loop).
    """

    def __init__(self, config: RNNSeq2SeqConfig):
        feed = config.hidden_size if config.input_feeding else 0
        super().__init__(config, config.embedding_size + feed)
        size = config.hidden_size
        self.score = build_score(config.attention, size, size, size)
        self.combine = nn.Linear(2 * size, size, bias=getattr(config, "combine_bias", False))  # W_c, eq. (5)
        # eq. (5)'s tanh; OpenNMT-py's / eole's mlp attention has none (combine_activation="none")
        self.combine_activation = (
            nn.Identity() if getattr(config, "combine_activation", "tanh") == "none" else nn.Tanh()
        )

    def initial_state(self, encoder_outputs):
        state = super().initial_state(encoder_outputs)
        if self.config.input_feeding:
            feed = state.hidden.new_zeros(state.hidden.shape[1], self.config.hidden_size)
            state = state._replace(feed=feed)
        return state

    def _attend(self, h, memory, mask):
        context, attn = attend(self.score(h, memory.values, memory.keys), memory.values, mask)
        return self.combine_activation(self.combine(torch.cat([context, h], dim=-1))), attn

    def step(self, input_emb, state, memory, mask):
        x = torch.cat([input_emb, state.feed], dim=-1) if state.feed is not None else input_emb
        out, state = self._rnn(x.unsqueeze(1), state)
        attentional, attn = self._attend(out[:, 0], memory, mask)
        if self.config.input_feeding:
            state = state._replace(feed=attentional)
        return attentional, state, attn

    def _teacher_forced(self, embedded, state, memory, mask, fast, per_layer):
        if self.config.input_feeding or not fast:
            return self._loop(embedded, state, memory, mask, per_layer)
        outs, state = self._rnn(embedded, state)  # (B, T, H): all steps in one RNN call
        attentional, attn = self._attend(outs, memory, mask)  # scores (B, T, S) in one batched matmul
        return DecoderOutput(attentional, state, attn, None)


# config.attention -> decoder class (Luong's three scores share one decoder; the score comes from the registry)
DECODERS = {
    "none": ChoDecoder,
    "bahdanau": BahdanauDecoder,
    "dot": LuongDecoder,
    "general": LuongDecoder,
    "concat": LuongDecoder,
}


# ----------------------------------------------------------------------------------------------------------------
# The decoder side of a model: LM head, cache handling, loss and output assembly (shared with image captioning)
# ----------------------------------------------------------------------------------------------------------------


class RNNDecoderLMMixin:
    """What every model with an RNN-family decoder shares, whatever its encoder: the language-model head, the
    ``forward`` checks, turning a tuple/dict ``encoder_outputs`` back into :class:`RNNSeq2SeqEncoderOutput`, the
    decoding pass (a fresh state or one resumed from an :class:`RNNDecoderCache`), the loss and the
    ``Seq2SeqLMOutput``. The host sets ``self.encoder`` and ``self.decoder`` (one of the decoders above), then
    calls :meth:`_init_lm_head`; its ``forward`` runs the encoder and hands over to :meth:`_decode`.

    Output layer: ``logits = W_y o_t`` with ``o_t`` the decoder output (B, T, H) after dropout, first projected to
    E by ``output_projection`` when the head is tied to the (V, E) embedding and E != H (as OpenNMT/JoeyNMT
    require for tying). The decoding pass calls the decoder's :meth:`~_RNNDecoderBase.forward`, which loops over
    the same pure ``step`` that ``generate()`` runs one token at a time.
    """

    _is_stateful = True
    # set by the host model
    config: Any
    decoder: Any

    def _init_lm_head(self, config) -> None:
        self.dropout = nn.Dropout(config.dropout)
        head_in = config.hidden_size
        self.output_projection = None
        if config.tie_word_embeddings and config.embedding_size != config.hidden_size:
            self.output_projection = nn.Linear(config.hidden_size, config.embedding_size, bias=False)
            head_in = config.embedding_size
        # output_bias (the RNN seq2seq config's; captioning has none): OpenNMT-py's/eole's generator bias
        self.lm_head = nn.Linear(head_in, config.vocab_size, bias=getattr(config, "output_bias", False))

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # generate() must not pre-build a DynamicCache: the forward creates its own RNNDecoderCache
        return False

    def get_decoder(self) -> nn.Module:
        return self.decoder

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """``GenerationMixin.generate``, except that with ``output_attentions=True, return_dict_in_generate=True``
        the output's ``decoder_attentions`` is None, not a tuple of one None per step: an RNN decoder has no
        self-attention (``has_attentions`` is False in its tests, as for transformers' recurrent models). The
        attention over the source is in ``cross_attentions``, one (B, 1, 1, S) tensor per layer and step."""
        out = super().generate(*args, **kwargs)  # type: ignore[misc]
        steps = getattr(out, "decoder_attentions", None)
        if isinstance(steps, tuple) and all(step is None for step in steps):
            # a ModelOutput keeps its keys; a new one without the key leaves decoder_attentions at None
            out = type(out)(**{k: v for k, v in out.items() if k != "decoder_attentions"})
        return out

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def _check_decoder_inputs(
        self,
        cache: Cache | None,
        use_cache: bool | None,
        labels: torch.Tensor | None,
        decoder_input_ids: torch.Tensor | None,
        decoder_inputs_embeds: torch.Tensor | None = None,
    ) -> tuple[bool, torch.Tensor | None]:
        """Validate ``cache``; default ``use_cache`` from the config (off with ``labels``: a training pass keeps no
        state); ``decoder_input_ids`` from ``labels``."""
        name = type(self).__name__
        if cache is not None and not isinstance(cache, RNNDecoderCache):
            raise ValueError(f"{name}: `cache` must be an RNNDecoderCache, got {type(cache).__name__}")
        if labels is not None:
            use_cache = False
        elif use_cache is None:
            use_cache = self.config.use_cache
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError(f"{name}: pass `labels`, `decoder_input_ids` or `decoder_inputs_embeds`")
        return use_cache, decoder_input_ids

    def prepare_inputs_for_generation(self, input_ids, next_sequence_length=None, cache=None, **kwargs):
        """``generate()`` never slices the inputs of a purely recurrent cache (it has no length axis); when it
        continues from a returned cache with the whole sequence, feed only the tokens the state has not seen."""
        if next_sequence_length is None and isinstance(cache, RNNDecoderCache) and cache.seen_tokens:
            unseen = input_ids.shape[1] - cache.seen_tokens
            if unseen < 1:
                raise ValueError(
                    f"{type(self).__name__}: the cache has seen {cache.seen_tokens} target tokens but "
                    f"`decoder_input_ids` has only {input_ids.shape[1]}; pass the whole sequence generated so far"
                )
            next_sequence_length = unseen
        return super().prepare_inputs_for_generation(
            input_ids, next_sequence_length=next_sequence_length, cache=cache, **kwargs
        )

    @staticmethod
    def _as_encoder_output(encoder_outputs) -> RNNSeq2SeqEncoderOutput:
        """The encoder's output in any of the forms transformers code passes it -> :class:`RNNSeq2SeqEncoderOutput`.

        - an :class:`RNNSeq2SeqEncoderOutput` (returned as is);
        - its tuple (``return_dict=False``: ``to_tuple()`` drops the fields that are None): the first tensor is
          ``last_hidden_state``, a nested tuple is ``hidden_states``, the next tensors ``decoder_hidden`` and
          ``decoder_cell``;
        - another ``ModelOutput`` / dict carrying those fields (e.g. ``BaseModelOutput(**encoder_output)``).

        The decoder's initial state (the bridge of the encoder's final states) cannot be recovered from the
        states alone: an output without ``decoder_hidden`` is a ValueError naming it.
        """
        if isinstance(encoder_outputs, RNNSeq2SeqEncoderOutput):
            return encoder_outputs
        fields: dict[str, Any]
        if isinstance(encoder_outputs, (tuple, list)):
            tensors = [x for x in encoder_outputs if isinstance(x, torch.Tensor)]
            nested = [x for x in encoder_outputs if isinstance(x, (tuple, list))]
            fields = dict(zip(("last_hidden_state", "decoder_hidden", "decoder_cell"), tensors))
            if nested:
                fields["hidden_states"] = tuple(nested[0])
        else:
            fields = {k: v for k, v in dict(encoder_outputs).items() if v is not None}
        if fields.get("decoder_hidden") is None:
            raise ValueError(
                "RNN decoder: `encoder_outputs` has no `decoder_hidden` (the decoder's initial state, (B, L, H)); "
                "pass what `model.get_encoder()` returns (an RNNSeq2SeqEncoderOutput or its tuple)"
            )
        return RNNSeq2SeqEncoderOutput(**fields)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, attn: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy over non-``-100`` labels with ``config.label_smoothing``. ``attn`` (B, T, S) is there
        for hosts that add an attention term (image captioning's doubly stochastic penalty)."""
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            labels.reshape(-1).to(logits.device),
            ignore_index=-100,
            label_smoothing=self.config.label_smoothing,
        )

    def _run_decoder(
        self,
        decoder_input_ids: torch.Tensor | None,
        encoder_outputs: RNNSeq2SeqEncoderOutput,
        source_mask: torch.Tensor | None,
        cache: RNNDecoderCache | None,
        use_cache: bool,
        output_hidden_states: bool,
        decoder_inputs_embeds: torch.Tensor | None = None,
    ) -> tuple[DecoderOutput, RNNDecoderCache | None]:
        """The decoder over (B, T) inputs from the encoder's state or the ``cache``'s; the updated cache."""
        decoder: Any = self.get_decoder()
        if cache is None or cache.is_empty:
            state = decoder.initial_state(encoder_outputs)
            memory = decoder.memory(encoder_outputs)
            past_length = 0
        else:
            state = cache.to_state()
            memory = decoder.memory(encoder_outputs, cache.keys)
            past_length = cache.get_seq_length()  # the target tokens consumed: the first new token's position
        out = decoder(
            decoder_input_ids,
            state,
            memory,
            source_mask,
            inputs_embeds=decoder_inputs_embeds,
            output_hidden_states=output_hidden_states,
            past_length=past_length,
        )
        if not use_cache:
            return out, None
        if cache is None:
            cache = RNNDecoderCache.for_config(self.config)
        cache.update_state(out.state, memory.keys, out.outputs.shape[1])
        return out, cache

    def _decode(
        self,
        decoder_input_ids: torch.Tensor | None,
        encoder_outputs: RNNSeq2SeqEncoderOutput | tuple | dict,
        source_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
        cache: RNNDecoderCache | None,
        use_cache: bool,
        output_attentions: bool | None,
        output_hidden_states: bool | None,
        return_dict: bool | None,
        decoder_inputs_embeds: torch.Tensor | None = None,
    ) -> Seq2SeqLMOutput | tuple:
        """Run the decoder over (B, T) ``decoder_input_ids`` from the encoder's state or the ``cache``'s, apply
        the head, and return ``Seq2SeqLMOutput``: logits (B, T, V), ``cache``, ``cross_attentions`` =
        ``((B, 1, T, S),)`` with ``output_attentions`` (None when the decoder has no attention). Options left as
        None take the config's value. ``encoder_outputs`` may be a tuple or dict (see :meth:`_as_encoder_output`)."""
        config = self.config
        output_attentions, output_hidden_states, return_dict = output_options(
            config, output_attentions, output_hidden_states, return_dict
        )
        encoder_outputs = self._as_encoder_output(encoder_outputs)
        out, new_cache = self._run_decoder(
            decoder_input_ids,
            encoder_outputs,
            source_mask,
            cache,
            use_cache,
            output_hidden_states,
            decoder_inputs_embeds,
        )
        hidden = self.dropout(out.outputs)
        if self.output_projection is not None:
            hidden = self.output_projection(hidden)
        logits = self.lm_head(hidden)  # (B, T, V)

        loss = None if labels is None else self._loss(logits, labels, out.attentions)
        attn = out.attentions
        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=new_cache,  # type: ignore[arg-type]  # the output annotates an attention cache; any Cache goes
            decoder_hidden_states=out.hidden_states,
            cross_attentions=(attn.unsqueeze(1),) if output_attentions and attn is not None else None,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
        )
        return output if return_dict else output.to_tuple()


# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------


class RNNSeq2SeqModel(RNNSeq2SeqPreTrainedModel):
    """The RNN encoder-decoder without the output layer (as ``BartModel`` under ``BartForConditionalGeneration``):
    returns ``Seq2SeqModelOutput`` whose ``last_hidden_state`` is the decoder output ``o_t`` (B, T, H) (Luong's
    attentional vector ``h~_t``, or the Bahdanau/Cho readout), and ``cache`` (an :class:`RNNDecoderCache`)."""

    _tied_weights_keys = {"decoder.embed_tokens.weight": "encoder.embed_tokens.weight"}
    hub_auto_class = "AutoModel"

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__(config)
        self.encoder = RNNSeq2SeqEncoder(config)
        self.decoder = DECODERS[config.attention](config)
        self.post_init()

    def get_encoder(self, modality: str | None = None) -> RNNSeq2SeqEncoder:
        return self.encoder

    def get_decoder(self) -> nn.Module:
        return self.decoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.encoder.embed_tokens = value  # type: ignore[assignment]  # any module mapping ids to (.., E)
        if self.config.tie_word_embeddings:
            self.decoder.embed_tokens = value  # type: ignore[assignment]

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: RNNSeq2SeqEncoderOutput | tuple | None = None,
        cache: RNNDecoderCache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> Seq2SeqModelOutput | tuple:
        """As :meth:`RNNSeq2SeqForConditionalGeneration.forward`, without the output layer and the loss."""
        config = self.config
        output_attentions, output_hidden_states, return_dict = output_options(
            config, output_attentions, output_hidden_states, return_dict
        )
        use_cache = config.use_cache if use_cache is None else use_cache
        if cache is not None and not isinstance(cache, RNNDecoderCache):
            raise ValueError(
                f"RNNSeq2SeqModel: `cache` must be an RNNDecoderCache, got {type(cache).__name__}"
            )
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids,
                attention_mask,
                output_hidden_states=output_hidden_states,
                return_dict=True,
                inputs_embeds=inputs_embeds,
            )
        encoder_outputs = RNNDecoderLMMixin._as_encoder_output(encoder_outputs)
        out, cache = RNNDecoderLMMixin._run_decoder(
            self,  # type: ignore[arg-type]  # the mixin's decoder pass needs only config and get_decoder()
            decoder_input_ids,
            encoder_outputs,
            attention_mask,
            cache,
            use_cache,
            bool(output_hidden_states),
            decoder_inputs_embeds,
        )
        attn = out.attentions
        output = Seq2SeqModelOutput(
            last_hidden_state=out.outputs,
            cache=cache,  # type: ignore[arg-type]  # the output annotates an attention cache; any Cache goes
            decoder_hidden_states=out.hidden_states,
            cross_attentions=(attn.unsqueeze(1),) if output_attentions and attn is not None else None,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
        )
        return output if return_dict else output.to_tuple()


class RNNSeq2SeqForConditionalGeneration(RNNDecoderLMMixin, RNNSeq2SeqPreTrainedModel, GenerationMixin):
    """RNN encoder-decoder with a language-model head; see the module docstring for the papers.

    ``model`` is the headless :class:`RNNSeq2SeqModel` (``encoder`` and ``decoder``, also reachable here as
    ``self.encoder`` / ``self.decoder``). Output layer: ``logits = W_y o_t`` with ``o_t`` the decoder output
    (B, T, H) after dropout. With ``tie_word_embeddings`` the encoder embedding, decoder embedding and ``W_y`` are
    one (V, E) matrix (Press & Wolf 2017), stored once; ``o_t`` is first projected to E by ``output_projection``
    when E != H (as OpenNMT/JoeyNMT require for tying).

    Decoder state between ``generate()`` steps lives in :class:`RNNDecoderCache` (``cache``); with a cache the
    forward consumes only the new decoder token(s). The decoder side (head, cache, loss, outputs) is
    :class:`RNNDecoderLMMixin`'s, shared with image captioning.

    Checkpoints written before the headless base model existed name the weights ``encoder.*`` / ``decoder.*``;
    the conversion registered below (transformers' checkpoint key-conversion mechanism) maps them to
    ``model.encoder.*`` / ``model.decoder.*`` on load and back on save, so folders keep one format.
    """

    _tied_weights_keys = {
        "model.decoder.embed_tokens.weight": "model.encoder.embed_tokens.weight",
        "lm_head.weight": "model.encoder.embed_tokens.weight",
    }
    hub_auto_class = "AutoModelForSeq2SeqLM"

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__(config)
        self.model = RNNSeq2SeqModel(config)
        self._init_lm_head(config)
        # torch-level loads (accelerate's load_state resuming a run, load_state_dict) of pre-base-model weights
        self.register_load_state_dict_pre_hook(_prefix_base_model_keys)
        self.post_init()

    @property
    def encoder(self) -> RNNSeq2SeqEncoder:
        return self.model.encoder

    @property
    def decoder(self) -> nn.Module:
        return self.model.decoder

    def get_encoder(self, modality: str | None = None) -> RNNSeq2SeqEncoder:
        return self.model.encoder

    def get_decoder(self) -> nn.Module:
        return self.model.decoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: RNNSeq2SeqEncoderOutput | tuple | None = None,
        labels: torch.Tensor | None = None,
        cache: RNNDecoderCache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput | tuple:
        """Teacher-forced (``labels`` or ``decoder_input_ids``) or incremental (``cache``) decoding.

        ``decoder_attention_mask`` is accepted and unused: the decoder is causal by construction, and target
        padding only ever follows the real tokens. ``inputs_embeds`` / ``decoder_inputs_embeds`` (B, ·, E) replace
        the embedding lookups. ``past_key_values`` is a deprecated alias of ``cache`` (with a warning). Options left
        as None take the config's value. ``kwargs`` absorbs what ``generate()`` passes along.
        Returns ``Seq2SeqLMOutput``: logits (B, T, V), ``cache``, ``cross_attentions`` = ``((B, 1, T, S),)``
        with ``output_attentions`` (None for ``attention="none"``: that model has no alignment).
        """
        use_cache, decoder_input_ids = self._check_decoder_inputs(
            cache, use_cache, labels, decoder_input_ids, decoder_inputs_embeds
        )
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if encoder_outputs is None:
            encoder_outputs = self.model.encoder(
                input_ids,
                attention_mask,
                output_hidden_states=output_hidden_states,
                return_dict=True,
                inputs_embeds=inputs_embeds,
            )
        return self._decode(
            decoder_input_ids,
            encoder_outputs,
            attention_mask,
            labels,
            cache,
            use_cache,
            output_attentions,
            output_hidden_states,
            return_dict,
            decoder_inputs_embeds,
        )


def _prefix_base_model_keys(module, state_dict, prefix, *args) -> None:
    """``load_state_dict`` of weights named before the headless base model (``encoder.*`` / ``decoder.*``, e.g. an
    accelerate checkpoint of a run started with older code): rename them in place to ``model.encoder.*`` /
    ``model.decoder.*``. ``from_pretrained`` does the same through the conversion mapping below."""
    for key in [k for k in state_dict if k.startswith((prefix + "encoder.", prefix + "decoder."))]:
        state_dict[prefix + "model." + key[len(prefix) :]] = state_dict.pop(key)


# Folders saved before the headless base model existed: their keys have no `model.` prefix.
register_checkpoint_conversion_mapping(
    "RNNSeq2SeqForConditionalGeneration",
    [
        WeightRenaming(source_patterns=r"^encoder\.", target_patterns="model.encoder."),
        WeightRenaming(source_patterns=r"^decoder\.", target_patterns="model.decoder."),
    ],
    overwrite=True,
)

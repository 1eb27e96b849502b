"""The scaled dot-product Transformer encoder-decoder (Vaswani et al. 2017, "Attention Is All You Need").

Structure follows transformers' Marian/BART files, top to bottom: position tables → attention → encoder / decoder
layers → encoder / decoder stacks → model → LM head. Shipped to the Hub as custom code: imports only torch,
transformers and the sibling configuration and ``modeling_seq2seq_utils`` files.

Dimension legend (used in every docstring and comment below)
    B   batch size (times num_beams inside beam search)
    S   source length (encoder positions)
    T   target length of *this call* (the decoder's query length; 1 per step in cached generation)
    P   past length: target positions already in the self-attention cache
    D   d_model
    H   attention heads,  Dh = D / H per head
    F   feed-forward inner width (ffn_dim)
    V   vocabulary size
    L   number of layers (encoder_layers / decoder_layers)

Masks: one convention, built once per stack call (not per layer) by ``_padding_mask`` / ``_causal_mask``: an
additive float mask broadcastable to (B, H, T, K) — (B, 1, 1, S) for padding, (B|1, 1, T, P + T) causal — holding 0
where attention is allowed and ``torch.finfo(dtype).min`` where it is not, or ``None``
when nothing needs masking (sdpa then uses its ``is_causal`` fast path for an uncached causal prefix).

Deviations from the paper, stated once:
- ``norm_style="pre"`` (LayerNorm inside the residual branch, Xiong et al. 2020) is offered besides the paper's
  post-norm; pre-norm adds a final LayerNorm after each stack.
- The default initialisation is normal(0, ``init_std``) like BART/Marian, not Xavier-uniform.
- ``output_attentions=True`` always computes attention with the eager kernel (sdpa does not return weights).

Decoding speed (same equations, same tokens): the cross-attention K/V are computed once per source sentence; at one
query per row the ``sdpa`` model calls ``F.scaled_dot_product_attention`` directly (on CPU with large B·H, the eager
matmul form, faster there than torch's CPU flash kernel). Every projection is a plain ``nn.Linear`` call; the
package's CPU inference kernels (``hf_seq2seq.inference.cpu_kernels``, applied when the package loads a model) swap
them for oneDNN's matmul on pre-laid-out weights without touching this file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache, StaticLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_transformer_seq2seq import ATTN_IMPLEMENTATIONS, TransformerSeq2SeqConfig
from .modeling_seq2seq_utils import output_options, save_with_code, shift_tokens_right, sinusoidal_table


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout`` that costs nothing at inference (several calls per layer and decoding step)."""
    return F.dropout(x, p=p, training=True) if training and p > 0 else x


def _padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, K) 1/0 keep mask → additive (B, 1, 1, K) mask (0 keep, finfo.min drop), or None when absent."""
    if attention_mask is None:
        return None
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def _causal_mask(
    decoder_attention_mask: torch.Tensor | None,
    query_length: int,
    past_length: int,
    dtype: torch.dtype,
    device: torch.device,
    attn_implementation: str,
) -> torch.Tensor | None:
    """Decoder self-attention mask (Sec. 3.2.3: position i attends to positions <= i).

    Query j (absolute position P + j) may see key k (0 <= k < P + T) iff k <= P + j and the key is not padding.
    Returns None when no mask is needed: one query over its whole past, or an uncached prefix under sdpa (whose
    ``is_causal`` flag applies the triangle). Otherwise an additive (B or 1, 1, T, P + T) mask.
    """
    if decoder_attention_mask is None:
        if query_length == 1 or (past_length == 0 and attn_implementation == "sdpa"):
            return None
    key_length = past_length + query_length
    q_pos = torch.arange(past_length, key_length, device=device)[:, None]
    allowed = torch.arange(key_length, device=device)[None, :] <= q_pos  # (T, P + T)
    allowed = allowed[None, None]  # (1, 1, T, P + T)
    if decoder_attention_mask is not None:
        allowed = allowed & decoder_attention_mask[:, None, None, -key_length:].bool()
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


def _static_causal_mask(
    decoder_attention_mask: torch.Tensor | None, positions: torch.Tensor, key_length: int, dtype: torch.dtype
) -> torch.Tensor:
    """``_causal_mask`` for a preallocated (static) self-attention cache of ``key_length`` = K slots.

    positions (T,): the absolute positions P .. P + T - 1 of this call's queries, a tensor (P is the cache's
    tensor-valued length, so no ``.item()`` and no shape that changes per step: the step can be compiled).
    Query j may see slot k iff k <= positions[j], which also hides the not-yet-written slots > P + j.
    decoder_attention_mask (B, <= K) is right-padded to K. Always a tensor, (B|1, 1, T, K).
    """
    allowed = torch.arange(key_length, device=positions.device)[None, :] <= positions[:, None]  # (T, K)
    allowed = allowed[None, None]  # (1, 1, T, K)
    if decoder_attention_mask is not None:
        keep = decoder_attention_mask[:, -key_length:]
        keep = F.pad(keep, (0, key_length - keep.shape[1])).bool()
        allowed = allowed & keep[:, None, None, :]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=positions.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


# ------------------------------------------------------------------------------------------------- positions
class TransformerSeq2SeqSinusoidalPositions(nn.Module):
    """Fixed sinusoidal positions (Sec. 3.5): a computed, non-persistent (N, D) buffer, never a parameter."""

    table: torch.Tensor

    def __init__(self, num_positions: int, dim: int):
        super().__init__()
        self.num_positions, self.dim = num_positions, dim
        self.register_buffer("table", sinusoidal_table(num_positions, dim), persistent=False)

    def forward(self, past_length: int, length: int) -> torch.Tensor:
        """Positions P .. P + T - 1 → (T, D)."""
        return self.table[past_length : past_length + length]

    def lookup(self, positions: torch.Tensor) -> torch.Tensor:
        """Positions given as a (T,) or (B, T) tensor → (T, D) or (B, T, D) (the static-cache path, and the
        encoder's positions counted from its mask; no Python int needed)."""
        return F.embedding(positions, self.table)


class TransformerSeq2SeqLearnedPositions(nn.Embedding):
    """Learned absolute positions (the paper's Sec. 3.5 alternative, as in BERT/BART): an (N, D) parameter."""

    def forward(self, past_length: int, length: int) -> torch.Tensor:  # type: ignore[override]  # not ids
        """Positions P .. P + T - 1 → (T, D)."""
        positions = torch.arange(past_length, past_length + length, device=self.weight.device)
        return super().forward(positions)

    def lookup(self, positions: torch.Tensor) -> torch.Tensor:
        """Positions given as a (T,) or (B, T) tensor → (T, D) or (B, T, D) (the static-cache path, and the
        encoder's positions counted from its mask; no Python int needed)."""
        return super().forward(positions)


# ------------------------------------------------------------------------------------------------- attention
# B·H at or above which a one-query (T = 1) attention on CPU runs as matmul + softmax + matmul instead of the sdpa
# kernel (measured, torch 2.13, 1 thread: on par at 128, the matmuls 1.5-5x faster at 640 = 160 rows × 4 heads).
_CPU_MATMUL_DECODE_ROWS = 256


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1: Attention(Q, K, V) = softmax(Q K^T / sqrt(Dh)) V, with an additive mask before the softmax.

    query (B, H, T, Dh), key / value (B, H, K, Dh), mask (B|1, 1, T|1, K) → output (B, T, H, Dh) and the
    weights (B, H, T, K). The softmax runs in float32 for low-precision inputs.
    """
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2)
    return output, weights


class TransformerSeq2SeqAttention(nn.Module):
    """Multi-head attention (Sec. 3.2.2): MultiHead(Q, K, V) = Concat(head_1..head_H) W^O,
    head_h = Attention(Q W^Q_h, K W^K_h, V W^V_h) with eq. 1 scaled dot-product attention per head.

    Self-attention projects Q, K, V with one fused Linear (D → 3D); cross-attention projects Q from the decoder and
    K, V from the encoder memory with one fused Linear (D → 2D). In incremental decoding the self-attention K/V of
    each new position are appended to ``cache.self_attention_cache`` and the cross-attention K/V are computed once
    per source sentence (``cache.is_updated[layer_idx]``) and reused at every later step.
    """

    def __init__(
        self, config: TransformerSeq2SeqConfig, layer_idx: int, is_cross_attention: bool, is_causal: bool
    ):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.is_cross_attention = is_cross_attention
        self.is_causal = is_causal  # read by the sdpa interface
        self.num_heads = config.num_attention_heads
        self.head_dim = config.d_model // config.num_attention_heads
        self.scaling = self.head_dim**-0.5  # 1 / sqrt(d_k), eq. 1
        self.dropout = config.attention_dropout
        d_model = config.d_model
        if is_cross_attention:
            self.q_proj = nn.Linear(d_model, d_model)
            self.kv_proj = nn.Linear(d_model, 2 * d_model)
        else:
            self.qkv_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _split_heads(self, x: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
        """(B, T, n·D) → n tensors (B, H, T, Dh), views of one permute."""
        batch, length, _ = x.shape
        return x.view(batch, length, n, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        key_value_states: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
        output_attentions: bool = False,
        attn_implementation: str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, T, D); key_value_states (B, S, D) for cross-attention; mask (B|1, 1, T|1, K).

        attn_implementation: the stack's ``config._attn_implementation``, read once per stack call and passed down
        (a config attribute read costs more than a small decoding step's attention); None reads it here.
        Returns the attended output (B, T, D) and, with ``output_attentions`` (or the eager kernel), the weights
        (B, H, T, K) where K = S for cross-attention and P + T for self-attention.
        """
        batch, length, _ = hidden_states.shape
        if self.is_cross_attention:
            (query,) = self._split_heads(self.q_proj(hidden_states), 1)
            if cache is not None and cache.is_updated.get(self.layer_idx):
                layer = cache.cross_attention_cache.layers[self.layer_idx]
                key, value = layer.keys, layer.values  # type: ignore[union-attr]  # an attention layer
            else:
                # key_value_states: the encoder states (B, S, D), always given to a cross-attention
                key, value = self._split_heads(self.kv_proj(key_value_states), 2)
                if cache is not None:
                    key, value = cache.cross_attention_cache.update(key, value, self.layer_idx)
                    cache.is_updated[self.layer_idx] = True
        else:
            query, key, value = self._split_heads(self.qkv_proj(hidden_states), 3)
            if cache is not None:
                key, value = cache.self_attention_cache.update(key, value, self.layer_idx)

        if output_attentions:
            attention_interface: Callable = eager_attention_forward
        else:
            attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
                attn_implementation or self.config._attn_implementation, eager_attention_forward
            )
            if length == 1 and attention_interface is sdpa_attention_forward:
                # One query per row (a cached decoding step): no causal flag, no GQA, so transformers' sdpa wrapper
                # reduces to this call.
                if query.device.type == "cpu" and batch * self.num_heads >= _CPU_MATMUL_DECODE_ROWS:
                    # torch's CPU flash kernel is up to 2-5x slower than two batched matmuls here once B·H is
                    # large (beam search over a batch). Same equation (eq. 1).
                    attention_interface = eager_attention_forward
                else:
                    output = F.scaled_dot_product_attention(
                        query,
                        key,  # type: ignore[arg-type]  # the cache returns the tensors it was given
                        value,  # type: ignore[arg-type]
                        attn_mask=attention_mask,
                        dropout_p=self.dropout if self.training else 0.0,
                        scale=self.scaling,
                    )  # (B, H, 1, Dh)
                    return self.out_proj(output.transpose(1, 2).reshape(batch, 1, -1)), None
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.dropout if self.training else 0.0,
            scaling=self.scaling,
        )
        output = self.out_proj(output.reshape(batch, length, -1))
        return output, weights


# ---------------------------------------------------------------------------------------------------- layers
class TransformerSeq2SeqFeedForward(nn.Module):
    """Sec. 3.3, eq. 2: FFN(x) = act(x W_1 + b_1) W_2 + b_2, (B, T, D) → (B, T, F) → (B, T, D)."""

    def __init__(self, config: TransformerSeq2SeqConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.ffn_dim)
        self.fc2 = nn.Linear(config.ffn_dim, config.d_model)
        self.activation = ACT2FN[config.activation_function]
        self.activation_dropout = config.activation_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _dropout(self.activation(self.fc1(x)), self.activation_dropout, self.training)
        return self.fc2(x)


class _ResidualBlock(GradientCheckpointingLayer):
    """A stack of residual sub-layers (Sec. 3.1 and 5.4), shared by the encoder and decoder blocks.

    A ``GradientCheckpointingLayer``: with ``model.gradient_checkpointing_enable()`` each block's activations are
    recomputed in the backward pass (the hidden states go positionally, everything else by keyword, as that class
    requires; the decoder's ``cache`` is dropped while checkpointing).

    post-norm (paper): x = LayerNorm(x + Dropout(Sublayer(x)));  pre-norm: x = x + Dropout(Sublayer(LayerNorm(x))).
    """

    def __init__(self, config: TransformerSeq2SeqConfig):
        super().__init__()
        self.pre_norm = config.norm_style == "pre"
        self.dropout = config.dropout

    def _sublayer_input(self, x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        """What a sub-layer reads: LayerNorm(x) with pre-norm, x itself with post-norm."""
        return norm(x) if self.pre_norm else x

    def _residual(self, x: torch.Tensor, out: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        """x (B, L, D) and the sub-layer's output on ``_sublayer_input(x, norm)`` (B, L, D) → (B, L, D)."""
        x = x + _dropout(out, self.dropout, self.training)
        return x if self.pre_norm else norm(x)


class TransformerSeq2SeqEncoderLayer(_ResidualBlock):
    """One encoder block (Sec. 3.1): self-attention, then FFN, each a residual sub-layer (:class:`_ResidualBlock`)."""

    def __init__(self, config: TransformerSeq2SeqConfig, layer_idx: int):
        super().__init__(config)
        self.self_attn = TransformerSeq2SeqAttention(
            config, layer_idx, is_cross_attention=False, is_causal=False
        )
        self.self_attn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ffn = TransformerSeq2SeqFeedForward(config)
        self.ffn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        output_attentions: bool = False,
        attn_implementation: str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, S, D), mask (B, 1, 1, S) → (B, S, D) and self-attention weights (B, H, S, S)."""
        x = hidden_states
        out, weights = self.self_attn(
            self._sublayer_input(x, self.self_attn_norm),
            attention_mask,
            output_attentions=output_attentions,
            attn_implementation=attn_implementation,
        )
        x = self._residual(x, out, self.self_attn_norm)
        x = self._residual(x, self.ffn(self._sublayer_input(x, self.ffn_norm)), self.ffn_norm)
        return x, weights


class TransformerSeq2SeqDecoderLayer(_ResidualBlock):
    """One decoder block (Sec. 3.1): masked self-attention, cross-attention over the encoder memory, FFN; each a
    residual sub-layer with post- or pre-norm (:class:`_ResidualBlock`)."""

    def __init__(self, config: TransformerSeq2SeqConfig, layer_idx: int):
        super().__init__(config)
        self.self_attn = TransformerSeq2SeqAttention(
            config, layer_idx, is_cross_attention=False, is_causal=True
        )
        self.self_attn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.cross_attn = TransformerSeq2SeqAttention(
            config, layer_idx, is_cross_attention=True, is_causal=False
        )
        self.cross_attn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ffn = TransformerSeq2SeqFeedForward(config)
        self.ffn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        self_attn_mask: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor,
        cross_attn_mask: torch.Tensor | None,
        cache: EncoderDecoderCache | None = None,
        output_attentions: bool = False,
        attn_implementation: str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """hidden_states (B, T, D), encoder_hidden_states (B, S, D) → (B, T, D), self-attention weights
        (B, H, T, P + T) and cross-attention weights (B, H, T, S)."""
        x = hidden_states
        out, self_weights = self.self_attn(
            self._sublayer_input(x, self.self_attn_norm),
            self_attn_mask,
            cache=cache,
            output_attentions=output_attentions,
            attn_implementation=attn_implementation,
        )
        x = self._residual(x, out, self.self_attn_norm)
        out, cross_weights = self.cross_attn(
            self._sublayer_input(x, self.cross_attn_norm),
            cross_attn_mask,
            key_value_states=encoder_hidden_states,
            cache=cache,
            output_attentions=output_attentions,
            attn_implementation=attn_implementation,
        )
        x = self._residual(x, out, self.cross_attn_norm)
        x = self._residual(x, self.ffn(self._sublayer_input(x, self.ffn_norm)), self.ffn_norm)
        return x, self_weights, cross_weights


# ---------------------------------------------------------------------------------------------------- stacks
def _make_positions(config: TransformerSeq2SeqConfig) -> nn.Module:
    if config.position_embedding == "sinusoidal":
        return TransformerSeq2SeqSinusoidalPositions(config.max_position_embeddings, config.d_model)
    return TransformerSeq2SeqLearnedPositions(config.max_position_embeddings, config.d_model)


class _Embedder(nn.Module):
    """Token embedding × sqrt(D) (Sec. 3.4, if ``scale_embedding``) + positions (Sec. 3.5), then dropout."""

    def __init__(self, config: TransformerSeq2SeqConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.embed_positions: Any = _make_positions(config)
        # not `embed_scale`: tools that feed inputs_embeds (inseq) multiply them by an encoder's `embed_scale` first,
        # the convention of models that scale only what they look up; this one scales inputs_embeds itself
        self.embedding_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.max_positions = config.max_position_embeddings
        self.dropout = config.dropout

    def _tokens(self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings (B, T, D) × sqrt(D). ``inputs_embeds`` replaces the table lookup: it is what
        ``get_input_embeddings()(input_ids)`` returns, so the scale is applied to it too (ids and embeddings then
        give the same output, as transformers' common tests require)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of `input_ids` (B, T) and `inputs_embeds` (B, T, D)")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        return inputs_embeds * self.embedding_scale

    def embed(
        self,
        input_ids: torch.Tensor | None,
        past_length: int = 0,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids (B, T) (or inputs_embeds (B, T, D)) at absolute positions P .. P + T - 1 → (B, T, D).

        With ``attention_mask`` (B, T) (the encoder's source mask) a token's position is the number of tokens
        before it, not its slot: position_i = sum_{j<i} mask_j (padding slots take their neighbour's and stay
        masked), so a left-padded row is encoded as the same row right-padded (or unpadded)."""
        hidden = self._tokens(input_ids, inputs_embeds)
        length = hidden.shape[1]
        if past_length + length > self.max_positions:
            raise ValueError(
                f"sequence of {past_length + length} positions exceeds max_position_embeddings="
                f"{self.max_positions}; truncate the input or raise max_position_embeddings"
            )
        if attention_mask is None:
            positions = self.embed_positions(past_length, length)  # (T, D)
        else:
            counted = (attention_mask.long().cumsum(-1) - 1).clamp(min=0) + past_length  # (B, T)
            positions = self.embed_positions.lookup(counted)  # (B, T, D)
        hidden = hidden + positions.to(hidden.dtype)
        return _dropout(hidden, self.dropout, self.training)

    def embed_at(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids (B, T) (or inputs_embeds) at absolute positions given as a (T,) tensor → (B, T, D). The caller
        checks the bound (``positions`` may be a traced tensor, so no ``.item()`` here)."""
        hidden = self._tokens(input_ids, inputs_embeds)
        hidden = hidden + self.embed_positions.lookup(positions).to(hidden.dtype)
        return _dropout(hidden, self.dropout, self.training)


class TransformerSeq2SeqEncoder(_Embedder):
    """The encoder stack (Sec. 3.1): embeddings + L encoder layers (+ a final LayerNorm for pre-norm).

    Called by ``generate()`` through ``get_encoder()``; returns a batch-first ``BaseModelOutput``.
    """

    def __init__(self, config: TransformerSeq2SeqConfig):
        super().__init__(config)
        self.layers = nn.ModuleList(
            [TransformerSeq2SeqEncoderLayer(config, i) for i in range(config.encoder_layers)]
        )
        self.layer_norm = (
            nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.norm_style == "pre" else None
        )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutput | tuple:
        """input_ids (B, S) or inputs_embeds (B, S, D), attention_mask (B, S) of 1 (token) / 0 (padding) →
        last_hidden_state (B, S, D); hidden_states: L + 1 tensors (B, S, D); attentions: L tensors (B, H, S, S).
        Options left as None take the config's value (``output_attentions``, ``output_hidden_states``,
        ``return_dict``)."""
        output_attentions, output_hidden_states, return_dict = output_options(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        # positions counted from the mask: left padding gives what right padding gives
        hidden_states = self.embed(input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        mask = _padding_mask(attention_mask, hidden_states.dtype)
        all_hidden: tuple[torch.Tensor, ...] | None = (hidden_states,) if output_hidden_states else None
        all_attentions: tuple[torch.Tensor, ...] | None = () if output_attentions else None
        attn_implementation = self.config._attn_implementation
        for layer in self.layers:
            hidden_states, weights = layer(
                hidden_states,
                mask,
                output_attentions=output_attentions,
                attn_implementation=attn_implementation,
            )
            if all_hidden is not None:
                all_hidden += (hidden_states,)
            if all_attentions is not None:
                all_attentions += (weights,)
        if self.layer_norm is not None:
            hidden_states = self.layer_norm(hidden_states)
        output = BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden, attentions=all_attentions
        )
        return output if return_dict else output.to_tuple()


class TransformerSeq2SeqDecoder(_Embedder):
    """The decoder stack (Sec. 3.1): embeddings + L decoder layers (+ a final LayerNorm for pre-norm).

    The same code serves teacher forcing (T = target length, no cache) and incremental decoding (T = 1, with an
    ``EncoderDecoderCache``); positions continue from the cache length P.

    With a preallocated self-attention cache (``generate(..., cache_implementation="static")``, a ``StaticCache``
    of K = ``max_cache_len`` slots) P is a 0-dim tensor, positions are a tensor and the causal mask always spans
    all K slots (``_static_causal_mask``): every step has the same shapes and no Python int depends on P, so the
    step can be compiled (``generate(..., compile_config=...)``). The dynamic-cache path is unchanged.
    """

    def __init__(self, config: TransformerSeq2SeqConfig):
        super().__init__(config)
        self.layers = nn.ModuleList(
            [TransformerSeq2SeqDecoderLayer(config, i) for i in range(config.decoder_layers)]
        )
        self.layer_norm = (
            nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.norm_style == "pre" else None
        )

    def forward(
        self,
        input_ids: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        inputs_embeds: torch.Tensor | None = None,
    ) -> dict:
        """input_ids (B, T) (or inputs_embeds (B, T, D)), encoder_hidden_states (B, S, D), encoder_attention_mask (B, S), attention_mask
        (B, P + T) → dict with last_hidden_state (B, T, D), hidden_states (L + 1 × (B, T, D)), attentions
        (L × (B, H, T, P + T)), cross_attentions (L × (B, H, T, S))."""
        attn_implementation = self.config._attn_implementation  # read once: a costly config attribute
        self_cache = cache.self_attention_cache if cache is not None else None
        if self_cache is not None and not isinstance(self_cache, DynamicCache) and self_cache.is_compileable:
            key_length = self_cache.get_max_length()
            if key_length > self.max_positions:
                raise ValueError(
                    f"static cache of {key_length} positions exceeds max_position_embeddings="
                    f"{self.max_positions}; lower max_new_tokens / max_cache_len or raise max_position_embeddings"
                )
            # 0 (int) before the first update, then the cache's 0-dim length tensor
            reference = input_ids if input_ids is not None else inputs_embeds
            positions = (
                torch.arange(reference.shape[1], device=reference.device) + self_cache.get_seq_length()
            )
            hidden_states = self.embed_at(input_ids, positions, inputs_embeds)
            self_mask = _static_causal_mask(attention_mask, positions, key_length, hidden_states.dtype)
        else:
            past_length = cache.get_seq_length() if cache is not None else 0
            hidden_states = self.embed(input_ids, past_length, inputs_embeds)
            self_mask = _causal_mask(
                attention_mask,
                hidden_states.shape[1],
                past_length,
                hidden_states.dtype,
                hidden_states.device,
                "eager" if output_attentions else attn_implementation,
            )
        cross_mask = _padding_mask(encoder_attention_mask, hidden_states.dtype)
        all_hidden: tuple[torch.Tensor, ...] | None = (hidden_states,) if output_hidden_states else None
        self_attentions: tuple[torch.Tensor, ...] | None = () if output_attentions else None
        cross_attentions: tuple[torch.Tensor, ...] | None = () if output_attentions else None
        for layer in self.layers:
            hidden_states, self_weights, cross_weights = layer(
                hidden_states,
                self_mask,
                encoder_hidden_states,
                cross_mask,
                cache=cache,
                output_attentions=output_attentions,
                attn_implementation=attn_implementation,
            )
            if all_hidden is not None:
                all_hidden += (hidden_states,)
            if self_attentions is not None and cross_attentions is not None:
                self_attentions += (self_weights,)
                cross_attentions += (cross_weights,)
        if self.layer_norm is not None:
            hidden_states = self.layer_norm(hidden_states)
        return {
            "last_hidden_state": hidden_states,
            "hidden_states": all_hidden,
            "attentions": self_attentions,
            "cross_attentions": cross_attentions,
        }


# ----------------------------------------------------------------------------------------------------- model
class TransformerSeq2SeqPreTrainedModel(PreTrainedModel):
    config_class = TransformerSeq2SeqConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    # the decoder step traces without graph breaks with a static cache (tested with fullgraph=True)
    _can_compile_fullgraph = True
    _no_split_modules = ["TransformerSeq2SeqEncoderLayer", "TransformerSeq2SeqDecoderLayer"]
    # the Auto class `save_pretrained` writes into `auto_map` (save_with_code)
    hub_auto_class: str | None = None

    def save_pretrained(self, save_directory, *args, **kwargs):
        return save_with_code(
            self,
            self.hub_auto_class,
            partial(super().save_pretrained, save_directory, *args, **kwargs),
            save_directory,
        )

    def __init__(self, config: TransformerSeq2SeqConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        attn = config._attn_implementation
        if attn is not None and attn not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation={attn!r} is not supported; valid choices: "
                f"{', '.join(map(repr, ATTN_IMPLEMENTATIONS))}"
            )

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, init_std) Linear/Embedding weights, zero biases and padding row, unit LayerNorms (the
        transformers default), and the sinusoidal table (a computed buffer, recomputed on every load)."""
        super()._init_weights(module)
        if isinstance(module, TransformerSeq2SeqSinusoidalPositions):
            init.copy_(module.table, sinusoidal_table(module.num_positions, module.dim))


class TransformerSeq2SeqModel(TransformerSeq2SeqPreTrainedModel):
    """Encoder + decoder without the output projection; returns ``Seq2SeqModelOutput``."""

    _tied_weights_keys = {"decoder.embed_tokens.weight": "encoder.embed_tokens.weight"}
    hub_auto_class = "AutoModel"

    def __init__(self, config: TransformerSeq2SeqConfig):
        super().__init__(config)
        self.encoder = TransformerSeq2SeqEncoder(config)
        self.decoder = TransformerSeq2SeqDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.encoder.embed_tokens = value  # type: ignore[assignment]  # any module mapping ids to (.., D)
        if self.config.tie_word_embeddings:
            self.decoder.embed_tokens = value  # type: ignore[assignment]

    def get_encoder(self, modality: str | None = None) -> TransformerSeq2SeqEncoder:
        return self.encoder

    def get_decoder(self) -> TransformerSeq2SeqDecoder:
        return self.decoder

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> Seq2SeqModelOutput | tuple:
        """See ``TransformerSeq2SeqForConditionalGeneration.forward``; returns the decoder states (B, T, D).

        ``past_key_values`` is accepted as a deprecated alias of ``cache`` (with a warning), as in transformers'
        own models: an old keyword must never drop the cache silently."""
        output_attentions, output_hidden_states, return_dict = output_options(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if encoder_outputs is None:
            if input_ids is None and inputs_embeds is None:
                raise ValueError("forward needs input_ids (B, S), inputs_embeds (B, S, D) or encoder_outputs")
            encoder_outputs = self.encoder(
                input_ids,
                attention_mask,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
                inputs_embeds=inputs_embeds,
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        assert isinstance(encoder_outputs, BaseModelOutput)  # the encoder was asked for return_dict=True
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError("forward needs decoder_input_ids (B, T), decoder_inputs_embeds or labels")

        if not use_cache:
            cache = None
        elif cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        elif not isinstance(cache, EncoderDecoderCache):
            raise ValueError(f"cache must be an EncoderDecoderCache, got {type(cache).__name__}")

        decoder_outputs = self.decoder(
            decoder_input_ids,
            encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            attention_mask=decoder_attention_mask,
            cache=cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            inputs_embeds=decoder_inputs_embeds,
        )
        output = Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs["last_hidden_state"],
            cache=cache,
            decoder_hidden_states=decoder_outputs["hidden_states"],
            decoder_attentions=decoder_outputs["attentions"],
            cross_attentions=decoder_outputs["cross_attentions"],
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


class TransformerSeq2SeqForConditionalGeneration(TransformerSeq2SeqPreTrainedModel, GenerationMixin):
    """The Transformer encoder-decoder with its output projection (Sec. 3.4: logits = h W_E^T when tied).

    With ``tie_word_embeddings`` the encoder input, decoder input and output projection share one (V, D) matrix,
    stored once in ``model.safetensors``.
    """

    _tied_weights_keys = {
        "lm_head.weight": "model.encoder.embed_tokens.weight",
        "model.decoder.embed_tokens.weight": "model.encoder.embed_tokens.weight",
    }
    hub_auto_class = "AutoModelForSeq2SeqLM"

    def __init__(self, config: TransformerSeq2SeqConfig):
        super().__init__(config)
        self.model = TransformerSeq2SeqModel(config)
        # output_bias: Marian's final_logits_bias, eole's generator bias
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=config.output_bias)
        self.post_init()

    def get_encoder(self, modality: str | None = None) -> TransformerSeq2SeqEncoder:
        return self.model.encoder

    def get_decoder(self) -> TransformerSeq2SeqDecoder:
        return self.model.decoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    @staticmethod
    def _reorder_cache(cache: EncoderDecoderCache, beam_idx: torch.LongTensor) -> EncoderDecoderCache:
        """Beam search: reorder only the self-attention K/V. ``beam_idx`` picks beams of the same sentence, whose
        cross-attention K/V are identical (the encoder output is repeated per beam), so those need no copy.

        Static (preallocated) layers are reordered in place, so their buffers keep the address a compiled step
        (or a CUDA graph) was built against."""
        self_cache = cache.self_attention_cache
        if isinstance(self_cache, DynamicCache):
            self_cache.reorder_cache(beam_idx)
            return cache
        for layer in self_cache.layers:
            if isinstance(layer, StaticLayer) and layer.is_initialized:
                index = beam_idx.to(layer.keys.device)
                layer.keys.copy_(layer.keys.index_select(0, index))
                layer.values.copy_(layer.values.index_select(0, index))
            else:
                layer.reorder_cache(beam_idx)
        return cache

    @staticmethod
    def create_masks_for_generate(
        attention_mask: torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor | None:
        """``generate()`` hook, called with a compilable (static) cache to pre-build a 4D decoder mask in the
        library's format. The decoder builds its own additive mask from the 2D ``decoder_attention_mask`` (inside
        the possibly compiled step), so pass that through unchanged."""
        return attention_mask

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels (B, T) with -100 padding → decoder inputs (B, T) (used by ``DataCollatorForSeq2Seq``)."""
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        labels: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput | tuple:
        """Encode ``input_ids`` (B, S) (or reuse ``encoder_outputs``), decode ``decoder_input_ids`` (B, T).

        labels (B, T): target ids ending in ``</s>``, padding -100. Without ``decoder_input_ids`` they are shifted
        right to build them. The loss is the label-smoothed (``config.label_smoothing``) cross-entropy over the
        non-(-100) positions, computed in float32.
        cache: an ``EncoderDecoderCache`` continued in place (P past positions); created when ``use_cache`` and
        absent; ignored (and not returned) when ``use_cache=False``. Passing ``labels`` disables it.
        Returns ``Seq2SeqLMOutput`` with logits (B, T, V), cache, cross_attentions (L × (B, H, T, S)) ...
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
        )
        logits = self.lm_head(outputs.last_hidden_state)  # (B, T, D) -> (B, T, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits.float().view(-1, logits.shape[-1]),
                labels.to(logits.device).view(-1),
                ignore_index=-100,
                label_smoothing=self.config.label_smoothing,
            )
        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "TransformerSeq2SeqForConditionalGeneration",
    "TransformerSeq2SeqModel",
    "TransformerSeq2SeqPreTrainedModel",
]

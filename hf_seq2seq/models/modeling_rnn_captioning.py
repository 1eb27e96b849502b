"""Image captioning with visual attention as a transformers model: Xu et al. (2015), "Show, Attend and Tell:
Neural Image Caption Generation with Visual Attention" (soft attention).

A convolutional encoder turns the image into a grid of annotation vectors ``a = {a_1, ..., a_S}`` (sec. 3.1.1);
the RNN family's attention decoder (:mod:`modeling_rnn_seq2seq`) writes the caption, attending over the regions
as it attends over source words in translation (sec. 3.1.2). The decoder, its step function and its cache are the
RNN family's own, so the family's invariants (cached == uncached decoding, beam reordering) hold the same way.

Dimension legend:
    B  batch (times beams inside generate)     C  image channels       P  image side (pixels)
    G  grid side (P / encoder stride)          S  regions = G * G      T  caption length
    E  embedding size                          H  hidden size (decoder state = every annotation vector)
    L  decoder layers                          V  vocabulary size

Everything crossing a module boundary is batch-first (generate expands beams with ``repeat_interleave`` on dim 0).
Regions are numbered row-major: region ``s`` is grid cell ``(s // G, s % G)`` (row, column).

This file ships to the Hub as custom code: flat sibling imports only.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_rnn_captioning import ImageCaptioningConfig
from .modeling_rnn_seq2seq import (
    BahdanauDecoder,
    LuongDecoder,
    RNNDecoderCache,
    RNNDecoderLMMixin,
    RNNSeq2SeqEncoderOutput,
    RNNSeq2SeqPreTrainedModel,
)
from .modeling_seq2seq_utils import save_with_code

__all__ = [
    "ImageCaptioningPreTrainedModel",
    "ImageCaptioningEncoder",
    "ShowAttendTellDecoder",
    "ImageCaptioningForConditionalGeneration",
    "doubly_stochastic_penalty",
]

RESNET_CHANNELS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


def _torchvision_backbone(name: str) -> tuple[nn.Module, int]:
    """A torchvision ResNet without its pooling and classifier: (B, C, P, P) -> (B, C', P/32, P/32)."""
    try:
        import torchvision
    except ImportError as err:
        raise ImportError(
            f"ImageCaptioningConfig(backbone={name!r}) needs torchvision, which is not installed; install a "
            "torchvision matching your torch, or use backbone='cnn' (the built-in encoder)."
        ) from err
    net = getattr(torchvision.models, name)(weights=None)
    return nn.Sequential(*list(net.children())[:-2]), RESNET_CHANNELS[name]


class SmallCNN(nn.Module):
    """The default encoder CNN: per stage ``conv3x3 -> ReLU -> conv3x3 -> ReLU -> maxpool 2x2`` (VGG-style, as the
    VGG-19 conv5_4 features Xu et al. use, much smaller). (B, C, P, P) -> (B, channels[-1], P / 2^n, P / 2^n).

    With ``coord_channels`` the pixel coordinates enter as two extra input channels (CoordConv), so every feature
    knows where it is — nonlinearly mixed with colour and shape, which survives the mean that initialises the
    decoder (a position embedding added after the CNN is linear and averages out to a constant)."""

    def __init__(self, in_channels: int, channels: list[int], coord_channels: bool = False):
        super().__init__()
        self.coord_channels = coord_channels
        in_channels += 2 if coord_channels else 0
        layers: list[nn.Module] = []
        for width in channels:
            layers += [
                nn.Conv2d(in_channels, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels = width
        self.layers = nn.Sequential(*layers)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.coord_channels:  # CoordConv (Liu et al. 2018): x and y in [-1, 1] as two extra input channels
            batch, _, height, width = pixel_values.shape
            ys = torch.linspace(-1.0, 1.0, height, device=pixel_values.device, dtype=pixel_values.dtype)
            xs = torch.linspace(-1.0, 1.0, width, device=pixel_values.device, dtype=pixel_values.dtype)
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            coords = torch.stack([grid_x, grid_y]).expand(batch, -1, -1, -1)
            pixel_values = torch.cat([pixel_values, coords], dim=1)
        return self.layers(pixel_values)


# ----------------------------------------------------------------------------------------------------------------
# Pretrained base: initialisation
# ----------------------------------------------------------------------------------------------------------------


class ImageCaptioningPreTrainedModel(PreTrainedModel):
    config_class = ImageCaptioningConfig
    config: ImageCaptioningConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    # the RNN decoder's recurrence is checkpointed (the family's CheckpointedCall); the CNN runs as is
    supports_gradient_checkpointing = True
    hub_auto_class: str | None = "AutoModelForImageTextToText"  # written into `auto_map` on save

    def save_pretrained(self, save_directory, *args, **kwargs):
        return save_with_code(
            self,
            self.hub_auto_class,
            partial(super().save_pretrained, save_directory, *args, **kwargs),
            save_directory,
        )

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Convolutions: He-normal (fan-out, ReLU; He et al. 2015), zero bias. The grid position embedding:
        N(0, 0.02). Everything else as the RNN family (Xavier linear layers, orthogonal recurrent weights, LSTM
        forget-gate bias 1)."""
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, ImageCaptioningEncoder) and module.position is not None:
            init.normal_(module.position, mean=0.0, std=0.02)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        else:
            RNNSeq2SeqPreTrainedModel._init_weights(self, module)  # type: ignore[arg-type]  # same rules


# ----------------------------------------------------------------------------------------------------------------
# Encoder
# ----------------------------------------------------------------------------------------------------------------


class ImageCaptioningEncoder(nn.Module):
    """Image -> annotation vectors ``a_i`` (B, S, H) and the decoder's initial state (Xu et al. 2015).

    1. CNN features (B, C', G, G), projected to H by a 1×1 convolution (deviation: Xu et al. use the D = 512 VGG
       features directly; the RNN family's decoder attends over H-sized states, so we project once here);
    2. flattened row-major to S = G·G regions, plus a learned embedding per region when
       ``config.position_embedding`` (deviation, see the config);
    3. ``h_0 = tanh(f_init,h(mean_i a_i))``, ``c_0 = tanh(f_init,c(mean_i a_i))`` (sec. 3.1.2, "predicted by an
       average of the annotation vectors fed through two separate MLPs"), one linear layer each, giving all L
       decoder layers' states.

    The output is the RNN family's :class:`RNNSeq2SeqEncoderOutput` (batch-first ``decoder_hidden`` (B, L, H),
    ``decoder_cell`` (B, L, H) or None for GRU), which its decoders read.
    """

    main_input_name = "pixel_values"

    def __init__(self, config: ImageCaptioningConfig):
        super().__init__()
        self.config = config
        self.backbone: nn.Module
        if config.backbone == "cnn":
            self.backbone = SmallCNN(config.num_channels, config.encoder_channels, config.coord_channels)
            features = config.encoder_channels[-1]
        else:
            self.backbone, features = _torchvision_backbone(config.backbone)
        hidden, layers = config.hidden_size, config.decoder_layers
        self.project = nn.Conv2d(features, hidden, kernel_size=1)
        regions = config.grid_size**2
        self.position = nn.Parameter(torch.zeros(regions, hidden)) if config.position_embedding else None
        self.dropout = nn.Dropout(config.dropout)
        self.init_hidden = nn.Linear(hidden, layers * hidden)
        self.init_cell = nn.Linear(hidden, layers * hidden) if config.cell == "lstm" else None

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> RNNSeq2SeqEncoderOutput | tuple:
        config = self.config
        expected = (config.num_channels, config.image_size, config.image_size)
        if pixel_values is None or pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected:
            shape = None if pixel_values is None else tuple(pixel_values.shape)
            raise ValueError(
                f"ImageCaptioningEncoder: `pixel_values` must be (batch, {expected[0]}, {expected[1]}, {expected[2]}) "
                f"(config.num_channels, config.image_size, config.image_size; the image processor resizes to it), "
                f"got {shape}"
            )
        pixel_values = pixel_values.to(self.project.weight.dtype)
        features = self.project(self.backbone(pixel_values))  # (B, H, G, G)
        annotations = features.flatten(2).transpose(1, 2)  # (B, S, H), regions row-major
        if self.position is not None:
            annotations = annotations + self.position
        annotations = self.dropout(annotations)
        batch, layers, hidden = annotations.shape[0], config.decoder_layers, config.hidden_size
        mean = annotations.mean(dim=1)  # (B, H)
        h0 = torch.tanh(self.init_hidden(mean)).view(batch, layers, hidden)
        c0 = None
        if self.init_cell is not None:
            c0 = torch.tanh(self.init_cell(mean)).view(batch, layers, hidden)
        if output_hidden_states is None:
            output_hidden_states = config.output_hidden_states
        output = RNNSeq2SeqEncoderOutput(
            last_hidden_state=annotations,
            hidden_states=(annotations,) if output_hidden_states else None,
            decoder_hidden=h0,
            decoder_cell=c0,
        )
        return_dict = config.return_dict if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()


# ----------------------------------------------------------------------------------------------------------------
# Decoder
# ----------------------------------------------------------------------------------------------------------------


class ShowAttendTellDecoder(BahdanauDecoder):
    """The RNN family's Bahdanau decoder (its step, readout and state) with Xu et al.'s gating scalar.

    Xu et al. (2015) eq. 4–6: ``e_ti = f_att(a_i, h_{t-1})`` (the additive score with the previous state),
    ``α_t = softmax(e_t)``, ``ẑ_t = φ({a_i}, {α_ti}) = β_t Σ_i α_ti a_i`` with ``β_t = σ(f_β(h_{t-1}))``
    (sec. 4.2.1), and the LSTM step on ``[E y_{t-1}; ẑ_t]`` (eq. 1–3). The readout is the family's
    ``tanh(W_o [h_t; ẑ_t; E y_{t-1}])`` (Xu et al. eq. 7 use ``L_o(E y_{t-1} + L_h h_t + L_z ẑ_t)``).

    The gate is applied by scaling the values the parent step attends over: ``Σ_i α_ti (β_t a_i) = β_t Σ_i α_ti
    a_i``, and the scores read only the precomputed keys, so the attention weights are unchanged.
    """

    def __init__(self, config: ImageCaptioningConfig):
        super().__init__(config)  # type: ignore[arg-type]  # it carries every field the decoder reads
        self.gate = nn.Linear(config.hidden_size, 1) if config.attention_gate else None  # f_β

    def step(self, input_emb, state, memory, mask):
        if self.gate is None:
            return super().step(input_emb, state, memory, mask)
        beta = torch.sigmoid(self.gate(state.hidden[-1]))  # (B, 1), from h_{t-1}
        return super().step(input_emb, state, memory._replace(values=memory.values * beta.unsqueeze(1)), mask)


def doubly_stochastic_penalty(
    attentions: torch.Tensor, step_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Xu et al. (2015) eq. 14: ``Σ_i (1 - Σ_t α_ti)^2`` — encourage the caption to attend to every region.

    attentions (B, T, S), step_mask (B, T) 1 on real target steps. Deviation: averaged over regions and batch
    (not summed over regions), to sit on the scale of the per-token cross-entropy it is added to.
    """
    if step_mask is not None:
        attentions = attentions * step_mask.unsqueeze(-1).to(attentions.dtype)
    return ((1.0 - attentions.sum(dim=1)) ** 2).mean()


# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------


class ImageCaptioningForConditionalGeneration(
    RNNDecoderLMMixin, ImageCaptioningPreTrainedModel, GenerationMixin
):
    """CNN encoder + RNN attention decoder + language-model head (Xu et al. 2015, soft attention).

    ``forward(pixel_values, decoder_input_ids | labels, ...)`` -> ``Seq2SeqLMOutput`` with logits (B, T, V),
    ``cache`` (the RNN family's :class:`RNNDecoderCache`), ``cross_attentions = ((B, 1, T, S),)`` with
    ``output_attentions`` (region ``s`` = grid cell ``(s // G, s % G)``; :meth:`attention_maps` reshapes them to
    (B, T, G, G)) and ``encoder_last_hidden_state`` (B, S, H). ``labels`` give the cross-entropy (with
    ``config.label_smoothing``) plus ``config.doubly_stochastic_weight`` × :func:`doubly_stochastic_penalty`.
    The decoder side (head, cache, loss, outputs) is the RNN family's :class:`RNNDecoderLMMixin`.
    """

    _tied_weights_keys = {"lm_head.weight": "decoder.embed_tokens.weight"}

    def __init__(self, config: ImageCaptioningConfig):
        super().__init__(config)
        self.encoder = ImageCaptioningEncoder(config)
        self.decoder: Any
        if config.attention == "bahdanau":
            self.decoder = ShowAttendTellDecoder(config)
        else:
            self.decoder = LuongDecoder(config)  # type: ignore[arg-type]  # it carries the decoder's fields
        self._init_lm_head(config)
        self.post_init()

    def get_encoder(self, modality: str | None = None) -> ImageCaptioningEncoder:
        return self.encoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.decoder.embed_tokens = value

    def attention_maps(self, cross_attentions) -> torch.Tensor:
        """``cross_attentions`` (a tuple of (B, 1, T, S) or a (B, T, S) tensor) -> (B, T, G, G) maps over the grid."""
        attn = cross_attentions[0] if isinstance(cross_attentions, (tuple, list)) else cross_attentions
        if attn.dim() == 4:
            attn = attn[:, 0]
        grid = self.config.grid_size
        return attn.reshape(attn.shape[0], attn.shape[1], grid, grid)

    def _loss(self, logits, labels, attn):
        """The family's cross-entropy plus ``config.doubly_stochastic_weight`` × the doubly stochastic penalty
        over real (non ``-100``) caption steps."""
        labels = labels.to(logits.device)
        loss = super()._loss(logits, labels, attn)
        if self.config.doubly_stochastic_weight > 0:
            penalty = doubly_stochastic_penalty(attn.float(), labels != -100)
            loss = loss + self.config.doubly_stochastic_weight * penalty
        return loss

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: RNNSeq2SeqEncoderOutput | tuple | None = None,
        labels: torch.Tensor | None = None,
        cache: RNNDecoderCache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput | tuple:
        """Teacher-forced (``labels`` or ``decoder_input_ids``) or incremental (``cache``) decoding.

        ``decoder_attention_mask`` is accepted and unused (the decoder is causal; target padding follows the real
        tokens). ``kwargs`` absorbs what ``generate()`` passes along (e.g. an ``attention_mask``: every region is
        real, so there is no source mask). ``past_key_values`` is a deprecated alias of ``cache`` (with a warning);
        options left as None take the config's value.
        """
        use_cache, decoder_input_ids = self._check_decoder_inputs(
            cache, use_cache, labels, decoder_input_ids, decoder_inputs_embeds
        )
        if encoder_outputs is None:
            if pixel_values is None:
                raise ValueError(
                    "ImageCaptioningForConditionalGeneration: pass `pixel_values` or `encoder_outputs`"
                )
            encoder_outputs = self.encoder(
                pixel_values, output_hidden_states=output_hidden_states, return_dict=True
            )
        return self._decode(
            decoder_input_ids,
            encoder_outputs,
            None,
            labels,
            cache,
            use_cache,
            output_attentions,
            output_hidden_states,
            return_dict,
            decoder_inputs_embeds,
        )

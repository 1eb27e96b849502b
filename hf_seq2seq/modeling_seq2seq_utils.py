"""What both model families (RNN and Transformer encoder-decoders) share, kept in one place.

Shipped to the Hub beside the modeling files that import it (``save_pretrained`` copies a model file's relative
imports with it), so it imports only torch.

Dimensions: B batch, T target length.
"""

from __future__ import annotations

import torch

__all__ = ["output_options", "shift_tokens_right"]


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher-forcing decoder inputs from ``labels`` (B, T): ``decoder_start_token_id`` first, then the labels
    shifted one step right, ``-100`` (ignored positions) replaced by ``pad_token_id``. The labels are not changed."""
    shifted = labels.new_empty(labels.shape)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


def output_options(config, output_attentions, output_hidden_states, return_dict) -> tuple[bool, bool, bool]:
    """The transformers contract for ``forward``: an output option passed as ``None`` takes the config's value."""
    return (
        config.output_attentions if output_attentions is None else output_attentions,
        config.output_hidden_states if output_hidden_states is None else output_hidden_states,
        config.return_dict if return_dict is None else return_dict,
    )

"""What both model families (RNN and Transformer encoder-decoders) share, kept in one place.

Shipped to the Hub beside the modeling files that import it (``save_pretrained`` copies a model file's relative
imports with it), so it imports only torch: the label shift, the output options and the save that ships the code
(``save_with_code``). The model code is plain torch; the package's CPU inference kernels are applied to a loaded
model from outside (``hf_seq2seq.inference.cpu_kernels``).

Dimensions: B batch, T target length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["output_options", "save_with_code", "shift_tokens_right"]


def save_with_code(model: Any, auto_class: str | None, save: Callable[[], Any]) -> Any:
    """Run ``save`` (``PreTrainedModel.save_pretrained``) with ``type(model)`` registered for ``auto_class``, so
    that every save (``Seq2SeqTrainer.save_model`` included) writes ``auto_map`` and copies the model's file and its flat
    siblings: the folder then loads with ``trust_remote_code=True`` where this package is absent.

    The registration is undone afterwards: a class registered for an Auto class counts as remote code, and
    ``generate()`` then inspects ``forward``'s signature at every decoding step (measurable on small models)."""
    cls = type(model)
    if auto_class is None or cls._auto_class is not None:  # loaded as remote code, or registered by the user
        return save()
    cls.register_for_auto_class(auto_class)
    try:
        return save()
    finally:
        cls._auto_class = None


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

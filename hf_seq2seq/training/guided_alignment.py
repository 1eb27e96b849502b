"""Guided alignment: a loss that teaches one attention head to follow a given word alignment (issue 26, item 3).

Garg et al. (2019), "Jointly Learning to Align and Translate with Transformer Models", sec. 4: one head of one
decoder layer is supervised with an alignment ``G`` (e.g. from eflomal, fast_align or ``hf-seq2seq align``); the loss
is the cross-entropy between the row-normalised alignment ``p^G_t`` (a target token's gold links spread evenly over
the linked source tokens) and that head's attention ``a_t``, over the target tokens that have a link:

    L_a = - 1/|T_G| Σ_{t ∈ T_G} Σ_s p^G_{t,s} log a_{t,s}

For the RNN family the same loss is put on its one attention (supervised attention: Liu et al. 2016, "Neural
Machine Translation with Supervised Attention"; Chen et al. 2016, "Guided Alignment Training for Topic-Aware Neural
Machine Translation"). Here it is computed as the KL divergence ``Σ p^G (log p^G - log a)``: the same gradient as the
cross-entropy (they differ by the entropy of ``p^G``, a constant), and exactly 0 when the attention equals the
supervision. Only the named head's attention enters the loss, so within its layer's cross-attention only that head's
query and key projections get a gradient.

What is here: the token-level supervision of a pair from its Pharaoh links (:func:`supervision_matrix`), the
attention of the named head (:func:`head_attention`) and the loss (:func:`guided_alignment_loss`). Not yet here: the
training options ``--alignment_supervision FILE --alignment_loss_weight W`` that feed them from the loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..inference.alignment import token_word_map, whitespace_spans


def supervision_matrix(
    links: Sequence[tuple[int, int]],
    source_offsets: Sequence[tuple[int, int]],
    target_offsets: Sequence[tuple[int, int]],
    source_text: str,
    target_text: str,
) -> np.ndarray:
    """Word links ``(source word i, target word j)`` (whitespace words, as Pharaoh files hold them) → the
    token-level supervision ``(target tokens, source tokens)`` of one pair: row t spreads target token t's links
    evenly over the tokens of its linked source words (each row sums to 1), and is all zero for a token with no link
    (``</s>``, a target word the alignment leaves unaligned)."""
    t_map = token_word_map(target_offsets, whitespace_spans(target_text))
    s_map = token_word_map(source_offsets, whitespace_spans(source_text))
    sources_of: dict[int, set[int]] = {}
    for i, j in links:
        sources_of.setdefault(j, set()).add(i)
    out = np.zeros((len(t_map), len(s_map)))
    for t, j in enumerate(t_map):
        linked = sources_of.get(j, set()) if j is not None else set()
        columns = [s for s, i in enumerate(s_map) if i in linked]
        if columns:
            out[t, columns] = 1.0 / len(columns)
    return out


def head_attention(cross_attentions: Sequence[torch.Tensor], layer: int, head: int) -> torch.Tensor:
    """The attention ``(B, T, S)`` of head ``head`` of decoder layer ``layer`` (negative: from the end) from a
    forward pass's ``cross_attentions`` (per layer ``(B, heads, T, S)``; the RNN: one layer, one head); a layer or
    head the model does not have is one ``ValueError`` line naming the option."""
    num_layers = len(cross_attentions)
    if not -num_layers <= layer < num_layers:
        raise ValueError(
            f"--alignment_layer {layer} is out of range: the model has {num_layers} decoder layer(s) with "
            f"cross-attention (0..{num_layers - 1}, or negative from the end)"
        )
    weights = cross_attentions[layer]
    if not 0 <= head < weights.shape[1]:
        raise ValueError(
            f"--alignment_heads {head} is not valid: the model has {weights.shape[1]} attention head(s) per layer "
            f"(0..{weights.shape[1] - 1})"
        )
    return weights[:, head]


def guided_alignment_loss(
    attention: torch.Tensor, supervision: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(summed KL divergence over the supervised rows, number of supervised rows)`` for ``attention`` and
    ``supervision`` of the same shape ``(B, T, S)`` (rows of ``supervision`` sum to 1, or are all zero for an
    unsupervised target token or padding). The loop divides the sum by the rows of the whole group of micro-batches
    and multiplies it by ``--alignment_loss_weight``, as it does the token loss."""
    if attention.shape != supervision.shape:
        raise ValueError(
            f"attention has shape {tuple(attention.shape)}, supervision {tuple(supervision.shape)}"
        )
    p = supervision.to(torch.float32)
    log_a = torch.log(attention.to(torch.float32).clamp_min(torch.finfo(torch.float32).tiny))
    log_p = torch.log(p.clamp_min(torch.finfo(torch.float32).tiny))
    kl = torch.where(p > 0, p * (log_p - log_a), torch.zeros_like(p)).sum()
    return kl, (p.sum(dim=-1) > 0).sum()

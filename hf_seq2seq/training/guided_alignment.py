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
attention of the named head (:func:`head_attention`), the loss (:func:`guided_alignment_loss`), and what the text
task uses with ``--alignment_supervision FILE --alignment_loss_weight W --alignment_layer L --alignment_head H``:
the links as a column of the tokenized training pairs (:func:`tokenize_supervised`), padded by
:class:`GuidedCollator`, added to the step's loss by :func:`guided_loss_sum`.
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


# ------------------------------------------------------------------------------------------------- training
def read_supervision(path: str, pairs: Sequence[dict], src: str, tgt: str) -> list[list[tuple[int, int]]]:
    """The links of ``--alignment_supervision``, one line per training pair, every index a word of its pair (else
    one ``ValueError`` line naming the file and the line)."""
    from ..inference.alignment import read_pharaoh

    return read_pharaoh(path, [p[src] for p in pairs], [p[tgt] for p in pairs])


def tokenize_supervised(train, tokenizer, src: str, tgt: str, data_args, path: str):
    """The training pairs tokenized as :func:`hf_seq2seq.data.tokenize_parallel` does (empty and over-long pairs
    dropped, with their alignment lines), plus an ``alignment_links`` column: the flattened token-level links
    ``[t0, s0, t1, s1, ...]`` of :func:`supervision_matrix` (target token t, source token s; labels and input ids
    positions)."""
    from datasets import DatasetDict, IterableDataset

    from ..data import tokenize_parallel

    if isinstance(train, IterableDataset):
        raise ValueError("--alignment_supervision needs the training pairs in memory: drop --streaming")
    pairs = train["translation"]
    links = read_supervision(path, pairs, src, tgt)
    flat, keep = [], []
    for k, (pair, pair_links) in enumerate(zip(pairs, links, strict=True)):
        s_text, t_text = pair[src], pair[tgt]
        enc = tokenizer(s_text, return_offsets_mapping=True, verbose=False)
        lab = tokenizer(text_target=t_text, return_offsets_mapping=True, verbose=False)
        too_long = len(enc["input_ids"]) > data_args.max_source_length or (
            len(lab["input_ids"]) > data_args.max_target_length
        )
        if not s_text.strip() or not t_text.strip() or too_long:
            continue  # dropped by tokenize_parallel too
        sup = supervision_matrix(pair_links, enc["offset_mapping"], lab["offset_mapping"], s_text, t_text)
        keep.append(k)
        flat.append([int(x) for ts in zip(*np.nonzero(sup)) for x in ts])
    kept = train.select(keep)
    out = tokenize_parallel(
        DatasetDict({"train": kept}),
        tokenizer,
        source_lang=src,
        target_lang=tgt,
        max_source_length=data_args.max_source_length,
        max_target_length=data_args.max_target_length,
    )["train"]
    if len(out) != len(keep) or len(out) == 0:
        raise ValueError(f"no training pair is left after dropping empty and over-long pairs ({len(out)})")
    return out.add_column("alignment_links", flat)


class GuidedCollator:
    """The text collator, plus ``alignment_supervision`` (B, T, S): each example's token-level links, each linked
    row normalised to sum to 1 (T: the padded labels, S: the padded input ids)."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, features):
        features = [dict(f) for f in features]
        links = [f.pop("alignment_links") for f in features]
        batch = self.collator(features)
        sup = torch.zeros(len(features), batch["labels"].shape[1], batch["input_ids"].shape[1])
        for b, flat in enumerate(links):
            if flat:
                pairs = torch.tensor(flat, dtype=torch.long).view(-1, 2)
                sup[b, pairs[:, 0], pairs[:, 1]] = 1.0
        batch["alignment_supervision"] = sup / sup.sum(dim=-1, keepdim=True).clamp_min(1.0)
        return batch


def guided_loss_sum(
    model, inputs: dict, labels: torch.Tensor, label_smoothing: float, model_args
) -> torch.Tensor:
    """The summed token loss plus ``--alignment_loss_weight`` times the summed guided-alignment loss of the named
    head (:func:`guided_alignment_loss`); the loop divides the sum by the group's label tokens, so the alignment
    term is a mean over (about) the supervised target tokens, as in Garg et al."""
    from .losses import token_loss_sum

    inputs = dict(inputs)
    supervision = inputs.pop("alignment_supervision")
    out = model(**inputs, output_attentions=True)
    attention = head_attention(out.cross_attentions, model_args.alignment_layer, model_args.alignment_head)
    kl, _ = guided_alignment_loss(attention, supervision.to(attention.dtype))
    return token_loss_sum(out.logits, labels, label_smoothing) + model_args.alignment_loss_weight * kl

"""The lecture's claims, measured: translation quality by source length, and how well attention aligns.

Two analyses of a trained translation model (either family), used by ``hf-seq2seq analyze``:

**Quality by source length** (Bahdanau et al. 2015, fig. 2; Luong et al. 2015, fig. 6). The test sentences are
grouped by source length in whitespace words (tokenizer-independent, so models with different vocabularies share
the buckets) and each group is scored with sacreBLEU's corpus BLEU and chrF. Buckets are consecutive length ranges
that each hold at least ``min_size`` sentences (:func:`length_buckets`): BLEU of a handful of sentences is noise.

**Alignment accuracy** (Bahdanau et al. 2015, fig. 3; Luong et al. 2015, sec. 4.4 and table 6). The reference is
forced through the decoder (teacher forcing), and the cross-attention of each target token over the source tokens
is read. Sub-word attention becomes word attention as in Luong et al.'s AER evaluation: a target word's row is the
mean of its tokens' rows, a source word's weight the sum over its tokens (:func:`word_attention`). Each target word
is aligned to its highest-weight source word (the attention argmax), and that hard alignment ``A`` is compared with
the gold one of :func:`hf_seq2seq.tasks.gold_alignment`:

* alignment error rate (Och & Ney 2003): ``AER = 1 - (|A ∩ S| + |A ∩ P|) / (|A| + |S|)`` over the corpus, with
  ``S`` the sure and ``P`` the possible gold links; ``A`` holds one link for each target word that has a gold
  link (words with no counterpart, such as English "and" in "one hundred and one", are not scored);
* argmax accuracy: the share of target words with a sure link whose argmax is one of their sure source words;
* attention entropy: the mean over target tokens of ``-Σ_s a_ts log a_ts`` (nats), and the same divided by
  ``log S`` (1.0 = uniform over the source, 0.0 = all weight on one token).

For the Transformer every (layer, head) is scored, plus the head average of each layer; the best head is the one
with the lowest AER.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = [
    "source_lengths",
    "length_buckets",
    "bucket_of",
    "bucket_scores",
    "token_word_map",
    "word_attention",
    "alignment_counts",
    "alignment_scores",
    "attention_entropy",
    "forced_cross_attentions",
    "alignment_report",
]


# ------------------------------------------------------------------------------------------- length buckets
def source_lengths(sources: Sequence[str]) -> list[int]:
    """Length of each source sentence in whitespace-separated words."""
    return [len(s.split()) for s in sources]


def length_buckets(lengths: Sequence[int], min_size: int = 50) -> list[tuple[int, int]]:
    """Consecutive inclusive length ranges ``(lo, hi)`` covering every length, each holding >= ``min_size`` items.

    Greedy from the shortest length: a bucket closes as soon as it holds ``min_size`` sentences; a last bucket that
    is too small joins the one before it. Fewer than ``min_size`` sentences in all give one bucket. The ranges
    touch (``hi + 1`` of one is ``lo`` of the next), so every length, seen or not, falls in exactly one bucket.
    """
    if not isinstance(min_size, int) or min_size < 1:
        raise ValueError(f"min_size={min_size!r} is not valid; use an integer >= 1")
    if not lengths:
        raise ValueError("no sentences to bucket")
    counts = Counter(lengths)
    ranges: list[list[int]] = []  # [lo, hi, count]
    current: list[int] | None = None
    for length in sorted(counts):
        if current is None:
            current = [length, length, 0]
        current[1] = length
        current[2] += counts[length]
        if current[2] >= min_size:
            ranges.append(current)
            current = None
    if current is not None:
        if ranges:
            ranges[-1][1], ranges[-1][2] = current[1], ranges[-1][2] + current[2]
        else:
            ranges.append(current)
    # widen to touching ranges: bucket k ends where bucket k+1 starts
    return [(lo if k == 0 else ranges[k - 1][1] + 1, hi) for k, (lo, hi, _) in enumerate(ranges)]


def bucket_of(lengths: Sequence[int], buckets: Sequence[tuple[int, int]]) -> list[list[int]]:
    """For each bucket, the indices of the sentences whose length falls in it (each index in exactly one)."""
    members: list[list[int]] = [[] for _ in buckets]
    for i, length in enumerate(lengths):
        k = next((k for k, (lo, hi) in enumerate(buckets) if lo <= length <= hi), None)
        if k is None:
            raise ValueError(f"sentence {i} has length {length}, outside every bucket {list(buckets)}")
        members[k].append(i)
    return members


def bucket_scores(
    hypotheses: Sequence[str],
    references: Sequence[str],
    lengths: Sequence[int],
    buckets: Sequence[tuple[int, int]],
) -> list[dict]:
    """Corpus BLEU and chrF (sacreBLEU defaults) of the sentences in each bucket."""
    from sacrebleu.metrics import BLEU, CHRF

    if not len(hypotheses) == len(references) == len(lengths):
        raise ValueError(
            f"{len(hypotheses)} hypotheses, {len(references)} references and {len(lengths)} lengths: "
            "they must be line-aligned"
        )
    rows = []
    for (lo, hi), idx in zip(buckets, bucket_of(lengths, buckets), strict=True):
        hyps, refs = [hypotheses[i] for i in idx], [references[i] for i in idx]
        rows.append(
            {
                "lo": lo,
                "hi": hi,
                "num_sentences": len(idx),
                "mean_length": float(np.mean([lengths[i] for i in idx])) if idx else float("nan"),
                "bleu": BLEU().corpus_score(hyps, [refs]).score if idx else float("nan"),
                "chrf": CHRF().corpus_score(hyps, [refs]).score if idx else float("nan"),
            }
        )
    return rows


# ------------------------------------------------------------------------------------------- alignment
def token_word_map(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int | None]:
    """For each token (character offsets), the index of the word span it overlaps most; None for none.

    Special tokens (``</s>``, offsets ``(0, 0)``) and pure word-boundary markers overlap no word.
    """
    out: list[int | None] = []
    for a, b in offsets:
        best, best_overlap = None, 0
        for w, (s, e) in enumerate(spans):
            overlap = min(b, e) - max(a, s)
            if overlap > best_overlap:
                best, best_overlap = w, overlap
        out.append(best)
    return out


def word_attention(
    attention: np.ndarray,
    target_map: Sequence[int | None],
    source_map: Sequence[int | None],
    num_target_words: int,
    num_source_words: int,
) -> np.ndarray:
    """Token attention ``(T, S)`` → word attention ``(num_target_words, num_source_words)``.

    Row j is the mean of the rows of target word j's tokens; column i the sum of source word i's token columns.
    Attention on tokens of no word (the source ``</s>``) is dropped, so a row may sum to less than one. A word
    with no token (truncated away) keeps an all-zero row.
    """
    if attention.shape != (len(target_map), len(source_map)):
        raise ValueError(
            f"attention has shape {attention.shape} but there are {len(target_map)} target and "
            f"{len(source_map)} source tokens"
        )
    to_src = np.zeros((len(source_map), num_source_words))
    for s, w in enumerate(source_map):
        if w is not None:
            to_src[s, w] = 1.0
    from_tgt = np.zeros((num_target_words, len(target_map)))
    for t, w in enumerate(target_map):
        if w is not None:
            from_tgt[w, t] = 1.0
    from_tgt /= np.maximum(from_tgt.sum(axis=1, keepdims=True), 1.0)
    return from_tgt @ attention @ to_src


def alignment_counts(word_att: np.ndarray, sure, possible) -> dict[str, int]:
    """The counts behind AER and argmax accuracy for one sentence (summed over a corpus before dividing).

    ``word_att`` is ``(target words, source words)``; ``sure`` / ``possible`` hold ``(source, target)`` pairs.
    """
    sure_of: dict[int, set[int]] = {}
    for i, j in sure:
        sure_of.setdefault(j, set()).add(i)
    linked = {j for _, j in possible}
    hard = {(int(np.argmax(word_att[j])), j) for j in linked if word_att[j].sum() > 0}
    return {
        "A": len(hard),
        "S": len(sure),
        "A_and_S": len(hard & set(sure)),
        "A_and_P": len(hard & set(possible)),
        "scored": len(sure_of),
        "correct": sum(int(np.argmax(word_att[j])) in sources for j, sources in sure_of.items()),
    }


def alignment_scores(counts: Sequence[dict[str, int]]) -> dict[str, float]:
    """Corpus AER and argmax accuracy from per-sentence :func:`alignment_counts`."""
    total = Counter()
    for c in counts:
        total.update(c)
    denominator = total["A"] + total["S"]
    return {
        "aer": 1.0 - (total["A_and_S"] + total["A_and_P"]) / denominator if denominator else float("nan"),
        "accuracy": total["correct"] / total["scored"] if total["scored"] else float("nan"),
        "num_target_words": total["scored"],
    }


def attention_entropy(attention: np.ndarray) -> tuple[float, float]:
    """``(sum of row entropies in nats, sum of row entropies / log S)`` over the rows of ``(T, S)``.

    Sums, so that a corpus mean is one division at the end; ``S`` = the number of (unpadded) source tokens.
    """
    p = np.clip(attention, 1e-12, 1.0)
    h = -(attention * np.log(p)).sum(axis=1)
    s = attention.shape[1]
    return float(h.sum()), float(h.sum() / math.log(s)) if s > 1 else 0.0


# ------------------------------------------------------------------------------------------- the model side
def forced_cross_attentions(
    model, tokenizer, sources: Sequence[str], references: Sequence[str], batch_size=32
):
    """Teacher-force each reference and yield, per pair, ``(cross, source offsets, target offsets)``.

    ``cross`` is a float numpy array ``(layers, heads, T, S)`` of the unpadded sentence: row t is the attention
    paid while predicting reference token t (the labels, ``</s>`` last). None for a model without attention.
    """
    import torch

    device = next(model.parameters()).device
    limit = getattr(model.config, "max_position_embeddings", None) or 512
    for start in range(0, len(sources), batch_size):
        srcs, refs = list(sources[start : start + batch_size]), list(references[start : start + batch_size])
        enc = tokenizer(srcs, return_offsets_mapping=True, truncation=True, max_length=limit)
        lab = tokenizer(refs, return_offsets_mapping=True, truncation=True, max_length=limit)
        batch = tokenizer.pad({"input_ids": enc["input_ids"]}, return_tensors="pt").to(device)
        labels = tokenizer.pad({"input_ids": lab["input_ids"]}, return_tensors="pt")["input_ids"]
        labels = labels.masked_fill(labels == tokenizer.pad_token_id, -100).to(device)
        with torch.no_grad():
            out = model(**batch, labels=labels, output_attentions=True, return_dict=True)
        for b in range(len(srcs)):
            s, t = len(enc["input_ids"][b]), len(lab["input_ids"][b])
            cross = None
            if out.cross_attentions:
                cross = (
                    torch.stack([layer[b, :, :t, :s] for layer in out.cross_attentions]).float().cpu().numpy()
                )
            yield cross, enc["offset_mapping"][b], lab["offset_mapping"][b]


def alignment_report(model, tokenizer, sources, references, gold, batch_size: int = 32) -> dict | None:
    """Alignment scores of every (layer, head) and of each layer's head average; None without attention.

    ``gold`` is one :class:`hf_seq2seq.tasks.WordAlignment` per pair. Returns ``{"heads": [...], "best": {...},
    "word_attention": [per sentence: (target words, source words) array of the best head]}``.
    """
    counts: dict[tuple, list] = {}
    entropy: dict[tuple, list[float]] = {}
    rows = 0
    matrices: dict[tuple, list[np.ndarray]] = {}
    for (cross, src_off, tgt_off), g in zip(
        forced_cross_attentions(model, tokenizer, sources, references, batch_size), gold, strict=True
    ):
        if cross is None:
            return None
        src_map, tgt_map = token_word_map(src_off, g.source_spans), token_word_map(tgt_off, g.target_spans)
        layers, heads = cross.shape[:2]
        views = {(layer, h): cross[layer, h] for layer in range(layers) for h in range(heads)}
        if heads > 1:
            views |= {(layer, "mean"): cross[layer].mean(axis=0) for layer in range(layers)}
        scored_rows = [t for t, w in enumerate(tgt_map) if w is not None]  # drop </s>
        rows += len(scored_rows)
        for key, att in views.items():
            wa = word_attention(att, tgt_map, src_map, len(g.target_words), len(g.source_words))
            counts.setdefault(key, []).append(alignment_counts(wa, g.sure, g.possible))
            entropy.setdefault(key, []).append(attention_entropy(att[scored_rows]))
            matrices.setdefault(key, []).append(wa)
    heads_out = []
    for key, c in counts.items():
        nats, normalised = (sum(x) for x in zip(*entropy[key], strict=True))
        heads_out.append(
            {
                "layer": key[0],
                "head": key[1],
                **alignment_scores(c),
                "entropy": nats / rows,
                "entropy_normalised": normalised / rows,
            }
        )
    best = min((h for h in heads_out if h["head"] != "mean"), key=lambda h: (h["aer"], -h["accuracy"]))
    return {
        "heads": heads_out,
        "best": best,
        "word_attention": matrices[(best["layer"], best["head"])],
    }

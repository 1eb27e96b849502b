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
from pathlib import Path

import numpy as np

from .inference.alignment import token_word_map, word_attention

__all__ = [
    "source_lengths",
    "refuse_captioning_model",
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
    "model_label",
    "gold_alignments",
    "analyze_model",
    "markdown_tables",
    "update_card",
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
    from .metrics import corpus_scores

    if not len(hypotheses) == len(references) == len(lengths):
        raise ValueError(
            f"{len(hypotheses)} hypotheses, {len(references)} references and {len(lengths)} lengths: "
            "they must be line-aligned"
        )
    rows = []
    for (lo, hi), idx in zip(buckets, bucket_of(lengths, buckets), strict=True):
        hyps, refs = [hypotheses[i] for i in idx], [references[i] for i in idx]
        scores = corpus_scores(hyps, refs) if idx else {"bleu": float("nan"), "chrf": float("nan")}
        rows.append(
            {
                "lo": lo,
                "hi": hi,
                "num_sentences": len(idx),
                "mean_length": float(np.mean([lengths[i] for i in idx])) if idx else float("nan"),
                "bleu": scores["bleu"],
                "chrf": scores["chrf"],
            }
        )
    return rows


# ------------------------------------------------------------------------------------------- alignment
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


# ---------------------------------------------------------------------------------------------- the analyze report
# The card section `hf-seq2seq analyze --update_card` owns, in hub.MARKED_SECTION's form, so that rewriting the
# card keeps it.
CARD_SECTION = "analyze"
CARD_BEGIN = "<!-- hf-seq2seq analyze: begin -->"
CARD_END = "<!-- hf-seq2seq analyze: end -->"
CARD_FIGURE = "analysis_length.png"


def model_label(path: str) -> str:
    """A short name for a model folder: ``runs/gru/best_model`` → ``gru``."""
    p = Path(path)
    return p.parent.name if p.name in ("best_model", "final_model") and p.parent.name else p.name


def gold_alignments(task: str, sources: Sequence[str], references: Sequence[str]) -> list:
    """The gold word alignment of every (source, reference) pair of the embedded ``task``; a pair that is not
    one of the task's is an error naming its line."""
    from .tasks import gold_alignment, task_languages

    src, tgt = task_languages(task)
    gold = []
    for n, (s, r) in enumerate(zip(sources, references, strict=True), start=1):
        try:
            gold.append(gold_alignment(task, {src: s, tgt: r}))
        except ValueError as err:
            raise ValueError(f"--alignment {task}: line {n} is not a pair of the task: {err}") from None
    return gold


def refuse_captioning_model(path: str | Path) -> None:
    """One line for a captioning folder: analyze measures translation models."""
    from .families import CAPTIONING_MODEL_TYPE
    from .inference import folder_model_type

    if folder_model_type(path) == CAPTIONING_MODEL_TYPE:
        raise ValueError(
            f"{path} is an image-captioning model; analyze measures translation models (BLEU by source length, "
            "word alignment)"
        )


def analyze_model(
    path: str,
    label: str,
    sources: Sequence[str],
    references: Sequence[str],
    lengths: Sequence[int],
    buckets: Sequence[tuple[int, int]],
    gold: Sequence | None = None,
    *,
    device: str = "auto",
    trust_remote_code: bool = False,
    num_beams: int | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 32,
) -> dict:
    """Decode, score overall and per bucket, and (with ``gold``) score the alignment of one saved model.

    The result holds the scores and signatures (:func:`hf_seq2seq.metrics.corpus_scores`), ``buckets``, and with
    ``gold`` the ``alignment``; ``_hypotheses`` and ``_word_attention`` are for the report's figures."""
    import sys

    from .inference import load_engine
    from .metrics import corpus_scores

    refuse_captioning_model(path)
    engine = load_engine(path, device=device, trust_remote_code=trust_remote_code)
    print(f"{label}: translating {len(sources)} sentences", file=sys.stderr)
    translations = engine.translate(
        sources, num_beams=num_beams, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=True
    )
    hyps = [t.text for t in translations]
    result = {"label": label, "path": str(path), "model_type": engine.model.config.model_type}
    result |= corpus_scores(hyps, references) | {"num_eval_sentences": len(references)}
    result["num_beams"] = num_beams or engine.default_beams
    result["buckets"] = bucket_scores(hyps, references, lengths, buckets)
    if gold is not None:
        report = alignment_report(
            engine.model, engine.tokenizer, sources, references, gold, batch_size=batch_size
        )
        result["alignment"] = None if report is None else {k: report[k] for k in ("heads", "best")}
        result["_word_attention"] = None if report is None else report["word_attention"]
    result["_hypotheses"] = hyps
    return result


def _fmt(x, digits=1) -> str:
    return "–" if x is None or x != x else f"{x:.{digits}f}"


def markdown_tables(results: Sequence[dict], caption: str) -> str:
    """The bucket table (BLEU / chrF per model) and, where measured, the alignment table, as Markdown."""
    lines = ["| source words | sentences | " + " | ".join(r["label"] for r in results) + " |"]
    lines.append("|---|---:|" + "---:|" * len(results))
    for k, b in enumerate(results[0]["buckets"]):
        cells = [f"{_fmt(r['buckets'][k]['bleu'])} / {_fmt(r['buckets'][k]['chrf'])}" for r in results]
        lines.append(f"| {_span(b)} | {b['num_sentences']} | " + " | ".join(cells) + " |")
    cells = [f"**{_fmt(r['bleu'])} / {_fmt(r['chrf'])}**" for r in results]
    lines.append(f"| all | {results[0]['num_eval_sentences']} | " + " | ".join(cells) + " |")
    lines += ["", f"BLEU / chrF per bucket. {caption}"]
    aligned = [r for r in results if "alignment" in r]
    if aligned:
        lines += [
            "",
            "| model | AER ↓ | argmax accuracy ↑ | entropy (nats) | entropy / log S | head |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in aligned:
            if r["alignment"] is None:
                lines.append(f"| {r['label']} | – | – | – | – | no attention |")
                continue
            for h in _table_heads(r["alignment"]):
                where = _where(r["alignment"], h)
                lines.append(
                    f"| {r['label']} | {_fmt(h['aer'], 3)} | {_fmt(h['accuracy'], 3)} | {_fmt(h['entropy'], 2)} "
                    f"| {_fmt(h['entropy_normalised'], 2)} | {where} |"
                )
        for r in aligned:
            if r["alignment"] is not None and len(r["alignment"]["heads"]) > 1:
                lines += ["", *_head_grid(r)]
    return "\n".join(lines) + "\n"


def _head_grid(result: dict) -> list[str]:
    """AER / argmax accuracy of every (layer, head) of one multi-head model, layers as rows."""
    heads = [h for h in result["alignment"]["heads"] if h["head"] != "mean"]
    num_heads = 1 + max(h["head"] for h in heads)
    lines = [
        f"{result['label']}, AER / argmax accuracy of each head:",
        "",
        "| layer | " + " | ".join(f"head {k}" for k in range(num_heads)) + " |",
        "|---|" + "---:|" * num_heads,
    ]
    for layer in sorted({h["layer"] for h in heads}):
        row = sorted((h for h in heads if h["layer"] == layer), key=lambda h: h["head"])
        lines.append(
            f"| {layer} | "
            + " | ".join(f"{_fmt(h['aer'], 2)} / {_fmt(h['accuracy'], 2)}" for h in row)
            + " |"
        )
    return lines


def _where(alignment: dict, head: dict) -> str:
    if len(alignment["heads"]) == 1:
        return ""
    if head["head"] == "mean":
        return f"layer {head['layer']}, mean of heads"
    return f"best head: layer {head['layer']}, head {head['head']}"


def _table_heads(alignment: dict) -> list[dict]:
    """The rows shown for one model: its only head, or the best head and every layer's head average."""
    if len(alignment["heads"]) == 1:
        return alignment["heads"]
    return [alignment["best"]] + [h for h in alignment["heads"] if h["head"] == "mean"]


def _span(bucket: dict) -> str:
    """A bucket's source lengths as a table cell: "8" or "11–12"."""
    lo, hi = bucket["lo"], bucket["hi"]
    return str(lo) if lo == hi else f"{lo}–{hi}"


def update_card(result: dict, caption: str) -> Path:
    """Put the model's own length figure and bucket table into its folder's card (a marked README section)."""
    from .hub import with_marked_section, write_atomic
    from .plotting import plot_length_curves

    folder = Path(result["path"])
    if not folder.is_dir():
        raise ValueError(f"--update_card needs a local model folder; {folder} is not one")
    plot_length_curves({result["label"]: result["buckets"]}, folder / CARD_FIGURE, caption=caption)
    rows = "\n".join(
        f"| {_span(b)} | {b['num_sentences']} | {_fmt(b['bleu'])} | {_fmt(b['chrf'])} |"
        for b in result["buckets"]
    )
    section = (
        f"{CARD_BEGIN}\n## Quality by source length\n\n![BLEU and chrF by source length]({CARD_FIGURE})\n\n"
        f"| source words | sentences | BLEU | chrF |\n|---|---:|---:|---:|\n{rows}\n\n"
        f"Measured with `hf-seq2seq analyze` ({caption.replace('|', chr(92) + '|')}).\n{CARD_END}\n"
    )
    readme = folder / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    write_atomic(
        readme, with_marked_section(text, section, CARD_SECTION)
    )  # the card is never left half-written
    return readme

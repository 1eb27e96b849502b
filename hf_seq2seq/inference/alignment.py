"""Word alignments from cross-attention: sub-word attention → word attention → Pharaoh links.

A translation's alignment is an output of the one inference path (:meth:`Engine.translate` with
``return_alignment=True`` fills :attr:`Translation.alignments`) and of forced alignment (``hf-seq2seq align``,
:meth:`GenerateEngine.forced_attention`). Both read a token-level cross-attention matrix ``(T, S)`` — row t the
attention paid while predicting target token t, ``</s>`` rows and columns included — and turn it into words here:

* **words** are the whitespace tokens of the text (:func:`whitespace_spans`): the detokenized hypothesis, the
  stripped source line. Tokens map to the word their character offsets overlap most (:func:`token_word_map`), so
  ``▁twenty - three`` is the one word ``twenty-three``; special tokens and bare ``▁`` markers map to none.
* **soft** alignment (:func:`word_attention`, as Luong et al. 2015 sec. 4.4 score AER): a target word's row is the
  mean of its tokens' rows, a source word's weight the sum over its tokens. Attention on ``</s>`` is dropped, so a
  row sums to at most 1; a word with no token (cut off by truncation) keeps an all-zero row or column.
* **hard** alignment (:func:`hard_alignment`): each target word linked to the argmax of its soft row (the attention
  argmax, as ``analyze`` scores it), or, with a threshold, to every source word whose weight reaches it.
* **Pharaoh** format (:func:`format_pharaoh`, :func:`parse_pharaoh`, :func:`read_pharaoh`): ``i-j`` links, source
  word i to target word j, 0-based, space-separated, one line per sentence pair (fast_align, eflomal, Moses).

Which attention: the RNN family has one (its attention, one layer, one head). For the Transformer the caller picks
a decoder layer and a set of heads (:func:`select_attention`); the default (:func:`default_alignment_layer`, the
last layer, all heads averaged) is documented with its measurement in docs/alignment.md.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "token_word_map",
    "word_attention",
    "whitespace_spans",
    "hypothesis_offsets",
    "soft_alignment",
    "hard_alignment",
    "format_pharaoh",
    "format_soft",
    "spelled_offsets",
    "parse_pharaoh",
    "read_pharaoh",
    "default_alignment_layer",
    "select_attention",
    "check_alignment_choice",
    "align_pairs",
]

_WHITESPACE_WORD = re.compile(r"\S+")
_LINK = re.compile(r"(\d+)-(\d+)")


# --------------------------------------------------------------------------------------------- tokens → words
def token_word_map(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int | None]:
    """For each token (character offsets), the index of the word span it overlaps most; None for none.

    ``spans`` are sorted and disjoint (:func:`whitespace_spans`). Special tokens (``</s>``, offsets ``(0, 0)``) and
    pure word-boundary markers overlap no word; of equal overlaps the first word wins. Plain Python over a binary
    search: a sentence has a few dozen tokens, where numpy's per-call cost is the whole cost.
    """
    starts = [a for a, _ in spans]
    count = len(spans)
    out: list[int | None] = []
    for a, b in offsets:
        best, most = None, 0
        k = bisect_right(starts, a) - 1  # the words before k end before a: no overlap
        k = k if k > 0 else 0
        while k < count:
            start, end = spans[k]
            if start >= b:
                break
            overlap = (b if b < end else end) - (a if a > start else start)
            if overlap > most:
                best, most = k, overlap
            k += 1
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
    src = [(s, w) for s, w in enumerate(source_map) if w is not None]
    if src:
        to_src[tuple(zip(*src, strict=True))] = 1.0
    from_tgt = np.zeros((num_target_words, len(target_map)))
    tgt = [(w, t) for t, w in enumerate(target_map) if w is not None]
    if tgt:
        from_tgt[tuple(zip(*tgt, strict=True))] = 1.0
    from_tgt /= np.maximum(from_tgt.sum(axis=1, keepdims=True), 1.0)
    return from_tgt @ attention @ to_src


def whitespace_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the whitespace-separated words of ``text`` (the words Pharaoh indices count)."""
    return [m.span() for m in _WHITESPACE_WORD.finditer(text)]


def spelled_offsets(
    pieces: Sequence[str | None], text: str, allow_prefix: bool = False
) -> list[tuple[int, int]] | None:
    """Character offsets in ``text`` of tokens whose pieces spell it, or None when they do not.

    ``pieces``: each token's string (``convert_ids_to_tokens``), None for a special token (offsets ``(0, 0)``); the
    word-start marker ``▁`` (Metaspace, our tokenizers' and SentencePiece's) stands for a space. When the pieces,
    joined and stripped, are ``text`` (or, with ``allow_prefix``, its start: a source cut at the length limit),
    each token's offsets are where its characters lie, what re-encoding ``text`` gives (a leading ``▁`` covers the
    space before the word).
    Otherwise (another decoder, a normalizer that changed the text, ``<unk>``, or a first token that is the marker
    alone, to which the tokenizer gives the first character) None: the caller re-encodes (:func:`hypothesis_offsets`).
    """
    spelled = "".join(p for p in pieces if p is not None).replace("▁", " ")
    lead = len(spelled) - len(spelled.lstrip())
    spelled = spelled.strip()
    if not (text.startswith(spelled) if allow_prefix else text == spelled):
        return None
    out, position = [], -lead
    for piece in pieces:
        if piece is None:
            out.append((0, 0))
            continue
        end = position + len(piece)
        if end <= 0:  # the prepended marker alone: the tokenizer's offsets and prefix decoding differ here
            return None
        out.append((max(position, 0), min(end, len(text))))
        position = end
    return out


def hypothesis_offsets(tokenizer, ids: Sequence[int], text: str, encoding=None) -> list[tuple[int, int]]:
    """Character offsets in ``text`` (= ``tokenizer.decode(ids, skip_special_tokens=True).strip()``) of each of
    ``ids`` (no special tokens).

    Re-encoding ``text`` gives them when it gives ``ids`` back (the usual case; ``encoding``: that re-encoding, with
    ``input_ids`` and ``offset_mapping``, when the caller made it for a batch); a hypothesis the tokenizer would
    segment otherwise is located by decoding its prefixes (token k spans from the end of prefix k-1 to the end of
    prefix k)."""
    ids = list(ids)
    if not ids:
        return []
    enc = encoding or tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if list(enc["input_ids"]) == ids:
        return [tuple(o) for o in enc["offset_mapping"]]
    full = tokenizer.decode(ids, skip_special_tokens=True)
    lead = len(full) - len(full.lstrip())
    ends = [len(tokenizer.decode(ids[: k + 1], skip_special_tokens=True)) - lead for k in range(len(ids))]
    starts = [0, *ends[:-1]]
    return [(max(a, 0), min(max(b, 0), len(text))) for a, b in zip(starts, ends, strict=True)]


def soft_alignment(
    attention: np.ndarray,
    source_offsets: Sequence[tuple[int, int]],
    target_offsets: Sequence[tuple[int, int]],
    source_text: str,
    target_text: str,
) -> np.ndarray:
    """Word-level soft alignment ``(target words, source words)`` of one pair from its token attention.

    ``attention`` is ``(T, S)`` over all target tokens (rows) and source tokens (columns) the model saw, specials
    included; ``*_offsets`` give each token's character span in its text (``(0, 0)`` for a special token). Rows or
    columns beyond the offsets given (a hypothesis' ``</s>`` row) belong to no word."""
    t_map = token_word_map(target_offsets, spans_t := whitespace_spans(target_text))
    s_map = token_word_map(source_offsets, spans_s := whitespace_spans(source_text))
    t_map += [None] * (attention.shape[0] - len(t_map))
    s_map += [None] * (attention.shape[1] - len(s_map))
    return word_attention(attention, t_map, s_map, len(spans_t), len(spans_s))


# ------------------------------------------------------------------------------------------------ hard links
def hard_alignment(soft: np.ndarray, threshold: float | None = None) -> list[tuple[int, int]]:
    """Links ``(source word i, target word j)`` of a soft alignment ``(target words, source words)``, sorted.

    Without ``threshold``: each target word with any attention on a source word is linked to its argmax (ties: the
    first). With ``threshold``: every ``(i, j)`` whose weight is at least ``threshold`` (a target word may then
    have none or several links)."""
    if threshold is not None:
        rows, cols = np.nonzero(soft >= threshold)
        return sorted((int(i), int(j)) for j, i in zip(rows, cols, strict=True))
    if soft.size == 0:
        return []
    best = soft.argmax(axis=1)
    return sorted((int(best[j]), j) for j in range(soft.shape[0]) if soft[j].max() > 0)


def format_pharaoh(links: Sequence[tuple[int, int]]) -> str:
    """``[(0, 0), (2, 1)]`` → ``"0-0 2-1"`` (source-target, 0-based)."""
    return " ".join(f"{i}-{j}" for i, j in links)


def format_soft(soft: np.ndarray, digits: int = 3) -> str:
    """The soft alignment as text: one space-separated group per target word, each its weights over the source
    words joined by commas (Marian's ``--alignment soft`` layout): ``"0.912,0.051 0.020,0.970"``."""
    return " ".join(",".join(f"{x:.{digits}f}" for x in row) for row in soft)


def parse_pharaoh(
    line: str,
    num_source_words: int | None = None,
    num_target_words: int | None = None,
    where: str = "",
) -> list[tuple[int, int]]:
    """``"0-0 2-1"`` → ``[(0, 0), (2, 1)]``; a malformed link or an index out of range is a ``ValueError`` whose
    message starts with ``where`` (``"file:line"``) and names the link and the limit."""
    prefix = f"{where}: " if where else ""
    links = []
    for token in line.split():
        match = _LINK.fullmatch(token)
        if match is None:
            raise ValueError(
                f"{prefix}{token!r} is not a link; Pharaoh links are i-j (source-target, 0-based)"
            )
        i, j = int(match[1]), int(match[2])
        for value, limit, side in ((i, num_source_words, "source"), (j, num_target_words, "target")):
            if limit is not None and value >= limit:
                raise ValueError(
                    f"{prefix}link {token}: {side} word {value} is out of range; the {side} has {limit} "
                    f"word(s) (0-based indices 0..{limit - 1})"
                )
        links.append((i, j))
    return links


def read_pharaoh(
    path: str | Path, sources: Sequence[str] | None = None, targets: Sequence[str] | None = None
) -> list[list[tuple[int, int]]]:
    """The links of a Pharaoh file, one list per line. With ``sources`` / ``targets`` (the pairs it aligns), the
    file must have one line per pair and every index must be a word of its pair: else one ``ValueError`` line
    naming the file and the line."""
    from ..tokenization import read_text_lines

    lines = read_text_lines(path)
    expected = len(sources) if sources is not None else len(targets) if targets is not None else None
    if expected is not None and len(lines) != expected:
        raise ValueError(
            f"{path}: {len(lines)} line(s) of alignments, but there are {expected} sentence pairs (one line each)"
        )
    out = []
    for n, line in enumerate(lines):
        src = len(sources[n].split()) if sources is not None else None
        tgt = len(targets[n].split()) if targets is not None else None
        out.append(parse_pharaoh(line, src, tgt, where=f"{path}:{n + 1}"))
    return out


# ------------------------------------------------------------------------------------------ which attention
def default_alignment_layer(num_layers: int) -> int:
    """The decoder layer alignments are read from by default: the last.

    Measured (docs/alignment.md, docs/results.md "Word alignments"): in the 2-layer, 4-head tiny Transformers of the
    numbers task, the mean of the last layer's heads has the lower AER in both seeds (0.603 / 0.593 against 0.621 /
    0.693 for layer 0). Deeper models may align better one layer down (Garg et al. 2019 read layer 5 of 6):
    ``--alignment_layer -2``."""
    return num_layers - 1


def select_attention(
    cross: np.ndarray, layer: int | None = None, heads: Sequence[int] | None = None
) -> np.ndarray:
    """``(layers, heads, T, S)`` → ``(T, S)``: layer ``layer`` (default :func:`default_alignment_layer`; negative
    counts from the end), the mean of ``heads`` (default: all). Out-of-range values are a ``ValueError`` naming the
    option and the valid range."""
    num_layers, num_heads = cross.shape[:2]
    check_alignment_choice(num_layers, num_heads, layer, heads)
    layer = default_alignment_layer(num_layers) if layer is None else layer
    chosen = cross[layer]
    return chosen.mean(axis=0) if heads is None else chosen[list(heads)].mean(axis=0)


def check_alignment_choice(
    num_layers: int, num_heads: int, layer: int | None, heads: Sequence[int] | None
) -> None:
    """One ``ValueError`` line for an ``--alignment_layer`` / ``--alignment_heads`` the model does not have."""
    if layer is not None and not -num_layers <= layer < num_layers:
        raise ValueError(
            f"--alignment_layer {layer} is out of range: the model has {num_layers} decoder layer(s) with "
            f"cross-attention (0..{num_layers - 1}, or negative from the end)"
        )
    if heads is not None:
        bad = [h for h in heads if not 0 <= h < num_heads]
        if bad or not heads:
            raise ValueError(
                f"--alignment_heads {','.join(map(str, heads))} is not valid: the model has {num_heads} "
                f"attention head(s) per layer (0..{num_heads - 1}); give a comma-separated list such as 0,2"
            )


# ---------------------------------------------------------------------------------------------- forced alignment
def align_pairs(
    engine,
    sources: Sequence[str],
    targets: Sequence[str],
    *,
    batch_size: int = 32,
    layer: int | None = None,
    heads: Sequence[int] | None = None,
    progress: bool = False,
) -> list[np.ndarray]:
    """Forced alignment of given sentence pairs: the word-level soft alignment ``(target words, source words)`` of
    each, read from one teacher-forced forward pass per batch (:meth:`Engine.pair_attention`; no search).

    Lines are stripped; a pair with an empty side gets an empty ``(target words, source words)`` array. Sources are
    truncated as :meth:`Engine.translate` truncates them, targets to the decoder's positions (one warning each);
    words cut off get no link. Batches hold pairs of similar length, longest first."""
    import sys

    from tqdm.auto import tqdm

    if len(sources) != len(targets):
        raise ValueError(
            f"{len(sources)} source and {len(targets)} target lines: alignment needs one target line per source line"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    engine.check_alignment(layer, heads)
    tok = engine.tokenizer
    sources = [s.strip() for s in sources]
    targets = [t.strip() for t in targets]
    results = [np.zeros((len(t.split()), len(s.split()))) for s, t in zip(sources, targets, strict=True)]
    todo = [k for k in range(len(sources)) if sources[k] and targets[k]]
    source_ids = engine.encode([sources[k] for k in todo])
    special = set(tok.all_special_ids)
    limit = engine.max_target_length - 1 if engine.max_target_length else None  # the start token takes one
    target_ids, target_offsets, cut = {}, {}, []
    for k in todo:
        enc = tok(targets[k], truncation=False, verbose=False, return_offsets_mapping=True)
        kept = [
            (i, tuple(o))
            for i, o in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
            if i not in special
        ]
        if limit is not None and len(kept) > limit:
            kept = kept[:limit]
            cut.append(k)
        target_ids[k], target_offsets[k] = [i for i, _ in kept], [o for _, o in kept]
    if cut:
        print(
            f"warning: {len(cut)} target line(s) longer than the decoder's {limit} positions truncated "
            f"(lines {[k + 1 for k in cut[:10]]}); their last words get no link",
            file=sys.stderr,
        )
    ids = dict(zip(todo, source_ids, strict=True))
    order = sorted(todo, key=lambda k: len(ids[k]) + len(target_ids[k]), reverse=True)
    with tqdm(total=len(sources), unit="pair", disable=None if progress else True, file=sys.stderr) as bar:
        bar.update(len(sources) - len(todo))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            attention = engine.pair_attention(
                [ids[k] for k in batch], [target_ids[k] for k in batch], layer, heads
            )
            src_enc = tok(
                [sources[k] for k in batch], truncation=False, verbose=False, return_offsets_mapping=True
            )
            for n, k in enumerate(batch):
                offsets = [tuple(o) for o in src_enc["offset_mapping"][n]]
                if len(offsets) > len(ids[k]):
                    offsets = offsets[: len(ids[k]) - 1] + offsets[-1:]
                results[k] = soft_alignment(attention[n], offsets, target_offsets[k], sources[k], targets[k])
            bar.update(len(batch))
    return results

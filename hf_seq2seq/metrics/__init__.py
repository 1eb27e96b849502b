"""Corpus scores (:func:`corpus_scores`: sacreBLEU BLEU and chrF with their signatures) and the local ``evaluate``
metric modules (sacreBLEU, chrF) that load without the Hub.

:func:`corpus_scores` is the one place the package computes BLEU / chrF: training validation (text and captioning),
``evaluate``, ``analyze`` and the demo all call it, so every number is keyed and signed the same way.
``load_metric("sacrebleu")`` is ``evaluate.load(<this folder>/sacrebleu)``: the module files ship inside the package
(``package-data`` in pyproject.toml), so ``evaluate.load`` never needs the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent
AVAILABLE_METRICS = ("sacrebleu", "chrf")
CORPUS_METRICS = ("bleu", "chrf")


def metric_path(name: str) -> str:
    """The folder of a local metric module, usable as ``evaluate.load(metric_path(name))``."""
    if name not in AVAILABLE_METRICS:
        raise ValueError(f"unknown metric {name!r}; valid choices: {', '.join(AVAILABLE_METRICS)}")
    return str(METRICS_DIR / name)


def load_metric(name: str, **kwargs):
    """``evaluate.load`` of the local module ``name`` ("sacrebleu" or "chrf"); kwargs go to ``evaluate.load``."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


def _reference_streams(references: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacreBLEU's reference streams (stream ``k`` holds every hypothesis's ``k``-th reference). ``references`` is
    one string per hypothesis, or one list of strings per hypothesis (multi-reference; lists may differ in length:
    the missing entries are ``None``, which sacreBLEU skips)."""
    if all(isinstance(r, str) for r in references):
        return [list(references)]
    groups = [[r] if isinstance(r, str) else list(r) for r in references]
    empty = [i for i, refs in enumerate(groups) if not refs]
    if empty:
        raise ValueError(f"hypothesis {empty[0]} has no reference (every hypothesis needs at least one)")
    width = max(len(refs) for refs in groups)
    return [[refs[k] if k < len(refs) else None for refs in groups] for k in range(width)]


def corpus_scores(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    metrics: Sequence[str] = CORPUS_METRICS,
    *,
    with_lengths: bool = False,
) -> dict:
    """Corpus-level sacreBLEU scores with their signatures, with sacreBLEU's default settings (BLEU: 13a tokens,
    exponential smoothing; chrF: character 6-grams, beta 2).

    Args:
        hypotheses: one system output per segment.
        references: one reference per segment (``list[str]``), or several per segment (``list[list[str]]``,
            e.g. the captions of one image; the lists may differ in length).
        metrics: which of ``"bleu"``, ``"chrf"`` to compute.
        with_lengths: also return BLEU's ``sys_len`` and ``ref_len`` (token counts; a duplicate or lost segment
            shows up there).

    Returns:
        ``{"bleu": float, "bleu_signature": str, "chrf": float, "chrf_signature": str}`` for the asked metrics
        (scores on the 0-100 scale), plus ``sys_len`` / ``ref_len`` with ``with_lengths``.

    Raises:
        ValueError: an unknown metric, no hypotheses, or different numbers of hypotheses and references.
    """
    from sacrebleu.metrics import BLEU, CHRF

    for name in metrics if metrics else [None]:
        if name not in CORPUS_METRICS:
            raise ValueError(f"unknown metric {name!r}; valid choices: {', '.join(CORPUS_METRICS)}")
    if isinstance(references, str) or isinstance(hypotheses, str):
        raise ValueError("hypotheses and references must be lists of strings, not one string")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references: every hypothesis needs its reference"
        )
    if not hypotheses:
        raise ValueError(
            "no hypotheses and no references to score (0 lines): corpus scores need at least one"
        )
    hyps = list(hypotheses)
    streams = _reference_streams(references)
    result: dict = {}
    for name in metrics:
        metric = BLEU() if name == "bleu" else CHRF()
        score = metric.corpus_score(hyps, streams)
        result[name] = float(score.score)
        result[f"{name}_signature"] = str(metric.get_signature())
        if name == "bleu" and with_lengths:
            result["sys_len"], result["ref_len"] = score.sys_len, score.ref_len
    if with_lengths and "sys_len" not in result:
        score = BLEU().corpus_score(hyps, streams)
        result["sys_len"], result["ref_len"] = score.sys_len, score.ref_len
    return result

"""Figures of ``hf-seq2seq analyze``: quality by source length, and attention heatmaps of several models side by side.

Same conventions as :mod:`hf_seq2seq.plotting` (Agg backend, ``.png`` / ``.svg`` by suffix, pixel size =
``figsize`` × ``dpi``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .plotting import _check_path, _pyplot

__all__ = ["plot_length_curves", "plot_alignment_grid"]


def plot_length_curves(
    curves: Mapping[str, Sequence[dict]], path, caption: str | None = None, dpi: int = 100
) -> Path:
    """BLEU (left) and chrF (right) against source length, one line per model (Bahdanau et al. 2015, fig. 2).

    ``curves`` maps a model label to its buckets (:func:`hf_seq2seq.analysis.bucket_scores` rows: ``lo``, ``hi``,
    ``num_sentences``, ``mean_length``, ``bleu``, ``chrf``); a point sits at the bucket's mean source length.
    ``caption`` (e.g. the sacreBLEU signatures) is printed under the axes.
    """
    path = _check_path(path)
    if not curves:
        raise ValueError("plot_length_curves: no curves to draw")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.2), dpi=dpi, layout="constrained")
    try:
        for metric, ax in zip(("bleu", "chrf"), axes, strict=True):
            for label, rows in curves.items():
                rows = [r for r in rows if r["num_sentences"]]
                ax.plot([r["mean_length"] for r in rows], [r[metric] for r in rows], "o-", label=label, ms=3)
            ax.set_xlabel("source length (words), bucket mean")
            ax.set_ylabel("BLEU" if metric == "bleu" else "chrF")
            ax.grid(alpha=0.3)
        axes[0].legend(loc="best", fontsize=8)
        if caption:
            fig.supxlabel(textwrap.fill(caption, 150), fontsize=7)
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
    return path


def plot_alignment_grid(
    panels: Sequence[dict],
    source_words: Sequence[str],
    target_words: Sequence[str],
    path,
    gold: Sequence[tuple[int, int]] = (),
    dpi: int = 100,
) -> Path:
    """Word-level attention of the same sentence pair for several models, side by side.

    ``panels`` is a list of ``{"title": str, "matrix": (target words, source words) array}``; ``gold`` the sure
    ``(source, target)`` links, outlined in red on every panel so the eye can check each model against them.
    """
    path = _check_path(path)
    if not panels:
        raise ValueError("plot_alignment_grid: no panels to draw")
    rows, cols = len(target_words), len(source_words)
    for p in panels:
        if np.asarray(p["matrix"]).shape != (rows, cols):
            raise ValueError(
                f"panel {p['title']!r} has shape {np.asarray(p['matrix']).shape}, expected ({rows}, {cols})"
            )
    per_row = min(len(panels), 3)
    grid_rows = -(-len(panels) // per_row)
    cell = (max(3.0, 0.32 * cols + 1.6), max(2.5, 0.3 * rows + 1.6))
    plt = _pyplot()
    fig, axes = plt.subplots(
        grid_rows,
        per_row,
        figsize=(cell[0] * per_row, cell[1] * grid_rows),
        dpi=dpi,
        layout="constrained",
        squeeze=False,
    )
    try:
        for ax, panel in zip(axes.flat, panels, strict=False):
            matrix = np.asarray(panel["matrix"], dtype=float)
            ax.imshow(
                matrix, cmap="Greys", vmin=0.0, vmax=max(1e-9, float(matrix.max(initial=0.0))), aspect="auto"
            )
            for i, j in gold:
                ax.add_patch(plt.Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False, edgecolor="red", lw=0.8))
            ax.set_xticks(range(cols), source_words, rotation=90, fontsize=7)
            ax.set_yticks(range(rows), target_words, fontsize=7)
            ax.xaxis.tick_top()
            ax.set_title(panel["title"], fontsize=9)
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
    return path

"""Short fronts over :meth:`Engine.translate <hf_seq2seq.inference.engines.Engine.translate>` for callers that want
hypothesis strings only (the signatures of ``hf_seq2seq.export.translate`` / ``translate_with_engine`` and
``hf_seq2seq.commands.translate_lines`` before they moved here). They add no behaviour: the loop is the engine's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .engines import Engine, GenerateEngine
from .loading import load_engine


def translate(
    engine: Engine,
    lines: Sequence[str],
    num_beams: int | None = None,
    n_best: int = 1,
    batch_size: int = 32,
    max_new_tokens: int | None = None,
    progress: bool = False,
) -> list[list[str]]:
    """``n_best`` hypotheses (best first) per line of ``lines``, in input order, on a loaded ``engine``."""
    results = engine.translate(
        lines,
        num_beams=num_beams,
        n_best=n_best,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        progress=progress,
    )
    return [r.hypotheses for r in results]


def translate_with_engine(
    path: str | Path,
    lines: Sequence[str],
    engine: str = "torch",
    threads: int | None = None,
    compute_type: str | None = None,
    **options,
) -> list[list[str]]:
    """One call: :func:`load_engine` then :func:`translate` (``num_beams``, ``n_best``, ``batch_size``,
    ``max_new_tokens``)."""
    return translate(load_engine(path, engine, threads, compute_type), lines, **options)


def translate_lines(
    model,
    tokenizer,
    lines: Sequence[str],
    batch_size: int = 32,
    n_best: int = 1,
    progress: bool = False,
    **generate_kwargs,
) -> list[list[str]]:
    """``n_best`` hypotheses per line with a model already in memory; ``generate_kwargs`` other than ``num_beams``
    / ``max_new_tokens`` go to every ``generate()`` call (``do_sample=True`` samples)."""
    num_beams = generate_kwargs.pop("num_beams", None)
    max_new_tokens = generate_kwargs.pop("max_new_tokens", None)
    engine = GenerateEngine.from_model(model, tokenizer, **generate_kwargs)
    return translate(engine, lines, num_beams, n_best, batch_size, max_new_tokens, progress)

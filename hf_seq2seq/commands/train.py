"""``hf-seq2seq train``: :func:`hf_seq2seq.training.loop.train_main` (the options of ``scripts/train.py``), with its
messages and ``--help`` naming ``hf-seq2seq train``."""

from __future__ import annotations

from collections.abc import Sequence


def train_main(argv: Sequence[str] | None = None) -> int:
    from ..training.loop import train_main as run

    return run(None if argv is None else list(argv), prog="hf-seq2seq train")

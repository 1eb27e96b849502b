"""``hf-seq2seq train`` (also ``scripts/train.py`` and ``python -m hf_seq2seq.training``): parse the options of
:mod:`hf_seq2seq.training.arguments` (a recipe file and/or flags), run :func:`hf_seq2seq.training.run_training`, and
turn its errors into one line and an exit status."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .common import check_writable


def train_main(argv: Sequence[str] | None = None, prog: str = "hf-seq2seq train") -> int:
    """Train from the command line ``argv`` (``sys.argv[1:]`` when None); ``prog`` names the entry point in messages
    and ``--help``. Returns the exit status: 0 for a completed or interrupted run, 1 for a failed one, 2 for bad
    options."""
    from ..training import parse_args, run_training

    try:
        data_args, model_args, train_args = parse_args(None if argv is None else list(argv), prog=prog)
    except ValueError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    try:
        # the output folder as it ran: the default, the recipe's output_dir or the option; checked before any work
        check_writable({"--output_dir": train_args.output_dir})
        result = run_training(data_args, model_args, train_args)
    except (ValueError, FloatingPointError, OSError) as err:  # CommandError is a ValueError
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    return 0 if result["status"] in ("completed", "interrupted") else 1

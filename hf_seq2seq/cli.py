"""The ``hf-seq2seq`` command line: the table of commands (:data:`COMMANDS`) and :func:`main` live in the
top-level module ``hf_seq2seq_cli`` (the console script), which imports neither this package nor torch, so that
``hf-seq2seq --help`` answers at once. Re-exported here for ``python -m hf_seq2seq.cli`` and the tests."""

from __future__ import annotations

import sys

from hf_seq2seq_cli import COMMANDS, main

__all__ = ["COMMANDS", "main"]

if __name__ == "__main__":
    sys.exit(main())

"""``python -m hf_seq2seq.training``: the same as ``scripts/train.py`` and ``hf-seq2seq train``. An entry point, like
``cli``: the one module of this package that imports from ``commands/``."""

import sys

from ..commands.train import train_main

sys.exit(train_main(prog="python -m hf_seq2seq.training"))

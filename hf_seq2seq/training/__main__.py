"""``python -m hf_seq2seq.training``: the same as ``scripts/train.py``."""

import sys

from .loop import train_main

sys.exit(train_main(prog="python -m hf_seq2seq.training"))

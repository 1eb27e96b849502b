#!/usr/bin/env python
"""Train a seq2seq model: ``python scripts/train.py --config configs/<recipe>.yaml [--option value ...]``.

Also runs under ``accelerate launch [--config_file configs/accelerate/<setup>.yaml] scripts/train.py ...`` for
multi-GPU / multi-node training; the launch config's ``mixed_precision`` applies unless ``--mixed_precision`` is
given, and the run log and ``run_config.json`` record the precision that ran. ``--help`` lists every option; the
loop lives in ``hf_seq2seq/training/loop.py``.
"""

import sys
from pathlib import Path

try:
    from hf_seq2seq.commands.train import train_main
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hf_seq2seq.commands.train import train_main

if __name__ == "__main__":
    sys.exit(train_main(prog="train.py"))

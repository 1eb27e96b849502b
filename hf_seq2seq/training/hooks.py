"""Test hooks, kept out of the training loop's logic (tests/training/test_reliability.py drives them by environment).

- ``HF_SEQ2SEQ_DEBUG_PAUSE="save:N"`` pauses the main process after it has written part of checkpoint N's temporary
  folder (``model.safetensors`` cut to half its size, no ``COMPLETE`` marker); ``"step:N"`` pauses every process in
  the middle of step N (after the backward pass, before the update). The process writes ``OUTPUT_DIR/DEBUG_PAUSED``
  and sleeps, so a test can SIGKILL the run at a known point.
- ``HF_SEQ2SEQ_DEBUG_NAN_AT_STEP=N`` makes the loss of step N NaN once (to test ``--nan_policy skip``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

DEBUG_PAUSE_ENV = "HF_SEQ2SEQ_DEBUG_PAUSE"
DEBUG_NAN_ENV = "HF_SEQ2SEQ_DEBUG_NAN_AT_STEP"


def pause_requested(where: str, step: int) -> bool:
    return os.environ.get(DEBUG_PAUSE_ENV) == f"{where}:{step}"


def pause(output_dir: Path) -> None:
    """Tell the test where we are, then wait to be killed."""
    (output_dir / "DEBUG_PAUSED").write_text(str(os.getpid()))
    while True:
        time.sleep(60)


def maybe_pause_mid_step(step: int, output_dir: Path) -> None:
    if pause_requested("step", step):
        pause(output_dir)


def maybe_cut_checkpoint_write(tmp: Path, step: int, output_dir: Path) -> None:
    """``save:N``: leave checkpoint N's temporary folder as a write cut short, then pause (main process only)."""
    if pause_requested("save", step):
        weights = tmp / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        pause(output_dir)


def nan_step() -> int:
    """The step whose loss the test wants NaN (0: none)."""
    return int(os.environ.get(DEBUG_NAN_ENV, "0") or 0)

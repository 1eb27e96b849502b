"""What the conversion proofs (tests/convert/test_convert_joeynmt.py, test_convert_eole.py) share: finding the
toolkit's own environment, running its commands, reading the Multi30k slice they train on, and cutting a decoded
row where the toolkit's search stops."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import pytest


def toolkit_python(python: Path, module: str, toolkit: str) -> Path:
    """``python`` if it imports ``module``; else the test skips, saying why."""
    if not python.is_file():
        pytest.skip(f"{toolkit}'s virtual environment is absent ({python}): see this module's docstring")
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"{python} cannot import {module}: {probe.stderr.strip().splitlines()[-1:]}")
    return python


def write_slice(root: Path, multi30k: Path, splits: dict) -> dict[str, list[str]]:
    """``splits`` (ours: (Multi30k name, lines)) as ``root/<split>.<lang>`` text files; returns the training lines
    per language, for the toolkit's vocabulary."""
    train = {}
    for split, (name, lines) in splits.items():
        for lang in ("de", "en"):
            with gzip.open(multi30k / f"{name}.{lang}.gz", "rt", encoding="utf-8") as f:
                text = [line.rstrip("\n") for _, line in zip(range(lines), f)]
            (root / f"{split}.{lang}").write_text("\n".join(text) + "\n", encoding="utf-8")
            if split == "train":
                train[lang] = text
    return train


def run(command: list, cwd: Path, timeout: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{command[1:3]} failed:\n{proc.stderr[-3000:]}"


def cut(row: list[int], eos: int, pad: int) -> list[int]:
    """A decoded row without the decoder start token, up to and with the first eos (else without padding)."""
    row = row[1:]
    return row[: row.index(eos) + 1] if eos in row else [t for t in row if t != pad]

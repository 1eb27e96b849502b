"""Former home of the benchmarks' shared code, now ``benchmarks/harness.py``: a thin re-export for
``scripts/bench_generate.py`` until it moves to ``benchmarks/`` too (issue 24)."""

from __future__ import annotations

import sys
from pathlib import Path

_BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")
if _BENCHMARKS not in sys.path:
    sys.path.insert(0, _BENCHMARKS)

from harness import *  # noqa: E402, F403
from harness import ROOT  # noqa: E402, F401  (named for readers and linters; * exports it too)

"""Every documented command runs from a clone (issue 28, "Also"): no document — README.md, the prose under docs/
and the reports the benchmarks and `analyze` wrote there — names a folder of the machine it was written on
(``/work/...``, ``/home/...``); and the benchmark harness records the command it ran with paths relative to the
project root, so a new report cannot bring one back."""

from __future__ import annotations

import re
import sys

import pytest
from conftest import PROJECT_ROOT

TEXT_SUFFIXES = {".md", ".json", ".txt", ".yaml", ".yml", ".html", ".csv", ".sh", ".py"}
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|home)/[\w.-]")
DOCS = [PROJECT_ROOT / "README.md"] + sorted(
    p for p in (PROJECT_ROOT / "docs").rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES
)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_no_document_names_a_folder_of_the_machine(doc):
    text = doc.read_text(encoding="utf-8", errors="replace")
    found = [
        f"line {text.count(chr(10), 0, m.start()) + 1}: {text[m.start() : m.start() + 60].splitlines()[0]}"
        for m in MACHINE_PATH.finditer(text)
    ]
    assert not found, found


def test_the_benchmark_harness_records_paths_relative_to_the_project(tmp_path):
    sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
    try:
        from harness import ROOT, command_line
    finally:
        sys.path.pop(0)
    model = PROJECT_ROOT.parent / "cards" / "transformer_de_en"
    argv = [
        "--models",
        f"trained={model}",
        "--before",
        str(tmp_path),
        f"--out={PROJECT_ROOT}/docs/x",
        "--n",
        "3",
    ]
    line = command_line("bench_x.py", argv)
    assert not [token for token in line.split() if token.startswith("/") or "=/" in token], line
    assert "--models trained=../cards/transformer_de_en" in line and "--out=docs/x --n 3" in line
    assert ROOT == PROJECT_ROOT

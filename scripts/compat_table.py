"""Write one environment's row of CONTRIBUTING.md's compatibility table (what `make test-latest` runs after the suite).

The row says when the suite ran, with which versions of the dependencies that matter most (read from the running
interpreter, i.e. the environment under test), and what it gave (the counts of pytest's JUnit report, or the exit
status alone). The table lives between ``<!-- compat-table: begin -->`` and ``<!-- compat-table: end -->``; the other
environments' rows are kept as they are.

Usage: ``.venv-latest/bin/python scripts/compat_table.py --env latest --exit_status 0 --junit .venv-latest/junit.xml``
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- compat-table: begin -->", "<!-- compat-table: end -->"
ENVIRONMENTS = {
    "lock": "`make test` (requirements/lock.txt; CI gate)",
    "oldest": "`make test-oldest` (requirements/oldest.txt; CI gate)",
    "latest": "`make test-latest` (newest releases, no lock)",
}
PACKAGES = ("torch", "transformers", "tokenizers", "accelerate", "datasets", "huggingface_hub", "safetensors")
PACKAGES += ("evaluate", "sacrebleu", "numpy", "pyarrow", "ctranslate2", "onnxruntime")
HEADER = ["environment", "date", "result", "python", *PACKAGES]


def installed_versions() -> list[str]:
    found = [platform.python_version()]
    for name in PACKAGES:
        try:
            found.append(version(name))
        except PackageNotFoundError:
            found.append("—")
    return found


def result_text(exit_status: int, junit: Path | None) -> str:
    verdict = "**passed**" if exit_status == 0 else f"**failed** (exit {exit_status})"
    if junit is None or not junit.is_file():
        return verdict
    suites = ET.parse(junit).getroot()
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for suite in suites.iter("testsuite"):
        for key in totals:
            totals[key] += int(suite.get(key, 0))
    passed = totals["tests"] - totals["failures"] - totals["errors"] - totals["skipped"]
    return f"{verdict}: {passed} passed, {totals['failures'] + totals['errors']} failed, {totals['skipped']} skipped"


def render(rows: dict[str, list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(rows[env]) + " |" for env in ENVIRONMENTS if env in rows]
    return "\n".join(lines)


def read_rows(block: str) -> dict[str, list[str]]:
    rows = {}
    for line in block.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        env = next((key for key, label in ENVIRONMENTS.items() if cells[0] == label), None)
        if env is not None and len(cells) == len(HEADER):
            rows[env] = cells
    return rows


def update(document: Path, env: str, row: list[str]) -> None:
    text = document.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"compat_table: {document} has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    block, tail = rest.split(END, 1)
    rows = read_rows(block.strip())
    rows[env] = row
    document.write_text(f"{head}{BEGIN}\n{render(rows)}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, choices=list(ENVIRONMENTS))
    parser.add_argument("--exit_status", type=int, required=True, help="pytest's exit status")
    parser.add_argument("--junit", type=Path, default=None, help="pytest's --junitxml report, for the counts")
    parser.add_argument("--document", type=Path, default=ROOT / "CONTRIBUTING.md")
    args = parser.parse_args(argv)
    today = datetime.date.today().isoformat()
    row = [ENVIRONMENTS[args.env], today, result_text(args.exit_status, args.junit), *installed_versions()]
    update(args.document, args.env, row)
    print(f"compat_table: {args.document.name}: {args.env} row written ({row[2]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

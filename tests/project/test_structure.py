"""The tree's structure rules (issue 24; docs/design.md, "Layers and the direction of imports"), checked from the
source text, so that they hold on every torch build and platform:

- ``hf_seq2seq/`` has at most 20 top-level entries: a new concern goes inside the package it belongs to;
- every command's entry point (a function named ``*_main``) lives in ``hf_seq2seq/commands/``, one module each;
- the files that ship to the Hub (``hf_seq2seq/models/``) are plain torch: the CPU inference kernels
  (``torch.ops.mkldnn``...) live in ``hf_seq2seq/inference/cpu_kernels.py`` and are applied at load time.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "hf_seq2seq"
MAX_TOP_LEVEL_ENTRIES = 20
# predicates about the process ("is this the main process?"), not command entry points
NOT_ENTRY_POINTS = ("is_main",)
# what the package's CPU kernels call or are named; none of it may appear in a Hub-shipped file
KERNEL_TEXT = ("torch.ops.mkldnn", "mkldnn", "fast_linear", "cpu_inference")


def _tracked(folder: Path) -> list[str] | None:
    """The files git tracks under ``folder`` (paths relative to it), or None outside a git checkout."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        return None
    out = subprocess.run(
        [git, "ls-files", "--", folder.relative_to(ROOT).as_posix()],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [Path(line).relative_to(folder.relative_to(ROOT)).as_posix() for line in out.splitlines()]


def top_level_entries(folder: Path) -> set[str]:
    """``folder``'s top-level entries: of the files git tracks there, or, outside a checkout (an sdist), of the
    filesystem without ``__pycache__``."""
    tracked = _tracked(folder)
    if tracked is not None:
        return {path.split("/")[0] for path in tracked}
    return {p.name for p in folder.iterdir() if p.name != "__pycache__"}


def test_package_has_at_most_20_top_level_entries():
    entries = top_level_entries(PACKAGE)
    assert {"__init__.py", "models", "commands", "inference", "cli.py"} <= entries, sorted(entries)
    assert len(entries) <= MAX_TOP_LEVEL_ENTRIES, (
        f"hf_seq2seq/ has {len(entries)} top-level entries (at most {MAX_TOP_LEVEL_ENTRIES}; put the new concern "
        f"inside the package it belongs to): {sorted(entries)}"
    )


def entry_points_outside_commands(package: Path) -> list[str]:
    """``path:line name`` of every function (any nesting, sync or async) named ``*_main`` outside ``commands/``."""
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if rel.parts[0] == "commands":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.name.endswith("_main")
                and node.name not in NOT_ENTRY_POINTS
            ):
                found.append(f"{rel.as_posix()}:{node.lineno} {node.name}")
    return found


def test_command_entry_points_live_in_commands(tmp_path):
    # one module per command, each with its entry point (common.py: the option helpers they share)
    commands = [
        p for p in sorted((PACKAGE / "commands").glob("*.py")) if p.stem not in ("__init__", "common")
    ]
    assert {"train", "translate", "serve"} <= {p.stem for p in commands}
    for path in commands:
        names = {
            n.name for n in ast.parse(path.read_text(encoding="utf-8")).body if isinstance(n, ast.FunctionDef)
        }
        assert f"{path.stem}_main" in names, f"commands/{path.name} defines no {path.stem}_main"
    wrong = entry_points_outside_commands(PACKAGE)
    assert not wrong, f"a *_main (a command's entry point) belongs in hf_seq2seq/commands/: {wrong}"
    # the check sees nested and async definitions
    (tmp_path / "commands").mkdir()
    (tmp_path / "commands" / "x.py").write_text("def x_main(argv=None):\n    return 0\n")
    (tmp_path / "lib.py").write_text(
        "class A:\n    async def serve_main(self): ...\n\n    def is_main(self): ...\n"
    )
    assert entry_points_outside_commands(tmp_path) == ["lib.py:2 serve_main"]


@pytest.mark.parametrize("text", KERNEL_TEXT)
def test_hub_shipped_files_carry_no_cpu_kernels(text):
    # every file under models/ (not only the .py files), whatever torch this runs under: the rule is about the text
    shipped = [
        p for p in sorted((PACKAGE / "models").rglob("*")) if p.is_file() and "__pycache__" not in p.parts
    ]
    assert len([p for p in shipped if p.suffix == ".py"]) >= 12
    wrong = [p.name for p in shipped if text in p.read_text(encoding="utf-8", errors="replace")]
    assert not wrong, (
        f"{text!r} in Hub-shipped files (the kernels belong in inference/cpu_kernels.py): {wrong}"
    )

"""The mypy gate on the model code that ships to the Hub (configuration, modeling, attention, image processing):
``[tool.mypy]`` in pyproject.toml names the files and settings; any error fails the suite (issue 14)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT


@pytest.mark.slow
def test_model_code_type_checks():
    pytest.importorskip("mypy")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"mypy found type errors (settings: [tool.mypy] in pyproject.toml):\n{proc.stdout}"
    )

"""Local ``evaluate`` metric modules (sacreBLEU, chrF) that load without the Hub.

``load_metric("sacrebleu")`` is ``evaluate.load(<this folder>/sacrebleu)``: the module files ship inside the package
(``package-data`` in pyproject.toml), so ``evaluate.load`` never needs the network.
"""

from __future__ import annotations

from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent
AVAILABLE_METRICS = ("sacrebleu", "chrf")


def metric_path(name: str) -> str:
    """The folder of a local metric module, usable as ``evaluate.load(metric_path(name))``."""
    if name not in AVAILABLE_METRICS:
        raise ValueError(f"unknown metric {name!r}; valid choices: {', '.join(AVAILABLE_METRICS)}")
    return str(METRICS_DIR / name)


def load_metric(name: str, **kwargs):
    """``evaluate.load`` of the local module ``name`` ("sacrebleu" or "chrf"); kwargs go to ``evaluate.load``."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)

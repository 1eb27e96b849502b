"""Which models ``hf-seq2seq serve`` loads: ``--model NAME=PATH`` (repeatable) or a small YAML file, each loaded once
with :func:`hf_seq2seq.inference.load_engine`.

The engine is read from the folder unless given: an ``hf-seq2seq export`` folder runs on its format's engine
(``ctranslate2``, ``onnxruntime``), a saved model folder on ``torch``. A name of the form ``SRC-TGT`` (``de-en``)
gives the model's languages for LibreTranslate's API; the YAML file can state them for any name::

    models:
      - name: de-en
        path: runs/transformer/best_model
      - name: de-en-int8
        path: out/ct2_int8
        engine: ctranslate2          # optional (read from export.json)
        compute_type: int8           # optional
        source: de                   # optional (from the name)
        target: en
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..inference import ENGINES, load_engine
from .app import ServedModel

PAIR = re.compile(r"^([A-Za-z]{2,3})-([A-Za-z]{2,3})$")
SPEC_KEYS = ("name", "path", "engine", "source", "target", "threads", "compute_type")


@dataclass
class ModelSpec:
    name: str
    path: str
    engine: str = "auto"
    source: str | None = None
    target: str | None = None
    threads: int | None = None
    compute_type: str | None = None

    def __post_init__(self):
        if self.engine not in ("auto", *ENGINES):
            raise ValueError(
                f"--engine {self.engine!r} is invalid; valid choices: auto, {', '.join(ENGINES)}"
            )
        match = PAIR.match(self.name)
        if match and self.source is None and self.target is None:
            self.source, self.target = match.group(1).lower(), match.group(2).lower()


def parse_model_option(value: str) -> ModelSpec:
    """``NAME=PATH`` (or a bare ``PATH``: the folder's name is the model's name)."""
    name, sep, path = value.partition("=")
    if not sep:
        name, path = Path(value).name or value, value
    if not name or not path:
        raise ValueError(
            f"--model {value!r} is invalid; give NAME=PATH, e.g. --model de-en=runs/tr/best_model"
        )
    return ModelSpec(name=name, path=path)


def read_models_file(path: str | Path) -> list[ModelSpec]:
    """The ``models:`` list of a YAML (or JSON) file; one line per problem."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"--models_file {path}: cannot read it: {' '.join(str(err).split())}") from None
    entries = data.get("models") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"--models_file {path}: needs a non-empty list under 'models:'")
    specs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "name" not in entry or "path" not in entry:
            raise ValueError(f"--models_file {path}: models[{i}] needs 'name' and 'path'")
        unknown = sorted(set(entry) - set(SPEC_KEYS))
        if unknown:
            raise ValueError(
                f"--models_file {path}: models[{i}] has unknown keys {unknown}; valid: {SPEC_KEYS}"
            )
        specs.append(ModelSpec(**{k: (str(v) if k in ("name", "path") else v) for k, v in entry.items()}))
    return specs


def detect_engine(path: str | Path) -> str:
    """``auto``: an export folder's engine from its ``export.json``, else ``torch``."""
    info = Path(path) / "export.json"
    if info.is_file():
        fmt = json.loads(info.read_text(encoding="utf-8")).get("format")
        return {"onnx": "onnxruntime", "ctranslate2": "ctranslate2"}.get(fmt, "torch")
    return "torch"


def load_served_model(spec: ModelSpec, threads: int | None = None, device: str = "cpu") -> ServedModel:
    engine_name = detect_engine(spec.path) if spec.engine == "auto" else spec.engine
    engine = load_engine(
        spec.path,
        engine_name,
        spec.threads if spec.threads is not None else threads,
        spec.compute_type,
        device=device,
    )
    return ServedModel(spec.name, engine_name, str(spec.path), engine, spec.source, spec.target)

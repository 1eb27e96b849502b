"""What every exporter and engine shares: reading a saved model folder, refusing what cannot be exported with one
clear line, and the files copied beside an export so that it translates on its own (tokenizer, generation
settings, a small ``export.json`` saying what the folder holds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

# Our text model types (image captioning is refused: its encoder is a CNN over pixels, not token ids).
FAMILIES = {"transformer_seq2seq": "transformer", "rnn_seq2seq": "rnn"}
CAPTIONING_MODEL_TYPE = "rnn_captioning"
EXPORT_INFO = "export.json"
# Copied from the model folder beside every export, when present.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SIDE_FILES = (*TOKENIZER_FILES, "generation_config.json")
# The `serve` extra: pip package -> what needs it.
ENGINE_PACKAGES = {"ctranslate2": "ctranslate2", "onnx": "onnx", "onnxruntime": "onnxruntime"}


class ExportError(ValueError):
    """A refusal: the message is one line naming the folder, the option or the missing package."""


def require(package: str, purpose: str):
    """Import an optional engine package, or raise :class:`ExportError` saying how to install it."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise ExportError(
            f"{purpose} needs the optional package {package!r}, which is not installed; "
            f'install it with: pip install "hf_seq2seq[serve]"  (or: pip install {ENGINE_PACKAGES[package]})'
        ) from None


def read_model_config(model_dir: str | Path) -> dict:
    """config.json of a saved model folder as a dict; refuses a missing folder, a folder without config.json, a
    captioning model and any model type that is not one of our text families."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ExportError(f"model folder not found: {model_dir}")
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise ExportError(f"{model_dir} is not a saved model folder: it has no config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ExportError(f"{config_file} is not valid JSON: {err}") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type == CAPTIONING_MODEL_TYPE:
        raise ExportError(
            f"{model_dir} holds an image-captioning model ({CAPTIONING_MODEL_TYPE}); export supports the text "
            f"families only ({', '.join(FAMILIES)})"
        )
    if model_type not in FAMILIES:
        raise ExportError(
            f"{config_file} has model_type {model_type!r}; export supports {', '.join(FAMILIES)}"
        )
    if not (model_dir / "tokenizer.json").is_file():
        raise ExportError(
            f"{model_dir} has no tokenizer.json; an export needs the model's tokenizer beside it"
        )
    return config


def prepare_output(out_dir: str | Path, force: bool) -> Path:
    """The output folder, created; refuses a non-empty one unless ``force`` (nothing the user had is lost)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"output path {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ExportError(
            f"output folder {out_dir} is not empty; choose another one or pass --force to overwrite"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def copy_side_files(model_dir: Path, out_dir: Path, info: dict) -> None:
    """Tokenizer and generation settings beside the export, and ``export.json`` describing it."""
    for name in SIDE_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out_dir / name)
    (out_dir / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def read_export_info(export_dir: str | Path) -> dict:
    """``export.json`` of an exported folder; refuses a folder that is not one."""
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise ExportError(f"exported folder not found: {export_dir}")
    info_file = export_dir / EXPORT_INFO
    if not info_file.is_file():
        raise ExportError(
            f"{export_dir} is not an exported folder (no {EXPORT_INFO}); create one with `hf-seq2seq export`"
        )
    return json.loads(info_file.read_text(encoding="utf-8"))

"""What every command shares: loading a saved folder (our model types with the installed code, never remote code
unless asked), reading inputs, the generation options, and the one-line error exit."""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from ..families import CAPTIONING_MODEL_TYPE


# ---------------------------------------------------------------------------------------------------- loading
def _load(model_path: str, device: str = "auto", trust_remote_code: bool = False):
    """The model (eval mode, on ``device``) and tokenizer of a saved folder or Hub repo.

    Our model types load with the installed package's code (``import hf_seq2seq`` registers them), so the code
    files in a folder are never executed unless ``trust_remote_code=True`` (``--trust_remote_code``) is given for
    a model type we do not know. Weights are read from ``model.safetensors`` only (no pickle). Every failure is a
    ``ValueError`` / ``OSError`` naming the folder and the problem.
    """
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    import hf_seq2seq  # noqa: F401  (registers our model types, so local folders load without remote code)

    from ..families import TEXT_MODEL_TYPES
    from ..tokenization import check_tokenizer_fits_model

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    local = Path(model_path)
    if local.exists():
        if not (local / "config.json").is_file():
            raise FileNotFoundError(f"{model_path} is not a saved model folder: it has no config.json")
        try:
            model_type = json.loads((local / "config.json").read_text(encoding="utf-8")).get("model_type")
        except (ValueError, AttributeError) as err:
            raise ValueError(f"{local / 'config.json'} is not a valid JSON object: {err}") from None
        from transformers import CONFIG_MAPPING

        if model_type not in CONFIG_MAPPING and not trust_remote_code:
            raise ValueError(
                f"{local / 'config.json'} has model_type {model_type!r}, which is neither one of ours "
                f"({', '.join(TEXT_MODEL_TYPES)}) nor a type transformers knows; if the folder ships its own "
                "code and you trust it, pass --trust_remote_code"
            )
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        model = AutoModelForSeq2SeqLM.from_pretrained(
            model_path, trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except OSError:
        raise
    except ValueError as err:
        raise ValueError(f"cannot load the model in {model_path}: {err}") from None
    except Exception as err:  # safetensors' SafetensorError (truncated/corrupt file) and friends
        raise ValueError(
            f"cannot load the weights in {model_path}: {type(err).__name__}: {err} "
            "(is model.safetensors truncated or corrupt? save or download it again)"
        ) from None
    check_tokenizer_fits_model(tokenizer, model.config, str(model_path))
    return model.to(device).eval(), tokenizer


def _folder_model_type(model_path: str) -> str | None:
    config = Path(model_path) / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError):
        return None  # _load / _load_captioner report the broken file


def _load_captioner(model_path: str, device: str = "auto", trust_remote_code: bool = False):
    """``(model, image_processor, tokenizer)`` of a saved captioning folder (``save_captioning_folder``), eval mode.

    Like :func:`_load`: our model type loads with the installed code (no remote code), weights from safetensors
    only, and every failure is an ``OSError`` / ``ValueError`` naming the folder.
    """
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    import hf_seq2seq  # noqa: F401  (registers the captioning model and image processor)

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    local = Path(model_path)
    if local.exists() and not (local / "config.json").is_file():
        raise FileNotFoundError(f"{model_path} is not a saved model folder: it has no config.json")
    model_type = _folder_model_type(model_path)
    if local.exists() and model_type != CAPTIONING_MODEL_TYPE and not trust_remote_code:
        raise ValueError(
            f"{model_path} holds a {model_type!r} model, not an image-captioning model ({CAPTIONING_MODEL_TYPE}); "
            "use --text for translation models"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        processor = AutoImageProcessor.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        model = AutoModelForImageTextToText.from_pretrained(
            model_path, trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except OSError:
        raise
    except Exception as err:
        raise ValueError(
            f"cannot load the captioning model in {model_path}: {type(err).__name__}: {err}"
        ) from None
    return model.to(device).eval(), processor, tokenizer


def _open_image(path: str):
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image file not found: {p}")
    try:
        with Image.open(p) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{p} is not a readable image: {err}") from None


# ---------------------------------------------------------------------------------------------------- options
def _generation_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--num_beams", type=int, default=None, help="beam size (default: generation_config.json)"
    )
    parser.add_argument(
        "--max_new_tokens", type=int, default=None, help="longest output (default: generation_config.json)"
    )
    parser.add_argument(
        "--batch_size", type=int, default=32, help="sentences per generate() call (default 32)"
    )
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)"
    )
    _trust_arg(parser)


def _trust_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="run the code files of a model folder/repo whose model_type is not one of ours (off by default: "
        "only enable it for code you trust)",
    )


def _generate_kwargs(args) -> dict:
    return {k: v for k, v in (("num_beams", args.num_beams), ("max_new_tokens", args.max_new_tokens)) if v}


def _read_lines(path: str) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix == ".gz":  # corpora such as Multi30k ship gzip-compressed
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return f.read().splitlines()
    return path.read_text(encoding="utf-8").splitlines()


def _fail(prog: str, err: Exception) -> int:
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 1

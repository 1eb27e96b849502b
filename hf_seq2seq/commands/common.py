"""What every command shares: loading a saved folder (our model types with the installed code, never remote code
unless asked), reading inputs, writing outputs, the generation options, and the one-line error exit."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from ..families import CAPTIONING_MODEL_TYPE

# Files a saved tokenizer leaves in a folder; without any of them AutoTokenizer tries conversions (sentencepiece,
# tiktoken) whose messages do not say what is missing.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class CommandError(ValueError):
    """A bad option or input of a command: the message is the one line the user sees."""


# ---------------------------------------------------------------------------------------------------- loading
def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` if available else ``cpu``; any other value must name a device this machine has."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise CommandError(
            f"--device {device!r} is not a device; valid: auto, cpu, cuda, cuda:N, mps"
        ) from None
    if kind == "cuda":
        index = torch.device(device).index or 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            have = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise CommandError(
                f"--device {device!r}: this machine has {have} CUDA device(s); use --device cpu"
            )
    elif kind == "mps" and not (torch.backends.mps.is_available()):
        raise CommandError(f"--device {device!r}: MPS (Apple GPU) is not available here; use --device cpu")
    elif kind not in ("cpu", "cuda", "mps"):
        raise CommandError(f"--device {device!r} is not supported; valid: auto, cpu, cuda, cuda:N, mps")
    return device


def _looks_like_path(model_path: str) -> bool:
    # A Hub repo id is "name" or "owner/name"; anything else (absolute, ./, ~, deeper) can only be a folder
    p = model_path.replace("\\", "/")
    return p.startswith(("/", ".", "~")) or p.count("/") > 1


def _check_folder(model_path: str) -> str | None:
    """The folder's ``model_type`` (``None`` for a Hub repo id); a one-line error for a path that is not a saved
    model folder: not found, a file given instead of its folder, no config.json, unreadable config, no tokenizer."""
    local = Path(model_path).expanduser()
    if not local.exists():
        if _looks_like_path(model_path):
            raise FileNotFoundError(f"--model {model_path}: folder not found")
        return None  # a Hub repo id: transformers reports what it finds there
    if local.is_file():
        hint = (
            f"; give its folder: --model {local.parent}" if (local.parent / "config.json").is_file() else ""
        )
        raise CommandError(f"--model {model_path} is a file, not a saved model folder{hint}")
    config = local / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{model_path} is not a saved model folder: it has no config.json")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError) as err:
        raise CommandError(f"{config} is not a valid JSON object: {err}") from None
    if not any((local / name).is_file() for name in TOKENIZER_FILES) and not any(local.glob("*.spm")):
        raise FileNotFoundError(
            f"{model_path} has no tokenizer ({' / '.join(TOKENIZER_FILES)} missing); save the tokenizer into the "
            "folder with tokenizer.save_pretrained"
        )
    return model_type


def _load(
    model_path: str,
    device: str = "auto",
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
):
    """The model (eval mode, on ``device``) and tokenizer of a saved folder or Hub repo.

    Our model types load with the installed package's code (``import hf_seq2seq`` registers them), so the code
    files in a folder are never executed unless ``trust_remote_code=True`` (``--trust_remote_code``) is given for
    a model type we do not know. Weights are read from ``model.safetensors`` only (no pickle). Every failure is a
    ``ValueError`` / ``OSError`` naming the folder and the problem.
    """
    device = resolve_device(device)
    _refuse_export_folder(Path(model_path).expanduser())
    model_type = _check_folder(model_path)
    from transformers import CONFIG_MAPPING, AutoModelForSeq2SeqLM, AutoTokenizer

    import hf_seq2seq  # noqa: F401  (registers our model types, so local folders load without remote code)

    from ..families import TEXT_MODEL_TYPES
    from ..tokenization import check_tokenizer_fits_model

    if model_type == CAPTIONING_MODEL_TYPE:
        raise CommandError(
            f"{model_path} is an image-captioning model: use `hf-seq2seq caption` or `plot-attention --image`"
        )
    local = Path(model_path).expanduser()
    if local.exists() and model_type not in CONFIG_MAPPING and not trust_remote_code:
        raise CommandError(
            f"{local / 'config.json'} has model_type {model_type!r}, which is neither one of ours "
            f"({', '.join(TEXT_MODEL_TYPES)}) nor a type transformers knows; if the folder ships its own "
            "code and you trust it, pass --trust_remote_code"
        )
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    _quiet_loading()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        model = AutoModelForSeq2SeqLM.from_pretrained(
            model_path, trust_remote_code=trust_remote_code, use_safetensors=True, **extra
        )
    except OSError:
        raise
    except ValueError as err:
        if "Unrecognized configuration class" in str(err):  # transformers lists every seq2seq class here
            raise CommandError(
                f"{model_path} holds a {model_type!r} model, which is not a sequence-to-sequence (translation) model"
            ) from None
        raise CommandError(f"cannot load the model in {model_path}: {err}") from None
    except Exception as err:  # safetensors' SafetensorError (truncated/corrupt file) and friends
        raise CommandError(
            f"cannot load the weights in {model_path}: {type(err).__name__}: {err} "
            "(is model.safetensors truncated or corrupt? save or download it again)"
        ) from None
    check_tokenizer_fits_model(tokenizer, model.config, str(model_path))
    return model.to(device).eval(), tokenizer


def _refuse_export_folder(local: Path) -> None:
    """An ``hf-seq2seq export`` folder is run by its engine, not loaded as a PyTorch model."""
    info = local / "export.json"
    if not info.is_file():
        return
    try:
        fmt = json.loads(info.read_text(encoding="utf-8")).get("format", "?")
    except (ValueError, AttributeError):
        fmt = "?"
    engine = {"onnx": "onnxruntime"}.get(fmt, fmt)
    raise CommandError(
        f"{local} is an exported ({fmt}) folder, not a PyTorch model folder: "
        f"translate it with --engine {engine}, or give the model folder it was exported from"
    )


def _quiet_loading() -> None:
    # transformers' "Loading weights" bar takes a line of stderr on every command for a sub-second load
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _folder_model_type(model_path: str) -> str | None:
    config = Path(model_path) / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError):
        return None  # _load / _load_captioner report the broken file


def _load_captioner(
    model_path: str,
    device: str = "auto",
    trust_remote_code: bool = False,
    text_hint: str = "translate text with `hf-seq2seq translate`",
):
    """``(model, image_processor, tokenizer)`` of a saved captioning folder (``save_captioning_folder``), eval mode.

    Like :func:`_load`: our model type loads with the installed code (no remote code), weights from safetensors
    only, and every failure is an ``OSError`` / ``ValueError`` naming the folder. ``text_hint`` says what to do
    with a translation model instead.
    """
    device = resolve_device(device)
    model_type = _check_folder(model_path)
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    import hf_seq2seq  # noqa: F401  (registers the captioning model and image processor)

    _quiet_loading()
    if model_type is not None and model_type != CAPTIONING_MODEL_TYPE and not trust_remote_code:
        raise CommandError(
            f"{model_path} holds a {model_type!r} model, not an image-captioning model ({CAPTIONING_MODEL_TYPE}); "
            + text_hint
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
        raise CommandError(
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
        raise CommandError(f"{p} is not a readable image: {err}") from None


# ---------------------------------------------------------------------------------------------------- options
def positive_int(value: str) -> int:
    """argparse type: an integer >= 1 (0 or a negative beam size / length / batch is a mistake, not a default)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def _generation_args(parser: argparse.ArgumentParser, unit: str = "sentences") -> None:
    parser.add_argument(
        "--num_beams", type=positive_int, default=None, help="beam size (default: generation_config.json)"
    )
    parser.add_argument(
        "--max_new_tokens",
        type=positive_int,
        default=None,
        help="longest output (default: generation_config.json)",
    )
    parser.add_argument(
        "--batch_size", type=positive_int, default=32, help=f"{unit} per generate() call (default 32)"
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto: cuda if available)"
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
    pairs = (("num_beams", args.num_beams), ("max_new_tokens", args.max_new_tokens))
    return {k: v for k, v in pairs if v is not None}


# ---------------------------------------------------------------------------------------------------- input
def _decode_lines(raw_lines, where: str) -> list[str]:
    """UTF-8 lines without their newline; a byte-order mark on the first line is dropped (it is not text: left in,
    it changes the first line's tokens); a line that is not UTF-8 is an error naming ``where`` and the line."""
    lines = []
    for lineno, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CommandError(
                f"{where}, line {lineno}: text is not valid UTF-8 ({e.reason} at byte {e.start}); "
                "convert it, e.g. iconv -f latin1 -t utf-8"
            ) from None
        if lineno == 1:
            line = line.removeprefix("\ufeff")
        lines.append(line.rstrip("\r\n"))
    return lines


def _read_lines(path: str) -> list[str]:
    """The lines of a UTF-8 text file (``.gz`` too), as the training readers read them."""
    import gzip

    path = Path(path)
    if path.is_dir():
        raise CommandError(f"{path} is a folder, not a text file")
    if not path.exists():  # not is_file(): a pipe such as <(zcat file.gz) or /dev/stdin is a fine input
        raise FileNotFoundError(f"{path} does not exist")
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        return _decode_lines(f, str(path))


def _read_stdin() -> list[str]:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # a text stream that was put in place of stdin (tests, notebooks)
        return [
            line.removeprefix("\ufeff") if i == 0 else line
            for i, line in enumerate(sys.stdin.read().splitlines())
        ]
    return _decode_lines(buffer.read().splitlines(), "<stdin>")


# ---------------------------------------------------------------------------------------------------- output
def check_outputs(outputs: dict[str, str | None], inputs: dict[str, str | None]) -> None:
    """Refuse an output file that is one of the inputs (or another output), or a folder: the user's text is never
    overwritten by what is computed from it."""
    seen: dict[Path, str] = {}
    for option, value in inputs.items():
        if value is not None:
            seen[Path(value).expanduser().resolve()] = option
    for option, value in outputs.items():
        if value is None:
            continue
        path = Path(value).expanduser().resolve()
        if path in seen:
            raise CommandError(f"{option} {value} is also given as {seen[path]}: choose another output file")
        if path.is_dir():
            raise CommandError(f"{option} {value} is a folder; give a file name")
        seen[path] = option


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``: a failure or an interrupt
    leaves the old file (or none), never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """A temporary path beside ``path`` (same suffix, so writers pick the same format) that is renamed to ``path``
    when the block succeeds and removed when it fails: for writers that take a file name (matplotlib)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _fail(prog: str, err: Exception) -> int:
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 1

"""The one loader: a saved model folder (or Hub repo) for the ``torch`` engine, an export folder for
``ctranslate2`` / ``onnxruntime``, a captioning folder for ``caption``.

Our model types load with the installed package's code (``import hf_seq2seq`` registers them), so the code files in
a folder are never executed unless ``trust_remote_code=True`` is given for a model type we do not know. Weights are
read from ``model.safetensors`` only (no pickle). A decoding method stored with a folder
(``custom_generate/generate.py``) is replaced by the installed one when the package ships it (eole's beam search),
and refused without ``trust_remote_code`` otherwise. Every failure is a ``ValueError`` (:class:`ModelLoadError`,
:class:`~hf_seq2seq.export.common.ExportError`) or ``OSError`` whose one line names the folder and the problem.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from ..families import CAPTIONING_MODEL_TYPE
from .cpu_kernels import optimize_for_cpu_inference
from .engines import CTranslate2Engine, Engine, GenerateEngine, max_source_length, max_target_length

ENGINES = ("torch", "ctranslate2", "onnxruntime")

# Files a saved tokenizer leaves in a folder; without any of them AutoTokenizer tries conversions (sentencepiece,
# tiktoken) whose messages do not say what is missing.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class ModelLoadError(ValueError):
    """A folder that cannot be loaded as asked: the message is the one line the user sees."""


# ---------------------------------------------------------------------------------------------------- checks
def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` if available else ``cpu``; any other value must name a device this machine has."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise ModelLoadError(
            f"--device {device!r} is not a device; valid: auto, cpu, cuda, cuda:N, mps"
        ) from None
    if kind == "cuda":
        index = torch.device(device).index or 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            have = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise ModelLoadError(
                f"--device {device!r}: this machine has {have} CUDA device(s); use --device cpu"
            )
    elif kind == "mps" and not (torch.backends.mps.is_available()):
        raise ModelLoadError(f"--device {device!r}: MPS (Apple GPU) is not available here; use --device cpu")
    elif kind not in ("cpu", "cuda", "mps"):
        raise ModelLoadError(f"--device {device!r} is not supported; valid: auto, cpu, cuda, cuda:N, mps")
    return device


def _looks_like_path(model_path: str) -> bool:
    # A Hub repo id is "name" or "owner/name"; anything else (absolute, ./, ~, deeper) can only be a folder
    p = model_path.replace("\\", "/")
    return p.startswith(("/", ".", "~")) or p.count("/") > 1


def _check_hub_reachable(repo_id: str) -> None:
    """For a name that is no folder here and may be a Hub repository id: one quick request to the Hub, so that an
    unreachable Hub (or a mistyped relative folder, read as a repository id) fails at once in one line rather than
    after a minute of transformers' retries. Offline mode and repositories in the local cache are left to
    transformers; any answer from the Hub (found, not found, gated) too."""
    import os

    from huggingface_hub import constants, model_info, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return
    try:
        if try_to_load_from_cache(repo_id, "config.json") is not None:
            return
    except ValueError:  # not a valid repository id: transformers says so
        return
    try:
        model_info(repo_id, timeout=10)
    except HfHubHTTPError:
        return  # the Hub answered: transformers says what it found
    except Exception as err:  # a network error (DNS, refused, timeout): the Hub cannot be asked
        raise FileNotFoundError(
            f"--model {repo_id}: no such folder here ({os.getcwd()}), and the Hub, where it would be a repository "
            f"id, cannot be reached ({type(err).__name__}: {err})"
        ) from None


def folder_model_type(model_path: str | Path) -> str | None:
    """The ``model_type`` in a folder's config.json; ``None`` when there is none to read (a Hub repo id, a missing
    or broken file: the loaders report those)."""
    config = Path(model_path) / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError):
        return None


def check_model_folder(model_path: str | Path) -> str | None:
    """The folder's ``model_type`` (``None`` for a Hub repo id); a one-line error for a path that is not a saved
    model folder: not found, a file given instead of its folder, no config.json, unreadable config, no tokenizer."""
    model_path = str(model_path)
    local = Path(model_path).expanduser()
    if not local.exists():
        if _looks_like_path(model_path) or (local.parent != Path(".") and local.parent.is_dir()):
            raise FileNotFoundError(f"--model {model_path}: folder not found")
        _check_hub_reachable(model_path)
        return None  # a Hub repo id: transformers reports what it finds there
    if local.is_file():
        hint = (
            f"; give its folder: --model {local.parent}" if (local.parent / "config.json").is_file() else ""
        )
        raise ModelLoadError(f"--model {model_path} is a file, not a saved model folder{hint}")
    config = local / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{model_path} is not a saved model folder: it has no config.json")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError) as err:
        raise ModelLoadError(f"{config} is not a valid JSON object: {err}") from None
    if not any((local / name).is_file() for name in TOKENIZER_FILES) and not any(local.glob("*.spm")):
        raise FileNotFoundError(
            f"{model_path} has no tokenizer ({' / '.join(TOKENIZER_FILES)} missing); save the tokenizer into the "
            "folder with tokenizer.save_pretrained"
        )
    return model_type


def _refuse_export_folder(local: Path) -> None:
    """An ``hf-seq2seq export`` folder is run by its engine, not loaded as a PyTorch model."""
    from ..export.common import EXPORT_INFO, ExportError

    info = local / EXPORT_INFO
    if not info.is_file():
        return
    try:
        fmt = json.loads(info.read_text(encoding="utf-8")).get("format", "?")
    except (ValueError, AttributeError):
        fmt = "?"
    engine = {"onnx": "onnxruntime"}.get(fmt, fmt)
    raise ExportError(
        f"{local} is an exported ({fmt}) folder, not a PyTorch model folder: "
        f"translate it with --engine {engine}, or give the model folder it was exported from"
    )


def _quiet_loading() -> None:
    # transformers' "Loading weights" bar takes a line of stderr on every command for a sub-second load
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


# ---------------------------------------------------------------------------------------------------- loaders
def load_model(
    model_path: str | Path,
    device: str = "auto",
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    cpu_kernels: bool = True,
):
    """``(model, tokenizer)`` of a saved translation folder or Hub repo, in eval mode on ``device``.

    ``cpu_kernels``: on CPU, apply the package's CPU inference optimisation
    (:func:`hf_seq2seq.inference.cpu_kernels.optimize_for_cpu_inference`) to the loaded model; the saved model code
    itself is plain torch.
    """
    model_path = str(model_path)
    device = resolve_device(device)
    _refuse_export_folder(Path(model_path).expanduser())
    model_type = check_model_folder(model_path)
    from transformers import CONFIG_MAPPING, AutoModelForSeq2SeqLM, AutoTokenizer

    import hf_seq2seq  # noqa: F401  (registers our model types, so local folders load without remote code)

    from ..families import TEXT_MODEL_TYPES
    from ..tokenization import check_tokenizer_fits_model

    if model_type == CAPTIONING_MODEL_TYPE:
        raise ModelLoadError(
            f"{model_path} is an image-captioning model: use `hf-seq2seq caption` or `plot-attention --image`"
        )
    local = Path(model_path).expanduser()
    if local.exists() and model_type not in CONFIG_MAPPING and not trust_remote_code:
        raise ModelLoadError(
            f"{local / 'config.json'} has model_type {model_type!r}, which is neither one of ours "
            f"({', '.join(TEXT_MODEL_TYPES)}) nor a type transformers knows; if the folder ships its own "
            "code and you trust it, pass --trust_remote_code"
        )
    search = _stored_search(local, trust_remote_code)
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
            raise ModelLoadError(
                f"{model_path} holds a {model_type!r} model, which is not a sequence-to-sequence (translation) model"
            ) from None
        raise ModelLoadError(f"cannot load the model in {model_path}: {err}") from None
    except Exception as err:  # safetensors' SafetensorError (truncated/corrupt file) and friends
        raise ModelLoadError(
            f"cannot load the weights in {model_path}: {type(err).__name__}: {err} "
            "(is model.safetensors truncated or corrupt? save or download it again)"
        ) from None
    check_tokenizer_fits_model(tokenizer, model.config, model_path)
    model = model.to(device).eval()
    if cpu_kernels and model.device.type == "cpu":
        model = optimize_for_cpu_inference(model)
    if search is not None:  # the installed copy of the search the folder stores: no code of the folder runs
        model.generate = functools.partial(search, model=model)
    return model, tokenizer


def _stored_search(folder: Path, trust_remote_code: bool):
    """The installed ``generate`` for the decoding method stored in ``folder/custom_generate/generate.py``
    (transformers' place for one; ``convert --from eole`` stores eole's beam search there), or None: none stored, or
    one this package does not ship, which runs (transformers loads it) only with ``trust_remote_code``."""
    from . import search

    name = search.stored_search(folder)
    if name is None or (name not in search.SEARCHES and trust_remote_code):
        return None
    if name not in search.SEARCHES:
        raise ModelLoadError(
            f"{folder / search.CUSTOM_GENERATE_FILE} is a decoding method hf_seq2seq does not ship "
            f"(it ships {', '.join(search.SEARCHES)}); if you trust its code, pass --trust_remote_code"
        )
    return functools.partial(search.generate, search=name)


def load_captioner(
    model_path: str | Path,
    device: str = "auto",
    trust_remote_code: bool = False,
    text_hint: str = "translate text with `hf-seq2seq translate`",
    cpu_kernels: bool = True,
):
    """``(model, image_processor, tokenizer)`` of a saved captioning folder (``save_captioning_folder``), eval mode.

    Like :func:`load_model`: our model type loads with the installed code (no remote code), weights from
    safetensors only, and every failure is an ``OSError`` / ``ValueError`` naming the folder. ``text_hint`` says
    what to do with a translation model instead. ``cpu_kernels``: as in :func:`load_model` (the captioning decoder
    is an RNN decoder with additive attention: its ``nn.Linear``, ``nn.GRU`` / ``nn.LSTM`` and scores are swapped).
    """
    model_path = str(model_path)
    device = resolve_device(device)
    model_type = check_model_folder(model_path)
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    import hf_seq2seq  # noqa: F401  (registers the captioning model and image processor)

    _quiet_loading()
    if model_type is not None and model_type != CAPTIONING_MODEL_TYPE and not trust_remote_code:
        raise ModelLoadError(
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
        raise ModelLoadError(
            f"cannot load the captioning model in {model_path}: {type(err).__name__}: {err}"
        ) from None
    model = model.to(device).eval()
    if cpu_kernels and model.device.type == "cpu":
        model = optimize_for_cpu_inference(model)
    return model, processor, tokenizer


def load_engine(
    path: str | Path,
    engine: str = "torch",
    threads: int | None = None,
    compute_type: str | None = None,
    *,
    device: str = "auto",
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    cpu_kernels: bool = True,
    **generate_kwargs,
) -> Engine:
    """The engine for ``path``, loaded once and reused for every :meth:`~Engine.translate` call.

    engine: ``torch`` (a saved model folder or Hub repo, through :func:`load_model`), ``ctranslate2`` or
        ``onnxruntime`` (a folder written by ``hf-seq2seq export`` in the matching format; CPU).
    threads: intra-op threads (torch / onnxruntime / CTranslate2 ``intra_threads``); None keeps each default.
    compute_type: CTranslate2 only (``float32``, ``int8``, ...; default: the stored weight type).
    device, trust_remote_code, attn_implementation, cpu_kernels: the ``torch`` engine only (see :func:`load_model`).
    generate_kwargs: further ``generate()`` options of a ``torch`` / ``onnxruntime`` engine (``early_stopping``...).
    """
    from ..export.common import ExportError, read_export_info

    if engine not in ENGINES:
        raise ExportError(f"--engine={engine!r} is invalid; valid choices: {', '.join(ENGINES)}")
    if engine == "torch":
        model, tokenizer = load_model(path, device, trust_remote_code, attn_implementation, cpu_kernels)
        if threads:
            import torch

            torch.set_num_threads(threads)
        return GenerateEngine.from_model(model, tokenizer, Path(path), **generate_kwargs)
    from transformers import AutoTokenizer

    path = Path(path)
    info = read_export_info(path)
    wanted = "onnx" if engine == "onnxruntime" else "ctranslate2"
    if info.get("format") != wanted:
        raise ExportError(
            f"{path} holds a {info.get('format')!r} export; --engine {engine} needs a --format {wanted} export"
        )
    tokenizer = AutoTokenizer.from_pretrained(path)
    limit = max_source_length(info.get("max_source_length"), tokenizer)
    if engine == "onnxruntime":
        from ..export.onnx_model import ORTModelForSeq2SeqLM

        model = ORTModelForSeq2SeqLM.from_export(path, threads=threads)
        loaded: Engine = GenerateEngine(path, tokenizer, limit, model, **generate_kwargs)
    else:
        loaded = CTranslate2Engine(path, tokenizer, limit, _generation_config(path), threads, compute_type)
    loaded.max_target_length = max_target_length(info.get("model_type"), info.get("max_source_length"))
    return loaded


def _generation_config(path: Path):
    from transformers import GenerationConfig

    return GenerationConfig.from_pretrained(path) if (path / "generation_config.json").is_file() else None

"""Saving a shareable model folder (remote code, custom pipeline, model card) and pushing it to the Hub.

A folder written by `save_model_folder` loads anywhere transformers is installed, without hf_seq2seq:

    model = AutoModelForSeq2SeqLM.from_pretrained(folder_or_repo, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder_or_repo, trust_remote_code=True)
    translate = pipeline(model=folder_or_repo, trust_remote_code=True)   # our "text2text" pipeline

`push_model_folder` uploads such a folder as one commit (``HfApi.create_repo`` + ``upload_folder``).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers.dynamic_module_utils import custom_object_save

from .families import FAMILIES
from .models.pipeline_text2text import TASK, Text2TextPipeline

NOT_RECORDED = "not recorded"
CARD_TEMPLATES = Path(__file__).resolve().parent / "model_cards"
TEMPLATE_FOR_MODEL_TYPE = {f.model_type: f.card_template for f in FAMILIES.values()}
# What each model type is for on the Hub: the pipeline tag, the model-index task, the default tags and the metrics
# of model-index as (card key, metric name, metric type, decimals). Model types not listed are translation models.
CARD_TASKS = {
    "translation": {
        "pipeline_tag": "translation",
        "task_name": "Translation",
        "tags": ("hf_seq2seq", "seq2seq", "translation"),
        "metrics": (("bleu", "BLEU", "sacrebleu", 2), ("chrf", "chrF", "chrf", 2)),
    },
    "image-to-text": {
        "pipeline_tag": "image-to-text",
        "task_name": "Image Captioning",
        "tags": ("hf_seq2seq", "image-captioning", "image-to-text", "show-attend-and-tell"),
        "metrics": (
            ("bleu", "BLEU-4", "sacrebleu", 2),
            ("chrf", "chrF", "chrf", 2),
            ("exact_match", "Exact match", "exact_match", 2),
            ("cider", "CIDEr-D", "cider", 3),
        ),
    },
}
TASK_FOR_MODEL_TYPE = {f.model_type: f.card_task for f in FAMILIES.values() if f.card_task != "translation"}
IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif")
# Generation defaults written to generation_config.json when the model's generation config leaves them unset.
GENERATION_DEFAULTS = {"num_beams": 4, "max_new_tokens": 128}
# Files a folder must hold to be pushed: without them nothing loads back.
REQUIRED_FILES = ("config.json", "model.safetensors")
# The evaluation table of a translation card sits between these markers, so that `hf-seq2seq evaluate
# --update_card` can add or replace one split's row and leave every other line of the card as it was.
EVAL_TABLE_BEGIN = (
    "<!-- hf_seq2seq evaluation table: `hf-seq2seq evaluate --update_card` adds or replaces rows -->"
)
EVAL_TABLE_END = "<!-- end of the hf_seq2seq evaluation table -->"
EVAL_TABLE_HEADER = (
    "| split | sentences | beams | BLEU | chrF | BLEU signature | chrF signature |\n"
    "|---|---:|---:|---:|---:|---|---|"
)
# How many example sentences a card's attention figure tries before it takes the one with the shortest translation
EXAMPLE_CANDIDATES = 5
# --mixed_precision as the card's hardware line names it
PRECISION_NAMES = {"no": "fp32", "fp16": "fp16 mixed precision", "bf16": "bf16 mixed precision"}
# A path of the author's machine inside free text (a recipe, an option value): an absolute POSIX path (a "/" that does
# not continue a word, a URL or a relative path), a relative path that starts by leaving the working directory
# ("../"), or a Windows drive path.
_ABSOLUTE_PATH = re.compile(
    r"(?<![\w.:/~-])(?:/|(?:\.\./)+)[^\s'\"`,;()\[\]{}<>|]+|\b[A-Za-z]:\\[^\s'\"`,;|]+"
)


# ---------------------------------------------------------------------------------------------------- saving
def save_model_folder(
    model,
    tokenizer,
    output_dir,
    card: Mapping | None = None,
    images: Mapping | None = None,
    generation_defaults: Mapping | None = None,
) -> Path:
    """Write a self-contained model folder and return its path.

    The folder holds ``config.json`` (with ``auto_map`` and ``custom_pipelines``), the code files
    (``configuration_*.py``, ``modeling_*.py``, ``attention.py``, ``pipeline_text2text.py``),
    ``generation_config.json``, ``model.safetensors``, the tokenizer files, the images and ``README.md``.

    Args:
        model, tokenizer: the trained model (one of our families) and its tokenizer.
        card: what the trainer knows, for the model card (see `render_model_card`); ``None`` renders a card with
            every fact "not recorded". With ``card["history"]`` (a list of ``{"step", "train_loss", "valid_loss",
            "bleu"}``) a learning curve is drawn; with ``card["example"]`` (a source sentence) an attention heatmap
            (of the first of ``example`` and ``card["examples"]`` whose translation ends with ``</s>``).
        images: ``{"attention": path, "learning_curve": path, ...}`` image files to copy into the folder and embed
            in the card (they win over the ones drawn from ``card``).
        generation_defaults: generation settings written where the model's generation config leaves them unset
            (default `GENERATION_DEFAULTS`). They are applied to ``model.generation_config`` in place, so the
            in-memory model generates what the saved one will.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    card = dict(card or {})

    # Remote code: config.json gets auto_map, the configuration/modeling files (and their relative imports,
    # attention.py) are copied beside the weights by save_pretrained (the classes register themselves for their
    # Auto classes; the model class only while it saves, so generate() is not slowed by a remote-code check).
    # The custom pipeline, as Pipeline.save_pretrained records it: config.custom_pipelines + the module file.
    _record_pipeline(model, output_dir, TASK, Text2TextPipeline, "AutoModelForSeq2SeqLM", "text")

    _apply_generation_defaults(
        model, GENERATION_DEFAULTS if generation_defaults is None else generation_defaults
    )
    max_source = getattr(model.config, "max_position_embeddings", None)
    if max_source and (tokenizer.model_max_length is None or tokenizer.model_max_length > max_source):
        tokenizer.model_max_length = int(max_source)  # so truncation=True cuts where the model needs it

    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)

    image_names = _write_images(model, tokenizer, output_dir, card, images)
    render_model_card(model, card, image_names).save(output_dir / "README.md")
    return output_dir


def _record_pipeline(model, output_dir: Path, task: str, pipeline_cls, auto_class: str, kind: str) -> None:
    """What ``Pipeline.save_pretrained`` records for a custom pipeline: ``config.custom_pipelines`` and the module
    file beside the weights, so ``pipeline(model=folder, trust_remote_code=True)`` finds the task."""
    module = pipeline_cls.__module__.split(".")[-1]
    model.config.custom_pipelines = {
        task: {"impl": f"{module}.{pipeline_cls.__name__}", "pt": [auto_class], "type": kind}
    }
    custom_object_save(pipeline_cls, output_dir)


def save_captioning_folder(
    model, tokenizer, image_processor, output_dir, card: Mapping | None = None, images: Mapping | None = None
) -> Path:
    """Write config (``auto_map``, ``custom_pipelines``), code files, weights, generation config, tokenizer, image
    processor and the ``README.md`` model card, so that ``AutoModelForImageTextToText`` / ``AutoImageProcessor`` /
    ``AutoTokenizer`` / ``pipeline(model=folder)`` load it with ``trust_remote_code=True`` where hf_seq2seq is not
    installed.

    Args:
        card: what the trainer knows, rendered into ``model_cards/rnn_captioning.md`` by
            :func:`hf_seq2seq.hub.render_model_card` (every key optional, missing facts render as "not recorded"):
            the text cards' keys (``model_name``, ``repo_id``, ``license``, ``dataset``/``dataset_name``, ``tags``,
            ``languages``, ``bleu``, ``chrf`` and their ``*_signature``, ``eval_split``, ``num_eval_sentences``
            (images here), ``recipe``, ``training_args``, ``steps``, ``epochs``, ``train_time``, ``hardware``,
            ``history``) plus ``exact_match``, ``cider``, ``num_references``; ``example`` is an *image* (PIL or a
            path): it is stored as ``example.png``, captioned, and the attention over it drawn as ``attention.png``.
        images: ``{"kind": path}`` image files to copy in and embed (they win over the drawn ones).
    """
    from .models.pipeline_image_captioning import TASK, ImageCaptioningPipeline

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    card = dict(card or {})
    # auto_map and the code files: the config, model and image processor classes register themselves (see
    # save_model_folder)
    _record_pipeline(model, output_dir, TASK, ImageCaptioningPipeline, "AutoModelForImageTextToText", "image")
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    image_processor.save_pretrained(output_dir)
    image_names = _write_images(model, tokenizer, output_dir, card, images, image_processor=image_processor)
    render_model_card(model, card, image_names).save(output_dir / "README.md")
    return output_dir


def _apply_generation_defaults(model, defaults: Mapping) -> None:
    config = model.generation_config
    already_set = config.to_diff_dict()
    for key, value in defaults.items():
        if key == "max_new_tokens" and ("max_length" in already_set or "max_new_tokens" in already_set):
            continue
        if key not in already_set:
            setattr(config, key, value)


def _write_images(
    model, tokenizer, output_dir: Path, card: dict, images: Mapping | None, image_processor=None
) -> dict[str, str]:
    """Copy/draw the card's images into the folder; returns ``{kind: file name}``.

    For a captioning model (``image_processor`` given) ``card["example"]`` is an image (PIL or a path): it is stored
    as ``example.png`` and captioned, the attention of every word is drawn over it (``attention.png``) and the
    caption is put into ``card["example_output"]`` unless the card already has one.
    """
    from . import plotting

    names: dict[str, str] = {}
    if card.get("history"):
        names["learning_curve"] = plotting.plot_learning_curve(
            card["history"], output_dir / "learning_curve.png"
        ).name
    if image_processor is not None:
        if card.get("example") is not None:
            example, attention, caption = plotting.draw_example_attention(
                model, image_processor, tokenizer, card["example"], output_dir
            )
            names.update(example=example.name, attention=attention.name)
            card.setdefault("example_output", caption)
    # A model without attention (RNN attention="none", the Sutskever/Cho model) has no alignment to draw.
    # The example is the first of card["example"], card["examples"] whose translation ends (a runaway one is a
    # tall, unreadable figure), and the figure shows at most CARD_ATTENTION_TOKENS tokens per axis.
    elif card.get("example") and getattr(model.config, "attention", None) != "none":
        candidates = [card["example"], *(card.get("examples") or ())][:EXAMPLE_CANDIDATES]
        text, matrix, src, tgt = plotting.example_attention(model, tokenizer, candidates)
        card["example"] = text
        names["attention"] = plotting.plot_attention(
            matrix, src, tgt, output_dir / "attention.png", text, max_tokens=plotting.CARD_ATTENTION_TOKENS
        ).name
    for kind, src_path in (images or {}).items():
        src_path = Path(src_path)
        if not src_path.is_file():
            raise FileNotFoundError(f"image {kind!r}: {src_path} does not exist")
        if src_path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"image {kind!r}: {src_path} is not an image ({', '.join(IMAGE_SUFFIXES)})")
        dest = output_dir / f"{kind}{src_path.suffix.lower()}"
        if src_path.resolve() != dest.resolve():
            shutil.copyfile(src_path, dest)
        names[kind] = dest.name
    return names


# ------------------------------------------------------------------------------------------- what a card may show
def public_path(value, cwd=None) -> str:
    """``value`` as a card may show it: a path becomes relative to the working directory when it lies inside it,
    else its base name (``/home/alice/data/train`` and ``../shared/data/train`` describe the author's machine, not
    the model); anything else (a relative path inside the working directory, a Hub id) is returned unchanged."""
    text = str(value)
    if PureWindowsPath(text).drive and PureWindowsPath(text).is_absolute():
        return PureWindowsPath(text).name
    cwd = Path(cwd or os.getcwd())
    if not PurePosixPath(text).is_absolute():
        if os.path.normpath(text).split("/")[0] != "..":
            return text
        text = os.path.join(cwd, text)  # leaves the working directory, maybe to come back into it
    try:
        relative = Path(os.path.normpath(text)).relative_to(cwd)
    except ValueError:
        return PurePosixPath(text).name
    return relative.as_posix() if relative.parts else "."


def scrub_paths(text: str, cwd=None) -> str:
    """``text`` with every absolute path, and every relative one that starts with ``../``, shown by `public_path`
    (recipes and option values may hold some)."""
    return _ABSOLUTE_PATH.sub(lambda m: public_path(m.group(0), cwd), str(text))


def public_training_args(args: Mapping, cwd=None) -> dict:
    """The training options for the card's table: every path relative to the working directory or by base name."""
    return {k: scrub_paths(v, cwd) if isinstance(v, str) else v for k, v in dict(args).items()}


def dataset_display_name(path) -> str:
    """The default name of local data in a card: a folder's base name, else the base name of the folder holding
    the files (the prefix ``.../multi30k/train`` → ``multi30k``), else the file's stem."""
    path = Path(os.path.abspath(path))
    return path.name if path.is_dir() else (path.parent.name or path.stem)


def cpu_model_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what `platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def hardware_description(device, num_processes: int = 1, mixed_precision: str = "no") -> str:
    """The card's hardware line: the number of processes, the device's name (the GPU model, or the CPU model and
    torch's thread count per process) and the precision, e.g. ``1 x NVIDIA H100 80GB HBM3, bf16 mixed precision``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        threads = torch.get_num_threads()
        name = f"CPU {cpu_model_name()} ({threads} thread{'' if threads == 1 else 's'})"
    else:
        name = device.type
    return f"{num_processes} x {name}, {PRECISION_NAMES.get(mixed_precision, mixed_precision)}"


# ---------------------------------------------------------------------------------------------------- card
def _fmt(value, unit: str = "") -> str:
    if value is None or value == "":
        return NOT_RECORDED
    if isinstance(value, float):
        return f"{value:.2f}{unit}"
    return f"{value}{unit}"


def _duration(seconds) -> str:
    if seconds is None:
        return NOT_RECORDED
    return str(datetime.timedelta(seconds=round(float(seconds))))


def _as_list(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def architecture_facts(model) -> dict:
    """What the card says about the architecture: name, paper(s), attention variant, sizes, parameter count."""
    config = model.config
    facts = {"model_type": config.model_type, "parameters": model.num_parameters()}
    if config.model_type == "rnn_captioning":
        facts.update(_captioning_facts(config))
    elif config.model_type == "rnn_seq2seq":
        attention = getattr(config, "attention", NOT_RECORDED)
        cell = str(getattr(config, "cell", NOT_RECORDED)).upper()
        papers = {
            "none": "Sutskever et al. 2014 (arXiv:1409.3215) / Cho et al. 2014 (arXiv:1406.1078): no attention; "
            "the decoder sees the encoder's final state",
            "bahdanau": "Bahdanau et al. 2015 (arXiv:1409.0473): additive attention scored with the previous "
            "decoder state (eq. 5-6)",
            "dot": "Luong et al. 2015 (arXiv:1508.04025): global attention, `dot` score (eq. 8)",
            "general": "Luong et al. 2015 (arXiv:1508.04025): global attention, `general` score (eq. 8)",
            "concat": "Luong et al. 2015 (arXiv:1508.04025): global attention, `concat` score (eq. 8)",
        }
        facts.update(
            name=f"{cell} encoder-decoder" + ("" if attention == "none" else f" with {attention} attention"),
            attention=attention,
            paper=papers.get(attention, NOT_RECORDED),
            cell=cell,
            layers=f"{getattr(config, 'encoder_layers', '?')} encoder / {getattr(config, 'decoder_layers', '?')} decoder",
            bidirectional_encoder=getattr(config, "bidirectional_encoder", NOT_RECORDED),
            input_feeding=getattr(config, "input_feeding", NOT_RECORDED),
            embedding_size=getattr(config, "embedding_size", NOT_RECORDED),
            hidden_size=getattr(config, "hidden_size", NOT_RECORDED),
            heads=1,
        )
    else:
        facts.update(
            name="Transformer encoder-decoder",
            attention="scaled dot-product, multi-head",
            paper="Vaswani et al. 2017 (arXiv:1706.03762): scaled dot-product multi-head attention (eq. 1)",
            layers=f"{getattr(config, 'encoder_layers', '?')} encoder / {getattr(config, 'decoder_layers', '?')} decoder",
            d_model=getattr(config, "d_model", NOT_RECORDED),
            heads=getattr(config, "num_attention_heads", NOT_RECORDED),
            ffn_dim=getattr(config, "ffn_dim", NOT_RECORDED),
            norm_style=getattr(config, "norm_style", NOT_RECORDED),
            position_embedding=getattr(config, "position_embedding", NOT_RECORDED),
        )
    facts["vocab_size"] = config.vocab_size
    facts["tie_word_embeddings"] = getattr(config, "tie_word_embeddings", NOT_RECORDED)
    facts["max_position_embeddings"] = getattr(config, "max_position_embeddings", NOT_RECORDED)
    return facts


def _captioning_facts(config) -> dict:
    """Xu et al. 2015 as configured: encoder, grid, attention variant and its paper, gate, doubly stochastic λ."""
    attention = getattr(config, "attention", NOT_RECORDED)
    cell = str(getattr(config, "cell", NOT_RECORDED)).upper()
    scores = {
        "bahdanau": "soft attention scored with the previous decoder state, e_ti = v^T tanh(W h_{t-1} + U a_i) "
        "(Xu et al. eq. 4-5, the additive score of Bahdanau et al. 2015, arXiv:1409.0473)",
        "dot": "Luong et al. 2015 (arXiv:1508.04025) `dot` score with the current decoder state (eq. 8)",
        "general": "Luong et al. 2015 (arXiv:1508.04025) `general` score with the current decoder state (eq. 8)",
        "concat": "Luong et al. 2015 (arXiv:1508.04025) `concat` score with the current decoder state (eq. 8)",
    }
    backbone = getattr(config, "backbone", "cnn")
    grid = getattr(config, "grid_size", None)
    if backbone == "cnn":
        channels = list(getattr(config, "encoder_channels", []))
        encoder = f"small CNN, {len(channels)} stages of (conv3x3-ReLU) x 2 + maxpool, channels {channels}"
    else:
        encoder = f"torchvision {backbone}"
    return {
        "name": f"CNN encoder + {cell} decoder with {attention} soft attention over image regions",
        "paper": 'Xu et al. 2015, "Show, Attend and Tell: Neural Image Caption Generation with Visual Attention" '
        "(arXiv:1502.03044), soft (deterministic) attention",
        "attention": attention,
        "attention_paper": scores.get(attention, NOT_RECORDED),
        "encoder": encoder,
        "image_size": getattr(config, "image_size", NOT_RECORDED),
        "grid": f"{grid}×{grid}" if grid else NOT_RECORDED,
        "regions": grid * grid if grid else NOT_RECORDED,
        "position_embedding": getattr(config, "position_embedding", NOT_RECORDED),
        "coord_channels": getattr(config, "coord_channels", NOT_RECORDED) if backbone == "cnn" else False,
        "attention_gate": getattr(config, "attention_gate", NOT_RECORDED),
        "input_feeding": getattr(config, "input_feeding", NOT_RECORDED),
        "doubly_stochastic_weight": getattr(config, "doubly_stochastic_weight", NOT_RECORDED),
        "cell": cell,
        "layers": getattr(config, "decoder_layers", NOT_RECORDED),
        "embedding_size": getattr(config, "embedding_size", NOT_RECORDED),
        "hidden_size": getattr(config, "hidden_size", NOT_RECORDED),
        "heads": 1,
    }


def _evaluations(card: Mapping, task: str) -> list[dict]:
    """The card's results, one dict per split (``split``, ``num_sentences``, ``num_beams``, the task's metric keys
    and their ``*_signature``): ``card["evaluations"]``, else the flat keys (``eval_split``, ``bleu``, ...) as one."""
    if card.get("evaluations"):
        return [dict(e) for e in card["evaluations"]]
    keys = [metric for metric, *_ in CARD_TASKS[task]["metrics"]]
    if all(card.get(k) is None for k in keys):
        return []
    return [
        {
            "split": card.get("eval_split"),
            "num_sentences": card.get("num_eval_sentences"),
            "num_beams": card.get("num_beams"),
            **{k: card.get(k) for k in keys},
            **{f"{k}_signature": card.get(f"{k}_signature") for k in keys},
        }
    ]


def _dataset_type(dataset_ids: list, dataset_name: str | None) -> str:
    """model-index's ``dataset.type``: the Hub id when there is one, else the display name as a slug."""
    if dataset_ids:
        return dataset_ids[0]
    slug = re.sub(r"[^\w.-]+", "-", dataset_name or "").strip("-").lower()
    return slug or "custom"


def _eval_results(
    evaluations: list[dict], task: str, dataset_type: str, dataset_name: str
) -> list[EvalResult]:
    spec = CARD_TASKS[task]
    results = []
    for evaluation in evaluations:
        for metric, pretty, metric_type, decimals in spec["metrics"]:
            value = evaluation.get(metric)
            if value is None:
                continue
            signature = evaluation.get(f"{metric}_signature")
            results.append(
                EvalResult(
                    task_type=task,
                    task_name=spec["task_name"],
                    dataset_type=dataset_type,
                    dataset_name=dataset_name,
                    dataset_split=evaluation.get("split"),
                    metric_type=metric_type,
                    metric_name=pretty,
                    metric_value=round(float(value), decimals),
                    metric_args={"signature": signature} if signature else None,
                )
            )
    return results


def card_metadata(card: Mapping, model_name: str, task: str = "translation") -> ModelCardData:
    """The YAML front matter: library, pipeline tag, languages, license, datasets, tags and ``model-index``.

    ``task`` is a key of `CARD_TASKS` (``"translation"`` or ``"image-to-text"``): it picks the pipeline tag, the
    default tags and the metrics reported in ``model-index``. The dataset is named the Hub's way: ``datasets`` (and
    ``model-index``'s ``dataset.type``) hold Hub dataset ids only; ``dataset_name`` is the display name (a path
    given there is shown by `public_path`).
    """
    spec = CARD_TASKS[task]
    languages = _as_list(card.get("languages")) or [
        lang for lang in (card.get("source_lang"), card.get("target_lang")) if lang
    ]
    dataset_ids = _as_list(card.get("datasets") or card.get("dataset"))
    dataset_name = scrub_paths(card["dataset_name"]) if card.get("dataset_name") else None
    dataset_name = dataset_name or (dataset_ids[0] if dataset_ids else NOT_RECORDED)
    eval_results = _eval_results(
        _evaluations(card, task), task, _dataset_type(dataset_ids, dataset_name), dataset_name
    )
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=spec["pipeline_tag"],
        language=languages or None,
        license=card.get("license", "apache-2.0"),
        datasets=dataset_ids or None,
        tags=sorted({*spec["tags"], *_as_list(card.get("tags"))}),
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
    )


def _signature_cell(signature) -> str:
    # "|" separates a sacreBLEU signature's fields and a Markdown table's cells: escape it in the table
    return f"`{signature.replace('|', chr(92) + '|')}`" if signature else "—"


def evaluation_row(evaluation: Mapping) -> str:
    """One split's row of the translation card's evaluation table."""
    cells = [
        str(evaluation.get("split") or NOT_RECORDED),
        _fmt(evaluation.get("num_sentences")) if evaluation.get("num_sentences") is not None else "—",
        _fmt(evaluation.get("num_beams")) if evaluation.get("num_beams") is not None else "—",
        _fmt(evaluation.get("bleu")),
        _fmt(evaluation.get("chrf")),
        _signature_cell(evaluation.get("bleu_signature")),
        _signature_cell(evaluation.get("chrf_signature")),
    ]
    return "| " + " | ".join(cells) + " |"


def evaluation_table(rows: list[str]) -> str:
    """The marked evaluation block of a translation card (`EVAL_TABLE_BEGIN` ... `EVAL_TABLE_END`)."""
    body = "\n".join([EVAL_TABLE_HEADER, *rows]) if rows else "No evaluation recorded."
    return f"{EVAL_TABLE_BEGIN}\n{body}\n{EVAL_TABLE_END}"


def render_model_card(model, card: Mapping | None = None, image_names: Mapping | None = None) -> ModelCard:
    """Render the family's template (``model_cards/<model_type>.md``) into a `huggingface_hub.ModelCard`.

    ``card`` keys (all optional; missing facts render as "not recorded"): ``model_name``, ``repo_id`` (used in the
    loading code), ``languages`` or ``source_lang``/``target_lang`` (ISO codes), ``license``, ``datasets`` /
    ``dataset`` (Hub ids) and ``dataset_name`` (display name), ``tags``, ``bleu``, ``chrf``, ``bleu_signature``,
    ``chrf_signature``, ``eval_split``, ``num_eval_sentences``, ``num_beams`` (of that evaluation) — or
    ``evaluations``, a list of such results per split (keys ``split``, ``num_sentences``, ``num_beams``, the
    metrics and signatures) —, ``recipe`` (the recipe file's name) and ``recipe_text`` (its content),
    ``training_args`` (dict), ``steps``, ``epochs``, ``train_time`` (seconds), ``hardware``, ``example`` (a source
    sentence) and ``example_output``. The keys `evaluate_main` writes to its JSON file are the metric keys here.
    Absolute paths in the data name, the recipe and the training arguments are shown by `public_path`.

    Captioning models (``model_type="rnn_captioning"``, template ``rnn_captioning.md``, pipeline tag
    ``image-to-text``) also show ``exact_match``, ``cider`` and ``num_references``; ``num_eval_sentences`` counts
    images there, and ``image_names["example"]`` names the example image stored beside the weights.
    """
    card = dict(card or {})
    image_names = dict(image_names or {})
    template = CARD_TEMPLATES / TEMPLATE_FOR_MODEL_TYPE.get(model.config.model_type, "transformer_seq2seq.md")
    facts = architecture_facts(model)
    model_name = card.get("model_name") or (card.get("repo_id") or "").split("/")[-1] or facts["model_type"]
    task = TASK_FOR_MODEL_TYPE.get(model.config.model_type, "translation")
    data = card_metadata(card, model_name, task)
    training_args = public_training_args(card.get("training_args") or {})
    gen = model.generation_config
    num_beams = gen.num_beams or 1  # unset means greedy
    evaluations = [{"num_beams": num_beams, **e} for e in _evaluations(card, task)]
    recipe = public_path(card["recipe"]) if card.get("recipe") else None
    return ModelCard.from_template(
        data,
        template_path=str(template),
        model_name=model_name,
        repo_id=card.get("repo_id") or "path/to/this/folder",
        arch=facts,
        parameters=f"{facts['parameters']:,}",
        languages=" → ".join(_as_list(data.language)) or NOT_RECORDED,
        dataset=_card_dataset(card, data),
        recipe=_fmt(recipe),
        recipe_text=scrub_paths(card["recipe_text"]).strip() if card.get("recipe_text") else None,
        recipe_format="json" if (recipe or "").endswith(".json") else "yaml",
        training_args=sorted((str(k), str(v)) for k, v in training_args.items()),
        steps=_fmt(card.get("steps")),
        epochs=_fmt(card.get("epochs")),
        train_time=_duration(card.get("train_time")),
        hardware=_fmt(card.get("hardware")),
        evaluation_table=evaluation_table([evaluation_row(e) for e in evaluations]),
        eval_split=_fmt(card.get("eval_split")),
        num_eval_sentences=_fmt(card.get("num_eval_sentences")),
        num_eval_images=_fmt(card.get("num_eval_sentences")),
        num_references=_fmt(card.get("num_references")),
        bleu=_fmt(card.get("bleu")),
        chrf=_fmt(card.get("chrf")),
        exact_match=_fmt(card.get("exact_match")),
        cider=NOT_RECORDED if card.get("cider") is None else f"{float(card['cider']):.3f}",
        bleu_signature=_fmt(card.get("bleu_signature")).replace("|", "\\|"),
        chrf_signature=_fmt(card.get("chrf_signature")).replace("|", "\\|"),
        num_beams=num_beams,
        max_new_tokens=gen.max_new_tokens if gen.max_new_tokens is not None else gen.max_length,
        example_literal=repr(card.get("example") or "Ein Hund läuft über die Wiese."),
        example_output=card.get("example_output"),
        attention_image=image_names.get("attention"),
        learning_curve_image=image_names.get("learning_curve"),
        example_image=image_names.get("example"),
        # the captioning card shows its example image inside the attention figure and names it in the usage code
        extra_images=sorted(
            (k, v)
            for k, v in image_names.items()
            if k not in ("attention", "learning_curve")
            and not (k == "example" and facts["model_type"] == "rnn_captioning")
        ),
    )


def _card_dataset(card: Mapping, data: ModelCardData) -> str:
    """The card's "Data" line: the display name, with the Hub id(s) linked when the data came from the Hub."""
    ids = _as_list(data.datasets)
    links = ", ".join(f"[{i}](https://huggingface.co/datasets/{i})" for i in ids)
    name = scrub_paths(card["dataset_name"]) if card.get("dataset_name") else None
    if name and links and name not in ids:
        return f"{name} ({links})"
    return name if name and not links else (links or NOT_RECORDED)


# ------------------------------------------------------------------------------------------- updating a card
# Sections that other commands add to a card (`hf-seq2seq analyze --update_card`: its length figure and table) sit
# between "<!-- hf-seq2seq NAME: begin -->" and "<!-- hf-seq2seq NAME: end -->"; rewriting the card keeps them.
MARKED_SECTION = re.compile(
    r"<!-- hf-seq2seq (?P<name>[\w-]+): begin -->.*?<!-- hf-seq2seq (?P=name): end -->\n?", flags=re.S
)


def section_markers(name: str) -> tuple[str, str]:
    """The begin and end comments of the card section ``name``."""
    return f"<!-- hf-seq2seq {name}: begin -->", f"<!-- hf-seq2seq {name}: end -->"


def with_marked_section(text: str, section: str, name: str) -> str:
    """``text`` (a card) with its marked section ``name`` replaced by ``section`` (which carries the markers), or
    ``section`` inserted before "## How to use" (after the evaluation, attention and learning-curve sections), or
    appended; every other line of the card is kept as it was."""
    begin, end = section_markers(name)
    section = section.rstrip("\n") + "\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        return head + section + rest.split(end, 1)[1].lstrip("\n")
    anchor = "\n## How to use"
    if anchor in text:
        head, rest = text.split(anchor, 1)
        return head.rstrip("\n") + "\n\n" + section + anchor + rest
    return text.rstrip("\n") + ("\n\n" if text else "") + section


def write_model_card(
    model, tokenizer, folder, card: Mapping | None = None, images: Mapping | None = None
) -> Path:
    """(Re)write the card of an existing model folder from ``card`` (the keys of `render_model_card`), drawing its
    learning curve and attention figure as `save_model_folder` does; the weights and every other file are left as
    they are, and ``README.md`` is replaced in one rename."""
    folder = Path(folder)
    card = dict(card or {})
    image_names = _write_images(model, tokenizer, folder, card, images)
    readme = folder / "README.md"
    text = str(render_model_card(model, card, image_names))
    if readme.is_file():  # keep what other commands added (the analysis section), as they placed it
        for kept in MARKED_SECTION.finditer(readme.read_text(encoding="utf-8")):
            text = with_marked_section(text, kept.group(0), kept.group("name"))
    write_atomic(readme, text)
    return readme


def update_card_evaluation(folder, split: str, scores: Mapping, num_beams=None, dataset_name=None) -> Path:
    """Add the ``split`` results (BLEU, chrF and their sacreBLEU signatures, as `commands.evaluate.score` returns
    them) to a translation folder's card, or replace the ones of that split: in ``model-index`` and as a row of the
    evaluation table. Every other line is kept; the new ``README.md`` is written beside the old one and renamed
    over it, so the folder never holds half a card.

    The dataset is the one the card's results already name, else its ``datasets`` id, else ``dataset_name``.
    """
    readme = Path(folder) / "README.md"
    if not readme.is_file():
        raise FileNotFoundError(f"{readme} does not exist: --update_card needs a model folder with its card")
    try:
        card = ModelCard.load(readme)
    except Exception as err:  # huggingface_hub raises ValueError or yaml errors for broken metadata
        raise ValueError(f"{readme}: the card's metadata does not parse: {err}") from None
    data = card.data
    if data.pipeline_tag not in (None, "translation"):
        raise ValueError(f"{readme} is a {data.pipeline_tag!r} card; --update_card adds translation results")
    old = list(data.eval_results or [])
    ids = _as_list(data.datasets)
    name = old[0].dataset_name if old else (ids[0] if ids else dataset_name or NOT_RECORDED)
    kind = old[0].dataset_type if old else _dataset_type(ids, name)
    evaluation = {
        "split": split,
        "num_sentences": scores.get("num_eval_sentences"),
        "num_beams": num_beams,
        **{k: scores.get(k) for k in ("bleu", "chrf", "bleu_signature", "chrf_signature")},
    }
    data.eval_results = [r for r in old if r.dataset_split != split] + _eval_results(
        [evaluation], "translation", kind, name
    )
    data.model_name = data.model_name or Path(folder).resolve().name
    card.text = _with_evaluation_row(card.text, evaluation, old)
    write_atomic(readme, str(card))
    return readme


def _table_rows(text: str) -> dict[str, str] | None:
    """``{split: row}`` of the marked evaluation table in a card's body, or ``None`` when it has none."""
    if EVAL_TABLE_BEGIN not in text or EVAL_TABLE_END not in text:
        return None
    block = text.split(EVAL_TABLE_BEGIN, 1)[1].split(EVAL_TABLE_END, 1)[0]
    header = set(EVAL_TABLE_HEADER.splitlines())
    rows = [line for line in block.strip().splitlines() if line.startswith("|") and line not in header]
    return {row.split("|")[1].strip(): row for row in rows}


def _rows_from_results(results: list[EvalResult]) -> dict[str, str]:
    """Table rows rebuilt from a card's ``model-index`` (a card written before the table was marked)."""
    by_split: dict[str, dict] = {}
    keys = {"sacrebleu": "bleu", "chrf": "chrf"}
    for r in results:
        if r.metric_type in keys:
            evaluation = by_split.setdefault(str(r.dataset_split), {"split": r.dataset_split})
            evaluation[keys[r.metric_type]] = r.metric_value
            evaluation[f"{keys[r.metric_type]}_signature"] = (r.metric_args or {}).get("signature")
    return {split: evaluation_row(e) for split, e in by_split.items()}


def _with_evaluation_row(text: str, evaluation: Mapping, old_results: list[EvalResult]) -> str:
    """The card body with ``evaluation``'s row added to (or replacing its split's row in) the evaluation table.

    A card without the marked table (written by an older version) gets one, rebuilt from its ``model-index``, in
    place of its "## Evaluation" section's body, or before "## How to use", or at the end."""
    rows = _table_rows(text)
    marked = rows is not None
    rows = rows if marked else _rows_from_results(old_results)
    rows[str(evaluation["split"])] = evaluation_row(evaluation)
    block = evaluation_table(list(rows.values()))
    if marked:
        head, rest = text.split(EVAL_TABLE_BEGIN, 1)
        return head + block + rest.split(EVAL_TABLE_END, 1)[1]
    section = (
        "## Evaluation\n\nCorpus-level scores computed with sacreBLEU, one row per split.\n\n" + block + "\n"
    )
    match = re.search(r"^## Evaluation[^\n]*\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    if match:
        return text[: match.start()] + section + "\n" + text[match.end() :]
    anchor = "\n## How to use"
    if anchor in text:
        head, rest = text.split(anchor, 1)
        return head.rstrip("\n") + "\n\n" + section + anchor + rest
    return text.rstrip("\n") + "\n\n" + section


# ------------------------------------------------------------------------------------------------ atomic writes
# The package's one atomic writer: everything written for the user (translations, scores, reports, model cards,
# figures) goes to a temporary file beside the target, renamed over it when complete, so an error or Ctrl-C leaves
# the old file (or none), never half of a new one; the file gets the mode a plain open(path, "w") would give (an
# existing file's own, else 0o666 less the umask), not mkstemp's 0o600.


def _mode_of_plain_open(path: Path) -> int:
    """The permission bits ``open(path, "w")`` would leave: an existing file keeps its own, a new one gets
    ``0o666`` less the process umask."""
    with contextlib.suppress(FileNotFoundError):
        return stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (``str`` as UTF-8) to ``path`` through a temporary file beside it and a rename: a failure or
    an interrupt leaves the old file (or none), never a partial one. Creates the parent folder."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers that look at it pick the same format: matplotlib)
    that is renamed to ``path`` when the block succeeds and removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _mode_of_plain_open(path))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------- push
def check_repo_id(repo_id: str, option: str = "repo_id") -> None:
    """A Hub model id must look like ``USER/NAME``; ``option`` names it in the error."""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"{option} must look like USER/NAME, got {repo_id!r}")


def create_hub_repo(
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
):
    """Create the model repo ``repo_id`` if missing (and its branch ``revision``); returns the `HfApi` client.
    Training calls it before its first step with ``--push_to_hub``, so a missing login or a repo the token may not
    write fails in seconds, not after the run."""
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    return api


def hub_errors() -> tuple[type[Exception], ...]:
    """What a Hub call may raise besides a bug: ``OSError`` (the Hub's answers, ``HfHubHTTPError``, and missing
    files or login) and the HTTP client's base error (httpx / httpx2), which is not an ``OSError``: no answer."""
    from huggingface_hub.errors import HfHubHTTPError

    return (OSError, HfHubHTTPError.__mro__[1])


def hub_error_message(err: Exception) -> str | None:
    """One line for an error of the Hub client: the Hub's answer (401, 403, 404, ...) or, when no answer came, the
    endpoint that could not be reached; None for any other error."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(err, HfHubHTTPError):
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, HfHubHTTPError.__mro__[1]):  # the HTTP client's base error (httpx / httpx2): no answer
        return (
            f"cannot reach the Hub at {constants.ENDPOINT} ({type(err).__name__}: {err}); check the network or "
            "HF_ENDPOINT"
        )
    return None


def push_model_folder(
    folder,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    create_pr: bool = False,
    endpoint: str | None = None,
):
    """Upload every file of a saved model folder to ``repo_id`` in one commit; returns the `CommitInfo`.

    Creates the repo if needed (``exist_ok``) and the branch ``revision`` if it does not exist. The endpoint is
    ``HF_ENDPOINT`` (read when huggingface_hub is imported) unless ``endpoint`` is given.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a saved model folder: missing {', '.join(missing)} (write it with save_model_folder)"
        )
    api = create_hub_repo(repo_id, private=private, revision=revision, token=token, endpoint=endpoint)
    return api.upload_folder(
        folder_path=folder,
        repo_id=repo_id,
        repo_type="model",
        revision=revision,
        commit_message=commit_message or f"Upload {folder.name} with hf_seq2seq",
        create_pr=create_pr,
        ignore_patterns=[".*", "**/.*", "__pycache__/*", "**/__pycache__/*", "*.pyc", "**/*.pyc"],
    )

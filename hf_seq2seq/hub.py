"""Saving a shareable model folder (remote code, custom pipeline, model card) and pushing it to the Hub.

A folder written by `save_model_folder` loads anywhere transformers is installed, without hf_seq2seq:

    model = AutoModelForSeq2SeqLM.from_pretrained(folder_or_repo, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder_or_repo, trust_remote_code=True)
    translate = pipeline(model=folder_or_repo, trust_remote_code=True)   # our "text2text" pipeline

`push_model_folder` uploads such a folder as one commit (``HfApi.create_repo`` + ``upload_folder``).
"""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Mapping
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers.dynamic_module_utils import custom_object_save

from .families import FAMILIES
from .pipeline_text2text import TASK, Text2TextPipeline

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
            "bleu"}``) a learning curve is drawn; with ``card["example"]`` (a source sentence) an attention heatmap.
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
    # attention.py) are copied beside the weights by save_pretrained.
    type(model.config).register_for_auto_class()
    type(model).register_for_auto_class("AutoModelForSeq2SeqLM")
    # The custom pipeline, as Pipeline.save_pretrained records it: config.custom_pipelines + the module file.
    model.config.custom_pipelines = {
        TASK: {
            "impl": f"{Text2TextPipeline.__module__.split('.')[-1]}.{Text2TextPipeline.__name__}",
            "pt": ["AutoModelForSeq2SeqLM"],
            "type": "text",
        }
    }
    custom_object_save(Text2TextPipeline, output_dir)

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
    from .pipeline_image_captioning import TASK, ImageCaptioningPipeline

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    card = dict(card or {})
    type(model.config).register_for_auto_class()
    type(model).register_for_auto_class("AutoModelForImageTextToText")
    type(image_processor).register_for_auto_class("AutoImageProcessor")
    model.config.custom_pipelines = {
        TASK: {
            "impl": f"{ImageCaptioningPipeline.__module__.split('.')[-1]}.{ImageCaptioningPipeline.__name__}",
            "pt": ["AutoModelForImageTextToText"],
            "type": "image",
        }
    }
    custom_object_save(ImageCaptioningPipeline, output_dir)
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
    elif card.get("example") and getattr(model.config, "attention", None) != "none":
        matrix, src, tgt = plotting.attention_matrix(model, tokenizer, card["example"])
        title = f"{card['example']}"
        names["attention"] = plotting.plot_attention(
            matrix, src, tgt, output_dir / "attention.png", title
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


def card_metadata(card: Mapping, model_name: str, task: str = "translation") -> ModelCardData:
    """The YAML front matter: library, pipeline tag, languages, license, datasets, tags and ``model-index``.

    ``task`` is a key of `CARD_TASKS` (``"translation"`` or ``"image-to-text"``): it picks the pipeline tag, the
    default tags and the metrics reported in ``model-index``.
    """
    spec = CARD_TASKS[task]
    languages = _as_list(card.get("languages")) or [
        lang for lang in (card.get("source_lang"), card.get("target_lang")) if lang
    ]
    datasets = _as_list(card.get("datasets") or card.get("dataset"))
    dataset_id = datasets[0] if datasets else "custom"
    dataset_name = card.get("dataset_name") or (datasets[0] if datasets else NOT_RECORDED)
    eval_results = []
    for metric, pretty, metric_type, decimals in spec["metrics"]:
        value = card.get(metric)
        if value is None:
            continue
        signature = card.get(f"{metric}_signature")
        eval_results.append(
            EvalResult(
                task_type=task,
                task_name=spec["task_name"],
                dataset_type=dataset_id,
                dataset_name=dataset_name,
                dataset_split=card.get("eval_split"),
                metric_type=metric_type,
                metric_name=pretty,
                metric_value=round(float(value), decimals),
                metric_args={"signature": signature} if signature else None,
            )
        )
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=spec["pipeline_tag"],
        language=languages or None,
        license=card.get("license", "apache-2.0"),
        datasets=datasets or None,
        tags=sorted({*spec["tags"], *_as_list(card.get("tags"))}),
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
    )


def render_model_card(model, card: Mapping | None = None, image_names: Mapping | None = None) -> ModelCard:
    """Render the family's template (``model_cards/<model_type>.md``) into a `huggingface_hub.ModelCard`.

    ``card`` keys (all optional; missing facts render as "not recorded"): ``model_name``, ``repo_id`` (used in the
    loading code), ``languages`` or ``source_lang``/``target_lang`` (ISO codes), ``license``, ``datasets`` /
    ``dataset`` (Hub ids) and ``dataset_name`` (pretty), ``tags``, ``bleu``, ``chrf``, ``bleu_signature``,
    ``chrf_signature``, ``eval_split``, ``num_eval_sentences``, ``recipe`` (config file name), ``training_args``
    (dict), ``steps``, ``epochs``, ``train_time`` (seconds), ``hardware``, ``example`` (a source sentence) and
    ``example_output``. The keys `evaluate_main` writes to its JSON file are the metric keys here.

    Captioning models (``model_type="rnn_captioning"``, template ``rnn_captioning.md``, pipeline tag
    ``image-to-text``) also show ``exact_match``, ``cider`` and ``num_references``; ``num_eval_sentences`` counts
    images there, and ``image_names["example"]`` names the example image stored beside the weights.
    """
    card = dict(card or {})
    image_names = dict(image_names or {})
    template = CARD_TEMPLATES / TEMPLATE_FOR_MODEL_TYPE.get(model.config.model_type, "transformer_seq2seq.md")
    facts = architecture_facts(model)
    model_name = card.get("model_name") or (card.get("repo_id") or "").split("/")[-1] or facts["model_type"]
    data = card_metadata(card, model_name, TASK_FOR_MODEL_TYPE.get(model.config.model_type, "translation"))
    training_args = card.get("training_args") or {}
    gen = model.generation_config
    return ModelCard.from_template(
        data,
        template_path=str(template),
        model_name=model_name,
        repo_id=card.get("repo_id") or "path/to/this/folder",
        arch=facts,
        parameters=f"{facts['parameters']:,}",
        languages=" → ".join(_as_list(data.language)) or NOT_RECORDED,
        dataset=card.get("dataset_name") or ", ".join(_as_list(data.datasets)) or NOT_RECORDED,
        recipe=_fmt(card.get("recipe")),
        training_args=sorted((str(k), str(v)) for k, v in dict(training_args).items()),
        steps=_fmt(card.get("steps")),
        epochs=_fmt(card.get("epochs")),
        train_time=_duration(card.get("train_time")),
        hardware=_fmt(card.get("hardware")),
        eval_split=_fmt(card.get("eval_split")),
        num_eval_sentences=_fmt(card.get("num_eval_sentences")),
        num_eval_images=_fmt(card.get("num_eval_sentences")),
        num_references=_fmt(card.get("num_references")),
        bleu=_fmt(card.get("bleu")),
        chrf=_fmt(card.get("chrf")),
        exact_match=_fmt(card.get("exact_match")),
        cider=NOT_RECORDED if card.get("cider") is None else f"{float(card['cider']):.3f}",
        # "|" separates a sacreBLEU signature's fields and a Markdown table's cells: escape it in the table
        bleu_signature=_fmt(card.get("bleu_signature")).replace("|", "\\|"),
        chrf_signature=_fmt(card.get("chrf_signature")).replace("|", "\\|"),
        num_beams=gen.num_beams or 1,  # unset means greedy
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


# ---------------------------------------------------------------------------------------------------- push
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
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a saved model folder: missing {', '.join(missing)} (write it with save_model_folder)"
        )
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id must look like USER/NAME, got {repo_id!r}")
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    return api.upload_folder(
        folder_path=folder,
        repo_id=repo_id,
        repo_type="model",
        revision=revision,
        commit_message=commit_message or f"Upload {folder.name} with hf_seq2seq",
        create_pr=create_pr,
        ignore_patterns=[".*", "**/.*", "__pycache__/*", "**/__pycache__/*", "*.pyc", "**/*.pyc"],
    )

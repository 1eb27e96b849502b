"""The Accelerate training loop behind ``scripts/train.py`` and ``hf-seq2seq train``.

One file, read top to bottom: options (three dataclasses parsed by ``transformers.HfArgumentParser`` from a YAML/JSON
recipe plus command-line overrides) → data (a reader of :mod:`hf_seq2seq.data` or the embedded task of
:mod:`hf_seq2seq.tasks`) → tokenizer → model → the loop → validation → checkpoints → saved model folders.

How a *step* is made, and why 1 process with accumulation 2 equals 2 processes
--------------------------------------------------------------------------------
Every rank builds the same, unsharded list of length-bucketed token-budget batches for the epoch
(:class:`hf_seq2seq.data.TokenBatchSampler` with one replica, shuffled by ``seed + epoch``). One optimizer step
consumes a *group* of ``world_size * gradient_accumulation_steps`` consecutive batches; micro-batch ``m`` of rank
``r`` is batch ``m * world_size + r`` of the group. The group's label-token count ``G`` is known on every rank from
the example lengths alone (no communication), so each micro-batch's summed cross-entropy is divided by ``G``:

    loss_for_backward = sum_CE(micro) * world_size * accumulation / G

``accelerator.backward`` divides by ``accumulation`` and DDP averages over ``world_size``, so the gradient is
``sum_CE(group) / G`` — the token-weighted mean over the whole global batch, whatever the process layout. The last
``< world_size * accumulation`` batches of an epoch (an incomplete group) are dropped; the next epoch reshuffles.

Checkpoints
-----------
``accelerator.save_state`` (model, optimizer, scheduler, RNG of every process, and :class:`TrainState`: step, epoch,
groups consumed in the epoch, best metric, history) is written into ``checkpoints/.tmp-step-N``; after every process
has finished, the main process writes ``COMPLETE`` into it and renames it to ``checkpoints/step-N``. ``--resume``
loads the newest folder that has the marker and skips the consumed micro-batches of the epoch with
``accelerator.skip_first_batches``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

logger = logging.getLogger("hf_seq2seq.training")

MODEL_TYPES = ("rnn", "transformer", "captioning")
TEXT_MODEL_TYPES = ("rnn", "transformer")
SCHEDULERS = ("inverse_sqrt", "linear", "cosine", "constant")
BEST_METRICS = ("bleu", "chrf", "loss", "exact_match", "cider")
CAPTIONING_ONLY_METRICS = ("exact_match", "cider")
MIXED_PRECISION = ("no", "fp16", "bf16")
NAN_POLICIES = ("stop", "skip")
# --nan_policy skip gives up (as "stop" does) after this many non-finite steps in a row
MAX_CONSECUTIVE_SKIPS = 10
# Validation results the model card shows (hub.render_model_card); exact_match / cider / num_references: captioning
CARD_METRIC_KEYS = (
    "bleu",
    "chrf",
    "bleu_signature",
    "chrf_signature",
    "exact_match",
    "cider",
    "num_references",
)
# Test hook (tests/test_reliability.py): HF_SEQ2SEQ_DEBUG_PAUSE="save:N" pauses the main process after it has
# written part of checkpoint N's temporary folder (model.safetensors cut to half its size, no COMPLETE marker);
# "step:N" pauses every process in the middle of step N (after the backward pass, before the update). The
# process writes OUTPUT_DIR/DEBUG_PAUSED and sleeps, so a test can SIGKILL the run at a known point.
DEBUG_PAUSE_ENV = "HF_SEQ2SEQ_DEBUG_PAUSE"
# Test hook: HF_SEQ2SEQ_DEBUG_NAN_AT_STEP=N makes the loss of step N NaN (to test --nan_policy skip).
DEBUG_NAN_ENV = "HF_SEQ2SEQ_DEBUG_NAN_AT_STEP"
TOKENIZER_MODELS = ("bpe", "unigram")
CAPTIONING_TASK = "shapes"  # the rendered captioning task of hf_seq2seq.captioning_data
COMPLETE_MARKER = "COMPLETE"
CHECKPOINT_RE = re.compile(r"^step-(\d+)$")


# ----------------------------------------------------------------------------------------------------- options


def _check_choice(option: str, value: Any, choices) -> None:
    if value not in choices:
        raise ValueError(f"--{option}={value!r} is invalid; valid choices: {', '.join(map(str, choices))}")


def _check_positive(option: str, value, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"--{option}={value!r} is invalid; it must be {bound}")


@dataclass
class DataArguments:
    """Where the parallel text comes from and how it is tokenized and batched."""

    task: str | None = field(
        default=None,
        metadata={
            "help": "Train on an embedded generated task instead of a corpus: 'numbers' or 'dates' (text), "
            "'shapes' (rendered scenes, --model_type captioning)."
        },
    )
    task_num_train: int = field(default=4000, metadata={"help": "Embedded task: number of training pairs."})
    task_num_validation: int = field(
        default=500, metadata={"help": "Embedded task: number of validation pairs."}
    )
    task_num_test: int = field(
        default=500, metadata={"help": "Embedded task: number of held-out test pairs."}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "A Hub/`datasets` dataset with a 'translation' column."}
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "The dataset's configuration name."}
    )
    train_file: str | None = field(
        default=None,
        metadata={"help": 'Training JSONL file: {"translation": {"de": ..., "en": ...}} per line.'},
    )
    validation_file: str | None = field(default=None, metadata={"help": "Validation JSONL file."})
    train_prefix: str | None = field(
        default=None,
        metadata={
            "help": "Line-aligned plain/.gz training files PREFIX.<source_lang>(.gz) and PREFIX.<target_lang>."
        },
    )
    validation_prefix: str | None = field(default=None, metadata={"help": "Validation file pair prefix."})
    source_lang: str | None = field(default=None, metadata={"help": "Source language code, e.g. 'de'."})
    target_lang: str | None = field(default=None, metadata={"help": "Target language code, e.g. 'en'."})
    image_folder: str | None = field(
        default=None,
        metadata={
            "help": "Captioning: folder of the images named in --captions_file (Flickr8k / COCO layout)."
        },
    )
    captions_file: str | None = field(
        default=None,
        metadata={
            "help": "Captioning: training captions, Flickr8k token file ('img.jpg#0<TAB>caption') or COCO "
            "captions JSON (read with captioning_data.load_caption_folder)."
        },
    )
    validation_captions_file: str | None = field(
        default=None,
        metadata={
            "help": "Captioning: validation captions (images from --image_folder). Default: hold out "
            "--validation_fraction of the training images."
        },
    )
    validation_fraction: float = field(
        default=0.05,
        metadata={"help": "Captioning without --validation_captions_file: share of images held out."},
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Captioning: image side in pixels for rendering (--task shapes), the image processor and the "
            "model config (default: the model config's image_size, else 48 for shapes, 224 for folders)."
        },
    )
    batch_size: int = field(
        default=32,
        metadata={
            "help": "Captioning: images per micro-batch on one process (replaces the text path's --max_tokens "
            "token budget); a step takes processes x gradient_accumulation_steps such batches."
        },
    )
    max_train_examples: int | None = field(
        default=None, metadata={"help": "Use only the first N training pairs (debugging, tests)."}
    )
    max_validation_examples: int | None = field(
        default=None, metadata={"help": "Use only the first N validation pairs (captioning: images)."}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Load this tokenizer instead of training one on the training split."}
    )
    vocab_size: int = field(
        default=8000, metadata={"help": "Joint vocabulary size of the trained tokenizer."}
    )
    tokenizer_model: str = field(
        default="bpe", metadata={"help": "Trained tokenizer model: 'bpe' or 'unigram'."}
    )
    max_source_length: int = field(
        default=128, metadata={"help": "Truncate source sentences to this many tokens."}
    )
    max_target_length: int = field(
        default=128, metadata={"help": "Truncate target sentences to this many tokens."}
    )
    max_tokens: int = field(
        default=4096,
        metadata={
            "help": "Token budget of one micro-batch on one process: sentences x the padded length of the longer "
            "side (TokenBatchSampler); a step takes processes x gradient_accumulation_steps such batches."
        },
    )
    validation_batch_size: int = field(
        default=64, metadata={"help": "Sentences per validation batch (loss and beam search)."}
    )

    def __post_init__(self):
        sources = [
            self.task is not None,
            self.dataset_name is not None,
            self.train_file is not None,
            self.train_prefix is not None,
            self.image_folder is not None,
        ]
        if sum(sources) != 1:
            raise ValueError(
                "give exactly one data source: --task, --dataset_name, --train_file, --train_prefix or "
                f"--image_folder (got {sum(sources)})"
            )
        if self.task is not None:
            from .tasks import TASKS

            _check_choice("task", self.task, (*TASKS, CAPTIONING_TASK))
        if self.image_folder is not None and self.captions_file is None:
            raise ValueError("--image_folder needs --captions_file")
        if self.image_folder is None and (self.captions_file or self.validation_captions_file):
            raise ValueError("--captions_file / --validation_captions_file need --image_folder")
        if self.image_folder is not None and not Path(self.image_folder).is_dir():
            raise ValueError(f"--image_folder {self.image_folder!r}: folder not found")
        for name in ("captions_file", "validation_captions_file"):
            if getattr(self, name) is not None and not Path(getattr(self, name)).is_file():
                raise ValueError(f"--{name} {getattr(self, name)!r}: file not found")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                f"--validation_fraction={self.validation_fraction!r} is invalid; it must be in (0, 1)"
            )
        _check_positive("batch_size", self.batch_size)
        if self.image_size is not None and self.image_size < 24 and self.task == CAPTIONING_TASK:
            raise ValueError(f"--image_size={self.image_size} is invalid for --task shapes; it must be >= 24")
        _check_positive("image_size", self.image_size)
        if self.train_file is not None and self.validation_file is None:
            raise ValueError("--train_file needs --validation_file")
        if self.train_prefix is not None and self.validation_prefix is None:
            raise ValueError("--train_prefix needs --validation_prefix")
        if (
            not self.is_captioning
            and self.task is None
            and (self.source_lang is None or self.target_lang is None)
        ):
            raise ValueError("--source_lang and --target_lang are required unless --task is given")
        _check_choice("tokenizer_model", self.tokenizer_model, TOKENIZER_MODELS)
        for name in ("task_num_train", "task_num_validation", "vocab_size", "max_source_length"):
            _check_positive(name, getattr(self, name))
        for name in ("max_target_length", "max_tokens", "validation_batch_size"):
            _check_positive(name, getattr(self, name))
        for name in ("max_train_examples", "max_validation_examples", "task_num_test"):
            _check_positive(name, getattr(self, name), allow_zero=name == "task_num_test")
        if self.max_tokens < max(self.max_source_length, self.max_target_length):
            raise ValueError(
                f"--max_tokens={self.max_tokens} is smaller than one maximal sentence "
                f"(max(--max_source_length, --max_target_length) = "
                f"{max(self.max_source_length, self.max_target_length)})"
            )

    @property
    def is_captioning(self) -> bool:
        """Whether the data source is an image one (``--task shapes`` or ``--image_folder``)."""
        return self.task == CAPTIONING_TASK or self.image_folder is not None


def _validate_model_config(model_type: str, overrides: dict) -> None:
    """Build the config once at parse time so a bad key or value stops the run before any data is read."""
    if model_type == "rnn":
        from .configuration_rnn_seq2seq import RNNSeq2SeqConfig as config_cls
    elif model_type == "captioning":
        from .configuration_rnn_captioning import ImageCaptioningConfig as config_cls
    else:
        from .configuration_transformer_seq2seq import TransformerSeq2SeqConfig as config_cls
    defaults = config_cls()
    unknown = sorted(k for k in overrides if not hasattr(defaults, k))
    if unknown:
        raise ValueError(f"--model_config: {unknown} are not options of {config_cls.__name__}")
    try:
        config_cls(**overrides)
    except (ValueError, TypeError) as err:
        raise ValueError(f"--model_config: {err}") from None


@dataclass
class ModelArguments:
    """Which model to build (or continue training)."""

    model_type: str = field(
        default="transformer",
        metadata={
            "help": "Model family: 'rnn', 'transformer' or 'captioning' (images -> text, Xu et al. 2015)."
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Continue training a saved model folder (its tokenizer is used; --model_type ignored)."
        },
    )
    model_config: str | None = field(
        default=None,
        metadata={
            "help": 'JSON object of config overrides, e.g. \'{"hidden_size": 256, "attention": "bahdanau"}\' '
            "(RNNSeq2SeqConfig / TransformerSeq2SeqConfig / ImageCaptioningConfig fields)."
        },
    )
    label_smoothing: float | None = field(
        default=None, metadata={"help": "Label smoothing in [0, 1); overrides the model config's value."}
    )
    scheduled_sampling: float = field(
        default=0.0,
        metadata={
            "help": "RNN family only: probability of feeding the model's own previous prediction instead of the "
            "gold token (Bengio et al. 2015), computed with a two-pass approximation. 0 = teacher forcing."
        },
    )

    def __post_init__(self):
        _check_choice("model_type", self.model_type, MODEL_TYPES)
        if self.model_config is not None and not isinstance(self.model_config, dict):
            try:
                parsed = json.loads(self.model_config)
            except json.JSONDecodeError as err:
                raise ValueError(f"--model_config is not valid JSON ({err}): {self.model_config!r}") from None
            if not isinstance(parsed, dict):
                raise ValueError(f"--model_config must be a JSON object, got {self.model_config!r}")
        if self.model_config is not None and self.model_name_or_path is None:
            _validate_model_config(self.model_type, self.config_overrides())
        if self.label_smoothing is not None and not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"--label_smoothing={self.label_smoothing!r} is invalid; it must be in [0, 1)")
        if not 0.0 <= self.scheduled_sampling <= 1.0:
            raise ValueError(
                f"--scheduled_sampling={self.scheduled_sampling!r} is invalid; it must be in [0, 1]"
            )
        if self.scheduled_sampling > 0 and self.model_type != "rnn" and self.model_name_or_path is None:
            raise ValueError("--scheduled_sampling is only supported for --model_type rnn")

    def config_overrides(self) -> dict:
        if self.model_config is None:
            return {}
        return (
            dict(self.model_config) if isinstance(self.model_config, dict) else json.loads(self.model_config)
        )


@dataclass
class TrainArguments:
    """The optimisation loop, evaluation, checkpoints and logging."""

    output_dir: str = field(
        default="outputs/run", metadata={"help": "Where checkpoints, models and logs go."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Delete a previous run's checkpoints/models in --output_dir."}
    )
    resume: bool = field(
        default=False, metadata={"help": "Continue from the newest complete checkpoint in --output_dir."}
    )
    seed: int = field(default=42, metadata={"help": "Seed for model init, batch shuffling and dropout."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Peak learning rate of AdamW."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (not on biases/norms)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(
        default=0.98, metadata={"help": "AdamW beta2 (0.98 as in Vaswani et al. 2017)."}
    )
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    lr_scheduler: str = field(
        default="inverse_sqrt",
        metadata={
            "help": "'inverse_sqrt' (Noam: linear warmup, then 1/sqrt(step)), 'linear', 'cosine', 'constant'."
        },
    )
    warmup_steps: int = field(default=1000, metadata={"help": "Linear warmup steps."})
    max_steps: int = field(default=10000, metadata={"help": "Optimizer steps to train for."})
    num_epochs: int | None = field(default=None, metadata={"help": "Also stop after this many epochs."})
    max_train_minutes: float | None = field(
        default=None,
        metadata={
            "help": "Also stop after this much training wall time (minutes), then validate and save as at "
            "--max_steps (like fairseq's --stop-time-hours). Checked on all processes together."
        },
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-batches per process accumulated into one optimizer step."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Clip the gradient norm to this (0 = off)."})
    mixed_precision: str = field(
        default="no", metadata={"help": "Accelerate mixed precision: 'no', 'fp16', 'bf16'."}
    )
    eval_steps: int = field(
        default=1000, metadata={"help": "Validate (loss, BLEU, chrF) every N steps and at the end."}
    )
    save_steps: int | None = field(
        default=None, metadata={"help": "Checkpoint every N steps (default: --eval_steps) and at the end."}
    )
    save_total_limit: int = field(
        default=2, metadata={"help": "Keep the last K checkpoints (plus the best one)."}
    )
    num_beams: int = field(
        default=5, metadata={"help": "Beam size for validation and the saved generation config."}
    )
    max_new_tokens: int = field(default=128, metadata={"help": "Generation length limit during validation."})
    metric_for_best_model: str = field(
        default="bleu",
        metadata={"help": "Validation metric that picks the best model: 'bleu', 'chrf', 'loss'."},
    )
    early_stopping_patience: int = field(
        default=0, metadata={"help": "Stop after N validations without improvement (0 = never stop early)."}
    )
    logging_steps: int = field(default=10, metadata={"help": "Log loss/lr/throughput every N steps."})
    log_with: str = field(
        default="tensorboard",
        metadata={
            "help": "Accelerate tracker ('tensorboard', 'wandb', 'all', ... or 'none'); logs go to output_dir."
        },
    )
    disable_progress_bar: bool = field(default=False, metadata={"help": "Hide the tqdm progress bar."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    stop_after_step: int | None = field(
        default=None,
        metadata={
            "help": "Debugging: save a checkpoint after this step and exit without the final save, as if the run "
            "had been interrupted (used to test --resume)."
        },
    )
    nan_policy: str = field(
        default="stop",
        metadata={
            "help": "What a non-finite (NaN/inf) loss or gradient norm does: 'stop' saves the last good state and "
            f"stops with an error naming the step; 'skip' drops that update and goes on (stops after "
            f"{MAX_CONSECUTIVE_SKIPS} in a row). No update with non-finite values is ever applied."
        },
    )

    def __post_init__(self):
        _check_choice("lr_scheduler", self.lr_scheduler, SCHEDULERS)
        _check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        _check_choice("metric_for_best_model", self.metric_for_best_model, BEST_METRICS)
        _check_choice("nan_policy", self.nan_policy, NAN_POLICIES)
        _check_positive("learning_rate", self.learning_rate)
        for name in ("max_steps", "gradient_accumulation_steps", "eval_steps", "num_beams", "max_new_tokens"):
            _check_positive(name, getattr(self, name))
        for name in ("logging_steps", "save_total_limit", "num_epochs", "save_steps", "stop_after_step"):
            _check_positive(name, getattr(self, name))
        _check_positive("max_train_minutes", self.max_train_minutes)
        for name in (
            "warmup_steps",
            "weight_decay",
            "max_grad_norm",
            "early_stopping_patience",
            "num_workers",
        ):
            _check_positive(name, getattr(self, name), allow_zero=True)
        if self.lr_scheduler == "inverse_sqrt" and self.warmup_steps == 0:
            raise ValueError("--lr_scheduler=inverse_sqrt needs --warmup_steps > 0")
        if self.resume and self.overwrite_output_dir:
            raise ValueError("--resume and --overwrite_output_dir contradict each other; give one")
        if self.save_steps is None:
            self.save_steps = self.eval_steps


ARGUMENT_CLASSES = (DataArguments, ModelArguments, TrainArguments)


def build_parser():
    from transformers import HfArgumentParser

    parser = HfArgumentParser(ARGUMENT_CLASSES, prog="train.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        default=None,
        help="YAML or JSON recipe whose keys are the options below; command-line options override it.",
    )
    return parser


def _read_recipe(path: str) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--config {path!r}: file not found")
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"--config {path!r} does not parse: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path!r} must hold a mapping of option: value")
    return data


def _check_recipe_types(path: str, recipe: dict) -> None:
    """A recipe value is used as given (argparse converts only command-line strings): check its type here, so
    ``max_steps: 2.5`` or ``disable_progress_bar: maybe`` in YAML fails naming the file and the option."""
    import typing

    hints = {}
    for cls in ARGUMENT_CLASSES:
        hints.update(typing.get_type_hints(cls))
    for key, value in recipe.items():
        expected = hints.get(key)
        if expected is None:
            continue
        args = typing.get_args(expected) or (expected,)
        if value is None:
            if type(None) in args:
                continue
        elif isinstance(value, str) and str not in args:
            # argparse converts string defaults as if typed on the command line (YAML reads 5e-4 as a string)
            try:
                if bool in args:
                    ok = value.lower() in ("yes", "true", "t", "y", "1", "no", "false", "f", "n", "0")
                else:
                    (int if int in args else float)(value)
                    ok = True
            except ValueError:
                ok = False
            if ok:
                continue
        elif any(
            (t is bool and isinstance(value, bool))
            or (t is int and isinstance(value, int) and not isinstance(value, bool))
            or (t is float and isinstance(value, (int, float)) and not isinstance(value, bool))
            or (t is str and isinstance(value, str))
            for t in args
        ):
            continue
        names = " or ".join(
            {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(t, "null")
            for t in args
        )
        raise ValueError(f"--config {path!r}: {key}: {value!r} is not valid; it must be {names}")


def parse_args(argv: list[str] | None = None) -> tuple[DataArguments, ModelArguments, TrainArguments]:
    """Recipe (``--config``) values become parser defaults, so anything on the command line wins."""
    import argparse

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config:
        recipe = _read_recipe(known.config)
        valid = {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls)}
        unknown = sorted(set(recipe) - valid)
        if unknown:
            raise ValueError(f"--config {known.config!r}: unknown option(s) {unknown}; see --help")
        if isinstance(recipe.get("model_config"), dict):
            recipe["model_config"] = json.dumps(recipe["model_config"])
        _check_recipe_types(known.config, recipe)
        parser.set_defaults(**recipe)
    *outputs, _extra = parser.parse_args_into_dataclasses(args=argv)
    check_task_options(*outputs)
    return tuple(outputs)


def check_task_options(
    data_args: DataArguments, model_args: ModelArguments, train_args: TrainArguments
) -> None:
    """Options that only make sense together: image data ⇔ ``--model_type captioning``."""
    if model_args.model_type == "captioning" and not data_args.is_captioning:
        given = next(
            f"--{n}"
            for n in ("task", "dataset_name", "train_file", "train_prefix")
            if getattr(data_args, n) is not None
        )
        raise ValueError(
            f"--model_type captioning needs image data: --task {CAPTIONING_TASK} or --image_folder DIR "
            f"--captions_file FILE, not the text source {given}"
            + (f"={data_args.task}" if given == "--task" else "")
        )
    if data_args.is_captioning and model_args.model_type != "captioning":
        given = f"--task {data_args.task}" if data_args.task else "--image_folder"
        raise ValueError(
            f"{given} is image data: train it with --model_type captioning (got --model_type {model_args.model_type})"
        )
    if model_args.model_type != "captioning" and train_args.metric_for_best_model in CAPTIONING_ONLY_METRICS:
        raise ValueError(
            f"--metric_for_best_model={train_args.metric_for_best_model} is computed for --model_type captioning "
            "only; valid choices for text: bleu, chrf, loss"
        )


def args_to_dict(*args) -> dict:
    out = {}
    for a in args:
        out.update(dataclasses.asdict(a))
    return out


# ----------------------------------------------------------------------------------------------------- state


class TrainState:
    """Everything besides model/optimizer/scheduler/RNG a resumed run needs (checkpointed via Accelerate)."""

    def __init__(self):
        self.step = 0
        self.epoch = 0
        self.groups_in_epoch = 0  # optimizer steps already taken in the current epoch
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self.nan_skips = 0  # non-finite steps in a row (--nan_policy skip)
        self.skipped_steps: list[int] = []
        self.history: list[dict] = []

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


# ----------------------------------------------------------------------------------------------------- data


def load_raw_datasets(data_args: DataArguments, seed: int):
    """``(DatasetDict with train/validation[/test], source_lang, target_lang)``."""
    if data_args.task is not None:
        from .tasks import load_task_dataset, task_languages

        raw = load_task_dataset(
            data_args.task,
            num_train=data_args.task_num_train,
            num_validation=data_args.task_num_validation,
            num_test=data_args.task_num_test,
            seed=seed,
        )
        src, tgt = task_languages(data_args.task)
    else:
        from .data import load_parallel_data

        src, tgt = data_args.source_lang, data_args.target_lang
        limits = (data_args.max_train_examples, data_args.max_validation_examples)
        limit = max(limits) if None not in limits else None  # read no more lines than any split needs
        raw = load_parallel_data(
            src,
            tgt,
            dataset_name=data_args.dataset_name,
            dataset_config_name=data_args.dataset_config_name,
            train_file=data_args.train_file,
            validation_file=data_args.validation_file,
            train_prefix=data_args.train_prefix,
            validation_prefix=data_args.validation_prefix,
            max_examples=limit,
        )
    for split in ("train", "validation"):
        if split not in raw:
            raise ValueError(f"the data has no {split!r} split (found {list(raw)})")
    if data_args.max_train_examples is not None:
        raw["train"] = raw["train"].select(range(min(data_args.max_train_examples, len(raw["train"]))))
    if data_args.max_validation_examples is not None:
        n = min(data_args.max_validation_examples, len(raw["validation"]))
        raw["validation"] = raw["validation"].select(range(n))
    return raw, src, tgt


def tokenize_train(dataset, tokenizer, src: str, tgt: str, data_args: DataArguments):
    """Training pairs through :func:`hf_seq2seq.data.tokenize_parallel` (drops empty and over-long pairs)."""
    from datasets import DatasetDict

    from .data import tokenize_parallel

    out = tokenize_parallel(
        DatasetDict({"train": dataset}),
        tokenizer,
        source_lang=src,
        target_lang=tgt,
        max_source_length=data_args.max_source_length,
        max_target_length=data_args.max_target_length,
    )["train"]
    if len(out) == 0:
        raise ValueError("no training pair is left after dropping empty and over-long pairs")
    return out


def tokenize_validation(dataset, tokenizer, src: str, tgt: str, data_args: DataArguments):
    """Validation pairs, truncated rather than dropped: BLEU is computed on every validation sentence."""

    def encode(batch):
        srcs = [p[src] for p in batch["translation"]]
        tgts = [p[tgt] for p in batch["translation"]]
        enc = tokenizer(srcs, truncation=True, max_length=data_args.max_source_length)
        labels = tokenizer(text_target=tgts, truncation=True, max_length=data_args.max_target_length)
        return {"input_ids": enc["input_ids"], "labels": labels["input_ids"]}

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names)


def epoch_batches(lengths: list[int], max_tokens: int, seed: int, epoch: int) -> list[list[int]]:
    """The unsharded, shuffled, length-bucketed token-budget batches of one epoch (identical on every rank)."""
    from .data import TokenBatchSampler

    sampler = TokenBatchSampler(lengths, max_tokens, shuffle=True, seed=seed, num_replicas=1, rank=0)
    sampler.set_epoch(epoch)
    return [list(b) for b in sampler]


# ----------------------------------------------------------------------------------------------------- model


def build_tokenizer(raw, src: str, tgt: str, data_args: DataArguments, model_args: ModelArguments):
    from transformers import AutoTokenizer

    if model_args.model_name_or_path is not None:
        return AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    if data_args.tokenizer_name_or_path is not None:
        return AutoTokenizer.from_pretrained(data_args.tokenizer_name_or_path)
    from .tokenization import train_tokenizer

    train = raw["train"]["translation"]
    texts = [ex[src] for ex in train] + [ex[tgt] for ex in train]
    return train_tokenizer(texts, vocab_size=data_args.vocab_size, model=data_args.tokenizer_model)


def build_model(model_args: ModelArguments, tokenizer):
    from transformers import AutoModelForSeq2SeqLM

    import hf_seq2seq  # noqa: F401  (registers the Auto classes)

    from .configuration_rnn_seq2seq import RNNSeq2SeqConfig
    from .configuration_transformer_seq2seq import TransformerSeq2SeqConfig
    from .modeling_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration
    from .modeling_transformer_seq2seq import TransformerSeq2SeqForConditionalGeneration

    overrides = model_args.config_overrides()
    if model_args.label_smoothing is not None:
        overrides["label_smoothing"] = model_args.label_smoothing
    if model_args.model_name_or_path is not None:
        from .tokenization import check_tokenizer_fits_model

        model = AutoModelForSeq2SeqLM.from_pretrained(
            model_args.model_name_or_path, dtype=torch.float32, use_safetensors=True
        )
        check_tokenizer_fits_model(tokenizer, model.config, model_args.model_name_or_path)
        for key, value in overrides.items():
            if not hasattr(model.config, key):
                raise ValueError(f"--model_config: {key!r} is not an option of {type(model.config).__name__}")
            setattr(model.config, key, value)
        return model
    config_cls, model_cls = {
        "rnn": (RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration),
        "transformer": (TransformerSeq2SeqConfig, TransformerSeq2SeqForConditionalGeneration),
    }[model_args.model_type]
    defaults = config_cls()
    unknown = sorted(k for k in overrides if not hasattr(defaults, k))
    if unknown:
        raise ValueError(f"--model_config: {unknown} are not options of {config_cls.__name__}")
    overrides.setdefault("vocab_size", len(tokenizer))
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        overrides.setdefault(name, getattr(tokenizer, name))
    return model_cls(config_cls(**overrides))


def set_generation_defaults(model, train_args: TrainArguments) -> None:
    """Beam-search defaults for the saved ``generation_config.json`` (generation options never go in config)."""
    gc = model.generation_config
    cfg = model.config
    gc.num_beams = train_args.num_beams
    gc.max_new_tokens = train_args.max_new_tokens
    gc.early_stopping = train_args.num_beams > 1  # True with greedy search makes the config unsavable
    gc.decoder_start_token_id = cfg.decoder_start_token_id
    gc.bos_token_id = cfg.bos_token_id
    gc.eos_token_id = cfg.eos_token_id
    gc.pad_token_id = cfg.pad_token_id
    gc.max_length = None


def save_model(model, tokenizer, path: Path, card: dict | None = None) -> None:
    """A loadable model folder (config with auto_map, code files, weights, tokenizer, generation config, card)."""
    from .hub import save_model_folder

    save_model_folder(model, tokenizer, str(path), card=card)


# ----------------------------------------------------------------------------------------------------- loss


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Summed (not averaged) label-smoothed cross-entropy over the non-``-100`` labels, in float32."""
    return F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),
        labels.reshape(-1),
        ignore_index=-100,
        label_smoothing=label_smoothing,
        reduction="sum",
    )


def scheduled_sampling_inputs(
    raw_model, batch: dict, labels: torch.Tensor, ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """Decoder inputs where each gold token y_{t-1} is replaced by the model's prediction with prob. ``ratio``.

    Bengio et al. (2015) sample token by token inside the decoder; the decoder step here is a pure function used
    by both training and generate(), so we use the two-pass approximation (Duckworth et al. 2019, "Parallel
    scheduled sampling"): pass 1 (no gradient) decodes the batch teacher-forced, its argmax predictions replace
    a random subset of the gold inputs, pass 2 trains on the mixture.
    """
    dec_in = batch["decoder_input_ids"]
    with torch.no_grad():
        logits = raw_model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=dec_in
        ).logits
    predicted = logits.argmax(-1)  # prediction of y_t at position t
    draw = torch.rand(dec_in[:, 1:].shape, generator=generator).to(dec_in.device)
    replace = (draw < ratio) & (labels[:, :-1] != -100)
    mixed = dec_in.clone()
    mixed[:, 1:] = torch.where(replace, predicted[:, :-1], dec_in[:, 1:])
    return mixed


# ----------------------------------------------------------------------------------------------------- checkpoints


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (with the marker), oldest first. Folders without the marker are ignored."""
    root = output_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m and (p / COMPLETE_MARKER).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _run_markers(output_dir: Path) -> list[str]:
    names = ("checkpoints", "training_history.json", "final_model", "best_model")
    return [n for n in names if (output_dir / n).exists()]


def prepare_output_dir(output_dir: Path, train_args: TrainArguments, is_main: bool) -> None:
    markers = _run_markers(output_dir)
    if markers and not train_args.resume and not train_args.overwrite_output_dir:
        raise ValueError(
            f"--output_dir {str(output_dir)!r} already holds a run ({', '.join(markers)}); pass --resume to "
            "continue it or --overwrite_output_dir to replace it"
        )
    if is_main:
        if train_args.overwrite_output_dir:
            for name in (*markers, "tokenizer", "runs", "run_config.json"):
                target = output_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        output_dir.mkdir(parents=True, exist_ok=True)


# ----------------------------------------------------------------------------------------------------- validation


@torch.no_grad()
def evaluate_model(accelerator, model, tokenizer, val_tok, references: list[str], train_args, data_args):
    """Validation loss + beam-search BLEU/chrF over the whole validation set, every sentence exactly once.

    Sentences are sorted by length and cut into batches; batch ``i`` goes to rank ``i % world``. Each rank returns
    ``(index, hypothesis)`` pairs, ``accelerator.gather_for_metrics(..., use_gather_object=True)`` collects them,
    and the main process checks that the indices are exactly ``0..N-1`` before scoring: no sampler padding, so no
    duplicate to drop and none can slip through.
    """
    raw = accelerator.unwrap_model(model)
    was_training = raw.training
    raw.eval()
    from transformers import DataCollatorForSeq2Seq

    collator = DataCollatorForSeq2Seq(tokenizer, model=raw, label_pad_token_id=-100)
    lengths = [len(x) for x in val_tok["input_ids"]]
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bs = data_args.validation_batch_size
    batches = [order[i : i + bs] for i in range(0, len(order), bs)]
    mine = batches[accelerator.process_index :: accelerator.num_processes]
    loss_sum = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    tokens = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    pairs: list[tuple[int, str]] = []
    ls = float(getattr(raw.config, "label_smoothing", 0.0) or 0.0)
    for idx in mine:
        feats = [{"input_ids": val_tok[i]["input_ids"], "labels": val_tok[i]["labels"]} for i in idx]
        batch = {k: v.to(accelerator.device) for k, v in collator(feats).items()}
        labels = batch.pop("labels")
        with accelerator.autocast():
            logits = raw(**batch).logits
        loss_sum += token_loss_sum(logits, labels, ls).double()
        tokens += (labels != -100).sum()
        with accelerator.autocast():
            generated = raw.generate(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                num_beams=train_args.num_beams,
                max_new_tokens=train_args.max_new_tokens,
            )
        texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
        pairs.extend(zip(idx, texts))
    loss_sum = accelerator.reduce(loss_sum, reduction="sum")
    tokens = accelerator.reduce(tokens, reduction="sum")
    gathered = accelerator.gather_for_metrics(pairs, use_gather_object=True)
    if was_training:
        raw.train()
    result = {"loss": float(loss_sum / tokens.clamp(min=1))}
    if not accelerator.is_main_process:
        return result, None
    indices = sorted(i for i, _ in gathered)
    if indices != list(range(len(references))):
        raise RuntimeError(
            f"validation gather lost or duplicated sentences: {len(indices)} results for {len(references)} "
            f"sentences ({len(set(indices))} distinct)"
        )
    hyps = [None] * len(references)
    for i, text in gathered:
        hyps[i] = text
    from .metrics import load_metric

    bleu = load_metric("sacrebleu").compute(predictions=hyps, references=[[r] for r in references])
    chrf = load_metric("chrf").compute(predictions=hyps, references=[[r] for r in references])
    result.update(
        bleu=bleu["score"],
        chrf=chrf["score"],
        bleu_signature=bleu["signature"],
        chrf_signature=chrf["signature"],
        num_sentences=len(hyps),
        ref_len=bleu["ref_len"],
        sys_len=bleu["sys_len"],
    )
    return result, hyps


# ----------------------------------------------------------------------------------------------------- tasks


class TextTask:
    """The translation side of the loop (data, tokenizer, model, batches, loss, validation, saving).

    :func:`run_training` talks to one such *task adapter*, chosen once by :func:`make_task` from ``--model_type``;
    :class:`hf_seq2seq.training_captioning.CaptioningTask` is the image-captioning one. Both expose ``load``,
    ``build_tokenizer``, ``prepare``, ``build_model``, ``collator``, ``epoch_batches``, ``model_inputs``,
    ``loss_sum``, ``evaluate``, ``save``, ``card_facts``, ``result_extras`` and ``train_dataset`` /
    ``label_lengths`` after ``prepare``.
    """

    name = "text"
    batch_option = "--max_tokens"

    def __init__(self, data_args: DataArguments, model_args: ModelArguments, train_args: TrainArguments):
        self.data_args, self.model_args, self.train_args = data_args, model_args, train_args

    def load(self, seed: int) -> None:
        self.raw, self.src, self.tgt = load_raw_datasets(self.data_args, seed)

    def build_tokenizer(self):
        return build_tokenizer(self.raw, self.src, self.tgt, self.data_args, self.model_args)

    def prepare(self, tokenizer) -> None:
        train_tok = tokenize_train(self.raw["train"], tokenizer, self.src, self.tgt, self.data_args)
        self.val_tok = tokenize_validation(
            self.raw["validation"], tokenizer, self.src, self.tgt, self.data_args
        )
        self.references = [ex[self.tgt] for ex in self.raw["validation"]["translation"]]
        self.references_source = [ex[self.src] for ex in self.raw["validation"]["translation"]]
        self.lengths = list(train_tok["length"])
        self.label_lengths = [len(b) for b in train_tok["labels"]]
        self.train_dataset = train_tok.remove_columns("length")

    def epoch_batches(self, seed: int, epoch: int) -> list[list[int]]:
        return epoch_batches(self.lengths, self.data_args.max_tokens, seed, epoch)

    def build_model(self, tokenizer):
        return build_model(self.model_args, tokenizer)

    def collator(self, tokenizer, model):
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)

    def model_inputs(self, batch: dict) -> dict:
        return {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids")}

    def loss_sum(self, model, inputs: dict, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        return token_loss_sum(model(**inputs).logits, labels, label_smoothing)

    def evaluate(self, accelerator, model, tokenizer, train_args: TrainArguments) -> dict:
        result, _ = evaluate_model(
            accelerator, model, tokenizer, self.val_tok, self.references, train_args, self.data_args
        )
        return result

    def save(self, model, tokenizer, path: Path, card: dict | None = None) -> None:
        save_model(model, tokenizer, path, card)

    def card_facts(self) -> dict:
        d = self.data_args
        return {
            "source_lang": self.src,
            "target_lang": self.tgt,
            "dataset_name": d.dataset_name
            or (f"embedded task {d.task!r}" if d.task else None)
            or d.train_prefix
            or d.train_file,
            "example": self.references_source[0] if self.references_source else None,
        }

    def result_extras(self) -> dict:
        return {"raw_datasets": self.raw, "source_lang": self.src, "target_lang": self.tgt}


def make_task(data_args: DataArguments, model_args: ModelArguments, train_args: TrainArguments):
    """The task adapter for ``--model_type``: :class:`TextTask` or the captioning one."""
    check_task_options(data_args, model_args, train_args)
    if model_args.model_type == "captioning":
        from .training_captioning import CaptioningTask

        return CaptioningTask(data_args, model_args, train_args)
    return TextTask(data_args, model_args, train_args)


# ----------------------------------------------------------------------------------------------------- the loop


def _build_scheduler(optimizer, train_args: TrainArguments):
    from transformers import get_inverse_sqrt_schedule, get_scheduler

    if train_args.lr_scheduler == "inverse_sqrt":
        return get_inverse_sqrt_schedule(optimizer, num_warmup_steps=train_args.warmup_steps)
    name = "constant_with_warmup" if train_args.lr_scheduler == "constant" else train_args.lr_scheduler
    return get_scheduler(
        name, optimizer, num_warmup_steps=train_args.warmup_steps, num_training_steps=train_args.max_steps
    )


def _build_optimizer(model, train_args: TrainArguments):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": train_args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=train_args.learning_rate,
        betas=(train_args.adam_beta1, train_args.adam_beta2),
        eps=train_args.adam_epsilon,
    )


def _debug_pause_requested(where: str, step: int) -> bool:
    return os.environ.get(DEBUG_PAUSE_ENV) == f"{where}:{step}"


def _debug_pause(output_dir: Path) -> None:
    """Test hook (see ``DEBUG_PAUSE_ENV``): tell the test where we are, then wait to be killed."""
    (output_dir / "DEBUG_PAUSED").write_text(str(os.getpid()))
    while True:
        time.sleep(60)


def _is_better(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


def run_training(data_args: DataArguments, model_args: ModelArguments, train_args: TrainArguments) -> dict:
    """Train; return ``{"model", "tokenizer", "raw_datasets", "history", "final_metrics", "status", ...}``."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from tqdm.auto import tqdm

    task = make_task(data_args, model_args, train_args)
    output_dir = Path(train_args.output_dir)
    log_with = None if train_args.log_with in ("none", "") else train_args.log_with
    accelerator = Accelerator(
        mixed_precision=train_args.mixed_precision,
        gradient_accumulation_steps=train_args.gradient_accumulation_steps,
        step_scheduler_with_optimizer=False,  # one scheduler step per optimizer step, whatever the world size
        log_with=log_with,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / "runs")
        ),
    )
    is_main = accelerator.is_main_process
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not is_main:
        logger.setLevel(logging.WARNING)

    run_start = time.perf_counter()
    prepare_output_dir(output_dir, train_args, is_main)  # every rank raises the same error; main deletes
    accelerator.wait_for_everyone()
    set_seed(train_args.seed)

    task.load(train_args.seed)
    tok_dir = output_dir / "tokenizer"
    with accelerator.main_process_first():
        if (train_args.resume and tok_dir.is_dir()) or not is_main:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        else:
            tokenizer = task.build_tokenizer()
            tokenizer.save_pretrained(tok_dir)
    task.prepare(tokenizer)

    set_seed(train_args.seed)
    model = task.build_model(tokenizer)
    set_generation_defaults(model, train_args)
    is_rnn = type(model).__name__.startswith("RNN")
    if model_args.scheduled_sampling > 0 and not is_rnn:
        raise ValueError("--scheduled_sampling is only supported for the RNN family")
    label_smoothing = float(getattr(model.config, "label_smoothing", 0.0) or 0.0)
    collator = task.collator(tokenizer, model)

    optimizer = _build_optimizer(model, train_args)
    scheduler = _build_scheduler(optimizer, train_args)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    state = TrainState()
    accelerator.register_for_checkpointing(state)

    if train_args.resume:
        if is_main:
            for stale in sorted((output_dir / "checkpoints").glob(".tmp-*")):
                logger.warning("removing %s: a checkpoint whose write was interrupted", stale)
                shutil.rmtree(stale, ignore_errors=True)
        accelerator.wait_for_everyone()
        ckpts = list_checkpoints(output_dir)
        if ckpts:
            step, path = ckpts[-1]
            accelerator.load_state(str(path))
            logger.info("resumed from %s (step %d, epoch %d)", path, state.step, state.epoch)
        else:
            logger.warning("--resume: no complete checkpoint in %s; starting from scratch", output_dir)
    if is_main:
        (output_dir / "run_config.json").write_text(
            json.dumps(args_to_dict(data_args, model_args, train_args), indent=2, default=str)
        )
    if log_with is not None:
        hparams = {
            k: v
            for k, v in args_to_dict(data_args, model_args, train_args).items()
            if isinstance(v, (int, float, str, bool))
        }
        accelerator.init_trackers("hf_seq2seq", config=hparams)

    world, accum = accelerator.num_processes, train_args.gradient_accumulation_steps
    per_step = world * accum
    label_lengths = task.label_lengths

    def save_checkpoint() -> Path:
        root = output_dir / "checkpoints"
        name = f"step-{state.step}"
        tmp, final = root / f".tmp-{name}", root / name
        if is_main:
            root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        if is_main and _debug_pause_requested("save", state.step):
            weights = tmp / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a write cut short
            _debug_pause(output_dir)
        accelerator.wait_for_everyone()
        if is_main:
            (tmp / COMPLETE_MARKER).write_text(json.dumps({"step": state.step, "time": time.time()}))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            keep = {s for s, _ in list_checkpoints(output_dir)[-train_args.save_total_limit :]}
            if state.best_step is not None:
                keep.add(state.best_step)
            for s, p in list_checkpoints(output_dir):
                if s not in keep:
                    shutil.rmtree(p, ignore_errors=True)
        accelerator.wait_for_everyone()
        return final

    def write_history() -> None:
        if is_main:
            (output_dir / "training_history.json").write_text(json.dumps(state.history, indent=2))

    def card(metrics: dict, final: bool = False) -> dict:
        """What hub.render_model_card knows how to show: data, metrics + signatures, the training options."""
        facts = {
            **{k: v for k, v in task.card_facts().items() if k != "example"},
            "eval_split": "validation",
            "num_eval_sentences": metrics.get("num_sentences"),
            "training_args": args_to_dict(data_args, model_args, train_args),
            "recipe": getattr(train_args, "recipe", None),
            "steps": state.step,
            "epochs": state.epoch,
            "train_time": time.perf_counter() - run_start,
            "hardware": f"{world} x {accelerator.device.type}",
            **{k: metrics[k] for k in CARD_METRIC_KEYS if k in metrics},
        }
        if final:
            keys = {"loss": "train_loss", "eval_loss": "valid_loss", "eval_bleu": "bleu"}
            facts["history"] = [
                {"step": h["step"], **{new: h[old] for old, new in keys.items() if h.get(old) is not None}}
                for h in state.history
            ]
            facts["example"] = task.card_facts().get("example")
        return facts

    def run_eval() -> dict:
        result = task.evaluate(accelerator, model, tokenizer, train_args)
        entry = {"step": state.step, "epoch": state.epoch, **{f"eval_{k}": v for k, v in result.items()}}
        state.history.append(entry)
        value = (
            result["loss"]
            if train_args.metric_for_best_model == "loss"
            else result.get(train_args.metric_for_best_model)
        )
        # the metric is computed on the main process only: broadcast the decision
        flag = torch.tensor(0.0, device=accelerator.device)
        if is_main:
            improved = _is_better(value, state.best_metric, train_args.metric_for_best_model)
            flag += 1.0 if improved else 0.0
        flag = accelerator.reduce(flag, reduction="sum")
        if flag.item() > 0:
            if is_main:
                state.best_metric = value
                task.save(accelerator.unwrap_model(model), tokenizer, output_dir / "best_model", card(result))
            state.best_step = state.step
            state.bad_evals = 0
        else:
            state.bad_evals += 1
        if log_with is not None:
            accelerator.log(
                {f"eval/{k}": v for k, v in result.items() if isinstance(v, (int, float))}, step=state.step
            )
        if is_main:
            logger.info(
                "step %d: validation %s",
                state.step,
                ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()),
            )
        write_history()
        return result

    progress = tqdm(
        total=train_args.max_steps,
        initial=state.step,
        disable=not is_main or train_args.disable_progress_bar,
        desc="training",
        dynamic_ncols=True,
    )
    model.train()
    status, last_eval, last_eval_step, stop_reason = "completed", None, None, None
    window_tokens, window_start = 0, time.perf_counter()
    # fp16 overflows are handled by the grad scaler (the step is skipped and the scale lowered): not an error
    check_grads = train_args.mixed_precision != "fp16"
    debug_nan_step = int(os.environ.get(DEBUG_NAN_ENV, "0") or 0)
    while state.step < train_args.max_steps and stop_reason is None:
        if train_args.num_epochs is not None and state.epoch >= train_args.num_epochs:
            break
        batches = task.epoch_batches(train_args.seed, state.epoch)
        num_groups = len(batches) // per_step
        if num_groups == 0:
            size = data_args.max_tokens if task.batch_option == "--max_tokens" else data_args.batch_size
            raise ValueError(
                f"the training split gives {len(batches)} batches of {task.batch_option}={size}, fewer "
                f"than one optimizer step needs ({world} processes x {accum} accumulation steps)"
            )
        mine = [
            batches[g * per_step + m * world + accelerator.process_index]
            for g in range(num_groups)
            for m in range(accum)
        ]
        group_tokens = [
            sum(label_lengths[i] for b in batches[g * per_step : (g + 1) * per_step] for i in b)
            for g in range(num_groups)
        ]
        loader = torch.utils.data.DataLoader(
            task.train_dataset, batch_sampler=mine, collate_fn=collator, num_workers=train_args.num_workers
        )
        if state.groups_in_epoch:
            loader = accelerator.skip_first_batches(loader, state.groups_in_epoch * accum)
        batch_iter = iter(loader)
        for g in range(state.groups_in_epoch, num_groups):
            G = group_tokens[g]
            step_loss = torch.zeros((), dtype=torch.float64, device=accelerator.device)
            for m in range(accum):
                batch = {k: v.to(accelerator.device) for k, v in next(batch_iter).items()}
                labels = batch.pop("labels")
                batch = task.model_inputs(batch)
                with accelerator.accumulate(model):
                    if model_args.scheduled_sampling > 0:
                        gen = torch.Generator().manual_seed(
                            train_args.seed * 1_000_003
                            + state.step * 1009
                            + m * world
                            + accelerator.process_index
                        )
                        batch["decoder_input_ids"] = scheduled_sampling_inputs(
                            accelerator.unwrap_model(model), batch, labels, model_args.scheduled_sampling, gen
                        )
                    loss_sum = task.loss_sum(model, batch, labels, label_smoothing)
                    if debug_nan_step == state.step + 1 and m == accum - 1:
                        loss_sum = loss_sum * float("nan")
                        debug_nan_step = 0  # once: the retried step is clean
                    accelerator.backward(loss_sum * (world * accum / G))
                step_loss += loss_sum.detach().double()
            if _debug_pause_requested("step", state.step + 1):
                _debug_pause(output_dir)
            step_loss = accelerator.reduce(step_loss, reduction="sum") / G
            loss_value = float(step_loss)
            grad_norm = None
            if math.isfinite(loss_value) and (train_args.max_grad_norm > 0 or check_grads):
                # the global norm (DDP has all-reduced the gradients): the same value on every rank
                max_norm = train_args.max_grad_norm if train_args.max_grad_norm > 0 else math.inf
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_norm)
            bad = (
                "loss"
                if not math.isfinite(loss_value)
                else "gradient norm"
                if check_grads and grad_norm is not None and not math.isfinite(float(grad_norm))
                else None
            )
            if bad is not None:
                optimizer.zero_grad(set_to_none=True)  # the update with non-finite values is never applied
                value = loss_value if bad == "loss" else float(grad_norm)
                state.nan_skips = getattr(state, "nan_skips", 0) + 1
                if train_args.nan_policy == "skip" and state.nan_skips < MAX_CONSECUTIVE_SKIPS:
                    state.skipped_steps = [*getattr(state, "skipped_steps", []), state.step + 1]
                    state.groups_in_epoch = g + 1
                    state.history.append(
                        {"step": state.step + 1, "epoch": state.epoch, "skipped": f"{bad} is {value}"}
                    )
                    if is_main:
                        logger.warning(
                            "step %d: training %s is %s; update skipped (--nan_policy skip, %d in a row)",
                            state.step + 1,
                            bad,
                            value,
                            state.nan_skips,
                        )
                    continue
                path = save_checkpoint() if state.step > 0 else None
                write_history()
                where = (
                    f"; the last good state (step {state.step}) is saved in {path}"
                    if path
                    else "; no step had been taken, nothing was saved"
                )
                in_a_row = f" ({state.nan_skips} non-finite steps in a row)" if state.nan_skips > 1 else ""
                msg = f"training {bad} is {value} at step {state.step + 1}{in_a_row}{where}"
                progress.close()
                accelerator.end_training()
                raise FloatingPointError(msg)
            state.nan_skips = 0
            optimizer.step()
            if not accelerator.optimizer_step_was_skipped:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.groups_in_epoch = g + 1
            lr = scheduler.get_last_lr()[0]
            window_tokens += G
            entry = {"step": state.step, "epoch": state.epoch, "loss": loss_value, "lr": lr, "tokens": G}
            if grad_norm is not None:
                entry["grad_norm"] = float(grad_norm)
            state.history.append(entry)
            progress.update(1)
            if state.step % train_args.logging_steps == 0 or state.step == 1:
                elapsed = time.perf_counter() - window_start
                tps = window_tokens / max(elapsed, 1e-9)
                progress.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:.0f}")
                if log_with is not None:
                    accelerator.log(
                        {"train/loss": loss_value, "train/lr": lr, "train/target_tokens_per_s": tps},
                        step=state.step,
                    )
                window_tokens, window_start = 0, time.perf_counter()
            if state.step % train_args.eval_steps == 0 or state.step == train_args.max_steps:
                last_eval, last_eval_step = run_eval(), state.step
                if (
                    train_args.early_stopping_patience
                    and state.bad_evals >= train_args.early_stopping_patience
                ):
                    stop_reason = f"early stopping: no {train_args.metric_for_best_model} improvement in {state.bad_evals} validations"
            if state.step % train_args.save_steps == 0 or state.step == train_args.max_steps or stop_reason:
                save_checkpoint()
            if train_args.stop_after_step is not None and state.step >= train_args.stop_after_step:
                if state.step % train_args.save_steps != 0 and state.step != train_args.max_steps:
                    save_checkpoint()
                stop_reason, status = f"--stop_after_step={train_args.stop_after_step}", "interrupted"
            if train_args.max_train_minutes is not None and stop_reason is None:
                # Every rank must agree, or DDP hangs: stop when any rank is over the limit.
                over = torch.tensor(
                    float(time.perf_counter() - run_start > 60 * train_args.max_train_minutes),
                    device=accelerator.device,
                )
                if accelerator.reduce(over, reduction="sum").item() > 0:
                    stop_reason = f"--max_train_minutes={train_args.max_train_minutes} reached"
                    if state.step % train_args.save_steps != 0:
                        save_checkpoint()
            if state.step >= train_args.max_steps or stop_reason:
                break
        else:
            state.epoch += 1
            state.groups_in_epoch = 0
    progress.close()
    if stop_reason:
        logger.info("stopped: %s", stop_reason)
    write_history()
    result = {
        "model": accelerator.unwrap_model(model),
        "tokenizer": tokenizer,
        **task.result_extras(),
        "history": state.history,
        "status": status,
        "step": state.step,
        "output_dir": output_dir,
        "final_metrics": last_eval,
        "accelerator": accelerator,
    }
    if status == "interrupted":
        accelerator.end_training()
        return result
    if last_eval is None or last_eval_step != state.step:
        last_eval = run_eval()
        if not (state.step % train_args.save_steps == 0):
            save_checkpoint()
    final = {k: v for k, v in last_eval.items()}
    result["final_metrics"] = final
    if is_main:
        task.save(
            accelerator.unwrap_model(model), tokenizer, output_dir / "final_model", card(final, final=True)
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/train.py`` and ``hf-seq2seq train``; returns the exit status."""
    try:
        data_args, model_args, train_args = parse_args(argv)
    except ValueError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    try:
        result = run_training(data_args, model_args, train_args)
    except (ValueError, FloatingPointError, FileNotFoundError) as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 1
    return 0 if result["status"] in ("completed", "interrupted") else 1

"""Training options: three dataclasses parsed by ``transformers.HfArgumentParser`` from a YAML/JSON recipe plus
command-line overrides, and the checks that stop a bad option before any data is read.

Options are checked where they are defined (``__post_init__``) so the error names the option as the user typed it
(``--lr_scheduler='x' is invalid; valid choices: ...``); model-config values are checked by building the config
class once (its validators live in ``configuration_utils_seq2seq``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..families import FAMILIES, family
from ..models.configuration_utils_seq2seq import check_choice, check_positive

MODEL_TYPES = tuple(FAMILIES)  # --model_type values: "rnn", "transformer", "captioning"
# the --model_type values of the families that read text (not families.TEXT_MODEL_TYPES: transformers' model_type)
TEXT_MODEL_TYPE_CHOICES = tuple(name for name, f in FAMILIES.items() if f.input == "text")
SCHEDULERS = ("inverse_sqrt", "linear", "cosine", "constant")
BEST_METRICS = ("bleu", "chrf", "loss", "exact_match", "cider")
CAPTIONING_ONLY_METRICS = ("exact_match", "cider")
MIXED_PRECISION = ("no", "fp16", "bf16")
NAN_POLICIES = ("stop", "skip")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager", "cudagraphs")
# --nan_policy skip gives up (as "stop" does) after this many non-finite steps in a row
MAX_CONSECUTIVE_SKIPS = 10
TOKENIZER_MODELS = ("bpe", "unigram")
CAPTIONING_TASK = "shapes"  # the rendered captioning task of hf_seq2seq.captioning_data

# ----------------------------------------------------------------------------------------------------- options


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
    dataset_display_name: str | None = field(
        default=None,
        metadata={
            "help": "How the model card names the data, e.g. 'Multi30k'. Default: the --dataset_name Hub id, else "
            "the base name of the folder holding the data files (never their path)."
        },
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
    source_lang: str | None = field(
        default=None,
        metadata={
            "help": "Source language code, e.g. 'de'. With --task: default the task's; the reverse works."
        },
    )
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
    tokenizer_train_samples: int = field(
        default=1_000_000,
        metadata={
            "help": "Train the tokenizer (unless one is given) on at most this many training pairs: the whole "
            "split when it is smaller, else a sample drawn with --seed; with --streaming the first "
            "min(this, --streaming_buffer_size) pairs."
        },
    )
    tokenizer_model: str = field(
        default="bpe", metadata={"help": "Trained tokenizer model: 'bpe' or 'unigram'."}
    )
    max_source_length: int = field(
        default=128,
        metadata={
            "help": "Longest source in tokens: longer training pairs are dropped (and counted in the log); "
            "validation sources are truncated."
        },
    )
    max_target_length: int = field(
        default=128,
        metadata={
            "help": "Longest target in tokens: longer training pairs are dropped (and counted in the log); "
            "validation targets are truncated."
        },
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
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read the training split lazily (datasets iterable mode) for corpora that do not fit on local "
            "disk: no Arrow cache; token-budget batches are bucketed within --streaming_buffer_size examples."
        },
    )
    streaming_buffer_size: int = field(
        default=100_000,
        metadata={
            "help": "With --streaming: examples in the shuffle buffer and in one length-bucketing window; "
            "the tokenizer (unless given) is trained on the first this many pairs."
        },
    )

    def __post_init__(self):
        # The checks run in this order (the first problem found is the one reported): source, images, text.
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
            from ..tasks import TASKS

            check_choice(None, "--task", self.task, (*TASKS, CAPTIONING_TASK))
            if self.task in TASKS:  # the direction is recorded (run_config.json) as it is trained
                from ..tasks import task_direction

                self.source_lang, self.target_lang = task_direction(
                    self.task, self.source_lang, self.target_lang
                )
        self._check_image_options()
        self._check_text_options()

    def _check_image_options(self) -> None:
        if self.streaming and self.is_captioning:
            raise ValueError(
                "--streaming reads text corpora; image data (--task shapes, --image_folder) is not streamed"
            )
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
        check_positive(None, "--batch_size", self.batch_size)
        if self.image_size is not None and self.image_size < 24 and self.task == CAPTIONING_TASK:
            raise ValueError(f"--image_size={self.image_size} is invalid for --task shapes; it must be >= 24")
        check_positive(None, "--image_size", self.image_size)

    def _check_text_options(self) -> None:
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
        check_choice(None, "--tokenizer_model", self.tokenizer_model, TOKENIZER_MODELS)
        positive = ("task_num_train", "task_num_validation", "vocab_size", "tokenizer_train_samples")
        positive += ("max_source_length", "max_target_length", "max_tokens", "validation_batch_size")
        for name in (*positive, "streaming_buffer_size"):
            check_positive(None, f"--{name}", getattr(self, name))
        for name in ("max_train_examples", "max_validation_examples", "task_num_test"):
            check_positive(None, f"--{name}", getattr(self, name), allow_zero=name == "task_num_test")
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
    config_cls = family(model_type).config_class
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
    alignment_supervision: str | None = field(
        default=None,
        metadata={
            "help": "guided alignment (Garg et al. 2019): a Pharaoh file (i-j, source word i, target word j, 0-based "
            "whitespace words), one line per training pair, e.g. from eflomal or `hf-seq2seq align`; one head "
            "(Transformer) or the attention (RNN) is trained to follow it (docs/alignment.md)"
        },
    )
    alignment_loss_weight: float = field(
        default=0.05,
        metadata={
            "help": "with --alignment_supervision: the weight of the alignment loss (Garg et al.: 0.05)"
        },
    )
    alignment_layer: int = field(
        default=-1,
        metadata={
            "help": "with --alignment_supervision: the supervised decoder layer (negative: from the end)"
        },
    )
    alignment_head: int = field(
        default=0,
        metadata={"help": "with --alignment_supervision: the supervised head of that layer (RNN: 0)"},
    )

    def __post_init__(self):
        check_choice(None, "--model_type", self.model_type, MODEL_TYPES)
        if self.model_config is not None and not isinstance(self.model_config, dict):
            try:
                parsed = json.loads(self.model_config)
            except json.JSONDecodeError as err:
                raise ValueError(f"--model_config is not valid JSON ({err}): {self.model_config!r}") from None
            if not isinstance(parsed, dict):
                raise ValueError(f"--model_config must be a JSON object, got {self.model_config!r}")
        if self.model_config is not None and self.model_name_or_path is None:
            _validate_model_config(self.model_type, self.config_overrides())
        local = Path(self.model_name_or_path).expanduser() if self.model_name_or_path is not None else None
        if local is not None and local.exists() and not (local / "config.json").is_file():
            what = (
                "a file, not a saved model folder"
                if local.is_file()
                else "not a saved model folder: it has no config.json"
            )
            raise ValueError(f"--model_name_or_path {self.model_name_or_path} is {what}")
        if self.label_smoothing is not None and not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"--label_smoothing={self.label_smoothing!r} is invalid; it must be in [0, 1)")
        self._check_training_options()

    def _check_training_options(self) -> None:
        """Scheduled sampling and guided alignment (the options that change the training loss)."""
        if not 0.0 <= self.scheduled_sampling <= 1.0:
            raise ValueError(
                f"--scheduled_sampling={self.scheduled_sampling!r} is invalid; it must be in [0, 1]"
            )
        if self.scheduled_sampling > 0 and self.model_type != "rnn" and self.model_name_or_path is None:
            raise ValueError("--scheduled_sampling is only supported for --model_type rnn")
        if self.alignment_supervision is None:
            return
        if not self.alignment_loss_weight > 0:
            raise ValueError(
                f"--alignment_loss_weight={self.alignment_loss_weight!r} is invalid; it must be > 0"
            )
        if self.scheduled_sampling > 0:
            raise ValueError("--alignment_supervision and --scheduled_sampling cannot be combined")
        if self.model_type == "captioning":
            raise ValueError(
                "--alignment_supervision aligns words: it applies to text models, not captioning"
            )

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
    mixed_precision: str | None = field(
        default=None,
        metadata={
            "help": "Mixed precision: 'no', 'bf16' (autocast; also on CPU) or 'fp16' (GPU only: refused on CPU). "
            "Default: the `accelerate launch` config / ACCELERATE_MIXED_PRECISION, else 'no'. run_config.json "
            "and the model card record the precision that ran."
        },
    )
    bf16_weights: bool = field(
        default=False,
        metadata={
            "help": "bf16 model weights and activations (no autocast) with an fp32 master copy of every weight that "
            "AdamW updates (gradients cast to fp32, clipped, stepped, rounded back); checkpoints and saved models "
            "hold the fp32 masters. Replaces --mixed_precision (leave it unset or 'no'); not under FSDP."
        },
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

    torch_compile: bool = field(
        default=False,
        metadata={
            "help": "torch.compile the model through Accelerate's dynamo plugin, with batches padded to a multiple "
            "of --pad_to_multiple_of (a few static shapes) and fused AdamW where torch has it."
        },
    )
    torch_compile_backend: str = field(
        default="inductor",
        metadata={"help": "--torch_compile's dynamo backend: 'inductor' ('aot_eager', 'eager': debug)."},
    )
    pad_to_multiple_of: int | None = field(
        default=None,
        metadata={"help": "Pad batches to a multiple of this length (default: 16 with --torch_compile)."},
    )
    push_to_hub: bool = field(
        default=False,
        metadata={
            "help": "Upload the chosen model (best_model, else final_model: weights, code, tokenizer, card) to the "
            "Hub repo --hub_model_id in one commit when training ends. The repo is created (or checked) before the "
            "first step; the endpoint is HF_ENDPOINT, the token HF_TOKEN or the cached login."
        },
    )
    hub_model_id: str | None = field(
        default=None, metadata={"help": "The Hub repo --push_to_hub uploads to: USER/NAME or ORG/NAME."}
    )
    hub_private_repo: bool = field(
        default=False, metadata={"help": "With --push_to_hub: create the repo as private."}
    )
    # Not options (init=False: HfArgumentParser skips them, args_to_dict leaves them out): the recipe given with
    # --config, set by recipe.parse_args, shown by the model card (its file name and its content)
    recipe: str | None = field(default=None, init=False)
    recipe_text: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        check_choice(None, "--lr_scheduler", self.lr_scheduler, SCHEDULERS)
        check_choice(None, "--torch_compile_backend", self.torch_compile_backend, COMPILE_BACKENDS)
        check_positive(None, "--pad_to_multiple_of", self.pad_to_multiple_of)
        if self.pad_to_multiple_of is None and self.torch_compile:
            self.pad_to_multiple_of = 16
        if self.mixed_precision is not None:  # None: Accelerate's launch config / environment decides
            check_choice(None, "--mixed_precision", self.mixed_precision, MIXED_PRECISION)
        if self.bf16_weights and self.mixed_precision in ("fp16", "bf16"):
            raise ValueError(
                f"--bf16_weights with --mixed_precision={self.mixed_precision}: the weights are already bf16 and "
                "computed without autocast; leave --mixed_precision unset or give 'no'"
            )
        check_choice(None, "--metric_for_best_model", self.metric_for_best_model, BEST_METRICS)
        check_choice(None, "--nan_policy", self.nan_policy, NAN_POLICIES)
        check_positive(None, "--learning_rate", self.learning_rate)
        for name in ("max_steps", "gradient_accumulation_steps", "eval_steps", "num_beams", "max_new_tokens"):
            check_positive(None, f"--{name}", getattr(self, name))
        for name in ("logging_steps", "save_total_limit", "num_epochs", "save_steps", "stop_after_step"):
            check_positive(None, f"--{name}", getattr(self, name))
        check_positive(None, "--max_train_minutes", self.max_train_minutes)
        for name in (
            "warmup_steps",
            "weight_decay",
            "max_grad_norm",
            "early_stopping_patience",
            "num_workers",
        ):
            check_positive(None, f"--{name}", getattr(self, name), allow_zero=True)
        if self.lr_scheduler == "inverse_sqrt" and self.warmup_steps == 0:
            raise ValueError("--lr_scheduler=inverse_sqrt needs --warmup_steps > 0")
        if self.resume and self.overwrite_output_dir:
            raise ValueError("--resume and --overwrite_output_dir contradict each other; give one")
        if self.save_steps is None:
            self.save_steps = self.eval_steps
        self._check_hub_options()

    def _check_hub_options(self) -> None:
        if self.push_to_hub and self.hub_model_id is None:
            raise ValueError("--push_to_hub needs --hub_model_id USER/NAME (the repo to upload the model to)")
        if not self.push_to_hub:
            given = [f"--{n}" for n in ("hub_model_id", "hub_private_repo") if getattr(self, n)]
            if given:
                raise ValueError(
                    f"{' and '.join(given)} without --push_to_hub uploads nothing; add --push_to_hub"
                )
        if self.hub_model_id is not None:
            repo_id = self.hub_model_id
            if repo_id.count("/") != 1 or not all(repo_id.split("/")):
                raise ValueError(f"--hub_model_id must look like USER/NAME, got {repo_id!r}")


ARGUMENT_CLASSES = (DataArguments, ModelArguments, TrainArguments)


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
    """The options of the argument dataclasses as one dict (fields that are not options, such as
    ``TrainArguments.recipe``, left out)."""
    out = {}
    for a in args:
        values = dataclasses.asdict(a)
        out.update({f.name: values[f.name] for f in dataclasses.fields(a) if f.init})
    return out


# ----------------------------------------------------------------------------------------------------- state

"""Training: options → data → tokenizer → model → the loop → validation → checkpoints → saved model folders.

One module per concern, each importing only the ones above it in this list:

- :mod:`.arguments` — the three option dataclasses and their checks; :mod:`.recipe` — ``--config`` recipes and
  the parser;
- :mod:`.losses` — the summed token loss and scheduled sampling; :mod:`.hooks` — test-only pause/NaN hooks;
- :mod:`.checkpointing` — the resumable state, atomic save, resume, retention;
- :mod:`.evaluation` — the one sharded validation loop, the best-model decision, the model card's facts;
- :mod:`.task` — the :class:`~.task.TrainingTask` protocol, :func:`~.task.build_training_task` and the text task;
  :mod:`.captioning` — the image one;
- :mod:`.setup` — everything built before the first step; :mod:`.loop` — :func:`run_training` (its command line is
  :mod:`hf_seq2seq.commands.train`).

Every name that was importable from the former single-file ``hf_seq2seq.training`` still is, from here; two
were renamed (issue 24) and still resolve, with a ``DeprecationWarning``: ``make_task`` (now
:func:`build_training_task`; :func:`hf_seq2seq.tasks.make_task` is the generated corpus) and ``TEXT_MODEL_TYPES``
(now :data:`TEXT_MODEL_TYPE_CHOICES`, the ``--model_type`` values; :data:`hf_seq2seq.families.TEXT_MODEL_TYPES`
holds transformers' ``model_type`` names).
"""

import warnings

from .arguments import (
    ARGUMENT_CLASSES,
    BEST_METRICS,
    CAPTIONING_ONLY_METRICS,
    CAPTIONING_TASK,
    MAX_CONSECUTIVE_SKIPS,
    MIXED_PRECISION,
    MODEL_TYPES,
    NAN_POLICIES,
    SCHEDULERS,
    TEXT_MODEL_TYPE_CHOICES,
    TOKENIZER_MODELS,
    DataArguments,
    ModelArguments,
    TrainArguments,
    args_to_dict,
    check_task_options,
)
from .captioning import CaptioningTask
from .checkpointing import (
    CHECKPOINT_RE,
    COMPLETE_MARKER,
    TrainState,
    list_checkpoints,
    prepare_output_dir,
    save_checkpoint,
)
from .evaluation import CARD_METRIC_KEYS, ValidationBatch, evaluate_model, validation_loop
from .hooks import DEBUG_NAN_ENV, DEBUG_PAUSE_ENV
from .loop import run_training
from .losses import scheduled_sampling_inputs, token_loss_sum
from .recipe import build_parser, parse_args
from .setup import Run, build_optimizer, build_scheduler
from .task import (
    TextTask,
    TrainingTask,
    build_model,
    build_tokenizer,
    build_training_task,
    epoch_batches,
    load_raw_datasets,
    save_model,
    set_generation_defaults,
    tokenize_train,
    tokenize_validation,
)

__all__ = [
    "ARGUMENT_CLASSES",
    "BEST_METRICS",
    "CAPTIONING_ONLY_METRICS",
    "CAPTIONING_TASK",
    "CARD_METRIC_KEYS",
    "CHECKPOINT_RE",
    "COMPLETE_MARKER",
    "DEBUG_NAN_ENV",
    "DEBUG_PAUSE_ENV",
    "MAX_CONSECUTIVE_SKIPS",
    "MIXED_PRECISION",
    "MODEL_TYPES",
    "NAN_POLICIES",
    "SCHEDULERS",
    "TEXT_MODEL_TYPE_CHOICES",
    "TOKENIZER_MODELS",
    "CaptioningTask",
    "DataArguments",
    "ModelArguments",
    "Run",
    "TextTask",
    "TrainArguments",
    "TrainState",
    "TrainingTask",
    "ValidationBatch",
    "args_to_dict",
    "build_model",
    "build_optimizer",
    "build_parser",
    "build_scheduler",
    "build_tokenizer",
    "build_training_task",
    "check_task_options",
    "epoch_batches",
    "evaluate_model",
    "list_checkpoints",
    "load_raw_datasets",
    "parse_args",
    "prepare_output_dir",
    "run_training",
    "save_checkpoint",
    "save_model",
    "scheduled_sampling_inputs",
    "set_generation_defaults",
    "tokenize_train",
    "tokenize_validation",
    "token_loss_sum",
    "validation_loop",
]

# former names (issue 24): still importable, with a warning that names the new one
_RENAMED = {"make_task": "build_training_task", "TEXT_MODEL_TYPES": "TEXT_MODEL_TYPE_CHOICES"}


def __getattr__(name: str):
    if name in _RENAMED:
        new = _RENAMED[name]
        warnings.warn(
            f"hf_seq2seq.training.{name} is renamed {new}; the old name will be removed",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[new]
    if name == "train_main":  # moved to the commands layer (issue 24): a lazy front-door re-export, PEP 562
        warnings.warn(
            "hf_seq2seq.training.train_main moved to hf_seq2seq.commands.train.train_main; the old path will be removed",
            DeprecationWarning,
            stacklevel=2,
        )
        from ..commands.train import train_main

        return train_main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

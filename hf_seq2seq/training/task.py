"""The training task: what differs between translation and captioning, behind one small interface.

(Not to be confused with :mod:`hf_seq2seq.tasks`, the generated toy corpora that ``--task`` names.)

:func:`hf_seq2seq.training.loop.run_training` talks to one *task* chosen once by :func:`build_training_task` from
``--model_type``: :class:`TextTask` here, :class:`hf_seq2seq.training.captioning.CaptioningTask` for images. The loop
asks the task for the data, the tokenizer, the model, the batches of an epoch, a micro-batch's summed loss, the
validation scores and how to save a model folder (:class:`TrainingTask` lists the calls).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from datasets import IterableDataset

from ..families import family
from .arguments import DataArguments, ModelArguments, TrainArguments, check_task_options
from .evaluation import evaluate_model
from .losses import token_loss_sum

logger = logging.getLogger("hf_seq2seq.training")


class TrainingTask(Protocol):
    """The calls :func:`~hf_seq2seq.training.loop.run_training` makes; ``train_dataset`` and ``label_lengths``
    exist after ``prepare``. ``batch_option`` names the option that sizes a micro-batch (for error messages)."""

    name: str
    batch_option: str
    train_dataset: object
    label_lengths: np.ndarray | list[int]

    def load(self, seed: int) -> None: ...
    def build_tokenizer(self): ...
    def prepare(self, tokenizer) -> None: ...
    def epoch_batches(self, seed: int, epoch: int) -> list[np.ndarray]: ...  # int index arrays
    def build_model(self, tokenizer): ...
    def collator(self, tokenizer, model): ...
    def model_inputs(self, batch: dict) -> dict: ...
    def loss_sum(self, model, inputs: dict, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor: ...
    def evaluate(self, accelerator, model, tokenizer, train_args: TrainArguments) -> dict: ...
    def save(self, model, tokenizer, path: Path, card: dict | None = None) -> None: ...
    def card_facts(self) -> dict: ...
    def result_extras(self) -> dict: ...


# ----------------------------------------------------------------------------------------------------- text data


def load_raw_datasets(data_args: DataArguments, seed: int):
    """``(DatasetDict with train/validation[/test], source_lang, target_lang)``."""
    if data_args.task is not None:
        from ..tasks import load_task_dataset

        raw = load_task_dataset(
            data_args.task,
            num_train=data_args.task_num_train,
            num_validation=data_args.task_num_validation,
            num_test=data_args.task_num_test,
            seed=seed,
        )
        src, tgt = data_args.source_lang, data_args.target_lang  # the task's direction or its reverse
    else:
        from ..data import load_parallel_data

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
            streaming=data_args.streaming,
        )
    for split in ("train", "validation"):
        if split not in raw:
            raise ValueError(f"the data has no {split!r} split (found {list(raw)})")
    if data_args.streaming and not isinstance(raw["train"], IterableDataset):  # --task: generated in memory
        raw["train"] = raw["train"].to_iterable_dataset()
    if data_args.max_train_examples is not None:
        raw["train"] = _first(raw["train"], data_args.max_train_examples)
    if data_args.max_validation_examples is not None:
        n = min(data_args.max_validation_examples, len(raw["validation"]))
        raw["validation"] = raw["validation"].select(range(n))
    return raw, src, tgt


def _first(ds, n: int):
    return ds.take(n) if isinstance(ds, IterableDataset) else ds.select(range(min(n, len(ds))))


def _tokenizer_pairs(train, data_args: DataArguments, seed: int = 0) -> list[dict]:
    """The pairs a tokenizer is trained on: the whole split up to ``--tokenizer_train_samples`` pairs, else that
    many drawn with ``seed`` (in corpus order); with --streaming the first ``min(--tokenizer_train_samples,
    --streaming_buffer_size)`` pairs."""
    limit = data_args.tokenizer_train_samples
    if isinstance(train, IterableDataset):
        return [ex["translation"] for ex in train.take(min(limit, data_args.streaming_buffer_size))]
    if len(train) <= limit:
        return train["translation"]
    picked = np.sort(np.random.default_rng(seed).choice(len(train), size=limit, replace=False))
    return train.select(picked)["translation"]


def tokenize_train(dataset, tokenizer, src: str, tgt: str, data_args: DataArguments):
    """Training pairs through :func:`hf_seq2seq.data.tokenize_parallel` (drops empty and over-long pairs)."""
    from datasets import DatasetDict

    from ..data import tokenize_parallel

    out = tokenize_parallel(
        DatasetDict({"train": dataset}),
        tokenizer,
        source_lang=src,
        target_lang=tgt,
        max_source_length=data_args.max_source_length,
        max_target_length=data_args.max_target_length,
    )["train"]
    if not data_args.streaming and len(out) == 0:  # a stream is filtered as it is read
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


def epoch_batches(lengths, max_tokens: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The unsharded, shuffled, length-bucketed token-budget batches of one epoch (identical on every rank), as
    the sampler's int32 index arrays: 4 bytes per example, where lists of Python ints cost about 36."""
    from ..data import TokenBatchSampler

    sampler = TokenBatchSampler(lengths, max_tokens, shuffle=True, seed=seed, num_replicas=1, rank=0)
    sampler.set_epoch(epoch)
    return sampler.index_arrays()


# ----------------------------------------------------------------------------------------------------- model


def build_tokenizer(
    raw, src: str, tgt: str, data_args: DataArguments, model_args: ModelArguments, seed: int = 0
):
    from transformers import AutoTokenizer

    if model_args.model_name_or_path is not None:
        return AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    if data_args.tokenizer_name_or_path is not None:
        return AutoTokenizer.from_pretrained(data_args.tokenizer_name_or_path)
    from ..tokenization import train_tokenizer

    train = _tokenizer_pairs(raw["train"], data_args, seed)
    logger.info("training the tokenizer on %d pairs (--tokenizer_train_samples)", len(train))
    texts = [ex[src] for ex in train] + [ex[tgt] for ex in train]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tokenizer = train_tokenizer(texts, vocab_size=data_args.vocab_size, model=data_args.tokenizer_model)
    for warning in caught:  # one log line naming the option, not a UserWarning with a source line
        if len(tokenizer) > data_args.vocab_size and "vocab_size=" in str(warning.message):
            logger.warning(
                "--vocab_size %d is below what the training text needs (its characters and the special tokens): "
                "the tokenizer, and the model's vocabulary, have %d entries",
                data_args.vocab_size,
                len(tokenizer),
            )
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return tokenizer


def build_model(model_args: ModelArguments, tokenizer):
    from transformers import AutoModelForSeq2SeqLM

    import hf_seq2seq  # noqa: F401  (registers the Auto classes)

    overrides = model_args.config_overrides()
    if model_args.label_smoothing is not None:
        overrides["label_smoothing"] = model_args.label_smoothing
    if model_args.model_name_or_path is not None:
        from ..tokenization import check_tokenizer_fits_model

        model = AutoModelForSeq2SeqLM.from_pretrained(
            model_args.model_name_or_path, dtype=torch.float32, use_safetensors=True
        )
        check_tokenizer_fits_model(tokenizer, model.config, model_args.model_name_or_path)
        for key, value in overrides.items():
            if not hasattr(model.config, key):
                raise ValueError(f"--model_config: {key!r} is not an option of {type(model.config).__name__}")
            setattr(model.config, key, value)
        return model
    config_cls, model_cls = (
        family(model_args.model_type).config_class,
        family(model_args.model_type).model_class,
    )
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
    from ..hub import save_model_folder

    save_model_folder(model, tokenizer, str(path), card=card)


# ----------------------------------------------------------------------------------------------------- tasks


class TextTask:
    """The translation side of the loop (data, tokenizer, model, batches, loss, validation, saving).

    :func:`run_training` talks to one such *task adapter*, chosen once by :func:`build_training_task` from
    ``--model_type``; :class:`hf_seq2seq.training.captioning.CaptioningTask` is the image-captioning one. Both
    expose ``load``, ``build_tokenizer``, ``prepare``, ``build_model``, ``collator``, ``epoch_batches``,
    ``model_inputs``, ``loss_sum``, ``evaluate``, ``save``, ``card_facts``, ``result_extras`` and
    ``train_dataset`` / ``label_lengths`` after ``prepare``.
    """

    name = "text"
    batch_option = "--max_tokens"

    def __init__(self, data_args: DataArguments, model_args: ModelArguments, train_args: TrainArguments):
        self.data_args, self.model_args, self.train_args = data_args, model_args, train_args

    def load(self, seed: int) -> None:
        self.raw, self.src, self.tgt = load_raw_datasets(self.data_args, seed)

    def build_tokenizer(self):
        return build_tokenizer(
            self.raw, self.src, self.tgt, self.data_args, self.model_args, self.train_args.seed
        )

    def prepare(self, tokenizer) -> None:
        if self.model_args.alignment_supervision is not None:  # guided alignment: the links ride along
            from .guided_alignment import tokenize_supervised

            train_tok = tokenize_supervised(
                self.raw["train"],
                tokenizer,
                self.src,
                self.tgt,
                self.data_args,
                self.model_args.alignment_supervision,
            )
        else:
            train_tok = tokenize_train(self.raw["train"], tokenizer, self.src, self.tgt, self.data_args)
        self.val_tok = tokenize_validation(
            self.raw["validation"], tokenizer, self.src, self.tgt, self.data_args
        )
        self.references = [ex[self.tgt] for ex in self.raw["validation"]["translation"]]
        self.references_source = [ex[self.src] for ex in self.raw["validation"]["translation"]]
        if self.data_args.streaming:  # tokenized as it is read; the loop takes batches from epoch_stream
            self.lengths = self.label_lengths = None
            self.train_dataset = train_tok
            return
        from ..data import example_lengths

        # two int arrays read from the Arrow columns: millions of pairs cost no Python lists
        self.lengths, self.label_lengths = example_lengths(train_tok)
        self.train_dataset = train_tok.remove_columns("length")

    def epoch_stream(self, seed: int, epoch: int):
        """--streaming: this epoch's token-budget batches (lists of examples) in a deterministic order: the
        stream shuffled within a buffer (per ``seed`` and ``epoch``), then bucketed by length within a buffer."""
        from ..data import stream_token_batches

        size = self.data_args.streaming_buffer_size
        stream = self.train_dataset.shuffle(seed=seed, buffer_size=size)
        stream.set_epoch(epoch)
        return stream_token_batches(stream, self.data_args.max_tokens, buffer_size=size, seed=seed + epoch)

    def epoch_batches(self, seed: int, epoch: int) -> list[np.ndarray]:
        return epoch_batches(self.lengths, self.data_args.max_tokens, seed, epoch)

    def build_model(self, tokenizer):
        model = build_model(self.model_args, tokenizer)
        if self.model_args.alignment_supervision is not None:  # the saved config names the supervised head
            model.config.alignment_layer = self.model_args.alignment_layer
            model.config.alignment_heads = [self.model_args.alignment_head]
        return model

    def collator(self, tokenizer, model):
        from transformers import DataCollatorForSeq2Seq

        collator = DataCollatorForSeq2Seq(
            tokenizer,
            model=model,
            label_pad_token_id=-100,
            pad_to_multiple_of=self.train_args.pad_to_multiple_of,  # --torch_compile: a few static shapes
        )
        if self.model_args.alignment_supervision is not None:
            from .guided_alignment import GuidedCollator

            return GuidedCollator(collator)
        return collator

    def model_inputs(self, batch: dict) -> dict:
        keys = ("input_ids", "attention_mask", "decoder_input_ids", "alignment_supervision")
        return {k: batch[k] for k in keys if k in batch}

    def loss_sum(self, model, inputs: dict, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        if "alignment_supervision" in inputs:
            from .guided_alignment import guided_loss_sum

            return guided_loss_sum(model, inputs, labels, label_smoothing, self.model_args)
        return token_loss_sum(model(**inputs).logits, labels, label_smoothing)

    def evaluate(self, accelerator, model, tokenizer, train_args: TrainArguments) -> dict:
        result, _ = evaluate_model(
            accelerator, model, tokenizer, self.val_tok, self.references, train_args, self.data_args
        )
        return result

    def save(self, model, tokenizer, path: Path, card: dict | None = None) -> None:
        save_model(model, tokenizer, path, card)

    def card_facts(self) -> dict:
        from ..hub import dataset_display_name

        d = self.data_args
        # the card names data the Hub's way: the Hub id (also its `datasets:` key) or a name, never a path
        hub_id = d.dataset_name if d.dataset_name and not Path(d.dataset_name).exists() else None
        local = d.train_prefix or d.train_file or (d.dataset_name if not hub_id else None)
        return {
            "source_lang": self.src,
            "target_lang": self.tgt,
            "dataset": hub_id,
            "dataset_name": d.dataset_display_name
            or hub_id
            or (f"embedded task {d.task!r}" if d.task else None)
            or (dataset_display_name(local) if local else None),
            "example": self.references_source[0] if self.references_source else None,
            "examples": list(self.references_source[1:5]),  # tried when the first one's translation runs away
        }

    def result_extras(self) -> dict:
        return {"raw_datasets": self.raw, "source_lang": self.src, "target_lang": self.tgt}


def build_training_task(data_args: DataArguments, model_args: ModelArguments, train_args: TrainArguments):
    """The task adapter for ``--model_type``: :class:`TextTask` or the captioning one."""
    check_task_options(data_args, model_args, train_args)
    if model_args.model_type == "captioning":
        from .captioning import CaptioningTask

        return CaptioningTask(data_args, model_args, train_args)
    return TextTask(data_args, model_args, train_args)

"""Parallel data: read corpora into a ``DatasetDict``, tokenize with a length filter, batch by token count.

Readers (:func:`load_parallel_data`) return ``DatasetDict({split: Dataset})`` of rows
``{"translation": {source_lang: ..., target_lang: ...}}`` from any of

* a Hub dataset name through ``datasets.load_dataset`` (also a local dataset folder ``load_dataset`` reads,
  or a folder written by ``save_to_disk``), with either a ``translation`` column (WMT, opus_books, iwslt) or
  flat ``{source_lang: ..., target_lang: ...}`` columns (bentrevett/multi30k), converted;
* JSONL files (plain or ``.gz``), one ``{"translation": {"de": ..., "en": ...}}`` object per line (flat
  ``{"de": ..., "en": ...}`` objects are accepted too);
* line-aligned text file pairs given by a prefix: ``PREFIX.de`` / ``PREFIX.en``, each plain or gzipped
  (``PREFIX.de.gz``), as ``../shared/data/multi30k`` stores ``train``, ``val``, ``test_2016_flickr``.

Every bad input raises :class:`DataError` (a ``ValueError``) naming the file, and the line where there is one.

:func:`tokenize_parallel` adds ``input_ids`` / ``attention_mask`` / ``labels`` (both ending in ``</s>``) and a
``length`` column, dropping empty and over-long pairs and reporting how many per split.
:class:`TokenBatchSampler` makes length-bucketed batches of at most ``max_tokens`` (padded) tokens; the collator
is ``transformers.DataCollatorForSeq2Seq`` (pads labels with -100).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict, Features, Value

from .tokenization import iter_text_lines

logger = logging.getLogger(__name__)

__all__ = [
    "DataError",
    "load_parallel_data",
    "read_parallel_prefix",
    "read_jsonl",
    "tokenize_parallel",
    "TokenBatchSampler",
]

SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation"}


class DataError(ValueError):
    """A corpus that cannot be read as asked: the message names the file (and line) or dataset, and the fix."""


def _lines(path: Path, max_lines: int | None) -> list[str]:
    out = []
    try:
        for lineno, line in iter_text_lines(path):
            if max_lines is not None and lineno > max_lines:
                break
            out.append(line)
    except FileNotFoundError as e:
        raise DataError(f"file not found: {path}") from e
    except ValueError as e:  # not UTF-8 or a NUL byte: the message already names file and line
        raise DataError(str(e)) from e
    return out


def _prefix_file(prefix: str | os.PathLike, lang: str) -> Path:
    plain = Path(f"{prefix}.{lang}")
    gz = Path(f"{prefix}.{lang}.gz")
    if plain.is_file():
        return plain
    if gz.is_file():
        return gz
    raise DataError(f"file not found: {plain} (nor {gz.name}) for language {lang!r} of prefix {prefix}")


def read_parallel_prefix(
    prefix: str | os.PathLike, source_lang: str, target_lang: str, max_examples: int | None = None
) -> Dataset:
    """Rows from line-aligned ``PREFIX.<source_lang>`` / ``PREFIX.<target_lang>`` files, each plain or ``.gz``
    (the plain file wins if both exist).

    Line *i* of one file is the translation of line *i* of the other; different line counts are an error. With
    ``max_examples`` only the first ``max_examples`` lines are read (and compared).
    """
    src_path, tgt_path = _prefix_file(prefix, source_lang), _prefix_file(prefix, target_lang)
    src, tgt = _lines(src_path, max_examples), _lines(tgt_path, max_examples)
    for path, lines in ((src_path, src), (tgt_path, tgt)):
        if not lines:
            raise DataError(f"{path} is empty: expected one sentence per line")
    if len(src) != len(tgt):
        raise DataError(
            f"line counts differ: {src_path} has {len(src)} lines, {tgt_path} has {len(tgt)} lines"
            + (f" (within the first {max_examples})" if max_examples is not None else "")
            + "; the two sides must be line-aligned"
        )
    return Dataset.from_dict({"translation": [{source_lang: s, target_lang: t} for s, t in zip(src, tgt)]})


def read_jsonl(
    path: str | os.PathLike, source_lang: str, target_lang: str, max_examples: int | None = None
) -> Dataset:
    """Rows from a JSONL file (plain or ``.gz``) of ``{"translation": {lang: text, ...}}`` (or flat
    ``{lang: text}``) objects; blank lines are skipped; extra languages are ignored."""
    path = Path(path)
    rows = []
    try:
        for lineno, line in iter_text_lines(path):
            if max_examples is not None and len(rows) >= max_examples:
                break
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, line {lineno}: not valid JSON ({e.msg} at column {e.colno})") from e
            pair = obj.get("translation", obj) if isinstance(obj, dict) else None
            if not isinstance(pair, dict):
                raise DataError(
                    f'{path}, line {lineno}: expected an object like {{"translation": {{"{source_lang}": ..., '
                    f'"{target_lang}": ...}}}}, got {type(pair if isinstance(obj, dict) else obj).__name__}'
                )
            for lang in (source_lang, target_lang):
                if not isinstance(pair.get(lang), str):
                    what = "has no" if lang not in pair else "has a non-string"
                    raise DataError(
                        f"{path}, line {lineno}: {what} language {lang!r}; available: {sorted(pair)}"
                    )
            rows.append({source_lang: pair[source_lang], target_lang: pair[target_lang]})
    except FileNotFoundError as e:
        raise DataError(f"file not found: {path}") from e
    except DataError:
        raise
    except ValueError as e:  # not UTF-8
        raise DataError(str(e)) from e
    if not rows:
        raise DataError(f'{path} has no examples: expected one {{"translation": {{...}}}} object per line')
    return Dataset.from_dict({"translation": rows})


def _available_languages(ds: Dataset) -> list[str]:
    if "translation" in ds.column_names:
        feature = ds.features["translation"]
        langs = getattr(feature, "languages", None)  # datasets.Translation
        if langs is None and isinstance(feature, dict):
            langs = list(feature)
        if langs is None and len(ds):
            langs = list(ds[0]["translation"])
        return sorted(langs or [])
    return sorted(ds.column_names)


def _to_translation(ds: Dataset, source_lang: str, target_lang: str, where: str) -> Dataset:
    """Normalize a dataset split to a single ``translation`` column holding exactly the two languages."""
    available = _available_languages(ds)
    missing = [lang for lang in (source_lang, target_lang) if lang not in available]
    if missing:
        raise DataError(f"{where} has no language {missing[0]!r}; available languages: {available}")

    def convert(batch):
        if "translation" in batch:
            pairs = batch["translation"]
            return {
                "translation": [{source_lang: p[source_lang], target_lang: p[target_lang]} for p in pairs]
            }
        return {
            "translation": [
                {source_lang: s, target_lang: t} for s, t in zip(batch[source_lang], batch[target_lang])
            ]
        }

    features = Features({"translation": {source_lang: Value("string"), target_lang: Value("string")}})
    return ds.map(
        convert,
        batched=True,
        remove_columns=ds.column_names,
        features=features,
        desc=f"select {source_lang}-{target_lang}",
    )


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in ("dataset_dict.json", "state.json"))


def _load_named_dataset(
    dataset_name: str, dataset_config_name: str | None, cache_dir: str | None
) -> DatasetDict:
    import datasets

    path = Path(dataset_name)
    if _is_saved_dataset(path):
        loaded = datasets.load_from_disk(str(path))
    else:
        try:
            loaded = datasets.load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir)
        except FileNotFoundError as e:
            raise DataError(
                f"dataset {dataset_name!r} not found (neither a local folder nor a reachable Hub dataset): {e}"
            ) from e
        except (ConnectionError, OSError) as e:
            raise DataError(f"dataset {dataset_name!r} could not be loaded: {e}") from e
    if isinstance(loaded, Dataset):
        loaded = DatasetDict({"train": loaded})
    if not isinstance(loaded, DatasetDict):
        raise DataError(
            f"dataset {dataset_name!r} is a {type(loaded).__name__}; expected a map-style DatasetDict"
        )
    renamed = {}
    for split, ds in loaded.items():
        canonical = _SPLIT_ALIASES.get(split, split)
        renamed[canonical if canonical not in loaded else split] = ds
    return DatasetDict(renamed)


def load_parallel_data(
    source_lang: str,
    target_lang: str,
    *,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_file: str | os.PathLike | None = None,
    validation_file: str | os.PathLike | None = None,
    test_file: str | os.PathLike | None = None,
    train_prefix: str | os.PathLike | None = None,
    validation_prefix: str | os.PathLike | None = None,
    test_prefix: str | os.PathLike | None = None,
    max_examples: int | None = None,
    cache_dir: str | None = None,
) -> DatasetDict:
    """Read a parallel corpus into ``DatasetDict({split: rows of {"translation": {src: .., tgt: ..}}})``.

    Give either ``dataset_name`` (a Hub dataset id, a local folder ``datasets.load_dataset`` reads, or a folder
    written by ``save_to_disk``; ``valid``/``val``/``dev`` splits are renamed ``validation``) or, per split, a
    JSONL file (``*_file``) or a file-pair prefix (``*_prefix``: reads ``PREFIX.<lang>`` or ``PREFIX.<lang>.gz``).
    ``max_examples`` keeps the first N pairs of each split (and reads only that much of text files).

    Raises:
        DataError: missing or empty file, unequal line counts (both files and counts), text that is not UTF-8
            or holds a NUL byte (file and line), malformed JSONL (file and line), a language the data does not
            have (the available ones), or conflicting / missing source options.
    """
    if source_lang == target_lang:
        raise DataError(f"source_lang and target_lang are both {source_lang!r}; give two different languages")
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise DataError(f"max_examples={max_examples!r} is not valid; use an integer >= 1 or None")
    files = {"train": train_file, "validation": validation_file, "test": test_file}
    prefixes = {"train": train_prefix, "validation": validation_prefix, "test": test_prefix}
    given_local = [s for s in SPLITS if files[s] is not None or prefixes[s] is not None]

    if dataset_name is not None:
        if given_local:
            raise DataError("give either dataset_name or *_file / *_prefix options, not both")
        loaded = _load_named_dataset(dataset_name, dataset_config_name, cache_dir)
        out = {}
        for split, ds in loaded.items():
            if max_examples is not None:
                ds = ds.select(range(min(max_examples, len(ds))))
            out[split] = _to_translation(
                ds, source_lang, target_lang, f"dataset {dataset_name!r} split {split!r}"
            )
        return DatasetDict(out)

    if not given_local:
        raise DataError(
            "no data given: pass dataset_name, or train_file/validation_file/test_file (JSONL), "
            "or train_prefix/validation_prefix/test_prefix (line-aligned PREFIX.<lang>[.gz] files)"
        )
    out = {}
    for split in SPLITS:
        if files[split] is not None and prefixes[split] is not None:
            raise DataError(f"give either {split}_file or {split}_prefix, not both")
        if files[split] is not None:
            out[split] = read_jsonl(files[split], source_lang, target_lang, max_examples)
        elif prefixes[split] is not None:
            out[split] = read_parallel_prefix(prefixes[split], source_lang, target_lang, max_examples)
    return DatasetDict(out)


def tokenize_parallel(
    dataset_dict: DatasetDict,
    tokenizer,
    source_lang: str,
    target_lang: str,
    max_source_length: int = 128,
    max_target_length: int = 128,
    target_tokenizer=None,
    num_proc: int | None = None,
    return_stats: bool = False,
):
    """Tokenize ``translation`` rows into ``input_ids``, ``attention_mask``, ``labels`` and ``length``.

    ``input_ids`` come from ``tokenizer``, ``labels`` from ``target_tokenizer`` (default: the same, joint
    vocabulary); both end in ``</s>`` (the tokenizer's post-processor). A pair is **dropped** when either side is
    empty (only whitespace) or longer than ``max_source_length`` / ``max_target_length`` tokens (``</s>``
    included) — dropped, not truncated, so the model never learns from cut translations. The counts per split
    are logged and, with ``return_stats=True``, returned as ``{split: {"kept", "empty", "too_long"}}``.

    ``length`` = max(source, target) token count: the per-example cost :class:`TokenBatchSampler` buckets on
    (``TokenBatchSampler(ds["length"], ...)``). Remove it before collation
    (``ds.remove_columns("length")``): ``DataCollatorForSeq2Seq`` would pass it on to the model.
    """
    target_tokenizer = target_tokenizer if target_tokenizer is not None else tokenizer

    def encode(batch):
        src = [p[source_lang] for p in batch["translation"]]
        tgt = [p[target_lang] for p in batch["translation"]]
        enc = tokenizer(src)
        labels = target_tokenizer(text_target=tgt)["input_ids"]
        empty = [not s.strip() or not t.strip() for s, t in zip(src, tgt)]
        too_long = [
            not e and (len(i) > max_source_length or len(lab) > max_target_length)
            for e, i, lab in zip(empty, enc["input_ids"], labels)
        ]
        return {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "labels": labels,
            "length": [max(len(i), len(lab)) for i, lab in zip(enc["input_ids"], labels)],
            "_empty": empty,
            "_too_long": too_long,
        }

    out, stats = {}, {}
    for split, ds in dataset_dict.items():
        if "translation" not in ds.column_names:
            raise DataError(f"split {split!r} has no 'translation' column (columns: {ds.column_names})")
        ds = ds.map(
            encode, batched=True, remove_columns=ds.column_names, num_proc=num_proc, desc=f"tokenize {split}"
        )
        n_empty, n_long = sum(ds["_empty"]), sum(ds["_too_long"])
        if n_empty or n_long:
            ds = ds.filter(
                lambda e, lg: not (e or lg), input_columns=["_empty", "_too_long"], num_proc=num_proc
            )
        ds = ds.remove_columns(["_empty", "_too_long"])
        stats[split] = {"kept": len(ds), "empty": n_empty, "too_long": n_long}
        logger.info(
            "%s: kept %d pairs, dropped %d empty and %d over-long (max_source_length=%d, max_target_length=%d)",
            split,
            len(ds),
            n_empty,
            n_long,
            max_source_length,
            max_target_length,
        )
        out[split] = ds
    result = DatasetDict(out)
    return (result, stats) if return_stats else result


class _EpochForwarder:
    """Exposed as ``TokenBatchSampler.sampler`` so Accelerate's ``DataLoaderShard.set_epoch`` (which looks for
    ``batch_sampler.batch_sampler.sampler.set_epoch`` once it has wrapped ours) reaches the sampler."""

    def __init__(self, owner: TokenBatchSampler):
        self._owner = owner

    def set_epoch(self, epoch: int) -> None:
        self._owner.set_epoch(epoch)


class TokenBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of at most ``max_tokens`` tokens, sentences of similar length together, sharded across ranks.

    Cost of a batch = ``len(batch) * max(lengths in batch)``: the padded size, which is what memory and compute
    pay for. Each epoch (deterministic for ``(seed, epoch)``):

    1. shuffle the example indices (if ``shuffle``), cut them into buckets of
       ``bucket_size_multiplier * (max_tokens // mean length)`` examples (roughly ``bucket_size_multiplier``
       batches each) and sort each bucket by length — similar lengths meet, yet batches differ between epochs;
    2. pack each sorted bucket greedily into batches that stay within ``max_tokens``;
    3. shuffle the batch order (if ``shuffle``);
    4. shard: rank ``r`` of ``num_replicas`` takes batches ``r, r + R, r + 2R, ...``.

    **Uneven counts.** With ``num_replicas > 1`` every rank gets the same number of batches (so DDP's collective
    calls never hang). When the batch count is not a multiple of ``num_replicas``: ``drop_last=False`` (default)
    repeats the first batches of the epoch to fill the last round (those examples are seen twice that epoch);
    ``drop_last=True`` drops the last incomplete round (those examples are skipped that epoch; the next epoch
    reshuffles). When it divides evenly, every example appears exactly once per epoch across ranks.

    **Over-long examples.** An example whose length alone exceeds ``max_tokens`` gets a batch of its own (a
    warning at construction says how many); filter them out beforehand (``tokenize_parallel``'s length limits)
    to keep the budget strict.

    **With Accelerate** — which to use:

    * *Simplest (recommended for the training loop)*: build it with ``num_replicas=1`` and hand the DataLoader to
      ``accelerator.prepare``. Accelerate wraps it in ``BatchSamplerShard`` (dynamic batch sizes are handled since
      this class has no ``batch_size``), gives rank ``r`` the batches ``r, r+R, ...`` and, with the default
      ``even_batches=True``, repeats early batches to even out the last round — the same behaviour as above.
      The seed must be the same on every process (it is: it is an argument). Accelerate's
      ``DataLoaderShard`` calls ``set_epoch`` each epoch through ``.sampler``; calling
      ``sampler.set_epoch(epoch)`` yourself is harmless.
    * *Explicit*: pass ``num_replicas=accelerator.num_processes, rank=accelerator.process_index`` and do **not**
      pass that DataLoader to ``accelerator.prepare`` (prepare only the model and optimizer; move batches to
      ``accelerator.device`` yourself and call ``set_epoch`` each epoch); otherwise the batches are sharded twice.

    Use: ``DataLoader(ds, batch_sampler=TokenBatchSampler(ds["length"], 4096), collate_fn=collator)``.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_tokens: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        bucket_size_multiplier: int = 100,
    ):
        self.lengths = [int(n) for n in lengths]
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens={max_tokens!r} is not valid; use an integer >= 1")
        if not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"num_replicas={num_replicas!r} is not valid; use an integer >= 1")
        if not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank!r} is not valid; use an integer in [0, {num_replicas - 1}]")
        if not isinstance(bucket_size_multiplier, int) or bucket_size_multiplier < 1:
            raise ValueError(
                f"bucket_size_multiplier={bucket_size_multiplier!r} is not valid; use an integer >= 1"
            )
        if any(n < 1 for n in self.lengths):
            raise ValueError("lengths: every example must have length >= 1")
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        mean = sum(self.lengths) / max(1, len(self.lengths))
        self.bucket_size = bucket_size_multiplier * max(1, int(max_tokens // max(mean, 1)))
        self.epoch = 0
        self.sampler = _EpochForwarder(self)
        self._cache: tuple[int, list[list[int]]] | None = None
        n_over = sum(n > max_tokens for n in self.lengths)
        if n_over:
            warnings.warn(
                f"TokenBatchSampler: {n_over} example(s) are longer than max_tokens={max_tokens}; each gets a "
                "batch of its own (filter them out to keep the token budget strict)",
                stacklevel=2,
            )

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (call before each epoch, on every rank, with the same value)."""
        self.epoch = int(epoch)

    def _all_batches(self) -> list[list[int]]:
        """All batches of the current epoch, before sharding, in the order the ranks take them."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.lengths)
        order = torch.randperm(n, generator=gen).tolist() if self.shuffle else list(range(n))
        batches: list[list[int]] = []
        for start in range(0, n, self.bucket_size):
            bucket = sorted(order[start : start + self.bucket_size], key=self.lengths.__getitem__)
            batch: list[int] = []
            longest = 0
            for idx in bucket:
                new_longest = max(longest, self.lengths[idx])
                if batch and (len(batch) + 1) * new_longest > self.max_tokens:
                    batches.append(batch)
                    batch, new_longest = [], self.lengths[idx]
                batch.append(idx)
                longest = new_longest
            if batch:
                batches.append(batch)
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
        if self.num_replicas > 1 and len(batches) % self.num_replicas:
            if self.drop_last:
                batches = batches[: len(batches) - len(batches) % self.num_replicas]
            else:
                missing = self.num_replicas - len(batches) % self.num_replicas
                batches = batches + [batches[i % len(batches)] for i in range(missing)]
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._all_batches()[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        return len(self._all_batches()[self.rank :: self.num_replicas])

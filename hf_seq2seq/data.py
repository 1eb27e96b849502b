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
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
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
    "example_lengths",
    "pack_token_batches",
    "stream_token_batches",
]

SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation"}


class DataError(ValueError):
    """A corpus that cannot be read as asked: the message names the file (and line) or dataset, and the fix."""


def _text_lines(path: Path) -> Iterator[str]:
    """The lines of ``path``; a missing file, text that is not UTF-8 or a NUL byte raise :class:`DataError`."""
    try:
        for _, line in iter_text_lines(path):
            yield line
    except FileNotFoundError as e:
        raise DataError(f"file not found: {path}") from e
    except ValueError as e:  # not UTF-8 or a NUL byte: the message already names file and line
        raise DataError(str(e)) from e


def _prefix_file(prefix: str | os.PathLike, lang: str) -> Path:
    plain = Path(f"{prefix}.{lang}")
    gz = Path(f"{prefix}.{lang}.gz")
    if plain.is_file():
        return plain
    if gz.is_file():
        return gz
    raise DataError(f"file not found: {plain} (nor {gz.name}) for language {lang!r} of prefix {prefix}")


def _file_stamp(*paths: Path) -> str:
    """Size and modification time of each file: part of the cache key, so an edited corpus is read again.

    A string, not a list: ``from_generator`` would treat a list in ``gen_kwargs`` as shards to split."""
    return ";".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths)


def _translation_features(source_lang: str, target_lang: str) -> Features:
    return Features({"translation": {source_lang: Value("string"), target_lang: Value("string")}})


def _from_rows(generator, gen_kwargs: dict, features: Features, streaming: bool, cache_dir: str | None):
    """Rows of ``generator(**gen_kwargs)`` as a ``Dataset`` written to the Arrow cache (memory-mapped: a corpus
    of millions of lines costs disk, not RAM; a second run with the same files reads the cache) or, with
    ``streaming``, as an ``IterableDataset`` that reads the files lazily, never storing them."""
    from datasets import IterableDataset
    from datasets.exceptions import DatasetGenerationError

    if streaming:
        return IterableDataset.from_generator(generator, features=features, gen_kwargs=gen_kwargs)
    try:
        return Dataset.from_generator(
            generator, features=features, gen_kwargs=gen_kwargs, cache_dir=cache_dir
        )
    except DatasetGenerationError as e:  # datasets wraps what the generator raised; ours names file and line
        if isinstance(e.__cause__, DataError):
            raise e.__cause__ from None
        raise


def _prefix_rows(src_path, tgt_path, source_lang, target_lang, max_examples, stamp=None):
    """Aligned pairs of two text files; unequal line counts and empty files raise :class:`DataError`.

    ``stamp`` is unused here: it is in ``gen_kwargs`` so that the Arrow cache key changes with the files."""
    src_path, tgt_path = Path(src_path), Path(tgt_path)
    src_lines, tgt_lines = _text_lines(src_path), _text_lines(tgt_path)
    n = 0
    while max_examples is None or n < max_examples:
        s, t = next(src_lines, None), next(tgt_lines, None)
        if s is None or t is None:
            if s is None and t is None:
                break
            _raise_unaligned(src_path, tgt_path, n, s, t, src_lines, tgt_lines, max_examples)
        n += 1
        yield {"translation": {source_lang: s, target_lang: t}}
    if n == 0:
        raise DataError(f"{src_path} is empty: expected one sentence per line")


def _raise_unaligned(src_path, tgt_path, n, s, t, src_lines, tgt_lines, max_examples) -> None:
    """One file ended after ``n`` lines, the other did not: count the longer one's lines for the message."""
    if n == 0:
        raise DataError(f"{src_path if s is None else tgt_path} is empty: expected one sentence per line")
    longer = src_lines if t is None else tgt_lines
    count = n + 1
    for _ in longer:
        if max_examples is not None and count >= max_examples:
            break
        count += 1
    n_src, n_tgt = (count, n) if t is None else (n, count)
    raise DataError(
        f"line counts differ: {src_path} has {n_src} lines, {tgt_path} has {n_tgt} lines"
        + (f" (within the first {max_examples})" if max_examples is not None else "")
        + "; the two sides must be line-aligned"
    )


def read_parallel_prefix(
    prefix: str | os.PathLike,
    source_lang: str,
    target_lang: str,
    max_examples: int | None = None,
    *,
    streaming: bool = False,
    cache_dir: str | None = None,
):
    """Rows from line-aligned ``PREFIX.<source_lang>`` / ``PREFIX.<target_lang>`` files, each plain or ``.gz``
    (the plain file wins if both exist).

    Line *i* of one file is the translation of line *i* of the other; different line counts are an error. With
    ``max_examples`` only the first ``max_examples`` lines are read (and compared). The rows are written once to
    the ``datasets`` Arrow cache (``cache_dir``, default ``HF_DATASETS_CACHE``) and memory-mapped, so millions of
    lines do not live in RAM and a second run with unchanged files starts from the cache; ``streaming=True``
    returns an ``IterableDataset`` that reads the files lazily instead (the alignment check runs as it reads).
    """
    src_path, tgt_path = _prefix_file(prefix, source_lang), _prefix_file(prefix, target_lang)
    gen_kwargs = {
        "src_path": str(src_path),
        "tgt_path": str(tgt_path),
        "source_lang": source_lang,
        "target_lang": target_lang,
        "max_examples": max_examples,
        "stamp": _file_stamp(src_path, tgt_path),
    }
    features = _translation_features(source_lang, target_lang)
    return _from_rows(_prefix_rows, gen_kwargs, features, streaming, cache_dir)


def _jsonl_pair(path: Path, lineno: int, line: str, source_lang: str, target_lang: str) -> dict:
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
            raise DataError(f"{path}, line {lineno}: {what} language {lang!r}; available: {sorted(pair)}")
    return {source_lang: pair[source_lang], target_lang: pair[target_lang]}


def _jsonl_rows(path, source_lang, target_lang, max_examples, stamp=None):
    path, n = Path(path), 0
    try:
        for lineno, line in iter_text_lines(path):
            if max_examples is not None and n >= max_examples:
                break
            if not line.strip():
                continue
            n += 1
            yield {"translation": _jsonl_pair(path, lineno, line, source_lang, target_lang)}
    except FileNotFoundError as e:
        raise DataError(f"file not found: {path}") from e
    except DataError:
        raise
    except ValueError as e:  # not UTF-8
        raise DataError(str(e)) from e
    if n == 0:
        raise DataError(f'{path} has no examples: expected one {{"translation": {{...}}}} object per line')


def read_jsonl(
    path: str | os.PathLike,
    source_lang: str,
    target_lang: str,
    max_examples: int | None = None,
    *,
    streaming: bool = False,
    cache_dir: str | None = None,
):
    """Rows from a JSONL file (plain or ``.gz``) of ``{"translation": {lang: text, ...}}`` (or flat
    ``{lang: text}``) objects; blank lines are skipped; extra languages are ignored. Cached in Arrow (or read
    lazily with ``streaming``) as :func:`read_parallel_prefix` does."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    gen_kwargs = {
        "path": str(path),
        "source_lang": source_lang,
        "target_lang": target_lang,
        "max_examples": max_examples,
        "stamp": _file_stamp(path),
    }
    features = _translation_features(source_lang, target_lang)
    return _from_rows(_jsonl_rows, gen_kwargs, features, streaming, cache_dir)


def _available_languages(ds: Dataset) -> list[str]:
    if ds.column_names is None:  # a streamed dataset without declared features: look at the first row
        first = next(iter(ds), {})
        pair = first.get("translation", first)
        return sorted(pair) if isinstance(pair, dict) else []
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
    if not isinstance(ds, Dataset):  # streamed: converted lazily (no progress bar to describe)
        columns = ds.column_names or list(next(iter(ds), {}))
        return ds.map(convert, batched=True, remove_columns=columns, features=features)
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
    dataset_name: str, dataset_config_name: str | None, cache_dir: str | None, streaming: bool = False
) -> DatasetDict:
    import datasets

    path = Path(dataset_name)
    if _is_saved_dataset(path):
        loaded = datasets.load_from_disk(str(path))
    else:
        try:
            loaded = datasets.load_dataset(
                dataset_name, dataset_config_name, cache_dir=cache_dir, streaming=streaming
            )
        except FileNotFoundError as e:
            raise DataError(
                f"dataset {dataset_name!r} not found (neither a local folder nor a reachable Hub dataset): {e}"
            ) from e
        except (ConnectionError, OSError) as e:
            raise DataError(f"dataset {dataset_name!r} could not be loaded: {e}") from e
    if isinstance(loaded, (Dataset, datasets.IterableDataset)):
        loaded = {"train": loaded}
    if not isinstance(loaded, (DatasetDict, datasets.IterableDatasetDict, dict)):
        raise DataError(
            f"dataset {dataset_name!r} is a {type(loaded).__name__}; expected a map-style DatasetDict"
        )
    renamed = {}
    for split, ds in loaded.items():
        canonical = _SPLIT_ALIASES.get(split, split)
        renamed[canonical if canonical not in loaded else split] = ds
    return DatasetDict(renamed)


def _stream_train_only(ds_dict: dict) -> DatasetDict:
    """With ``streaming``, the train split is an ``IterableDataset``; the others (validation and test sets are
    small and scored whole) are read into ordinary ``Dataset`` objects."""
    from datasets import IterableDataset

    out = {}
    for split, ds in ds_dict.items():
        if split == "train" and isinstance(ds, Dataset):
            ds = ds.to_iterable_dataset()
        elif split != "train" and isinstance(ds, IterableDataset):
            ds = Dataset.from_list(list(ds), features=ds.features)
        out[split] = ds
    return DatasetDict(out)


def _named_translation(
    dataset_name, dataset_config_name, source_lang, target_lang, max_examples, cache_dir, streaming
) -> DatasetDict:
    loaded = _load_named_dataset(dataset_name, dataset_config_name, cache_dir, streaming)
    if streaming:
        loaded = _stream_train_only(loaded)
    out = {}
    for split, ds in loaded.items():
        if max_examples is not None:
            ds = (
                ds.select(range(min(max_examples, len(ds))))
                if isinstance(ds, Dataset)
                else ds.take(max_examples)
            )
        out[split] = _to_translation(
            ds, source_lang, target_lang, f"dataset {dataset_name!r} split {split!r}"
        )
    return DatasetDict(out)


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
    streaming: bool = False,
) -> DatasetDict:
    """Read a parallel corpus into ``DatasetDict({split: rows of {"translation": {src: .., tgt: ..}}})``.

    Give either ``dataset_name`` (a Hub dataset id, a local folder ``datasets.load_dataset`` reads, or a folder
    written by ``save_to_disk``; ``valid``/``val``/``dev`` splits are renamed ``validation``) or, per split, a
    JSONL file (``*_file``) or a file-pair prefix (``*_prefix``: reads ``PREFIX.<lang>`` or ``PREFIX.<lang>.gz``).
    ``max_examples`` keeps the first N pairs of each split (and reads only that much of text files). Files are
    cached as Arrow under ``cache_dir`` (default: ``HF_DATASETS_CACHE``). With ``streaming=True`` the train split
    is a ``datasets.IterableDataset`` read lazily (for corpora that do not fit on local disk); validation and
    test are read whole.

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
        return _named_translation(
            dataset_name, dataset_config_name, source_lang, target_lang, max_examples, cache_dir, streaming
        )

    if not given_local:
        raise DataError(
            "no data given: pass dataset_name, or train_file/validation_file/test_file (JSONL), "
            "or train_prefix/validation_prefix/test_prefix (line-aligned PREFIX.<lang>[.gz] files)"
        )
    out = {}
    for split in SPLITS:
        if files[split] is not None and prefixes[split] is not None:
            raise DataError(f"give either {split}_file or {split}_prefix, not both")
        kwargs = {"streaming": streaming and split == "train", "cache_dir": cache_dir}
        if files[split] is not None:
            out[split] = read_jsonl(files[split], source_lang, target_lang, max_examples, **kwargs)
        elif prefixes[split] is not None:
            out[split] = read_parallel_prefix(
                prefixes[split], source_lang, target_lang, max_examples, **kwargs
            )
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
    settings = (source_lang, target_lang, max_source_length, max_target_length)

    def encode(batch):
        src = [p[source_lang] for p in batch["translation"]]
        tgt = [p[target_lang] for p in batch["translation"]]
        # verbose=False: over-long pairs are dropped and counted below; transformers' "indexing errors" warning
        # about them (written before our count) would suggest otherwise
        enc = tokenizer(src, verbose=False)
        labels = target_tokenizer(text_target=tgt, verbose=False)["input_ids"]
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
        if ds.column_names is not None and "translation" not in ds.column_names:
            raise DataError(f"split {split!r} has no 'translation' column (columns: {ds.column_names})")
        if not isinstance(ds, Dataset):  # streamed: encoded and filtered lazily, as the rows are read
            out[split] = (
                ds.map(encode, batched=True, remove_columns=["translation"])
                .filter(lambda e, lg: not (e or lg), input_columns=["_empty", "_too_long"])
                .remove_columns(["_empty", "_too_long"])
            )
            stats[split] = None
            continue
        # On an Arrow-backed dataset map() and filter() are cached by fingerprint: a second run with the same
        # data and tokenizer loads the tokenized split instead of encoding it again.
        ds = ds.map(
            encode,
            batched=True,
            remove_columns=ds.column_names,
            num_proc=num_proc,
            desc=f"tokenize {split}",
            new_fingerprint=_tokenized_fingerprint(ds, tokenizer, target_tokenizer, settings),
        )
        # pyarrow sums the flag columns without turning millions of rows into Python objects
        n_empty, n_long = (pc.sum(ds.data.column(c)).as_py() or 0 for c in ("_empty", "_too_long"))
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


# Bump when tokenize_parallel's output changes: it is part of the cache key of tokenized splits.
_TOKENIZED_FORMAT = 1


def _tokenized_fingerprint(ds: Dataset, tokenizer, target_tokenizer, settings: tuple) -> str:
    """The cache key of a tokenized split, from what decides its content: the input rows, both tokenizers'
    serialized vocabularies and rules, the languages and length limits.

    ``datasets`` would hash the ``encode`` closure, whose tokenizer object hashes differently when trained in
    this process and when loaded from its folder: the other ranks (which load rank 0's tokenizer) and a second
    run would then tokenize the whole corpus again instead of reading rank 0's cache.
    """
    from datasets.fingerprint import Hasher

    def content(tok):
        return (type(tok).__name__, tok.backend_tokenizer.to_str(), tok.all_special_tokens, tok.padding_side)

    return Hasher.hash(
        (_TOKENIZED_FORMAT, ds._fingerprint, content(tokenizer), content(target_tokenizer), settings)
    )


def example_lengths(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(length, label_length)`` of every row of a tokenized split, as int32 arrays.

    Read from the Arrow columns (``length`` and the offsets of the ``labels`` lists), so millions of examples
    cost two int32 arrays (8 bytes an example), not millions of Python lists; a ``select``/``filter`` indices
    mapping is applied. Each column is copied chunk by chunk into its array: no whole-column temporaries.
    """
    table = ds.data  # the memory-mapped table of all rows, before any indices mapping
    lengths = _int32_column(table.column("length"))
    label_lengths = _int32_column(table.column("labels"), pc.list_value_length)
    indices = getattr(ds, "_indices", None)  # datasets' selection of rows (after filter/select/shuffle)
    if indices is not None:
        rows = _int32_column(indices.column(0)) if len(lengths) < 2**31 else indices.column(0).to_numpy()
        lengths, label_lengths = lengths[rows], label_lengths[rows]
    return lengths, label_lengths


def _int32_column(column, compute=None) -> np.ndarray:
    """A chunked Arrow column (optionally through the pyarrow.compute function ``compute``) as one int32 array."""
    out = np.empty(len(column), dtype=np.int32)
    start = 0
    for chunk in column.chunks:
        values = (compute(chunk) if compute is not None else chunk).to_numpy(zero_copy_only=False)
        out[start : start + len(values)] = values
        start += len(values)
    return out


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
        # one integer array (int32 from example_lengths, used as it is): millions of examples cost 4 bytes each,
        # not a Python int and a list slot
        self.lengths = np.asarray(lengths if isinstance(lengths, np.ndarray) else list(lengths))
        if self.lengths.dtype not in (np.int32, np.int64):
            self.lengths = self.lengths.astype(np.int64)
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
        if (self.lengths < 1).any():
            raise ValueError("lengths: every example must have length >= 1")
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        mean = float(self.lengths.mean()) if len(self.lengths) else 0.0
        self.bucket_size = bucket_size_multiplier * max(1, int(max_tokens // max(mean, 1)))
        self.epoch = 0
        self.sampler = _EpochForwarder(self)
        self._cache: tuple[int, list[np.ndarray]] | None = None
        n_over = int((self.lengths > max_tokens).sum())
        if n_over:
            warnings.warn(
                f"TokenBatchSampler: {n_over} example(s) are longer than max_tokens={max_tokens}; each gets a "
                "batch of its own (filter them out to keep the token budget strict)",
                stacklevel=2,
            )

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (call before each epoch, on every rank, with the same value)."""
        self.epoch = int(epoch)

    def _all_batches(self) -> list[np.ndarray]:
        """All batches of the current epoch, before sharding, in the order the ranks take them."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.lengths)
        order = torch.randperm(n, generator=gen).numpy() if self.shuffle else np.arange(n)
        batches: list[np.ndarray] = []
        for start in range(0, n, self.bucket_size):
            bucket = order[start : start + self.bucket_size]
            # a stable sort: equal lengths keep their shuffled order (as Python's sorted did)
            bucket = bucket[np.argsort(self.lengths[bucket], kind="stable")]
            batches += pack_token_batches(bucket, self.lengths[bucket], self.max_tokens)
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

    def index_arrays(self) -> list[np.ndarray]:
        """This rank's batches of the current epoch as int32 index arrays (what iterating yields as lists): the
        compact form for a loop that holds a whole epoch of millions of examples."""
        return self._all_batches()[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.index_arrays():
            yield batch.tolist()  # a list per batch as it is taken; the epoch is kept as compact arrays

    def __len__(self) -> int:
        return len(self._all_batches()[self.rank :: self.num_replicas])


def pack_token_batches(indices: np.ndarray, lengths: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """Cut ``indices`` (sorted by ascending ``lengths``) greedily into batches of at most ``max_tokens`` padded
    tokens (``len(batch) * longest``); an example longer than ``max_tokens`` alone makes a batch.

    Sorted lengths make the cost of extending a batch increase monotonically, so each batch is one
    ``searchsorted`` over the few examples that could fit (``max_tokens // shortest``), not a Python loop per
    example: packing millions of examples takes seconds. Each batch is an int32 array (4 bytes per example where
    a list of Python ints costs about 36: an epoch of millions of examples is held by the sampler).
    """
    batches, i, n = [], 0, len(indices)
    while i < n:
        window = lengths[i : i + max(1, max_tokens // int(lengths[i]))]
        cost = window * np.arange(1, len(window) + 1)
        size = max(1, int(np.searchsorted(cost, max_tokens, side="right")))
        batches.append(indices[i : i + size].astype(np.int32))
        i += size
    return batches


def stream_token_batches(
    examples: Iterable[dict],
    max_tokens: int,
    *,
    buffer_size: int = 100_000,
    seed: int = 0,
    shuffle: bool = True,
) -> Iterator[list[dict]]:
    """Token-budget batches from a stream of tokenized examples (``--streaming``): the bucketing of
    :class:`TokenBatchSampler` applied within a buffer of ``buffer_size`` examples.

    The stream is cut into consecutive buffers; each is shuffled, sorted by ``length`` (stable), packed with
    :func:`pack_token_batches` and its batches are yielded in shuffled order (deterministic for ``seed``). Every
    example of the stream lands in exactly one batch. Shuffle the stream itself before (``IterableDataset.shuffle``
    with a buffer): this only reorders within a buffer.
    """
    gen = torch.Generator().manual_seed(seed)
    buffer: list[dict] = []
    for example in examples:
        buffer.append(example)
        if len(buffer) >= buffer_size:
            yield from _buffer_batches(buffer, max_tokens, gen, shuffle)
            buffer = []
    if buffer:
        yield from _buffer_batches(buffer, max_tokens, gen, shuffle)


def _buffer_batches(buffer: list[dict], max_tokens: int, gen, shuffle: bool) -> Iterator[list[dict]]:
    lengths = np.fromiter((ex["length"] for ex in buffer), dtype=np.int64, count=len(buffer))
    order = torch.randperm(len(buffer), generator=gen).numpy() if shuffle else np.arange(len(buffer))
    order = order[np.argsort(lengths[order], kind="stable")]
    batches = pack_token_batches(order, lengths[order], max_tokens)
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
    for batch in batches:
        yield [buffer[i] for i in batch]

"""Corpora read into the Arrow cache (reused until the file changes, the tests' cache in a session folder) and
streamed with the token-budget bucketing kept (issue 18, item 2)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from datasets import DatasetDict

from hf_seq2seq.data import (
    TokenBatchSampler,
    example_lengths,
    read_parallel_prefix,
    stream_token_batches,
    tokenize_parallel,
)
from hf_seq2seq.tokenization import train_tokenizer

N_PAIRS = 600


@pytest.fixture(scope="module")
def tokenizer(multi30k_dir):
    pairs = read_parallel_prefix(multi30k_dir / "train", "de", "en", max_examples=N_PAIRS)["translation"]
    return train_tokenizer([p["de"] for p in pairs] + [p["en"] for p in pairs], vocab_size=300)


def _tokenized(ds, tokenizer):
    # max_source_length 20 drops the longer pairs: the filtered (indices-mapped) path is exercised too
    return tokenize_parallel(DatasetDict({"train": ds}), tokenizer, "de", "en", max_source_length=20)["train"]


def test_example_lengths_follow_the_filter(multi30k_dir, tokenizer):
    tok, stats = tokenize_parallel(
        DatasetDict(
            {"train": read_parallel_prefix(multi30k_dir / "train", "de", "en", max_examples=N_PAIRS)}
        ),
        tokenizer,
        "de",
        "en",
        max_source_length=20,
        return_stats=True,
    )
    tok = tok["train"]
    assert stats["train"]["too_long"] > 0
    lengths, label_lengths = example_lengths(tok)
    assert lengths.tolist() == list(tok["length"])
    assert label_lengths.tolist() == [len(x) for x in tok["labels"]]
    # 4 bytes an example, and the sampler keeps the array it is given (no int64 copy of millions of lengths)
    assert lengths.dtype == label_lengths.dtype == "int32"
    assert TokenBatchSampler(lengths, 300).lengths is lengths


def test_streamed_epoch_has_every_example_once_within_budget(multi30k_dir, tokenizer):
    """--streaming's batches (bucketed within a buffer) cover the same examples as the map-style sampler's epoch,
    each exactly once, and no batch exceeds the token budget."""
    max_tokens = 160
    mapped = _tokenized(
        read_parallel_prefix(multi30k_dir / "train", "de", "en", max_examples=N_PAIRS), tokenizer
    )
    lengths, _ = example_lengths(mapped)
    sampler = TokenBatchSampler(lengths, max_tokens, seed=3)
    map_examples = Counter(tuple(mapped[i]["labels"]) for batch in sampler for i in batch)

    stream = read_parallel_prefix(multi30k_dir / "train", "de", "en", max_examples=N_PAIRS, streaming=True)
    stream = _tokenized(stream, tokenizer).shuffle(seed=3, buffer_size=50)
    batches = list(stream_token_batches(stream, max_tokens, buffer_size=128, seed=3))
    stream_examples = Counter(tuple(ex["labels"]) for batch in batches for ex in batch)

    assert stream_examples == map_examples
    assert sum(stream_examples.values()) == len(mapped)
    for batch in batches:
        assert len(batch) * max(ex["length"] for ex in batch) <= max_tokens
    # buckets: sentences of similar length together (far less padding than a random order would give)
    padded = sum(len(b) * max(ex["length"] for ex in b) for b in batches)
    assert padded < 1.3 * int(lengths.sum())


def test_reader_reuses_its_cache_until_the_file_changes(tmp_path):
    for lang, words in (("de", ["eins", "zwei"]), ("en", ["one", "two"])):
        (tmp_path / f"c.{lang}").write_text("\n".join(words) + "\n")
    first = read_parallel_prefix(tmp_path / "c", "de", "en", cache_dir=str(tmp_path / "cache"))
    again = read_parallel_prefix(tmp_path / "c", "de", "en", cache_dir=str(tmp_path / "cache"))
    assert first.cache_files and first.cache_files == again.cache_files  # memory-mapped, read from the cache
    (tmp_path / "c.de").write_text("drei\nvier\n")
    (tmp_path / "c.en").write_text("three\nfour\n")
    changed = read_parallel_prefix(tmp_path / "c", "de", "en", cache_dir=str(tmp_path / "cache"))
    assert [p["en"] for p in changed["translation"]] == ["three", "four"]


def test_tests_read_corpora_into_a_session_cache_not_the_users(tmp_path):
    """tests/conftest.py points HF_DATASETS_CACHE at a temporary folder before datasets is imported: a corpus read
    with the default cache lands there, not in ~/.cache."""
    import datasets
    from conftest import DATASETS_CACHE

    cache = Path(DATASETS_CACHE)
    assert Path(datasets.config.HF_DATASETS_CACHE) == cache
    assert Path.home() / ".cache" not in cache.parents
    for lang, word in (("de", "eins"), ("en", "one")):
        (tmp_path / f"c.{lang}").write_text(word + "\n")
    ds = read_parallel_prefix(tmp_path / "c", "de", "en")
    assert ds.cache_files and all(cache in Path(f["filename"]).parents for f in ds.cache_files)


def test_streaming_a_saved_dataset(tmp_path):
    """--streaming with --dataset_name: the train split streamed (flat columns converted lazily), validation
    read whole, max_examples applied to both."""
    from datasets import Dataset

    from hf_seq2seq.data import load_parallel_data

    flat = {"de": ["a", "b", "c"], "en": ["x", "y", "z"]}
    DatasetDict({"train": Dataset.from_dict(flat), "valid": Dataset.from_dict(flat)}).save_to_disk(
        tmp_path / "d"
    )
    dd = load_parallel_data("de", "en", dataset_name=str(tmp_path / "d"), streaming=True, max_examples=2)
    assert not isinstance(dd["train"], Dataset) and isinstance(dd["validation"], Dataset)
    assert [r["translation"] for r in dd["train"]] == [{"de": "a", "en": "x"}, {"de": "b", "en": "y"}]
    assert len(dd["validation"]) == 2

"""Parallel-data readers, their errors, tokenization with a length filter, and the token-budget batch sampler."""

from __future__ import annotations

import gzip
import json
import random
import warnings
from collections import Counter

import pytest
import torch
from datasets import Dataset, DatasetDict
from transformers import DataCollatorForSeq2Seq

from hf_seq2seq.data import DataError, TokenBatchSampler, load_parallel_data, tokenize_parallel
from hf_seq2seq.tokenization import train_tokenizer

PAIRS = [
    ("Ein Hund läuft.", "A dog runs."),
    ("Zwei Männer spielen.", "Two men play."),
    ("Eine Frau liest.", "A woman reads."),
]


def _write(path, lines, gz=False, encoding="utf-8"):
    data = ("\n".join(lines) + "\n").encode(encoding)
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def _rows(dd, split="train"):
    return [(r["de"], r["en"]) for r in dd[split]["translation"]]


# ----------------------------------------------------------------------------------------------------- readers
@pytest.mark.parametrize(("de_gz", "en_gz"), [(False, False), (True, True), (False, True)])
def test_prefix_plain_and_gz(tmp_path, de_gz, en_gz):
    _write(tmp_path / ("train.de.gz" if de_gz else "train.de"), [p[0] for p in PAIRS], gz=de_gz)
    _write(tmp_path / ("train.en.gz" if en_gz else "train.en"), [p[1] for p in PAIRS], gz=en_gz)
    _write(tmp_path / "val.de", [PAIRS[0][0]])
    _write(tmp_path / "val.en", [PAIRS[0][1]])
    dd = load_parallel_data(
        "de", "en", train_prefix=tmp_path / "train", validation_prefix=str(tmp_path / "val")
    )
    assert set(dd) == {"train", "validation"}
    assert _rows(dd) == PAIRS
    assert _rows(dd, "validation") == PAIRS[:1]
    # the direction follows the arguments
    assert [
        (r["en"], r["de"])
        for r in load_parallel_data("en", "de", train_prefix=tmp_path / "train")["train"]["translation"]
    ] == [(e, d) for d, e in PAIRS]


@pytest.mark.parametrize("gz", [False, True])
def test_jsonl(tmp_path, gz):
    lines = [json.dumps({"translation": {"de": d, "en": e, "fr": "x"}}) for d, e in PAIRS[:2]]
    lines += ["", json.dumps({"de": PAIRS[2][0], "en": PAIRS[2][1]})]  # a blank line and a flat object
    path = _write(tmp_path / ("train.jsonl.gz" if gz else "train.jsonl"), lines, gz=gz)
    dd = load_parallel_data("de", "en", train_file=path)
    assert _rows(dd) == PAIRS
    assert dd["train"].column_names == ["translation"]
    assert set(dd["train"][0]["translation"]) == {"de", "en"}


def test_saved_to_disk_translation_column(tmp_path):
    rows = [{"translation": {"de": d, "en": e, "cs": "c"}} for d, e in PAIRS]
    DatasetDict({"train": Dataset.from_list(rows), "valid": Dataset.from_list(rows[:1])}).save_to_disk(
        tmp_path / "ds"
    )
    dd = load_parallel_data("de", "en", dataset_name=str(tmp_path / "ds"))
    assert set(dd) == {"train", "validation"}  # "valid" renamed
    assert _rows(dd) == PAIRS
    assert set(dd["train"][0]["translation"]) == {"de", "en"}
    assert (
        len(load_parallel_data("en", "de", dataset_name=str(tmp_path / "ds"), max_examples=2)["train"]) == 2
    )


def test_saved_to_disk_flat_columns(tmp_path):
    # bentrevett/multi30k stores {"en": ..., "de": ...} columns
    Dataset.from_dict({"en": [p[1] for p in PAIRS], "de": [p[0] for p in PAIRS]}).save_to_disk(
        tmp_path / "flat"
    )
    dd = load_parallel_data("de", "en", dataset_name=str(tmp_path / "flat"))
    assert list(dd) == ["train"]
    assert _rows(dd) == PAIRS


def test_local_folder_through_load_dataset(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for split, pairs in (("train", PAIRS), ("validation", PAIRS[:1])):
        _write(folder / f"{split}.jsonl", [json.dumps({"de": d, "en": e}) for d, e in pairs])
    dd = load_parallel_data("de", "en", dataset_name=str(folder), cache_dir=str(tmp_path / "cache"))
    assert _rows(dd) == PAIRS and _rows(dd, "validation") == PAIRS[:1]


def test_multi30k_slice(multi30k_dir):
    dd = load_parallel_data(
        "de",
        "en",
        train_prefix=multi30k_dir / "train",
        validation_prefix=multi30k_dir / "val",
        test_prefix=multi30k_dir / "test_2016_flickr",
        max_examples=300,
    )
    assert {k: len(v) for k, v in dd.items()} == {"train": 300, "validation": 300, "test": 300}
    first = dd["train"][0]["translation"]
    assert first["de"].startswith("Zwei junge weiße Männer") and first["en"]
    assert all(r["de"].strip() and r["en"].strip() for r in dd["test"]["translation"])


# ------------------------------------------------------------------------------------------------- bad inputs
def test_missing_prefix_file(tmp_path):
    _write(tmp_path / "train.de", ["a"])
    with pytest.raises(DataError, match=r"train\.en") as info:
        load_parallel_data("de", "en", train_prefix=tmp_path / "train")
    assert isinstance(info.value, ValueError)


def test_missing_jsonl_file(tmp_path):
    with pytest.raises(DataError, match=r"file not found: .*nope\.jsonl"):
        load_parallel_data("de", "en", train_file=tmp_path / "nope.jsonl")


def test_line_counts_differ(tmp_path):
    _write(tmp_path / "train.de", ["a", "b", "c"])
    _write(tmp_path / "train.en.gz", ["a", "b"], gz=True)
    with pytest.raises(DataError) as info:
        load_parallel_data("de", "en", train_prefix=tmp_path / "train")
    msg = str(info.value)
    assert "train.de has 3 lines" in msg and "train.en.gz has 2 lines" in msg


@pytest.mark.parametrize("gz", [False, True])
def test_not_utf8_names_file_and_line(tmp_path, gz):
    _write(tmp_path / "train.en", ["a", "b", "c"])
    _write(tmp_path / ("train.de.gz" if gz else "train.de"), ["a", "Köln", "c"], gz=gz, encoding="latin-1")
    with pytest.raises(DataError, match=r"train\.de(\.gz)?, line 2: text is not valid UTF-8"):
        load_parallel_data("de", "en", train_prefix=tmp_path / "train")


def test_jsonl_not_utf8(tmp_path):
    path = _write(
        tmp_path / "t.jsonl",
        [json.dumps({"de": "Köln", "en": "x"}, ensure_ascii=False)] * 2,
        encoding="latin-1",
    )
    with pytest.raises(DataError, match=r"t\.jsonl, line 1: text is not valid UTF-8"):
        load_parallel_data("de", "en", train_file=path)


def test_malformed_jsonl_line(tmp_path):
    path = _write(
        tmp_path / "bad.jsonl", [json.dumps({"translation": {"de": "a", "en": "b"}}), '{"translation": ']
    )
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2: not valid JSON"):
        load_parallel_data("de", "en", train_file=path)
    path = _write(tmp_path / "list.jsonl", ['["a", "b"]'])
    with pytest.raises(DataError, match=r"list\.jsonl, line 1: expected an object"):
        load_parallel_data("de", "en", train_file=path)


def test_jsonl_unknown_language(tmp_path):
    path = _write(tmp_path / "t.jsonl", [json.dumps({"translation": {"de": "a", "en": "b"}})])
    with pytest.raises(DataError, match=r"t\.jsonl, line 1: has no language 'fr'; available: \['de', 'en'\]"):
        load_parallel_data("fr", "en", train_file=path)


@pytest.mark.parametrize("flat", [False, True])
def test_dataset_unknown_language(tmp_path, flat):
    if flat:
        ds = Dataset.from_dict({"de": ["a"], "en": ["b"]})
    else:
        ds = Dataset.from_list([{"translation": {"de": "a", "en": "b"}}])
    ds.save_to_disk(tmp_path / "ds")
    with pytest.raises(DataError, match=r"dataset '.*ds' split 'train' has no language 'fr'.*\['de', 'en'\]"):
        load_parallel_data("de", "fr", dataset_name=str(tmp_path / "ds"))


def test_conflicting_or_missing_sources(tmp_path):
    with pytest.raises(DataError, match="no data given"):
        load_parallel_data("de", "en")
    with pytest.raises(DataError, match="not both"):
        load_parallel_data("de", "en", dataset_name="x", train_prefix="y")
    with pytest.raises(DataError, match="train_file or train_prefix"):
        load_parallel_data("de", "en", train_file="x", train_prefix="y")


# ---------------------------------------------------------------------------------------------- tokenization
@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([t for p in PAIRS for t in p] * 5, vocab_size=100)


def test_tokenize_parallel_drops_and_reports(tokenizer):
    long_de = " ".join(["Hund"] * 40)
    rows = [{"translation": {"de": d, "en": e}} for d, e in PAIRS]
    rows += [
        {"translation": {"de": "", "en": "A dog."}},
        {"translation": {"de": "Ein Hund.", "en": "   "}},
        {"translation": {"de": long_de, "en": "A dog."}},
    ]
    dd = DatasetDict({"train": Dataset.from_list(rows), "validation": Dataset.from_list(rows[:2])})
    out, stats = tokenize_parallel(
        dd, tokenizer, "de", "en", max_source_length=20, max_target_length=20, return_stats=True
    )
    assert stats == {
        "train": {"kept": 3, "empty": 2, "too_long": 1},
        "validation": {"kept": 2, "empty": 0, "too_long": 0},
    }
    train = out["train"]
    assert set(train.column_names) == {"input_ids", "attention_mask", "labels", "length"}
    for i, (de, en) in enumerate(PAIRS):
        enc = tokenizer(de, text_target=en)
        assert train[i]["input_ids"] == enc["input_ids"] and train[i]["labels"] == enc["labels"]
        assert train[i]["labels"][-1] == tokenizer.eos_token_id
        assert train[i]["length"] == max(len(enc["input_ids"]), len(enc["labels"]))
        assert train[i]["length"] <= 20
    assert (
        tokenize_parallel(dd, tokenizer, "de", "en")["train"].num_rows == 4
    )  # default limits keep the long one


def test_tokenize_with_separate_target_tokenizer_and_collate(tokenizer):
    tgt_tok = train_tokenizer([e for _, e in PAIRS] * 5, vocab_size=60)
    dd = DatasetDict({"train": Dataset.from_list([{"translation": {"de": d, "en": e}} for d, e in PAIRS])})
    ds = tokenize_parallel(dd, tokenizer, "de", "en", target_tokenizer=tgt_tok)["train"]
    assert ds[1]["labels"] == tgt_tok(text_target=PAIRS[1][1])["input_ids"]
    assert ds[1]["labels"] != tokenizer(text_target=PAIRS[1][1])["input_ids"]
    collator = DataCollatorForSeq2Seq(tokenizer)
    batch = collator([ds.remove_columns("length")[i] for i in range(3)])
    lab_lengths = [len(x) for x in ds["labels"]]
    assert batch["labels"].shape == (3, max(lab_lengths))
    for row, n in zip(batch["labels"], lab_lengths):
        assert (row[n:] == -100).all() and (row[:n] != -100).all()


# ----------------------------------------------------------------------------------------------- the sampler
def _lengths(n=1000, seed=0):
    rng = random.Random(seed)
    return [rng.randint(3, 60) for _ in range(n)]


@pytest.mark.parametrize("max_tokens", [128, 1000])
def test_no_batch_over_budget(max_tokens):
    lengths = _lengths()
    sampler = TokenBatchSampler(lengths, max_tokens, seed=1)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        for b in batches:
            assert len(b) * max(lengths[i] for i in b) <= max_tokens
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))


def test_similar_lengths_together():
    lengths = _lengths()
    batches = list(TokenBatchSampler(lengths, 1000, seed=0))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded / sum(lengths) < 1.1  # unsorted batches of that size pad ~1.8x


def test_exactly_once_across_two_ranks_when_divisible():
    lengths = [10] * 100  # 10 examples per batch -> 10 batches, divisible by 2
    ranks = [TokenBatchSampler(lengths, 100, seed=5, num_replicas=2, rank=r) for r in range(2)]
    for epoch in range(3):
        for s in ranks:
            s.set_epoch(epoch)
        per_rank = [list(s) for s in ranks]
        assert len(per_rank[0]) == len(per_rank[1]) == len(ranks[0]) == 5
        seen = Counter(i for batches in per_rank for b in batches for i in b)
        assert sorted(seen) == list(range(100)) and set(seen.values()) == {1}


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize(("lengths_seed", "multiplier"), [(0, 100), (1, 100), (2, 2)])
def test_uneven_batches_across_two_ranks(drop_last, lengths_seed, multiplier):
    lengths = _lengths(997, seed=lengths_seed)
    counts = set()
    for seed in range(3):
        ranks = [
            TokenBatchSampler(
                lengths,
                500,
                seed=seed,
                num_replicas=2,
                rank=r,
                drop_last=drop_last,
                bucket_size_multiplier=multiplier,
            )
            for r in range(2)
        ]
        counts.add(len(TokenBatchSampler(lengths, 500, seed=seed, bucket_size_multiplier=multiplier)))
        per_rank = [list(s) for s in ranks]
        assert len(per_rank[0]) == len(per_rank[1]) == len(ranks[1])
        seen = Counter(i for batches in per_rank for b in batches for i in b)
        if drop_last:
            assert set(seen.values()) == {1}  # at most once
        else:
            assert sorted(seen) == list(
                range(len(lengths))
            )  # at least once; repeats only to fill the last round
            assert sum(seen.values()) - len(lengths) <= max(len(b) for b in per_rank[0])
        for batches in per_rank:
            assert all(len(b) * max(lengths[i] for i in b) <= 500 for b in batches)
    if lengths_seed == 0:
        assert all(c % 2 for c in counts)  # the case this test is about: an odd number of batches


def test_deterministic_per_seed_and_different_per_epoch():
    lengths = _lengths()
    a, b, c = (TokenBatchSampler(lengths, 800, seed=s) for s in (7, 7, 8))
    assert list(a) == list(b)
    assert list(a) != list(c)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first
    fixed = TokenBatchSampler(lengths, 800, shuffle=False)
    fixed.set_epoch(3)
    assert list(fixed) == list(TokenBatchSampler(lengths, 800, shuffle=False))


def test_with_accelerate_batch_sampler_shard():
    """Accelerate's own sharding (what ``accelerator.prepare(dataloader)`` does) of a num_replicas=1 sampler."""
    from accelerate.data_loader import BatchSamplerShard

    odd_seen = False
    for lengths_seed, seed in [(0, 0), (2, 0), (2, 1)]:  # lengths seed 2 gives 43 batches: uneven
        lengths = _lengths(501, seed=lengths_seed)
        sampler = TokenBatchSampler(lengths, 400, seed=seed)
        odd_seen |= len(sampler) % 2 == 1
        shards = [
            BatchSamplerShard(sampler, num_processes=2, process_index=r, even_batches=True) for r in range(2)
        ]
        per_rank = [list(s) for s in shards]
        assert len(per_rank[0]) == len(per_rank[1]) == len(shards[0])
        seen = Counter(i for batches in per_rank for b in batches for i in b)
        assert sorted(seen) == list(range(len(lengths)))
        if len(sampler) % 2 == 0:
            assert set(seen.values()) == {1}
        # our own sharding gives the same batches
        own = [list(TokenBatchSampler(lengths, 400, seed=seed, num_replicas=2, rank=r)) for r in range(2)]
        assert own == per_rank
    assert odd_seen


def test_accelerate_dataloader_propagates_epoch():
    from accelerate.data_loader import DataLoaderShard

    lengths = _lengths(200)
    sampler = TokenBatchSampler(lengths, 300, seed=0)
    loader = DataLoaderShard(list(range(200)), batch_sampler=sampler, collate_fn=lambda x: x)
    loader.set_epoch(4)
    assert sampler.epoch == 4
    expected = TokenBatchSampler(lengths, 300, seed=0)
    expected.set_epoch(4)
    assert list(loader) == list(expected)


def test_over_long_example_gets_own_batch():
    lengths = [5] * 20 + [50]
    with pytest.warns(UserWarning, match="1 example.*longer than max_tokens=30"):
        sampler = TokenBatchSampler(lengths, 30, seed=0)
    batches = list(sampler)
    assert [20] in batches
    assert sorted(i for b in batches for i in b) == list(range(21))


def test_invalid_sampler_arguments():
    with pytest.raises(ValueError, match="max_tokens=0"):
        TokenBatchSampler([3], 0)
    with pytest.raises(ValueError, match=r"rank=2.*\[0, 1\]"):
        TokenBatchSampler([3], 10, num_replicas=2, rank=2)


def test_dataloader_end_to_end(tokenizer):
    rows = [{"translation": {"de": d, "en": e}} for d, e in PAIRS * 30]
    ds = tokenize_parallel(DatasetDict({"train": Dataset.from_list(rows)}), tokenizer, "de", "en")["train"]
    sampler = TokenBatchSampler(ds["length"], 64, seed=0)
    loader = torch.utils.data.DataLoader(
        ds.remove_columns("length"), batch_sampler=sampler, collate_fn=DataCollatorForSeq2Seq(tokenizer)
    )
    n = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for batch in loader:
            assert batch["input_ids"].numel() <= 64 and batch["labels"].numel() <= 64
            n += batch["input_ids"].shape[0]
    assert n == len(ds)

"""Bad corpus files and line readers: missing, empty, uneven, not UTF-8, NUL bytes, over-long lines,
malformed JSONL, a dataset without the language, a pipe.

Part of the bad-input catalogue (issues 8 and 16: one test per case, each asserting a clear message that
names the problem and the file / line / option, nothing overwritten); docs/reliability.md lists the cases."""

from __future__ import annotations

import gzip
import json
import logging

import pytest
from _bad_input import _pair

from hf_seq2seq import train_tokenizer
from hf_seq2seq.data import DataError, load_parallel_data, tokenize_parallel


def test_corpus_file_missing(tmp_path):
    _pair(tmp_path, b"a\n", b"b\n")
    (tmp_path / "train.en").unlink()
    with pytest.raises(
        DataError, match=r"file not found: .*train\.en \(nor train\.en\.gz\) for language 'en'"
    ):
        load_parallel_data("de", "en", train_prefix=tmp_path / "train")
    with pytest.raises(DataError, match=r"file not found: .*nope\.jsonl"):
        load_parallel_data("de", "en", train_file=tmp_path / "nope.jsonl")


def test_corpus_file_empty(tmp_path):
    prefix = _pair(tmp_path, b"", b"")
    with pytest.raises(DataError, match=r"train\.de is empty"):
        load_parallel_data("de", "en", train_prefix=prefix)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match=r"empty\.jsonl has no examples"):
        load_parallel_data("de", "en", train_file=tmp_path / "empty.jsonl")


def test_corpus_line_counts_differ(tmp_path):
    prefix = _pair(tmp_path, b"a\nb\nc\n", b"x\ny\n")
    with pytest.raises(
        DataError, match=r"line counts differ: .*train\.de has 3 lines, .*train\.en has 2 lines"
    ):
        load_parallel_data("de", "en", train_prefix=prefix)


def test_corpus_not_utf8(tmp_path):
    prefix = _pair(tmp_path, "a\nKöln\n".encode("latin-1"), b"x\ny\n")
    with pytest.raises(DataError, match=r"train\.de, line 2: text is not valid UTF-8"):
        load_parallel_data("de", "en", train_prefix=prefix)


def test_corpus_nul_bytes(tmp_path):
    with gzip.open(tmp_path / "train.en.gz", "wb") as f:
        f.write(b"x\ny\nz\n")
    (tmp_path / "train.de").write_bytes(b"a\nb\x00c\nd\n")
    with pytest.raises(DataError, match=r"train\.de, line 2: contains a NUL byte .*not UTF-8 text"):
        load_parallel_data("de", "en", train_prefix=tmp_path / "train")
    # a UTF-16 file (NUL in every other byte) is caught the same way, also when training a tokenizer
    (tmp_path / "utf16.txt").write_bytes("Hallo Welt\n".encode("utf-16-le"))
    with pytest.raises(ValueError, match=r"utf16\.txt, line 1: contains a NUL byte"):
        train_tokenizer(tmp_path / "utf16.txt", vocab_size=50)


def test_corpus_one_100k_character_line_is_dropped_with_a_count(tmp_path, tokenizer, caplog):
    long_line = ("neun tausend " * 10_000)[:100_000]
    prefix = _pair(tmp_path, f"drei\n{long_line}\nvier\n".encode(), b"three\nx\nfour\n")
    data = load_parallel_data("de", "en", train_prefix=prefix)
    with caplog.at_level(logging.INFO, logger="hf_seq2seq.data"):
        out, stats = tokenize_parallel(data, tokenizer, "de", "en", 64, 64, return_stats=True)
    assert stats["train"] == {"kept": 2, "empty": 0, "too_long": 1}
    assert len(out["train"]) == 2
    assert "dropped 0 empty and 1 over-long (max_source_length=64" in caplog.text


def test_jsonl_malformed_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"translation": {"de": "a", "en": "b"}}) + "\n" + '{"translation": {"de": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2: not valid JSON"):
        load_parallel_data("de", "en", train_file=path)


def test_dataset_without_the_requested_language(tmp_path):
    from datasets import Dataset

    Dataset.from_list([{"translation": {"de": "a", "en": "b"}}]).save_to_disk(tmp_path / "ds")
    with pytest.raises(
        DataError, match=r"split 'train' has no language 'fr'; available languages: \['de', 'en'\]"
    ):
        load_parallel_data("de", "fr", dataset_name=str(tmp_path / "ds"))
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"translation": {"de": "a", "en": "b"}}) + "\n")
    with pytest.raises(DataError, match=r"t\.jsonl, line 1: has no language 'fr'; available: \['de', 'en'\]"):
        load_parallel_data("fr", "en", train_file=path)


def test_evaluate_reads_a_pipe(folder, tmp_path):
    """`--source <(zcat test.de.gz)`: a named pipe is a file to read, not a missing one."""
    import os
    import threading

    from hf_seq2seq.tokenization import read_text_lines

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(b"eins\nzwei\n"))
    writer.start()
    assert read_text_lines(str(fifo)) == ["eins", "zwei"]
    writer.join()

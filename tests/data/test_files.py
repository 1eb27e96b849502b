"""The package's one line reader (``tokenization.read_text_lines``: its rules) and one atomic writer
(``hub.write_atomic`` / ``hub.atomic_path``: whole or nothing, plain permissions)."""

from __future__ import annotations

import gzip
import os
import stat

import pytest

from hf_seq2seq.hub import atomic_path, write_atomic
from hf_seq2seq.tokenization import read_text_lines


@pytest.fixture
def umask():
    """Set a umask for the test and put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_files_get_the_mode_of_a_plain_open(tmp_path, umask, mask):
    """mkstemp creates 0600 files; renamed into place they would stay 0600. The written file has the mode that
    open(path, "w") gives under the current umask, for both writers."""
    umask(mask)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    write_atomic(tmp_path / "atomic.txt", "x")
    with atomic_path(tmp_path / "figure.png") as tmp:
        tmp.write_bytes(b"png")
    assert _mode(tmp_path / "atomic.txt") == _mode(tmp_path / "figure.png") == _mode(plain) == 0o666 & ~mask


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    out = tmp_path / "out.txt"
    out.write_text("old")
    os.chmod(out, 0o640)
    write_atomic(out, "new")
    assert out.read_text() == "new" and _mode(out) == 0o640


def test_a_failed_block_leaves_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "fig.png"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_reader_rules(tmp_path):
    """BOM dropped on line 1 only, CRLF and LF removed, spaces and empty lines kept, .gz read as gzip."""
    raw = "\ufeffeins \r\n\r\n  zwei\n\ufeffdrei".encode()
    (tmp_path / "a.txt").write_bytes(raw)
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(raw))
    expected = ["eins ", "", "  zwei", "\ufeffdrei"]
    assert read_text_lines(tmp_path / "a.txt") == read_text_lines(tmp_path / "a.txt.gz") == expected


def test_reader_refusals_name_file_and_line(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("gut\nschön\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt, line 2: text is not valid UTF-8 .*iconv -f latin1"):
        read_text_lines(tmp_path / "latin1.txt")
    (tmp_path / "utf16.txt").write_bytes("eins\n".encode("utf-16-le"))
    with pytest.raises(ValueError, match=r"utf16\.txt, line 1: contains a NUL byte"):
        read_text_lines(tmp_path / "utf16.txt")
    with pytest.raises(ValueError, match="is a folder, not a text file"):
        read_text_lines(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.txt does not exist"):
        read_text_lines(tmp_path / "nope.txt")

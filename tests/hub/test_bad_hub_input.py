"""The atomic writer (``hub.write_atomic``): an output is replaced whole or not at all.

Part of the bad-input catalogue (issues 8 and 16: one test per case, each asserting a clear message that
names the problem and the file / line / option, nothing overwritten); docs/reliability.md lists the cases."""

from __future__ import annotations

import pytest


def test_outputs_are_replaced_whole_or_not_at_all(tmp_path):
    from hf_seq2seq.hub import write_atomic

    out = tmp_path / "out.txt"
    out.write_text("the old translations\n", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(out, "half written \udcff")  # fails while writing: a lone surrogate is not UTF-8
    assert out.read_text(encoding="utf-8") == "the old translations\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left behind
    write_atomic(out, "new\n")
    assert out.read_text(encoding="utf-8") == "new\n"

"""Issue 28, row 10: options that did nothing without a word. ``--compute_type`` with the torch engine is refused in
one line (``--threads 0`` is refused by its type); a ``vocab_size`` below what the corpus needs is said, not
silently raised."""

from __future__ import annotations

import pytest

from hf_seq2seq import train_tokenizer
from hf_seq2seq.cli import main as cli_main


def test_compute_type_with_the_torch_engine_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["translate", "--model", str(tmp_path), "--compute_type", "int8"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--compute_type applies to --engine ctranslate2 only" in err
    with pytest.raises(SystemExit) as exit_:
        cli_main(["translate", "--model", str(tmp_path), "--threads", "0"])
    assert exit_.value.code == 2 and "--threads: must be >= 1, got 0" in capsys.readouterr().err


def test_a_vocab_size_below_the_alphabet_is_said():
    with pytest.warns(UserWarning, match=r"vocab_size=5 is below .* the tokenizer has \d+ entries"):
        tok = train_tokenizer(["hello world, abc xyz"] * 3, vocab_size=5)
    assert len(tok) > 5

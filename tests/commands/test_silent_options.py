"""Issue 28, row 10: options that did nothing without a word. ``--compute_type`` with the torch engine is refused in
one line (``--threads 0`` is refused by its type); a ``vocab_size`` below what the corpus needs is said, not
silently raised."""

from __future__ import annotations

import pytest

from hf_seq2seq import train_tokenizer
from hf_seq2seq.cli import main as cli_main


def test_compute_type_with_the_torch_engine_is_refused(tmp_path, capsys):
    # onnxruntime too: it never saw the option and ran the export's float32 (the folder is never loaded)
    for engine in ("torch", "onnxruntime"):
        with pytest.raises(SystemExit) as exit_:
            cli_main(["translate", "--model", str(tmp_path), "--engine", engine, "--compute_type", "int8"])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
        assert f"--compute_type applies to --engine ctranslate2 only ({engine}: " in err, err
    with pytest.raises(SystemExit) as exit_:
        cli_main(["translate", "--model", str(tmp_path), "--threads", "0"])
    assert exit_.value.code == 2 and "--threads: must be >= 1, got 0" in capsys.readouterr().err


def test_a_vocab_size_below_the_alphabet_is_said():
    with pytest.warns(UserWarning, match=r"vocab_size=5 is below .* the tokenizer has \d+ entries"):
        tok = train_tokenizer(["hello world, abc xyz"] * 3, vocab_size=5)
    assert len(tok) > 5


def test_analyze_on_fewer_sentences_than_a_bucket_says_so(tmp_path, capsys):
    from hub_server import tiny_model, tiny_tokenizer

    from hf_seq2seq.hub import save_model_folder

    tok = tiny_tokenizer()
    folder = save_model_folder(tiny_model("transformer", len(tok)), tok, tmp_path / "model")
    src, ref = tmp_path / "src.de", tmp_path / "ref.en"
    src.write_text("drei und zwanzig\nsieben\n", encoding="utf-8")
    ref.write_text("twenty-three\nseven\n", encoding="utf-8")
    status = cli_main(["analyze", str(folder), "--source", str(src), "--reference", str(ref),
                       "--output_dir", str(tmp_path / "out"), "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 0, err
    assert "2 sentences give one length bucket (--min_bucket_size=50)" in err


@pytest.mark.slow  # subprocesses (a fresh Python each): make test-fast skips it
def test_plot_attention_of_an_over_long_text_says_so_in_one_line(tmp_path):
    """Issue 28, row 15: a text longer than the model's positions gave transformers' "Token indices sequence length
    ... will result in indexing errors" warning; now one line of ours says what is drawn, and the plot is written."""
    import subprocess
    import sys

    from hub_server import tiny_model, tiny_tokenizer

    from hf_seq2seq.hub import save_model_folder

    tok = tiny_tokenizer()
    model = tiny_model("transformer", len(tok))  # max_position_embeddings=32
    folder = save_model_folder(model, tok, tmp_path / "model")
    text = " ".join(["neun hundert"] * 40)
    n = len(tok(text, verbose=False)["input_ids"])
    assert n > model.config.max_position_embeddings
    proc = subprocess.run(
        [sys.executable, "-m", "hf_seq2seq.cli", "plot-attention", "--model", str(folder), "--text", text,
         "--output", str(tmp_path / "a.png"), "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "indexing errors" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"the text is {n} tokens long; its first {model.config.max_position_embeddings} (the model's "
        "max_position_embeddings) are drawn"
    ]
    assert (tmp_path / "a.png").is_file()

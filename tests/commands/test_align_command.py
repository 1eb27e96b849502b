"""``hf-seq2seq align`` and ``hf-seq2seq translate --alignments`` as a user types them (issue 26): Pharaoh output
that parses with every index in range, the two output layouts, and one line for each bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hub_server import tiny_model, tiny_tokenizer

from hf_seq2seq.cli import main as cli_main
from hf_seq2seq.hub import save_model_folder
from hf_seq2seq.inference import load_engine
from hf_seq2seq.inference.alignment import align_pairs, hard_alignment, read_pharaoh

SOURCES = ["drei und zwanzig", "", "neun tausend, neun hundert sieben und achtzig.", "neun"]
TARGETS = ["twenty-three", "", "nine thousand, nine hundred and eighty-seven.", "nine"]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module", params=["transformer", "rnn"])
def folder(request, tokenizer, tmp_path_factory):
    return save_model_folder(
        tiny_model(request.param, len(tokenizer)), tokenizer, tmp_path_factory.mktemp("cmd") / request.param
    )


@pytest.fixture
def pair(tmp_path):
    src, tgt = tmp_path / "src.txt", tmp_path / "tgt.txt"
    src.write_text("".join(s + "\n" for s in SOURCES), encoding="utf-8")
    tgt.write_text("".join(t + "\n" for t in TARGETS), encoding="utf-8")
    return src, tgt


def test_align_writes_one_pharaoh_line_per_pair_in_range(folder, pair, tmp_path, capsys):
    src, tgt = pair
    out = tmp_path / "align.txt"
    argv = ["align", "--model", str(folder), "--source", str(src), "--target", str(tgt), "--device", "cpu"]
    assert cli_main([*argv, "--output", str(out), "--batch_size", "2"]) == 0
    links = read_pharaoh(out, SOURCES, TARGETS)  # one line per pair, every index a word of its pair
    assert links[1] == [] and all(links[k] for k in (0, 2, 3))
    engine = load_engine(folder, device="cpu")
    assert links == [hard_alignment(a) for a in align_pairs(engine, SOURCES, TARGETS)]
    # stdout is the same text; soft gives one comma-separated row per target word
    assert cli_main(argv) == 0
    assert capsys.readouterr().out == out.read_text(encoding="utf-8")
    assert cli_main([*argv, "--alignments", "soft"]) == 0
    rows = capsys.readouterr().out.split("\n")[:-1]
    assert [len(r.split()) for r in rows] == [len(t.split()) for t in TARGETS]
    assert all(
        len(g.split(",")) == len(s.split()) for r, s in zip(rows, SOURCES, strict=True) for g in r.split()
    )


def test_translate_alignments_as_a_column_or_a_file(folder, pair, tmp_path, capsys):
    src, _ = pair
    argv = ["translate", "--model", str(folder), "--input", str(src), "--device", "cpu", "--n_best", "2"]
    assert cli_main(argv) == 0
    plain = capsys.readouterr().out.split("\n")[:-1]
    assert cli_main([*argv, "--alignments"]) == 0
    columns = [line.split("\t") for line in capsys.readouterr().out.split("\n")[:-1]]
    assert [c[0] for c in columns] == plain and {len(c) for c in columns} == {2}
    sources = [s for s in SOURCES for _ in range(2)]
    path = tmp_path / "column.txt"
    path.write_text("".join(c[1] + "\n" for c in columns), encoding="utf-8")
    read_pharaoh(path, sources, plain)  # in range for each hypothesis of each line
    out, aligned = tmp_path / "hyps.txt", tmp_path / "links.txt"
    assert (
        cli_main([*argv, "--alignments", "0.2", "--output", str(out), "--alignments_output", str(aligned)])
        == 0
    )
    assert out.read_text(encoding="utf-8").split("\n")[:-1] == plain
    read_pharaoh(aligned, sources, plain)  # as many lines as hypotheses, indices in range


def test_forced_alignment_of_a_line_equals_the_library(folder, pair, tmp_path, capsys):
    """The command passes its options through: a chosen layer/head gives what the library gives."""
    src, tgt = pair
    engine = load_engine(folder, device="cpu")
    transformer = engine.model.config.model_type == "transformer_seq2seq"
    options = (
        ["--alignment_layer", "-1", "--alignment_heads", "1"] if transformer else ["--alignment_layer", "0"]
    )
    argv = ["align", "--model", str(folder), "--source", str(src), "--target", str(tgt), "--device", "cpu"]
    assert cli_main([*argv, "--alignments", "soft", *options]) == 0
    rows = capsys.readouterr().out.split("\n")[:-1]
    kwargs = {"layer": -1, "heads": [1]} if transformer else {"layer": 0}
    for row, soft in zip(rows, align_pairs(engine, SOURCES, TARGETS, **kwargs), strict=True):
        got = np.array([[float(x) for x in g.split(",")] for g in row.split()]).reshape(soft.shape)
        np.testing.assert_allclose(got, soft, atol=1e-3)


# ------------------------------------------------------------------------------------------------ bad input
def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _usage_error(capsys) -> str:
    """argparse's refusal through the CLI: one error line (exit status 2), no usage synopsis."""
    return _error(capsys)


def test_bad_align_input_is_one_line(folder, pair, tmp_path, tokenizer, capsys):
    src, tgt = pair
    short = tmp_path / "short.txt"
    short.write_text("three\n", encoding="utf-8")
    base = ["align", "--model", str(folder), "--device", "cpu"]
    assert cli_main([*base, "--source", str(src), "--target", str(short)]) == 1
    assert _error(capsys) == (
        f"hf-seq2seq align: error: --source {src} has 4 lines but --target {short} has 1: give one target line "
        "per source line"
    )
    assert cli_main([*base, "--source", str(src), "--target", str(tmp_path / "missing.txt")]) == 1
    assert _error(capsys) == f"hf-seq2seq align: error: --target {tmp_path / 'missing.txt'} does not exist"
    assert cli_main([*base, "--source", str(src), "--target", str(tgt), "--output", str(src)]) == 1
    assert "--output" in _error(capsys) and src.read_text(encoding="utf-8").startswith("drei")  # nothing lost
    with pytest.raises(SystemExit, match="2"):
        cli_main([*base, "--source", str(src), "--target", str(tgt), "--alignments", "sharp"])
    assert "invalid choice 'sharp' (choose hard, soft or a threshold in (0, 1]" in _usage_error(capsys)
    with pytest.raises(SystemExit, match="2"):
        cli_main([*base, "--source", str(src), "--target", str(tgt), "--alignment_heads", "a,b"])
    assert "invalid head list 'a,b'" in _usage_error(capsys)
    assert cli_main([*base, "--source", str(src), "--target", str(tgt), "--alignment_layer", "9"]) == 1
    assert _error(capsys).startswith(
        "hf-seq2seq align: error: --alignment_layer 9 is out of range: the model has"
    )
    none = save_model_folder(
        tiny_model("rnn", len(tokenizer), attention="none"), tokenizer, tmp_path / "no_attention"
    )
    assert cli_main(["align", "--model", str(none), "--source", str(src), "--target", str(tgt)]) == 1
    assert _error(capsys) == (
        f"hf-seq2seq align: error: the model {none} has attention='none' (an RNN without attention): it has no "
        "alignment to give; use a model with attention"
    )


def test_bad_translate_alignment_options_are_one_line(folder, pair, tmp_path, capsys):
    src, _ = pair
    base = ["translate", "--model", str(folder), "--input", str(src), "--device", "cpu"]
    with pytest.raises(SystemExit, match="2"):
        cli_main([*base, "--alignment_layer", "0"])
    assert _usage_error(capsys).endswith("error: --alignment_layer applies with --alignments only")
    with pytest.raises(SystemExit, match="2"):
        cli_main([*base, "--alignments", "1.5"])
    assert "invalid choice '1.5'" in _usage_error(capsys)
    assert cli_main([*base, "--alignments", "--alignments_output", str(src)]) == 1
    assert _error(capsys) == (
        f"hf-seq2seq translate: error: --alignments_output {src} is also given as --input: choose another output file"
    )
    assert cli_main([*base, "--alignments", "--alignment_heads", "0,9"]) == 1
    assert "--alignment_heads 0,9 is not valid: the model has" in _error(capsys)


@pytest.mark.slow  # subprocesses (a fresh Python each): make test-fast skips it
def test_the_progress_bar_is_drawn_on_a_terminal_only(folder, pair, tmp_path):
    """align's bar goes to stderr when stderr is a terminal (a real pseudo-terminal here) and is left out when
    stderr is a pipe or a file (logs, CI); stdout is the Pharaoh text either way."""
    import subprocess
    import sys
    from pathlib import Path

    sys.path.insert(
        0, str(Path(__file__).resolve().parents[2] / "benchmarks")
    )  # the harness's pseudo-terminal
    from harness import terminal_stderr

    src, tgt = pair
    code = "import sys; from hf_seq2seq.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [
        sys.executable,
        "-c",
        code,
        "align",
        "--model",
        str(folder),
        "--source",
        str(src),
        "--target",
        str(tgt),
    ]
    piped = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0 and piped.stderr == ""
    assert len(piped.stdout.splitlines()) == len(SOURCES)
    with terminal_stderr() as (terminal, written):
        with_bar = subprocess.run(argv, stdout=subprocess.PIPE, stderr=terminal, text=True, timeout=300)
    assert with_bar.returncode == 0 and with_bar.stdout == piped.stdout
    bar = b"".join(written).decode()
    assert f"{len(SOURCES)}/{len(SOURCES)}" in bar and "pair" in bar

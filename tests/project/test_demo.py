"""`hf-seq2seq demo`: a very reduced run (both families train, both folders load back, the heatmap is written),
and the demo as `make demo` runs it for the Transformer, followed by README.md's "three lines" example run
verbatim on its output (issue 16: it must print the right answer, and short inputs must be learnt)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import run_without_package
from num2words import num2words
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from hf_seq2seq.commands.demo import README_EXAMPLE, demo_main
from hf_seq2seq.tasks import german_number_words

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.slow
def test_reduced_demo_leaves_two_loadable_models_and_a_png(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["--output_dir", str(out), "--max_steps", "4", "--num_examples", "200", "--num_test", "8"]
    assert demo_main([*argv, "--num_beams", "2", "--disable_progress_bar"]) == 0
    printed = capsys.readouterr().out
    assert "exact match" in printed and "BLEU" in printed
    png = out / "attention_gru_bahdanau.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("gru_bahdanau", "transformer"):
        folder = out / name / "final_model"
        model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        enc = tokenizer(["drei und zwanzig"], return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=5)
        assert ids.shape[0] == 1
        assert (folder / "README.md").is_file() and (folder / "generation_config.json").is_file()


def _readme_example() -> str:
    """The Python block under README.md's "Three lines of transformers" heading, verbatim."""
    section = README.read_text(encoding="utf-8").split("## Three lines of transformers", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_example_after_the_demo_prints_the_right_answer(tmp_path, capsys):
    # the Transformer exactly as `make demo` trains it (default data, steps and seed; ~1 min of one CPU core)
    assert demo_main(["--output_dir", str(tmp_path / "demo_output"), "--models", "transformer"]) == 0
    assert f"[README] {README_EXAMPLE!r} -> 'twenty-three'" in capsys.readouterr().out
    # README.md's block, run verbatim from the folder `make demo` runs in, in a process without the package
    proc = run_without_package(_readme_example(), cwd=tmp_path)
    assert "'generated_text': 'twenty-three'" in proc.stdout, proc.stdout + proc.stderr
    # short inputs are learnt, not only the four-digit numbers that fill the test split: every number 0..99
    folder = tmp_path / "demo_output" / "transformer" / "final_model"
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    enc = tokenizer([german_number_words(n) for n in range(100)], return_tensors="pt", padding=True)
    with torch.no_grad():
        hyps = tokenizer.batch_decode(model.generate(**enc, num_beams=5), skip_special_tokens=True)
    wrong = [(n, h) for n, h in zip(range(100), hyps) if h.strip() != num2words(n, lang="en")]
    assert len(wrong) <= 3, wrong


def test_demo_rejects_bad_options(capsys):
    """One line on stderr (as argparse's refusals; it was printed on stdout), exit status 2, nothing on stdout."""
    for argv, words in (
        (["--models", "lstm"], "--models 'lstm'; valid: gru_bahdanau, transformer"),
        (["--models", ","], "--models ','; valid: gru_bahdanau, transformer"),
        (["--num_examples", "0"], "--num_examples=0 must be >= 1"),
        (["--max_steps", "-1"], "--max_steps=-1 must be >= 1"),
    ):
        assert demo_main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.splitlines() == [f"hf-seq2seq demo: error: {words}"], (argv, out, err)


@pytest.mark.slow
def test_demo_output_to_a_file_has_no_progress_bars_or_escape_codes(tmp_path):
    """Issue 28, row 15: `make demo > log` (stderr not a terminal) wrote tqdm bars redrawn with carriage returns and
    cursor-up escape codes (datasets' "Map", transformers' "Writing model shards", the training bar); now stdout
    holds the demo's report and stderr log lines only, one training line every --logging_steps instead of the bar."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "hf_seq2seq.cli", "demo", "--output_dir", str(tmp_path / "demo"), "--max_steps", "2",
         "--num_examples", "200", "--num_test", "4", "--num_beams", "1", "--models", "gru_bahdanau"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stream in (proc.stdout, proc.stderr):
        assert "\x1b" not in stream and "\r" not in stream, stream[-2000:]
    assert "it/s]" not in proc.stderr and "examples/s]" not in proc.stderr
    assert re.search(r"INFO hf_seq2seq.training: step 1/2 loss ", proc.stderr), proc.stderr  # the bar's line
    assert "exact match" in proc.stdout

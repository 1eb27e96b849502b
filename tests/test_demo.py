"""A very reduced `hf-seq2seq demo`: both families train, both folders load back, the heatmap is written."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from hf_seq2seq.demo import demo_main


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


def test_demo_rejects_bad_options(capsys):
    assert demo_main(["--models", "lstm"]) == 2
    assert "valid: gru_bahdanau, transformer" in capsys.readouterr().out

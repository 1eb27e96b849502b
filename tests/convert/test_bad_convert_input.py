"""``hf-seq2seq convert`` with bad input, as a user types it: a folder that is not a model, a folder of another toolkit,
a model without an exact equivalent, an output that exists. Each is one line on stderr, exit status 1, and nothing
written (no output folder, no staging folder left beside it)."""

from __future__ import annotations

import json

import pytest
import torch
from _convert import tiny_marian, tiny_ours, tiny_tokenizer

from hf_seq2seq.cli import main as cli_main
from hf_seq2seq.hub import save_model_folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A Marian folder, a folder of ours, an RNN folder of ours and a JoeyNMT-like directory."""
    root = tmp_path_factory.mktemp("sources")
    tokenizer = tiny_tokenizer()
    tiny_marian(tokenizer).save_pretrained(root / "marian")
    tokenizer.save_pretrained(root / "marian")
    save_model_folder(tiny_ours(tokenizer), tokenizer, root / "ours")
    from hf_seq2seq.families import FAMILIES

    FAMILIES["rnn"].config_class().save_pretrained(root / "rnn")
    (root / "joey").mkdir()
    (root / "joey" / "config.yaml").write_text("model:\n  encoder:\n    type: recurrent\n", encoding="utf-8")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a model\n", encoding="utf-8")
    biased = tiny_marian(tokenizer)
    with torch.no_grad():
        biased.final_logits_bias.fill_(0.5)
    biased.save_pretrained(root / "biased")
    tokenizer.save_pretrained(root / "biased")
    tiny_marian(tokenizer).save_pretrained(root / "no-tokenizer")
    tiny_marian(tokenizer, decoder_ffn_dim=48).save_pretrained(root / "uneven")
    return root


def _convert(capsys, tmp_path, source, from_format, to_format, output=None):
    output = output or tmp_path / "out"
    status = cli_main(
        ["convert", "--from", from_format, "--to", to_format, "--model", str(source), "--output", str(output)]
    )
    err = capsys.readouterr().err.strip()
    return status, err


CASES = {
    "not-a-model": ("notes", "marian", "hf-seq2seq", "is not a model folder: it has no config.json"),
    "ours-as-marian": ("ours", "marian", "hf-seq2seq", "use --from hf-seq2seq"),
    "marian-as-ours": ("marian", "hf-seq2seq", "marian", "use --from marian"),
    "joeynmt-as-marian": ("joey", "marian", "hf-seq2seq", "use --from joeynmt"),
    "rnn-to-marian": ("rnn", "hf-seq2seq", "marian", "only our Transformer"),
    "unoffered-pair": ("marian", "marian", "joeynmt", "is not offered"),
    "logits-bias": ("biased", "marian", "hf-seq2seq", "final_logits_bias is not zero"),
    "uneven-ffn": ("uneven", "marian", "hf-seq2seq", "encoder_ffn_dim=32 differs from decoder_ffn_dim=48"),
    "no-tokenizer": ("no-tokenizer", "marian", "hf-seq2seq", "no tokenizer that AutoTokenizer loads"),
    "missing-folder": ("no-such-folder/x", "marian", "hf-seq2seq", "not found"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_source_is_one_line_and_nothing_is_written(folders, tmp_path, capsys, case):
    name, from_format, to_format, expected = CASES[case]
    source = folders / name if name != "no-such-folder/x" else tmp_path / name
    status, err = _convert(capsys, tmp_path, source, from_format, to_format)
    assert status == 1
    assert len(err.splitlines()) == 1 and err.startswith("hf-seq2seq convert: error: "), err
    assert expected in err
    assert list(tmp_path.iterdir()) == []  # no output, no staging folder


def test_existing_output_is_refused_and_kept(folders, tmp_path, capsys):
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("mine\n", encoding="utf-8")
    for argv_output in (output, f"{output}/"):
        status, err = _convert(capsys, tmp_path, folders / "marian", "marian", "hf-seq2seq", argv_output)
        assert status == 1 and len(err.splitlines()) == 1 and "exists and is not empty" in err
    assert [p.name for p in output.iterdir()] == ["keep.txt"]
    assert (output / "keep.txt").read_text(encoding="utf-8") == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_empty_output_folder_is_used_and_the_command_prints_it(folders, tmp_path, capsys):
    output = tmp_path / "out"
    output.mkdir()
    status = cli_main(
        [
            "convert",
            "--from",
            "hf-seq2seq",
            "--to",
            "marian",
            "--model",
            str(folders / "ours"),
            "--output",
            str(output),
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.out.strip() == str(output)
    assert json.loads((output / "config.json").read_text(encoding="utf-8"))["model_type"] == "marian"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the staging folder was renamed, not left

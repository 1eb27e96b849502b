"""Bad input at the command line: stdin and files that are not UTF-8 or start with a byte-order mark,
generation options below one, push without network, an output equal to an input, help texts, `--help` without
torch.

Part of the bad-input catalogue (issues 8 and 16: one test per case, each asserting a clear message that
names the problem and the file / line / option, nothing overwritten); docs/reliability.md lists the cases."""

from __future__ import annotations

import json

import pytest
from _bad_input import _pair, _stdin, _translate

from hf_seq2seq.cli import main as cli_main
from hf_seq2seq.data import load_parallel_data


def test_non_utf8_stdin_and_input_file_name_the_line(folder, tmp_path, monkeypatch, capsys):
    _stdin(monkeypatch, b"drei und zwanzig\nf\xfcnf\n")
    assert cli_main(["translate", "--model", str(folder), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "<stdin>, line 2: text is not valid UTF-8" in err and "Traceback" not in err
    src = tmp_path / "latin1.txt"
    src.write_bytes("drei\nfünf\n".encode("latin-1"))
    assert cli_main(["translate", "--model", str(folder), "--input", str(src), "--device", "cpu"]) == 1
    assert f"{src}, line 2: text is not valid UTF-8" in capsys.readouterr().err


def test_byte_order_mark_is_dropped_by_every_reader(folder, tmp_path, monkeypatch, capsys):
    lines = ["drei und zwanzig", "vier"]
    plain = "".join(line + "\n" for line in lines).encode()
    assert _translate(folder, tmp_path, lines) == 0
    expected = (tmp_path / "out.txt").read_text(encoding="utf-8")
    (tmp_path / "in.txt").write_bytes(b"\xef\xbb\xbf" + plain)
    out = tmp_path / "bom_out.txt"
    assert cli_main(["translate", "--model", str(folder), "--input", str(tmp_path / "in.txt"), "--output",
                     str(out), "--device", "cpu"]) == 0  # fmt: skip
    assert out.read_text(encoding="utf-8") == expected
    _stdin(monkeypatch, b"\xef\xbb\xbf" + plain)
    assert cli_main(["translate", "--model", str(folder), "--device", "cpu"]) == 0
    assert capsys.readouterr().out == expected
    # training files (prefix pair and JSONL)
    prefix = _pair(tmp_path, b"\xef\xbb\xbfdrei\nvier\n", b"\xef\xbb\xbfthree\nfour\n")
    assert load_parallel_data("de", "en", train_prefix=prefix)["train"][0]["translation"] == {
        "de": "drei",
        "en": "three",
    }
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"translation": {"de": "drei", "en": "three"}}).encode() + b"\n"
    )
    assert (
        load_parallel_data("de", "en", train_file=jsonl, validation_file=jsonl)["train"][0]["translation"][
            "de"
        ]
        == "drei"
    )


@pytest.mark.parametrize("option, value", [("--num_beams", "-3"), ("--num_beams", "0"), ("--max_new_tokens", "0"),
                                           ("--batch_size", "0"), ("--n_best", "0")])  # fmt: skip
def test_generation_options_below_one_are_refused(folder, tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as info:
        _translate(folder, tmp_path, ["drei"], option, value)
    assert info.value.code == 2
    assert f"argument {option}: must be >= 1, got {value}" in capsys.readouterr().err


def test_push_without_network_is_one_line(folder, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: connection refused
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite runs offline; a user's push is not
    assert cli_main(["push", "--model", str(folder), "--repo_id", "user/x", "--token", "x"]) == 1
    err = capsys.readouterr().err
    assert "error: cannot reach the Hub at http://127.0.0.1:9" in err and "Traceback" not in err


def test_plot_attention_on_an_sdpa_marian_folder(tokenizer, tmp_path, capsys):
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                          decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=0, eos_token_id=2,
                          decoder_start_token_id=0, bos_token_id=1)  # fmt: skip
    model = MarianMTModel(config)
    assert model.config._attn_implementation == "sdpa"  # Marian's default: no attention weights returned
    model.save_pretrained(tmp_path / "marian")
    tokenizer.save_pretrained(tmp_path / "marian")
    out = tmp_path / "att.png"
    argv = ["plot-attention", "--model", str(tmp_path / "marian"), "--text", "drei", "--max_new_tokens", "3",
            "--device", "cpu", "--output", str(out)]  # fmt: skip
    assert cli_main(argv) == 0, capsys.readouterr().err
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_output_equal_to_input_is_refused_and_kept(folder, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("drei\n", encoding="utf-8")
    assert cli_main(["translate", "--model", str(folder), "--input", str(src), "--output", str(src)]) == 1
    assert "--output" in capsys.readouterr().err and src.read_text(encoding="utf-8") == "drei\n"
    ref = tmp_path / "ref.txt"
    ref.write_text("three\n", encoding="utf-8")
    argv = ["evaluate", "--model", str(folder), "--source", str(src), "--reference", str(ref)]
    assert cli_main([*argv, "--hypotheses", str(src)]) == 1
    assert "--hypotheses" in capsys.readouterr().err and src.read_text(encoding="utf-8") == "drei\n"
    assert cli_main([*argv, "--output", str(tmp_path), "--device", "cpu"]) == 1
    assert "is a folder; give a file name" in capsys.readouterr().err
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    before = image.read_bytes()
    assert (
        cli_main(["plot-attention", "--model", str(folder), "--image", str(image), "--output", str(image)])
        == 1
    )
    assert "--image" in capsys.readouterr().err and image.read_bytes() == before


def test_cli_help_imports_neither_torch_nor_transformers():
    import subprocess
    import sys

    code = ("import sys\nfrom hf_seq2seq_cli import main\nassert main(['--help']) == 0 and main(['nope']) == 2\n"
            "print([m for m in ('torch', 'transformers', 'hf_seq2seq') if m in sys.modules])")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"


def test_help_texts(capsys):
    from hf_seq2seq.training import build_parser

    text = " ".join(build_parser().format_help().split())  # argparse wraps lines anywhere
    assert "longer training pairs are dropped" in text and "Truncate source" not in text
    options = text[text.index("options:") :]
    assert options.index("--config") < options.index("--task")  # listed first, not after 70 options
    with pytest.raises(SystemExit):
        cli_main(["caption", "--help"])
    assert "images per generate() call" in " ".join(capsys.readouterr().out.split())

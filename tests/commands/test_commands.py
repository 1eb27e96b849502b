"""hf-seq2seq translate / evaluate / plot-attention / push on a saved tiny model folder."""

from __future__ import annotations

import io
import json

import pytest
import sacrebleu
from hub_server import tiny_model, tiny_tokenizer
from PIL import Image

from hf_seq2seq.cli import main as cli_main
from hf_seq2seq.hub import save_model_folder
from hf_seq2seq.inference import translate_lines
from hf_seq2seq.plotting import attention_figsize

LINES = [
    "drei und zwanzig",
    "",
    "neun tausend neun hundert sieben und achtzig",
    "ein Hund läuft.",
    "   ",
    "neun",
    "zwanzig und drei tausend",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    tokenizer = tiny_tokenizer()
    model = tiny_model("transformer", len(tokenizer))
    return save_model_folder(model, tokenizer, tmp_path_factory.mktemp("cmd") / "model")


@pytest.fixture(scope="module")
def loaded(folder):
    from hf_seq2seq.inference import load_model

    return load_model(folder, "cpu")


def test_translate_keeps_order_and_empty_lines(folder, loaded, tmp_path):
    model, tokenizer = loaded
    alone = [translate_lines(model, tokenizer, [line], batch_size=1)[0][0] for line in LINES]
    assert alone[1] == alone[4] == ""
    src, out = tmp_path / "src.txt", tmp_path / "out" / "hyp.txt"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    assert (
        cli_main(
            [
                "translate",
                "--model",
                str(folder),
                "--input",
                str(src),
                "--output",
                str(out),
                "--batch_size",
                "3",
            ]
        )
        == 0
    )
    assert out.read_text(encoding="utf-8").split("\n")[:-1] == alone  # line N is the translation of line N


def test_translate_stdin_to_stdout_and_n_best(folder, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(LINES[:3]) + "\n"))
    assert (
        cli_main(
            [
                "translate",
                "--model",
                str(folder),
                "--n_best",
                "3",
                "--batch_size",
                "2",
                "--max_new_tokens",
                "4",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.split("\n")[:-1]
    assert len(lines) == 3 * 3
    assert lines[3:6] == ["", "", ""]  # the empty input line gets K empty lines
    assert all(line for line in lines[:3] + lines[6:])


def test_evaluate_scores_with_signatures(folder, loaded, tmp_path, capsys):
    model, tokenizer = loaded
    sources = [line for line in LINES if line.strip()]
    hyps = [h[0] for h in translate_lines(model, tokenizer, sources)]
    (tmp_path / "src").write_text("\n".join(sources) + "\n", encoding="utf-8")
    (tmp_path / "ref").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    out = tmp_path / "scores.json"
    args = [
        "evaluate",
        "--model",
        str(folder),
        "--source",
        str(tmp_path / "src"),
        "--reference",
        str(tmp_path / "ref"),
    ]
    assert cli_main([*args, "--output", str(out)]) == 0
    scores = json.loads(out.read_text())
    # identical hypotheses and references: chrF is 100; BLEU is what sacreBLEU says (an untrained model's
    # one-word outputs have no 4-grams, so it need not be 100)
    assert scores["chrf"] == pytest.approx(100.0)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [hyps]).score)
    assert scores["bleu_signature"].startswith("nrefs:1|") and "version:" in scores["chrf_signature"]
    assert scores["num_eval_sentences"] == len(sources)
    assert "BLEU = " in capsys.readouterr().out

    (tmp_path / "short").write_text("one line\n", encoding="utf-8")
    assert (
        cli_main(
            [
                "evaluate",
                "--model",
                str(folder),
                "--source",
                str(tmp_path / "src"),
                "--reference",
                str(tmp_path / "short"),
            ]
        )
        == 1
    )
    assert "must be line-aligned" in capsys.readouterr().err


@pytest.mark.parametrize("head, suffix", [("mean", ".png"), ("1", ".svg")])
def test_plot_attention_command(folder, loaded, tmp_path, head, suffix, capsys):
    from hf_seq2seq.plotting import attention_matrix

    model, tokenizer = loaded
    out = tmp_path / f"att{suffix}"
    text = "neun tausend neun hundert"
    argv = [
        "plot-attention",
        "--model",
        str(folder),
        "--text",
        text,
        "--layer",
        "0",
        "--head",
        head,
        "--output",
        str(out),
    ]
    assert cli_main(argv) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out
    if suffix == ".png":
        matrix, src, tgt = attention_matrix(model, tokenizer, text, layer=0, head="mean")
        width, height = attention_figsize(len(src), len(tgt))
        with Image.open(out) as image:
            assert image.size == (round(width * 100), round(height * 100))


def test_command_errors_are_clear(folder, tmp_path, capsys):
    assert cli_main(["translate", "--model", str(tmp_path), "--input", str(tmp_path / "missing.txt")]) == 1
    assert "missing.txt does not exist" in capsys.readouterr().err
    assert cli_main(["push", "--model", str(tmp_path), "--repo_id", "user/x"]) == 1
    assert "missing config.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["plot-attention", "--model", str(folder), "--text", "x", "--head", "first"])


def test_console_script_is_the_light_dispatcher():
    """`hf-seq2seq` runs hf_seq2seq_cli.main (outside the package: --help without torch), the same function
    hf_seq2seq.cli exposes; every command in the table has a module and a function of that name."""
    import importlib
    import importlib.metadata
    import importlib.util

    import hf_seq2seq_cli

    (script,) = importlib.metadata.entry_points(group="console_scripts", name="hf-seq2seq")
    assert script.value == "hf_seq2seq_cli:main" and script.load() is cli_main
    for name, (module, func, _) in hf_seq2seq_cli.COMMANDS.items():
        assert importlib.util.find_spec(module) is not None, name
        assert callable(getattr(importlib.import_module(module), func)), name

"""Issue 28, row 3: ``max_new_tokens`` beyond the Transformer decoder's positions is capped to them (one warning on
stderr) in the one translate loop, so ``translate --max_new_tokens 100000`` with a model that never stops writes
its output instead of failing the run; every engine caller (the server, evaluate, the demo) gets the same cap."""

from __future__ import annotations

import pytest
from hub_server import tiny_model, tiny_tokenizer

from hf_seq2seq.cli import main as cli_main
from hf_seq2seq.hub import save_model_folder
from hf_seq2seq.inference import GenerateEngine, load_engine

LINES = ["sieben", "ein Hund läuft über die Wiese."]


@pytest.fixture(scope="module")
def never_stops(tmp_path_factory):
    """A Transformer of 32 positions whose generation config suppresses </s>: it never learns to stop."""
    tok = tiny_tokenizer()
    model = tiny_model("transformer", len(tok))
    model.generation_config.suppress_tokens = [tok.eos_token_id]
    folder = save_model_folder(model, tok, tmp_path_factory.mktemp("never_stops") / "model")
    return folder, model, tok


def test_translate_caps_max_new_tokens_at_the_decoder_positions(never_stops, tmp_path, capsys):
    folder, _, tok = never_stops
    src, out = tmp_path / "src.txt", tmp_path / "out.txt"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    code = cli_main(["translate", "--model", str(folder), "--input", str(src), "--output", str(out),
                     "--max_new_tokens", "100000", "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err
    assert code in (0, None), err
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(LINES) and all(lines)
    assert err.count("max_new_tokens=100000") == 1, err  # said once, not per batch
    assert "32" in err


def test_engine_cap_is_the_positions_and_only_for_the_transformer(never_stops, capsys):
    _, model, tok = never_stops
    engine = GenerateEngine.from_model(model, tok)
    assert engine.max_target_length == 32
    (one,) = engine.translate(LINES[:1], max_new_tokens=10**5, batch_size=1)
    assert len(one.token_ids[0]) == 32
    engine.translate(LINES, max_new_tokens=10**5, batch_size=1)
    assert capsys.readouterr().err.count("warning: max_new_tokens") == 1
    rnn = tiny_model("rnn", len(tok))  # its max_position_embeddings only truncates sources
    assert GenerateEngine.from_model(rnn, tok).max_target_length is None


def test_exports_are_capped_too(never_stops, tmp_path):
    pytest.importorskip("onnxruntime")
    from hf_seq2seq.export import export_onnx

    folder, _, _ = never_stops
    engine = load_engine(export_onnx(folder, tmp_path / "onnx"), engine="onnxruntime", threads=1)
    assert engine.max_target_length == 32
    (one,) = engine.translate(LINES[:1], max_new_tokens=10**5)
    assert len(one.token_ids[0]) == 32

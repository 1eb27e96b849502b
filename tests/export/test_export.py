"""Export to CTranslate2 / ONNX and the three engines, on tiny *trained* models of every configuration.

Each model is trained for a few dozen steps on the embedded numbers task (peaked, varied outputs rather than a
random model's repeated token), saved with ``save_model_folder``, exported, and run on held-out sources against
``generate()``: ONNX Runtime runs transformers' own search, so its tokens must equal ``generate()``'s for greedy,
beam and n-best; CTranslate2 fp32 must give the same greedy tokens and the same teacher-forced log-probabilities
(its beam search is its own: agreement is printed); int8's agreement is printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_seq2seq import (
    RNNSeq2SeqConfig,
    RNNSeq2SeqForConditionalGeneration,
    TransformerSeq2SeqConfig,
    TransformerSeq2SeqForConditionalGeneration,
    train_tokenizer,
)
from hf_seq2seq.cli import main as cli_main
from hf_seq2seq.export import (
    ExportError,
    ORTModelForSeq2SeqLM,
    export_ctranslate2,
    export_onnx,
    load_engine,
    translate,
)
from hf_seq2seq.hub import save_model_folder
from hf_seq2seq.tasks import make_task

pytest.importorskip("onnxruntime")
pytest.importorskip("ctranslate2")

TRANSFORMERS = {
    "post-sinusoidal-scaled-tied-relu": dict(),
    "pre-learned-unscaled-untied-gelu": dict(
        norm_style="pre",
        position_embedding="learned",
        scale_embedding=False,
        tie_word_embeddings=False,
        activation_function="gelu",
    ),
    "post-learned-untied-gelu_new": dict(
        position_embedding="learned", tie_word_embeddings=False, activation_function="gelu_new"
    ),
    # JoeyNMT's LayerNorm epsilon (a converted model): CTranslate2 must be told it; an output-layer bias (eole's
    # generator bias, Marian's final_logits_bias) is the projection's bias there
    "pre-sinusoidal-tied-silu-eps1e-6-outbias": dict(
        norm_style="pre", activation_function="silu", layer_norm_eps=1e-6, output_bias=True
    ),
    "post-sinusoidal-unscaled-tanh-3layers": dict(
        scale_embedding=False, activation_function="tanh", encoder_layers=3
    ),
}
RNNS = {
    "bigru-bahdanau": dict(),
    "lstm-luong-general-feed-2layers-untied-outbias-scaled": dict(
        cell="lstm",
        attention="general",
        input_feeding=True,
        encoder_layers=2,
        decoder_layers=2,
        tie_word_embeddings=False,
        output_bias=True,
        scale_embedding=True,
    ),
    "bilstm-luong-dot-tied-E!=H": dict(cell="lstm", attention="dot", embedding_size=12),
    "gru-cho": dict(attention="none", bidirectional_encoder=False),
    # eole's RNN defaults (a converted model): scaled embeddings plus sinusoidal positions on both sides, each decoder
    # layer started from its encoder layer's final state, W_c without tanh
    "bilstm-luong-general-feed-positions-final": dict(
        cell="lstm",
        attention="general",
        input_feeding=True,
        position_embedding="sinusoidal",
        scale_embedding=True,
        decoder_init="final",
        combine_activation="none",
        output_bias=True,
    ),
}


@pytest.fixture(scope="module")
def data():
    rows = [r["translation"] for r in make_task("numbers", 260, seed=0, max_number=999)]
    src_key, tgt_key = list(rows[0])
    src, tgt = [r[src_key] for r in rows], [r[tgt_key] for r in rows]
    tokenizer = train_tokenizer(src + tgt, vocab_size=150, min_frequency=1)
    return tokenizer, src[:230], tgt[:230], src[230:]


def _build(family: str, vocab_size: int, overrides: dict):
    torch.manual_seed(0)
    if family == "transformer":
        options = dict(d_model=16, encoder_layers=1, decoder_layers=2, num_attention_heads=2, ffn_dim=32)
        options.update(
            dropout=0.1, max_position_embeddings=48
        )  # dropout > 0: the exports must run in eval mode
        options.update(overrides)
        return TransformerSeq2SeqForConditionalGeneration(
            TransformerSeq2SeqConfig(vocab_size=vocab_size, **options)
        )
    options = dict(embedding_size=16, hidden_size=16, encoder_layers=1, decoder_layers=1, dropout=0.1)
    options.update(overrides)
    return RNNSeq2SeqForConditionalGeneration(RNNSeq2SeqConfig(vocab_size=vocab_size, **options))


def _trained_folder(tmp_path_factory, data, family: str, name: str, overrides: dict):
    tokenizer, src, tgt, _ = data
    model = _build(family, len(tokenizer), overrides)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(40):
        i = (step * 23) % (len(src) - 23)
        batch = tokenizer(src[i : i + 23], text_target=tgt[i : i + 23], padding=True, return_tensors="pt")
        batch["labels"] = batch["labels"].masked_fill(batch["labels"] == tokenizer.pad_token_id, -100)
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.generation_config.max_new_tokens = 16
    model.generation_config.num_beams = 3
    return save_model_folder(model, tokenizer, tmp_path_factory.mktemp(name) / "model"), model


@pytest.fixture(scope="module", params=list(TRANSFORMERS))
def transformer(request, tmp_path_factory, data):
    return _trained_folder(tmp_path_factory, data, "transformer", request.param, TRANSFORMERS[request.param])


@pytest.fixture(scope="module", params=list(RNNS))
def rnn(request, tmp_path_factory, data):
    return _trained_folder(tmp_path_factory, data, "rnn", request.param, RNNS[request.param])


def _generate(model, tokenizer, sources, **kwargs) -> list[list[int]]:
    enc = tokenizer(sources, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=16, **kwargs)
    special = set(tokenizer.all_special_ids)
    return [[t for t in row if t not in special] for row in out.tolist()]


def _agreement(a: list, b: list) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a)


# ------------------------------------------------------------------------------------------------------ ONNX
def _onnx_equals_generate(folder, model, tokenizer, sources, tmp_path):
    out = export_onnx(folder, tmp_path / "onnx")  # check=True: each graph equals PyTorch on a padded batch
    info = json.loads((out / "export.json").read_text())
    assert info["format"] == "onnx" and (out / "tokenizer.json").is_file()
    ort_model = ORTModelForSeq2SeqLM.from_export(out, threads=1)
    for batch in (sources, sources[:1]):  # dynamic batch and source length
        for kwargs in (dict(num_beams=1), dict(num_beams=3), dict(num_beams=3, num_return_sequences=2)):
            want = _generate(model, tokenizer, batch, **kwargs)
            got = _generate(ort_model, tokenizer, batch, **kwargs)
            assert got == want, kwargs
    assert len({tuple(t) for t in want}) > 1, "the trained model should produce varied outputs"
    return out


def _first_fast(names) -> list:
    """An ONNX round trip (the export with its graph checks, then greedy, beam and n-best against ``generate()``)
    takes 2-4 s per configuration: the first configuration runs in ``make test-fast``, the others are ``slow``
    (``make test`` runs them all)."""
    first, *rest = names
    return [first] + [pytest.param(name, marks=pytest.mark.slow) for name in rest]


@pytest.mark.parametrize("transformer", _first_fast(TRANSFORMERS), indirect=True)
def test_onnx_transformer_equals_generate(transformer, data, tmp_path):
    folder, model = transformer
    _onnx_equals_generate(folder, model, data[0], data[3], tmp_path)


@pytest.mark.parametrize("rnn", _first_fast(RNNS), indirect=True)
def test_onnx_rnn_equals_generate(rnn, data, tmp_path):
    folder, model = rnn
    _onnx_equals_generate(folder, model, data[0], data[3], tmp_path)


# ----------------------------------------------------------------------------------------------- CTranslate2
def test_ctranslate2_equals_generate(transformer, data, tmp_path):
    import ctranslate2

    folder, model = transformer
    tokenizer, _, _, sources = data
    out = export_ctranslate2(folder, tmp_path / "ct2")
    epsilon = json.loads((out / "config.json").read_text()).get("layer_norm_epsilon")
    assert epsilon == (None if model.config.layer_norm_eps == 1e-5 else model.config.layer_norm_eps)
    translator = ctranslate2.Translator(str(out), compute_type="float32", intra_threads=1)
    src_tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in tokenizer(sources)["input_ids"]]

    # The same function: teacher-forced log-probabilities of generate()'s own outputs.
    want = _generate(model, tokenizer, sources, num_beams=1)
    targets = [tokenizer.convert_ids_to_tokens(t) for t in want]
    scored = translator.score_batch(src_tokens, targets)  # appends </s>
    enc = tokenizer(sources, padding=True, return_tensors="pt")
    labels = torch.full((len(want), max(map(len, want)) + 1), -100)
    for k, t in enumerate(want):
        labels[k, : len(t) + 1] = torch.tensor(t + [tokenizer.eos_token_id])
    with torch.no_grad():
        log_probs = model(**enc, labels=labels).logits.log_softmax(-1)
    for k, result in enumerate(scored):
        ours = log_probs[k, torch.arange(len(result.log_probs)), labels[k, : len(result.log_probs)]]
        assert torch.allclose(ours, torch.tensor(result.log_probs), atol=1e-4)

    # Greedy tokens are equal; beam search is CTranslate2's own (compared with early_stopping=True, its rule).
    results = translator.translate_batch(
        src_tokens, beam_size=1, max_decoding_length=16, min_decoding_length=0
    )
    assert [tokenizer.convert_tokens_to_ids(r.hypotheses[0]) for r in results] == want
    beam = _generate(model, tokenizer, sources, num_beams=3, early_stopping=True)
    results = translator.translate_batch(
        src_tokens, beam_size=3, max_decoding_length=16, min_decoding_length=0
    )
    got = [tokenizer.convert_tokens_to_ids(r.hypotheses[0]) for r in results]
    print(f"CTranslate2 fp32 beam 3 agreement with generate(): {_agreement(got, beam):.0%}")

    int8 = export_ctranslate2(folder, tmp_path / "ct2_int8", quantization="int8")
    assert json.loads((int8 / "export.json").read_text())["quantization"] == "int8"
    translator = ctranslate2.Translator(str(int8), compute_type="int8", intra_threads=1)
    results = translator.translate_batch(
        src_tokens, beam_size=1, max_decoding_length=16, min_decoding_length=0
    )
    got = [tokenizer.convert_tokens_to_ids(r.hypotheses[0]) for r in results]
    print(f"CTranslate2 int8 greedy agreement with generate() fp32: {_agreement(got, want):.0%}")


# --------------------------------------------------------------------------------------------------- engines
@pytest.mark.parametrize("transformer", ["pre-learned-unscaled-untied-gelu"], indirect=True)
def test_engines_translate_in_order_with_empty_lines_and_n_best(transformer, data, tmp_path):
    folder, _ = transformer
    tokenizer, _, _, sources = data
    lines = [sources[0], "", sources[1], "   ", sources[2] + " " + sources[3]]
    assert cli_main(["export", str(folder), str(tmp_path / "ct2"), "--format", "ctranslate2"]) == 0
    assert cli_main(["export", str(folder), str(tmp_path / "onnx"), "--format", "onnx"]) == 0
    outputs = {}
    for engine, path in (
        ("torch", folder),
        ("ctranslate2", tmp_path / "ct2"),
        ("onnxruntime", tmp_path / "onnx"),
    ):
        outputs[engine] = translate(
            load_engine(path, engine, threads=1), lines, num_beams=1, n_best=1, batch_size=2
        )
        assert len(outputs[engine]) == len(lines)
        assert outputs[engine][1] == [""] and outputs[engine][3] == [""]
        n_best = translate(load_engine(path, engine, threads=1), lines, num_beams=3, n_best=2)
        assert all(len(h) == 2 for h in n_best) and n_best[1] == ["", ""]
    assert outputs["ctranslate2"] == outputs["torch"] == outputs["onnxruntime"]
    one_by_one = [translate(load_engine(folder, "torch"), [line], num_beams=1) for line in lines]
    assert [o[0] for o in one_by_one] == outputs["torch"]  # batching and sorting change nothing

    # hf-seq2seq translate --engine: the same lines, the same output file format
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    for engine, path in (
        ("torch", folder),
        ("ctranslate2", tmp_path / "ct2"),
        ("onnxruntime", tmp_path / "onnx"),
    ):
        argv = ["translate", "--engine", engine, "--model", str(path), "--num_beams", "1", "--threads", "1"]
        argv += ["--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / f"{engine}.txt")]
        assert cli_main(argv) == 0
        assert (tmp_path / f"{engine}.txt").read_text().splitlines() == [h[0] for h in outputs["torch"]]


# ------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("rnn", ["bigru-bahdanau"], indirect=True)
def test_export_refusals_are_one_clear_line(rnn, data, tmp_path, capsys):
    from hf_seq2seq import ImageCaptioningConfig

    folder, _ = rnn
    with pytest.raises(ExportError, match="model folder not found"):
        export_onnx(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ExportError, match="CTranslate2 has no RNN decoder; use --format onnx"):
        export_ctranslate2(folder, tmp_path / "out")
    with pytest.raises(ExportError, match="--quantization='int3' is invalid; valid choices: int8"):
        export_ctranslate2(folder, tmp_path / "out", quantization="int3")
    captioning = tmp_path / "captioner"
    ImageCaptioningConfig().save_pretrained(captioning)
    with pytest.raises(ExportError, match="image-captioning model"):
        export_onnx(captioning, tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty; choose another one or pass --force"):
        export_onnx(folder, tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(ExportError, match="is not an exported folder"):
        load_engine(folder, "onnxruntime")
    onnx = export_onnx(folder, tmp_path / "onnx")
    with pytest.raises(
        ExportError,
        match=r"is an exported \(onnx\) folder, not a PyTorch model folder: translate it with --engine onnxruntime",
    ):
        load_engine(onnx, "torch")
    with pytest.raises(ExportError, match="--engine ctranslate2 needs a --format ctranslate2 export"):
        load_engine(onnx, "ctranslate2")
    capsys.readouterr()  # drop the progress bars of the export above
    assert cli_main(["export", str(folder), str(tmp_path / "o"), "--format", "ctranslate2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hf-seq2seq export: error:") and "\n" not in err


@pytest.mark.slow
@pytest.mark.parametrize("transformer", ["post-sinusoidal-scaled-tied-relu"], indirect=True)
def test_missing_engine_package_is_named(transformer, tmp_path):
    folder, _ = transformer
    code = (
        "import sys; sys.modules['ctranslate2'] = None\n"
        "from hf_seq2seq.cli import main\n"
        f"sys.exit(main(['export', {str(folder)!r}, {str(tmp_path / 'o')!r}, '--format', 'ctranslate2']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert (
        "needs the optional package 'ctranslate2'" in proc.stderr
        and 'pip install "hf_seq2seq[serve]"' in proc.stderr
    )


@pytest.mark.parametrize("transformer", ["post-sinusoidal-scaled-tied-relu"], indirect=True)
def test_bench_serving_runs_on_tiny_inputs(transformer, data, tmp_path):
    """benchmarks/bench_serving.py end to end (every engine, both batch sizes) on a few lines."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import bench_serving

    folder, _ = transformer
    (tmp_path / "src.txt").write_text("\n".join(data[3][:6]) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(data[3][:6]) + "\n")
    argv = [
        "--model",
        f"tiny={folder}",
        "--src",
        str(tmp_path / "src.txt"),
        "--ref",
        str(tmp_path / "ref.txt"),
    ]
    argv += ["--n", "6", "--n_batch1", "2", "--beams", "2", "--out", str(tmp_path / "bench")]
    assert bench_serving.main(argv) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert [r["batch"] for r in rows] == [32, 1]
    assert all(r["ort"]["same_as_torch"] == 1.0 for r in rows)  # the same search on the same function
    assert "| tiny | 1 | 2 | CT2 int8 |" in (tmp_path / "bench.md").read_text()
    assert bench_serving.main([*argv, "--merge"]) == 0  # the same model again: its rows are replaced
    assert len(json.loads((tmp_path / "bench.json").read_text())["results"]) == 2

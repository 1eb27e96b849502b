"""hf_seq2seq.convert.eole: Transformers and RNNs trained by eole's own code (in eole's own virtual environment, a
few hundred steps on a slice of Multi30k) convert to ours with the same tokenisation, the same teacher-forced
log-probabilities (1e-4) and the same greedy and beam-5 translations of 100 test sentences as eole's own inference
engine (an RNN's run one sentence at a time: eole's RNN encoder does not pack, see hf_seq2seq/convert/eole_rnn.py).

eole (OpenNMT-py's successor) is not a dependency of this project: it lives in its own environment, ``.venv-eole``
(or ``$EOLE_PYTHON``), which ``make test`` and ``make test-oldest`` build from ``requirements/eole.txt``; run
directly with pytest where that environment is absent, the test skips, saying so.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from _toolkit_proof import cut, run, toolkit_python, write_slice

from hf_seq2seq.cli import main as cli_main
from hf_seq2seq.convert import convert
from hf_seq2seq.export import ORTModelForSeq2SeqLM, export_onnx
from hf_seq2seq.inference.search import average_length_beam_search, wu_length_beam_search

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EOLE_PYTHON = Path(os.environ.get("EOLE_PYTHON", PROJECT_ROOT / ".venv-eole" / "bin" / "python"))
REFERENCE = PROJECT_ROOT / "tests" / "_eole_reference.py"
TOLERANCE = 1e-4
SPLITS = {"train": ("train", 2000), "dev": ("val", 20), "test": ("test_2016_flickr", 100)}

# eole's defaults but for the sizes and the schedule (generator_bias: eole's default, on, unless a model says)
CONFIG = """\
src_vocab: {root}/vocab.txt
share_vocab: true
src_vocab_size: 3000
tgt_vocab_size: 3000
overwrite: true
seed: 1
data:
  corpus_1: {{path_src: {root}/train.de, path_tgt: {root}/train.en}}
  valid: {{path_src: {root}/dev.de, path_tgt: {root}/dev.en}}
model:
  hidden_size: 32
  layers: 2
  share_embeddings: {shared}
  share_decoder_embeddings: {tied}
{model}training:
  model_path: {root}/model
  train_steps: 600
  valid_steps: 600
  save_checkpoint_steps: 600
  batch_size: 40
  batch_type: sents
  optim: adam
  learning_rate: {learning_rate}
  warmup_steps: 50
  decay_method: {decay}
  world_size: 1
  gpu_ranks: []
  num_workers: 0
"""
TRANSFORMER = {
    "model": "  architecture: transformer\n  heads: 2\n  transformer_ff: 64\n  embeddings: {word_vec_size: 32}\n",
    "learning_rate": 0.4,
    "decay": "noam",
}
# eole's RNN: by default its embeddings are scaled and get sinusoidal positions (position_encoding_type)
RNN = {
    "model": "  architecture: rnn\n",
    "learning_rate": 0.002,
    "decay": "none",
}
# name -> (config text, what our converted config must say)
MODELS = {
    # eole's default generator_bias (on): our output_bias
    "tied": (
        {**TRANSFORMER, "shared": "true", "tied": "true"},
        {"tie_word_embeddings": True, "layer_norm_eps": 1e-5, "output_bias": True},
    ),
    # three separate matrices, biases in every projection, eps 1e-6, gelu, no generator bias. add_final_linear_bias
    # is set: eole 0.6.4 trains add_qkvbias alone without an output-projection bias but loads it with one (left
    # uninitialised: NaN)
    "untied-biases-gelu": (
        {
            **TRANSFORMER,
            "shared": "false",
            "tied": "false",
            "model": TRANSFORMER["model"]
            + "  add_qkvbias: true\n  add_final_linear_bias: true\n  add_ffnbias: true\n  norm_eps: 1.0e-6\n"
            "  mlp_activation_fn: gelu\n  generator_bias: false\n",
        },
        {
            "tie_word_embeddings": False,
            "layer_norm_eps": 1e-6,
            "activation_function": "gelu",
            "output_bias": False,
        },
    ),
    # eole's RNN defaults (LSTM, general attention, input feeding, generator bias, scaled embeddings with sinusoidal
    # positions); embeddings shared, generator not
    "rnn-lstm-general-feed": (
        {
            **RNN,
            "shared": "true",
            "tied": "false",
            "model": RNN["model"] + "  embeddings: {word_vec_size: 32}\n",
        },
        {
            "position_embedding": "sinusoidal",
            "scale_embedding": True,
            "cell": "lstm",
            "attention": "general",
            "input_feeding": True,
            "decoder_init": "final",
            "output_bias": True,
            "tie_word_embeddings": False,
        },
    ),
    # GRU, mlp attention (no tanh on W_c), no input feeding, all three matrices tied, no generator bias, no positions
    "rnn-gru-mlp-tied": (
        {
            **RNN,
            "shared": "true",
            "tied": "true",
            "model": RNN["model"]
            + "  embeddings: {word_vec_size: 32, position_encoding_type: null}\n  rnn_type: GRU\n  input_feed: 0\n  generator_bias: false\n  decoder: {global_attention: mlp}\n",
        },
        {
            "position_embedding": "none",
            "cell": "gru",
            "attention": "concat",
            "combine_activation": "none",
            "input_feeding": False,
            "output_bias": False,
            "tie_word_embeddings": True,
        },
    ),
    # a bidirectional encoder (brnn: hidden_size // 2 per direction) read by dot attention, separate matrices
    "rnn-brnn-dot": (
        {
            **RNN,
            "learning_rate": 0.005,
            "shared": "false",
            "tied": "false",
            "model": "  architecture: custom\n  embeddings: {word_vec_size: 32}\n"
            "  encoder: {encoder_type: brnn}\n  decoder: {decoder_type: rnn, global_attention: dot}\n",
        },
        {
            "bidirectional_encoder": True,
            "attention": "dot",
            "cell": "lstm",
            "input_feeding": True,
            "position_embedding": "sinusoidal",
            "tie_word_embeddings": False,
        },
    ),
}


def _train_with_eole(tmp_path: Path, multi30k_dir: Path, options: dict) -> tuple[Path, dict]:
    """Train the model ``options`` describe with eole's own code; its directory and eole's reference answers."""
    python = toolkit_python(EOLE_PYTHON, "eole", "eole")
    train = write_slice(tmp_path, multi30k_dir, SPLITS)
    counts = collections.Counter(
        w for line in train["de"] + train["en"] for w in line.strip().split(" ") if w
    )
    vocab = "\n".join(f"{w}\t{n}" for w, n in counts.most_common(2500))  # eole's "word<TAB>count"
    (tmp_path / "vocab.txt").write_text(vocab + "\n", encoding="utf-8")
    (tmp_path / "config.yaml").write_text(CONFIG.format(root=tmp_path, **options), encoding="utf-8")
    eole = [python, "-c", "from eole.bin.main import main; main()"]
    run([*eole, "train", "-config", "config.yaml"], tmp_path, timeout=900)  # eole's own training
    model_dir = tmp_path / "model"
    saved = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))["model"]
    assert saved.get("share_embeddings", False) == (options["shared"] == "true")
    run([python, REFERENCE, model_dir, "test.de", "test.en", "reference.pt"], tmp_path, timeout=600)
    return model_dir, torch.load(tmp_path / "reference.pt", weights_only=True)


@pytest.mark.parametrize("name", list(MODELS))
def test_an_eole_model_converts_exactly(tmp_path, multi30k_dir, name):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    options, expected = MODELS[name]
    model_dir, reference = _train_with_eole(tmp_path, multi30k_dir, options)
    convert(model_dir, tmp_path / "ours", from_format="eole", to_format="hf-seq2seq")
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ours").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "ours")
    config = model.config
    assert {option: getattr(config, option) for option in expected} == expected
    if name.startswith("rnn"):
        assert (config.model_type, config.decoder_init) == ("rnn_seq2seq", "final")
    else:
        assert (config.model_type, config.norm_style, config.scale_embedding) == (
            "transformer_seq2seq",
            "pre",
            True,
        )

    # the same tokenisation: eole's ids of every source line (no eos) and target line (start ... eos)
    sources = (tmp_path / "test.de").read_text(encoding="utf-8").splitlines()
    targets = (tmp_path / "test.en").read_text(encoding="utf-8").splitlines()
    inputs = tokenizer(sources, padding=True, return_tensors="pt")
    lengths = inputs["attention_mask"].sum(-1).tolist()
    assert [row[:n] for row, n in zip(inputs["input_ids"].tolist(), lengths)] == reference["src_ids"]
    start, eos, pad = config.decoder_start_token_id, config.eos_token_id, config.pad_token_id
    assert [[start, *ids, eos] for ids in tokenizer(targets)["input_ids"]] == reference["trg_ids"]

    # teacher-forced log-probabilities
    width = max(map(len, reference["trg_ids"]))
    padded = [ids + [pad] * (width - len(ids)) for ids in reference["trg_ids"]]
    decoder_input_ids, labels = torch.tensor(padded)[:, :-1], torch.tensor(padded)[:, 1:]
    with torch.no_grad():
        log_probs = torch.log_softmax(model(**inputs, decoder_input_ids=decoder_input_ids).logits, dim=-1)
    mask = reference["label_mask"]
    gold = log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    gold_difference = (gold - reference["gold_log_probs"])[mask].abs().max().item()
    full = reference["full_log_probs"]
    full_difference = (log_probs[: len(full)] - full).abs().amax(-1)[mask[: len(full)]].max().item()
    print(f"{name}: max |log-prob difference| gold {gold_difference:.2e}, full {full_difference:.2e}")
    assert gold_difference <= TOLERANCE and full_difference <= TOLERANCE, (gold_difference, full_difference)

    # greedy (the folder's generation config) and beam 5 (eole's length_penalty none: transformers'
    # length_penalty=0) on the 100 test sentences, token for token
    with torch.no_grad():
        greedy = model.generate(**inputs, max_new_tokens=40)
        beam = model.generate(**inputs, num_beams=5, length_penalty=0.0, max_new_tokens=40)
    assert (
        len(set(map(tuple, reference["greedy"]))) > 10
    )  # a model that translates, not one repeated sentence
    assert [cut(row, eos, pad) for row in greedy.tolist()] == reference["greedy"]
    assert [cut(row, eos, pad) for row in beam.tolist()] == reference["beam5"]

    _eole_searches_equal(model, tokenizer, inputs, reference, tmp_path, model_dir)
    _onnx_translates_as_eole(tmp_path, inputs, reference["greedy"], eos, pad)


def _eole_searches_equal(
    model, tokenizer, inputs: dict, reference: dict, tmp_path: Path, model_dir: Path
) -> None:
    """eole's own beam searches (length_penalty avg and wu, alpha 1) as generate() decoding methods, and the one the
    converted folder stores, through `hf-seq2seq translate`: eole's outputs token for token."""
    eos, pad = model.config.eos_token_id, model.config.pad_token_id
    # eole's length_penalty avg (its default) and wu, alpha 1: its beam search, as generate() decoding methods
    for key, search in (("beam5_avg", average_length_beam_search), ("beam5_wu", wu_length_beam_search)):
        with torch.no_grad():
            rows = model.generate(
                **inputs, num_beams=5, length_penalty=1.0, max_new_tokens=40, custom_generate=search
            )
        assert [cut(row, eos, pad) for row in rows.tolist()] == reference[key], key

    # the same without Python: the folder stores that search (custom_generate/generate.py, alpha as its
    # length_penalty), and `hf-seq2seq translate` decodes with it
    assert (tmp_path / "ours" / "custom_generate" / "generate.py").is_file()
    assert model.generation_config.length_penalty == 1.0
    argv = ["translate", "--model", str(tmp_path / "ours"), "--input", str(tmp_path / "test.de")]
    argv += ["--output", str(tmp_path / "avg.txt"), "--num_beams", "5", "--max_new_tokens", "40"]
    assert cli_main(argv) == 0
    translated = (tmp_path / "avg.txt").read_text(encoding="utf-8").splitlines()
    assert translated == tokenizer.batch_decode(reference["beam5_avg"], skip_special_tokens=True)

    # a model directory whose eole predict settings say wu: the folder stores the wu search
    shutil.copytree(model_dir, tmp_path / "model-wu")
    config = json.loads((tmp_path / "model-wu" / "config.json").read_text(encoding="utf-8"))
    config["inference"] = {**(config.get("inference") or {}), "length_penalty": "wu", "alpha": 1.0}
    (tmp_path / "model-wu" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    convert(tmp_path / "model-wu", tmp_path / "ours-wu", from_format="eole", to_format="hf-seq2seq")
    argv[2], argv[6] = str(tmp_path / "ours-wu"), str(tmp_path / "wu.txt")
    assert cli_main(argv) == 0
    translated = (tmp_path / "wu.txt").read_text(encoding="utf-8").splitlines()
    assert translated == tokenizer.batch_decode(reference["beam5_wu"], skip_special_tokens=True)


def _onnx_translates_as_eole(tmp_path: Path, inputs: dict, greedy: list, eos: int, pad: int) -> None:
    """A converted folder exports like any of ours: its ONNX graphs (an RNN's with eole's positions too) translate
    greedily as eole did."""
    onnx = ORTModelForSeq2SeqLM.from_export(export_onnx(tmp_path / "ours", tmp_path / "onnx"), threads=1)
    with torch.no_grad():
        exported = onnx.generate(**inputs, max_new_tokens=40)
    assert [cut(row, eos, pad) for row in exported.tolist()] == greedy

"""hf_seq2seq.convert.joeynmt: Transformers and RNNs trained by JoeyNMT's own code (in JoeyNMT's own virtual
environment, 200 steps on a slice of Multi30k) convert to ours with the same tokenisation, the same teacher-forced
log-probabilities (1e-4) and the same greedy and beam-5 translations of 100 test sentences as JoeyNMT's own search.

JoeyNMT is not a dependency of this project: it lives in its own environment, ``.venv-joeynmt`` (or
``$JOEYNMT_PYTHON``), which ``make test`` and ``make test-oldest`` build from ``requirements/joeynmt.txt``; run
directly with pytest where that environment is absent, the test skips, saying so.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest
import torch
from _toolkit_proof import cut, run, toolkit_python, write_slice

from hf_seq2seq.convert import convert

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
JOEYNMT_PYTHON = Path(os.environ.get("JOEYNMT_PYTHON", PROJECT_ROOT / ".venv-joeynmt" / "bin" / "python"))
REFERENCE = PROJECT_ROOT / "tests" / "_joeynmt_reference.py"
TOLERANCE = 1e-4
SPLITS = {"train": ("train", 2000), "dev": ("val", 20), "test": ("test_2016_flickr", 100)}

CONFIG = """\
name: tiny
model_dir: {root}/model
use_cuda: False
data:
  train: {root}/train
  dev: {root}/dev
  dataset_type: plain
  src: {{lang: de, level: word, lowercase: true, voc_file: {root}/vocab.txt, max_length: 40}}
  trg: {{lang: en, level: word, lowercase: true, voc_file: {root}/vocab.txt, max_length: 40}}
training:
  random_seed: 1
  optimizer: adam
  learning_rate: 0.002
  scheduling: warmupinversesquareroot
  learning_rate_warmup: 50
  batch_size: 40
  batch_type: sentence
  epochs: 4
  validation_freq: 200
  logging_freq: 50
  eval_metrics: [bleu]
  early_stopping_metric: loss
  overwrite: True
  keep_best_ckpts: 1
testing:
  beam_size: 1
  max_output_length: 40
model:
  initializer: xavier_uniform
  tied_embeddings: True
  tied_softmax: True
  encoder: {encoder}
  decoder: {decoder}
"""
TRANSFORMER = (
    "{{type: transformer, num_layers: 2, num_heads: 2, hidden_size: 32, ff_size: 64, dropout: 0.1, "
    "layer_norm: {norm}, embeddings: {{embedding_dim: 32, scale: true}}}}"
)
RNN = "{{type: recurrent, rnn_type: {cell}, dropout: 0.1, embeddings: {{embedding_dim: 32{scale}}}, {rest}}}"
# name -> (JoeyNMT's encoder and decoder sections, what our converted config must say); 200 training steps each
MODELS = {
    "transformer-pre": (
        TRANSFORMER.format(norm="pre"),
        TRANSFORMER.format(norm="pre"),
        {"norm_style": "pre", "scale_embedding": True},
    ),
    "transformer-post": (
        TRANSFORMER.format(norm="post"),
        TRANSFORMER.format(norm="post"),
        {"norm_style": "post", "scale_embedding": True},
    ),
    # bidirectional GRU, 1 -> 2 layers, JoeyNMT's bahdanau (an MLP over the current state), input feeding, bridge
    "gru-bahdanau-bridge": (
        RNN.format(scale="", cell="gru", rest="hidden_size: 16, bidirectional: true, num_layers: 1"),
        RNN.format(
            scale="",
            cell="gru",
            rest="hidden_size: 32, num_layers: 2, attention: bahdanau, init_hidden: bridge",
        ),
        {"attention": "concat", "input_feeding": True, "decoder_init": "top_bridge"},
    ),
    # LSTM 2 -> 1 layers, luong (general) without input feeding, started from the last state (JoeyNMT 2.3 trains
    # bidirectional encoders only: its final-state code indexes the backward direction)
    "lstm-luong-last": (
        RNN.format(scale="", cell="lstm", rest="hidden_size: 16, bidirectional: true, num_layers: 2"),
        RNN.format(
            scale="",
            cell="lstm",
            rest="hidden_size: 32, num_layers: 1, attention: luong, init_hidden: last, input_feeding: false",
        ),
        {"attention": "general", "input_feeding": False, "decoder_init": "top"},
    ),
    # with JoeyNMT's scaled embeddings (lookup x sqrt(embedding_dim): our scale_embedding)
    "gru-luong-zero-scaled": (
        RNN.format(
            scale=", scale: true", cell="gru", rest="hidden_size: 16, bidirectional: true, num_layers: 1"
        ),
        RNN.format(
            scale=", scale: true",
            cell="gru",
            rest="hidden_size: 32, num_layers: 1, attention: luong, init_hidden: zero",
        ),
        {"attention": "general", "input_feeding": True, "decoder_init": "zero", "scale_embedding": True},
    ),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_a_joeynmt_model_converts_exactly(tmp_path, multi30k_dir, name):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    python = toolkit_python(JOEYNMT_PYTHON, "joeynmt", "JoeyNMT")
    train = write_slice(tmp_path, multi30k_dir, SPLITS)
    counts = collections.Counter(
        word for line in train["de"] + train["en"] for word in line.lower().split(" ")
    )
    (tmp_path / "vocab.txt").write_text(
        "\n".join(w for w, _ in counts.most_common(2500)) + "\n", encoding="utf-8"
    )
    encoder, decoder, expected = MODELS[name]
    config_text = CONFIG.format(root=tmp_path, encoder=encoder, decoder=decoder)
    (tmp_path / "config.yaml").write_text(config_text, encoding="utf-8")
    run([python, "-m", "joeynmt", "train", "config.yaml"], tmp_path, timeout=1500)  # JoeyNMT's own training
    model_dir = tmp_path / "model"
    run([python, REFERENCE, model_dir, "test.de", "test.en", "reference.pt"], tmp_path, timeout=600)
    reference = torch.load(tmp_path / "reference.pt", weights_only=True)

    convert(model_dir, tmp_path / "ours", from_format="joeynmt", to_format="hf-seq2seq")
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ours").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "ours")
    config = model.config
    assert {option: getattr(config, option) for option in expected} == expected
    if name.startswith("transformer"):
        assert (config.model_type, config.layer_norm_eps) == ("transformer_seq2seq", 1e-6)
    else:
        assert (config.model_type, config.combine_bias) == ("rnn_seq2seq", True)

    # the same tokenisation: JoeyNMT's ids of every source and target line
    sources = (tmp_path / "test.de").read_text(encoding="utf-8").splitlines()
    targets = (tmp_path / "test.en").read_text(encoding="utf-8").splitlines()
    inputs = tokenizer(sources, padding=True, return_tensors="pt")
    lengths = inputs["attention_mask"].sum(-1).tolist()
    assert [row[:n] for row, n in zip(inputs["input_ids"].tolist(), lengths)] == reference["src_ids"]
    assert [[config.bos_token_id, *ids] for ids in tokenizer(targets)["input_ids"]] == reference["trg_ids"]

    # teacher-forced log-probabilities
    width = max(map(len, reference["trg_ids"]))
    padded = [ids + [config.pad_token_id] * (width - len(ids)) for ids in reference["trg_ids"]]
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

    # greedy (the folder's generation config: JoeyNMT's forbidden tokens) and beam 5 (JoeyNMT's beam_alpha=-1 is
    # no length normalisation: transformers' length_penalty=0) on the 100 test sentences, token for token
    eos, pad = config.eos_token_id, config.pad_token_id
    with torch.no_grad():
        greedy = model.generate(**inputs, max_new_tokens=40)
        beam = model.generate(**inputs, num_beams=5, length_penalty=0.0, max_new_tokens=40)
    assert [cut(row, eos, pad) for row in greedy.tolist()] == reference["greedy"]
    assert [cut(row, eos, pad) for row in beam.tolist()] == reference["beam5"]

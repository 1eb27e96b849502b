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
    tiny_marian(tokenizer).save_pretrained(root / "no-tokenizer")
    tiny_marian(tokenizer, decoder_ffn_dim=48).save_pretrained(root / "uneven")
    _joeynmt_dirs(root)
    _eole_dirs(root)
    return root


JOEY_TRANSFORMER = """\
model:
  encoder: {type: transformer, num_layers: 1, num_heads: 2, hidden_size: 8, ff_size: 8, layer_norm: post,
            embeddings: {embedding_dim: 8}}
  decoder: {type: transformer, num_layers: 1, num_heads: 2, hidden_size: 8, ff_size: 8, layer_norm: post,
            embeddings: {embedding_dim: 8}}
"""


def _joeynmt_dirs(root):
    """JoeyNMT-shaped directories, each wrong in one way (made by hand: no JoeyNMT is needed to refuse them)."""

    def make(name, config=JOEY_TRANSFORMER, vocab=("a", "b"), trg_vocab=None, checkpoint=b""):
        folder = root / name
        folder.mkdir()
        (folder / "config.yaml").write_text(config, encoding="utf-8")
        if vocab is not None:
            (folder / "src_vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
            (folder / "trg_vocab.txt").write_text("\n".join(trg_vocab or vocab) + "\n", encoding="utf-8")
        if checkpoint:
            (folder / "best.ckpt").write_bytes(checkpoint)

    rnn = (
        "model:\n  encoder: {type: recurrent, hidden_size: 8, embeddings: {embedding_dim: 8}}\n"
        "  decoder: {type: recurrent, hidden_size: 8, embeddings: {embedding_dim: 8}}\n"
    )
    make("joey-rnn-sizes", config=rnn)  # bidirectional by default: states of 16 for a decoder of 8
    make(  # embeddings scaled on the encoder side only
        "joey-rnn-scaled-once",
        config=rnn.replace("hidden_size: 8,", "hidden_size: 4,", 1).replace("8}", "8, scale: true}", 1),
    )
    make("joey-mixed", config=JOEY_TRANSFORMER.replace("type: transformer", "type: recurrent", 1))
    make("joey-no-checkpoint")
    make("joey-no-vocab", vocab=None)
    make("joey-norm-unset", config=JOEY_TRANSFORMER.replace("layer_norm: post,", "", 1))
    make(
        "joey-alpha", config=JOEY_TRANSFORMER.replace("layer_norm: post,", "layer_norm: post, alpha: 0.5,", 1)
    )
    make("joey-split-vocab", trg_vocab=("a", "c"))
    make("joey-garbage-checkpoint", checkpoint=b"not a checkpoint")
    make("joey-not-yaml", config="model: [unclosed\n")


EOLE_MODEL = {
    "architecture": "transformer",
    "hidden_size": 8,
    "layers": 1,
    "heads": 2,
    "transformer_ff": 8,
    "share_embeddings": True,
    "share_decoder_embeddings": True,
    "embeddings": {"word_vec_size": 8},
    "encoder": {"encoder_type": "transformer", "hidden_size": 8, "heads": 2, "layers": 1},
    "decoder": {"decoder_type": "transformer", "hidden_size": 8, "heads": 2, "layers": 1},
}


_RNN = {
    "architecture": "rnn",
    "encoder": {"encoder_type": "rnn"},
    "decoder": {"decoder_type": "rnn"},
    "embeddings": {"position_encoding_type": None},
}


def _rnn_decoder(**options):
    return {**_RNN, "decoder": {"decoder_type": "rnn", **options}}


# eole-shaped folder -> (how _eole_dirs makes it, what the one line says)
EOLE_BAD = {
    "eole-no-vocab": ({"files": ("config", "weights")}, "no vocab.json beside config.json"),
    "eole-no-weights": ({"files": ("config", "vocab")}, "no model.00.safetensors beside config.json"),
    "eole-no-config": ({"files": ("vocab", "weights")}, "no config.json: not an eole model directory"),
    "eole-cnn": ({"model": {"architecture": "cnn"}}, "model.architecture='cnn'"),
    "eole-custom-transformer": (
        {"model": {"architecture": "custom", "encoder": {"encoder_type": "transformer"}}},
        "model.architecture='custom' converts only with an rnn or brnn encoder_type and an rnn decoder_type",
    ),
    "eole-length-penalty": (
        {"config": {"inference": {"length_penalty": "average"}}},
        "inference.length_penalty='average' is not eole's; valid: avg, none, wu",
    ),
    "eole-rnn-positions": (
        {
            "model": {
                **_RNN,
                "encoder": {"encoder_type": "brnn"},
                "embeddings": {"position_encoding_type": "Rotary"},
            }
        },
        "model.embeddings.position_encoding_type='Rotary'",
    ),
    "eole-rnn-cnn": (
        {"model": {**_RNN, "encoder": {"encoder_type": "cnn"}}},
        "model.encoder.encoder_type='cnn'",
    ),
    "eole-rnn-bridge": ({"model": {**_RNN, "bridge": True}}, "model.encoder.bridge=True"),
    "eole-rnn-gate": ({"model": _rnn_decoder(context_gate="both")}, "model.decoder.context_gate='both'"),
    "eole-rnn-coverage": ({"model": _rnn_decoder(coverage_attn=True)}, "model.decoder.coverage_attn=True"),
    "eole-rnn-no-attention": (
        {"model": _rnn_decoder(global_attention=None)},
        "model.decoder.global_attention=None",
    ),
    "eole-rnn-sparsemax": (
        {"model": _rnn_decoder(global_attention_function="sparsemax")},
        "model.decoder.global_attention_function='sparsemax'",
    ),
    "eole-rnn-layers": (
        {"model": {**_rnn_decoder(layers=1), "encoder": {"encoder_type": "rnn", "layers": 2}}},
        "model.encoder.layers=2 differs",
    ),
    "eole-rms": ({"model": {"layer_norm": "rms"}}, "model.layer_norm='rms'"),
    "eole-rotary": (
        {"model": {"embeddings": {"position_encoding_type": "Rotary"}}},
        "position_encoding_type='Rotary'",
    ),
    "eole-postnorm": (
        {"model": {"encoder": {**EOLE_MODEL["encoder"], "encoder_layer_style": "postnorm"}}},
        "model.encoder.encoder_layer_style='postnorm'",
    ),
    "eole-gated": ({"model": {"mlp_activation_fn": "gated-silu"}}, "model.mlp_activation_fn='gated-silu'"),
    "eole-transforms": (
        {"config": {"data": {"corpus_1": {"transforms": ["sentencepiece"]}}}},
        "transforms ['sentencepiece']",
    ),
    "eole-split-vocab": (
        {"tgt": ["<unk>", "<blank>", "<s>", "</s>", "b"]},
        "src and tgt vocabularies differ",
    ),
}


def _eole_dirs(root):
    """eole-shaped directories (config.json, vocab.json, model.00.safetensors), each wrong in one way (made by hand:
    no eole is needed to refuse them)."""
    from safetensors.torch import save_file

    tokens = ["<unk>", "<blank>", "<s>", "</s>", "a"]
    vocab = {"src": tokens, "tgt": tokens, "decoder_start_token": "<s>", "specials": {"pad_token": "<blank>"}}

    def make(
        name, files=("config", "vocab", "weights"), model=None, config=None, weights=None, **vocab_changes
    ):
        folder = root / name
        folder.mkdir()
        if "config" in files:
            (folder / "config.json").write_text(
                json.dumps({"model": {**EOLE_MODEL, **(model or {})}, **(config or {})}), encoding="utf-8"
            )
        if "vocab" in files:
            (folder / "vocab.json").write_text(json.dumps({**vocab, **vocab_changes}), encoding="utf-8")
        if "weights" in files:
            save_file(
                {"src_emb.embeddings.weight": torch.zeros(5, 8), **(weights or {})},
                folder / "model.00.safetensors",
            )

    for name, (spec, _) in EOLE_BAD.items():
        make(name, **spec)
    (root / "eole-garbage-weights").mkdir()
    for name in ("config.json", "vocab.json"):
        (root / "eole-garbage-weights" / name).write_text((root / "eole-no-weights" / name).read_text())
    (root / "eole-garbage-weights" / "config.json").write_text(
        json.dumps({"model": EOLE_MODEL}), encoding="utf-8"
    )
    (root / "eole-garbage-weights" / "model.00.safetensors").write_bytes(b"not safetensors")


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
    "uneven-ffn": ("uneven", "marian", "hf-seq2seq", "encoder_ffn_dim=32 differs from decoder_ffn_dim=48"),
    "no-tokenizer": ("no-tokenizer", "marian", "hf-seq2seq", "no tokenizer that AutoTokenizer loads"),
    "joey-rnn-sizes": ("joey-rnn-sizes", "joeynmt", "hf-seq2seq", "the encoder states have size 16"),
    "joey-rnn-scaled-once": (
        "joey-rnn-scaled-once",
        "joeynmt",
        "hf-seq2seq",
        "model.encoder.embeddings.scale=True differs from model.decoder.embeddings.scale=False",
    ),
    "joey-mixed": (
        "joey-mixed",
        "joeynmt",
        "hf-seq2seq",
        "model.encoder.type='recurrent' with model.decoder",
    ),
    "joey-no-checkpoint": ("joey-no-checkpoint", "joeynmt", "hf-seq2seq", "no checkpoint"),
    "joey-no-vocab": ("joey-no-vocab", "joeynmt", "hf-seq2seq", "no src vocabulary"),
    "joey-norm-unset": ("joey-norm-unset", "joeynmt", "hf-seq2seq", "model.encoder.layer_norm is not set"),
    "joey-alpha": ("joey-alpha", "joeynmt", "hf-seq2seq", "model.encoder.alpha=0.5"),
    "joey-split-vocab": (
        "joey-split-vocab",
        "joeynmt",
        "hf-seq2seq",
        "src_vocab.txt and trg_vocab.txt differ",
    ),
    "joey-garbage-checkpoint": ("joey-garbage-checkpoint", "joeynmt", "hf-seq2seq", "cannot read best.ckpt"),
    "joey-not-yaml": ("joey-not-yaml", "joeynmt", "hf-seq2seq", "cannot read config.yaml"),
    "ours-as-joeynmt": ("ours", "joeynmt", "hf-seq2seq", "no config.yaml: not a JoeyNMT model directory"),
    "missing-folder": ("no-such-folder/x", "marian", "hf-seq2seq", "not found"),
    "eole-as-marian": ("eole-rms", "marian", "hf-seq2seq", "use --from eole"),
    "joeynmt-as-eole": (
        "joey",
        "eole",
        "hf-seq2seq",
        "no config.json: not an eole model directory (it has config.yaml",
    ),
    "marian-as-eole": ("marian", "eole", "hf-seq2seq", "no vocab.json nor model.00.safetensors"),
    "eole-garbage-weights": (
        "eole-garbage-weights",
        "eole",
        "hf-seq2seq",
        "cannot read model.00.safetensors",
    ),
}
CASES.update({name: (name, "eole", "hf-seq2seq", expected) for name, (_, expected) in EOLE_BAD.items()})


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

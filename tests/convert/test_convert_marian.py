"""hf_seq2seq.convert.marian: a stock MarianMTModel → ours → Marian gives back the same weights and the same outputs;
ours (post-norm) → Marian loads with plain transformers, without the package and without remote code, and computes
our outputs; what Marian cannot express is refused in one line naming the option."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap

import pytest
import torch
from _convert import batch, tiny_marian, tiny_ours, tiny_tokenizer

from hf_seq2seq.convert import ConversionError, convert
from hf_seq2seq.convert.marian import marian_permutation, to_marian
from hf_seq2seq.hub import save_model_folder

ATOL = 1e-5


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _logits(model, inputs, labels) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, decoder_input_ids=labels).logits


def _generate(model, inputs, num_beams: int) -> list[list[int]]:
    with torch.no_grad():
        out = model.generate(**inputs, num_beams=num_beams, max_new_tokens=12, do_sample=False)
    return out.tolist()


def test_the_permutation_maps_our_sinusoid_onto_marians(tokenizer):
    """The reordering the converter applies to the residual stream is what turns our interleaved table into Marian's
    concatenated one (computed by both classes, not by the test)."""
    ours = tiny_ours(tokenizer)
    marian = tiny_marian(tokenizer)
    table = ours.model.encoder.embed_positions.table
    marian_table = marian.model.encoder.embed_positions.weight
    torch.testing.assert_close(table[:, marian_permutation(table.shape[1])], marian_table, atol=1e-6, rtol=0)
    assert not torch.allclose(table, marian_table, atol=1e-3)  # the layouts do differ


@pytest.mark.parametrize(
    "variant",
    [
        {},  # Helsinki-NLP's layout: one shared matrix, swish, scaled embeddings
        {"shared": False, "activation_function": "gelu", "scale_embedding": False},  # three separate matrices
        {"final_logits_bias": True},  # a trained logits bias: our output_bias
    ],
    ids=["shared-embeddings", "separate-embeddings", "final-logits-bias"],
)
def test_marian_to_ours_to_marian_is_exact(tokenizer, tmp_path, variant):
    from transformers import AutoModelForSeq2SeqLM, MarianMTModel

    variant = dict(variant)
    biased = variant.pop("final_logits_bias", False)
    marian = tiny_marian(tokenizer, **variant)
    if biased:
        with torch.no_grad():
            marian.final_logits_bias.copy_(torch.randn(marian.final_logits_bias.shape))
    if not variant.get("shared", True):  # untied matrices that differ: a conversion that tied them would fail
        assert not torch.equal(marian.lm_head.weight, marian.model.encoder.embed_tokens.weight)
    marian.save_pretrained(tmp_path / "marian")
    tokenizer.save_pretrained(tmp_path / "marian")

    convert(tmp_path / "marian", tmp_path / "ours", from_format="marian", to_format="hf-seq2seq")
    convert(tmp_path / "ours", tmp_path / "back", from_format="hf-seq2seq", to_format="marian")

    ours = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ours").eval()
    back = MarianMTModel.from_pretrained(tmp_path / "back").eval()
    assert ours.config.model_type == "transformer_seq2seq"
    assert ours.config.tie_word_embeddings == variant.get("shared", True)
    assert ours.config.output_bias == biased  # a zero final_logits_bias (stock Marian) gives no output bias
    if biased:
        assert torch.equal(ours.lm_head.bias, marian.final_logits_bias[0])
    # identical weights: every tensor of the round trip is the original, bit for bit
    original, returned = marian.state_dict(), back.state_dict()
    assert original.keys() == returned.keys()
    assert all(torch.equal(original[k], returned[k]) for k in original), "a weight changed in the round trip"
    assert back.config.share_encoder_decoder_embeddings == marian.config.share_encoder_decoder_embeddings

    inputs, labels = batch(tokenizer)
    reference = _logits(marian, inputs, labels)
    assert torch.equal(_logits(back, inputs, labels), reference)
    difference = (_logits(ours, inputs, labels) - reference).abs().max().item()
    assert difference <= ATOL, f"ours differs from Marian by {difference:.2e} (> {ATOL})"
    for num_beams in (1, 4):
        expected = _generate(marian, inputs, num_beams)
        assert _generate(ours, inputs, num_beams) == expected, f"num_beams={num_beams}"
        assert _generate(back, inputs, num_beams) == expected, f"num_beams={num_beams}"


def test_converted_folder_is_a_normal_folder_of_ours_whose_card_names_the_source(tokenizer, tmp_path):
    from hf_seq2seq.inference import load_engine

    marian = tiny_marian(tokenizer)
    marian.save_pretrained(tmp_path / "opus-tiny")
    tokenizer.save_pretrained(tmp_path / "opus-tiny")
    convert(tmp_path / "opus-tiny", tmp_path / "ours", from_format="marian", to_format="hf-seq2seq")

    card = (tmp_path / "ours" / "README.md").read_text(encoding="utf-8")
    assert "## Where the weights came from" in card and "`opus-tiny`" in card and "MarianMTModel" in card
    assert card.index("## Where the weights came from") < card.index("## How to use")
    assert str(tmp_path) not in card  # no absolute path of this machine
    engine = load_engine(tmp_path / "ours", "torch", device="cpu")
    lines = ["drei", "zwei hundert"]
    got = [t.hypotheses[0] for t in engine.translate(lines, num_beams=1, max_new_tokens=12)]
    inputs = tokenizer(lines, return_tensors="pt", padding=True)
    expected = tokenizer.batch_decode(torch.tensor(_generate(marian, inputs, 1)), skip_special_tokens=True)
    assert got == expected


# The child: plain transformers from the venv's site-packages, without processing its .pth files (the package's
# editable install is one), with -I (no PYTHONPATH, no cwd on sys.path) and -S (no site module).
CHILD = """
import importlib.util, json, sys
sys.path.append({site!r})
assert importlib.util.find_spec("hf_seq2seq") is None, "hf_seq2seq is importable in the child"
try:
    import hf_seq2seq
except ImportError:
    pass
else:
    raise AssertionError("import hf_seq2seq worked")
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
torch.set_num_threads(1)
folder, lines, labels = {folder!r}, {lines!r}, {labels!r}
model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=False).eval()
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
inputs = tokenizer(lines, return_tensors="pt", padding=True)
with torch.no_grad():
    logits = model(**inputs, decoder_input_ids=torch.tensor(labels)).logits
    out = {{
        "class": type(model).__name__,
        "module": type(model).__module__,
        "input_ids": inputs["input_ids"].tolist(),
        "logits": logits.tolist(),
        "greedy": model.generate(**inputs, num_beams=1, max_new_tokens=12, do_sample=False).tolist(),
        "beam": model.generate(**inputs, num_beams=4, max_new_tokens=12, do_sample=False).tolist(),
    }}
print(json.dumps(out))
"""


@pytest.mark.slow  # a Python process without the package per case (25 s each on 2 shared cores)
@pytest.mark.parametrize("output_bias", [False, True], ids=["no-bias", "output-bias"])
def test_ours_to_marian_loads_without_the_package_and_gives_our_outputs(tokenizer, tmp_path, output_bias):
    ours = tiny_ours(tokenizer, seed=1, output_bias=output_bias)
    if output_bias:  # becomes Marian's final_logits_bias
        with torch.no_grad():
            ours.lm_head.bias.copy_(torch.randn(ours.lm_head.bias.shape))
    save_model_folder(ours, tokenizer, tmp_path / "ours")
    convert(tmp_path / "ours", tmp_path / "marian", from_format="hf-seq2seq", to_format="marian")
    config = json.loads((tmp_path / "marian" / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "marian" and "auto_map" not in config
    assert not list((tmp_path / "marian").glob("*.py"))  # no code travels with it

    inputs, labels = batch(tokenizer)
    lines = tokenizer.batch_decode(inputs["input_ids"], skip_special_tokens=True)
    code = CHILD.format(
        site=sysconfig.get_paths()["purelib"],
        folder=str(tmp_path / "marian"),
        lines=lines,
        labels=labels.tolist(),
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    assert child["class"] == "MarianMTModel" and child["module"].startswith("transformers.models.marian")
    assert (
        child["input_ids"] == inputs["input_ids"].tolist()
    )  # the same tokenizer, loaded by stock transformers
    difference = (torch.tensor(child["logits"]) - _logits(ours, inputs, labels)).abs().max().item()
    assert difference <= ATOL, f"Marian differs from ours by {difference:.2e} (> {ATOL})"
    assert child["greedy"] == _generate(ours, inputs, 1)
    assert child["beam"] == _generate(ours, inputs, 4)


@pytest.mark.parametrize(
    ("option", "value"),
    [("norm_style", "pre"), ("position_embedding", "learned")],
    ids=["pre-norm", "learned"],
)
def test_what_marian_cannot_express_is_refused_in_one_line(tokenizer, tmp_path, option, value):
    ours = tiny_ours(tokenizer, **{option: value})
    with pytest.raises(ConversionError) as info:
        to_marian(ours)
    message = str(info.value)
    assert "\n" not in message and f"{option}={value!r}" in message
    save_model_folder(ours, tokenizer, tmp_path / "ours")
    with pytest.raises(ConversionError, match=option):
        convert(tmp_path / "ours", tmp_path / "marian", from_format="hf-seq2seq", to_format="marian")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours"]  # nothing written, no staging folder left

"""Checkpoint averaging (hf_seq2seq.training.averaging, `hf-seq2seq average-checkpoints`) on tiny models and a real run.

Invariants: N copies average to exactly themselves (same generate() output), two checkpoints average to their
hand-computed mean, the written folder loads with AutoModelForSeq2SeqLM (tied weights still tied) and translates,
and every bad input stops with an error naming the path while leaving every input byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from hub_server import tiny_model, tiny_tokenizer
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from hf_seq2seq.cli import main as cli_main
from hf_seq2seq.data import DataError
from hf_seq2seq.hub import save_model_folder
from hf_seq2seq.inference import translate_lines
from hf_seq2seq.training.averaging import (
    CheckpointAveragingError,
    average_checkpoints,
    last_checkpoints,
    write_averaged_model,
)

SENTENCES = ["drei und zwanzig", "neun hundert sieben", "zwanzig"]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` and its content hash: what "inputs untouched" is checked against."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _generate(folder: Path) -> torch.Tensor:
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    enc = tokenizer(SENTENCES, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model.generate(**enc, num_beams=2, max_new_tokens=6)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real 6-step training run (tiny tied Transformer) keeping checkpoints step-2, step-4, step-6."""
    from hf_seq2seq.training import DataArguments, ModelArguments, TrainArguments, run_training

    out = tmp_path_factory.mktemp("avg") / "run"
    model_config = {
        "d_model": 16,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "num_attention_heads": 2,
        "ffn_dim": 32,
        "dropout": 0.0,
        "tie_word_embeddings": True,
    }
    run_training(
        DataArguments(
            task="numbers", task_num_train=300, task_num_validation=8, task_num_test=8, vocab_size=120
        ),
        ModelArguments(model_type="transformer", model_config=json.dumps(model_config)),
        TrainArguments(
            output_dir=str(out),
            max_steps=6,
            eval_steps=100,
            save_steps=2,
            save_total_limit=3,
            learning_rate=3e-3,
            warmup_steps=1,
            max_new_tokens=4,
            num_beams=1,
            log_with="none",
            disable_progress_bar=True,
        ),
    )
    return out


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_average_of_identical_copies_is_the_model_itself(tmp_path, family):
    tokenizer = tiny_tokenizer()
    model = tiny_model(family, len(tokenizer), seed=3, tie_word_embeddings=True)
    original = save_model_folder(model, tokenizer, tmp_path / "a")
    copies = [original]
    for name in (
        "b",
        "c",
    ):  # 3 copies: a mean that float32 (x + x + x) / 3 would not always give back exactly
        copies.append(Path(shutil.copytree(original, tmp_path / name)))
    before = [_snapshot(c) for c in copies]

    out = write_averaged_model(copies, tmp_path / "avg", template=original)

    averaged, stored = load_file(out / "model.safetensors"), load_file(original / "model.safetensors")
    assert averaged.keys() == stored.keys()  # tied matrices stored once, as in the original
    assert all(torch.equal(averaged[k], stored[k]) for k in stored)
    assert torch.equal(_generate(out), _generate(original))
    assert [_snapshot(c) for c in copies] == before


def test_dtype_is_kept_and_integer_tensors_are_not_averaged(tmp_path):
    folders = []
    for i, (w, count) in enumerate([(1.0, 10), (2.0, 20), (4.0, 30)]):
        folder = tmp_path / f"step-{i}"
        folder.mkdir()
        save_file(
            {
                "w": torch.full((3,), w, dtype=torch.bfloat16),
                "x": torch.tensor([0.1, 0.2], dtype=torch.float32) * (i + 1),
                "count": torch.tensor(count),
            },
            str(folder / "model.safetensors"),
        )
        (folder / "COMPLETE").write_text("{}")
        folders.append(folder)
    averaged = average_checkpoints(folders)
    assert averaged["w"].dtype == torch.bfloat16  # summed in float64, rounded to bf16 once
    assert torch.equal(averaged["w"], torch.full((3,), 7 / 3, dtype=torch.float64).to(torch.bfloat16))
    torch.testing.assert_close(averaged["x"], torch.tensor([0.2, 0.4]), rtol=0, atol=1e-7)
    assert averaged["count"].item() == 30  # a counter is taken from the last checkpoint, not averaged


def test_run_average_equals_the_mean_and_loads_and_translates(run_dir, tmp_path, capsys):
    assert [p.name for p in last_checkpoints(run_dir, 3)] == ["step-2", "step-4", "step-6"]
    before = _snapshot(run_dir)
    out = tmp_path / "averaged"

    assert (
        cli_main(["average-checkpoints", "--run_dir", str(run_dir), "--last", "2", "--output", str(out)]) == 0
    )
    assert "step-4" in capsys.readouterr().out

    a = load_file(run_dir / "checkpoints" / "step-4" / "model.safetensors")
    b = load_file(run_dir / "checkpoints" / "step-6" / "model.safetensors")
    averaged = load_file(out / "model.safetensors")
    assert averaged.keys() == a.keys()
    for key in a:
        torch.testing.assert_close(averaged[key], (a[key] + b[key]) / 2, rtol=1e-6, atol=1e-7)
    key = "model.encoder.embed_tokens.weight"
    assert not torch.equal(averaged[key], a[key]) and not torch.equal(averaged[key], b[key])

    # A complete folder: the template's config/tokenizer/code/card, the averaged weights, tied weights still tied.
    final = run_dir / "final_model"
    assert (out / "config.json").read_text() == (final / "config.json").read_text()
    assert {p.name for p in final.iterdir()} | {"averaging.json"} == {p.name for p in out.iterdir()}
    assert "## Checkpoint averaging" in (out / "README.md").read_text()
    assert json.loads((out / "averaging.json").read_text())["averaged"] == [
        "checkpoints/step-4",
        "checkpoints/step-6",
    ]
    model = AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    assert model.lm_head.weight.data_ptr() == model.model.encoder.embed_tokens.weight.data_ptr()
    assert torch.equal(model.lm_head.weight, averaged[key])
    tokenizer = AutoTokenizer.from_pretrained(out)
    hyps = translate_lines(model, tokenizer, SENTENCES, num_beams=2, max_new_tokens=4)
    assert len(hyps) == len(SENTENCES) and all(len(h) == 1 for h in hyps)

    # Refuses to overwrite without the flag, replaces with it; never leaves temporary folders.
    argv = ["average-checkpoints", "--run_dir", str(run_dir), "--last", "3", "--output", str(out)]
    assert cli_main(argv) == 1
    assert "exists and is not empty; pass --overwrite_output_dir" in capsys.readouterr().err
    assert torch.equal(load_file(out / "model.safetensors")[key], averaged[key])
    assert cli_main([*argv, "--overwrite_output_dir"]) == 0
    assert not torch.equal(load_file(out / "model.safetensors")[key], averaged[key])
    assert [p.name for p in tmp_path.iterdir()] == ["averaged"]
    assert _snapshot(run_dir) == before


def test_tied_weights_stored_under_any_name_average_once_and_stay_tied(run_dir, tmp_path):
    """A file may store a tied matrix under another name of its tie group, or every name (equal copies)."""
    step4, step6 = run_dir / "checkpoints" / "step-4", run_dir / "checkpoints" / "step-6"
    embed, aliases = (
        "model.encoder.embed_tokens.weight",
        ("lm_head.weight", "model.decoder.embed_tokens.weight"),
    )

    def variant(name: str, edit) -> Path:
        folder = Path(shutil.copytree(step6, tmp_path / name))
        weights = load_file(folder / "model.safetensors")
        edit(weights)
        save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return folder

    renamed = variant("renamed", lambda w: w.update({"lm_head.weight": w.pop(embed)}))
    every_name = variant("every", lambda w: w.update({a: w[embed].clone() for a in aliases}))
    template = run_dir / "final_model"
    reference = write_averaged_model([step4, step6], tmp_path / "reference", template=template)
    expected = load_file(reference / "model.safetensors")
    for folder in (renamed, every_name):
        out = write_averaged_model([step4, folder], tmp_path / f"avg-{folder.name}", template=template)
        got = load_file(out / "model.safetensors")
        assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)
        model = AutoModelForSeq2SeqLM.from_pretrained(out)
        assert model.lm_head.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
        assert torch.equal(model.lm_head.weight, expected[embed])

    untied = variant("untied", lambda w: w.update({"lm_head.weight": w[embed] + 1}))
    with pytest.raises(CheckpointAveragingError, match="stores different values for .* which the model ties"):
        write_averaged_model([step4, untied], tmp_path / "out", template=template)
    assert not (tmp_path / "out").exists()


def _broken_inputs(run_dir: Path, root: Path) -> dict[str, tuple[list[Path], str]]:
    """Each bad input: (the --checkpoints folders, the error it must give)."""
    good = run_dir / "checkpoints" / "step-6"
    other = run_dir / "checkpoints" / "step-4"

    def variant(name: str, edit=None, marker: bool = True) -> Path:
        folder = root / "checkpoints" / name
        shutil.copytree(other, folder)
        if not marker:
            (folder / "COMPLETE").unlink()
        if edit is not None:
            weights = load_file(folder / "model.safetensors")
            edit(weights)
            save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return folder

    truncated = variant("step-11")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    no_weights = variant("step-12")
    (no_weights / "model.safetensors").unlink()
    key = "model.encoder.layers.0.ffn.fc1.weight"
    return {
        "one path": ([good], "at least 2 checkpoints, got 1"),
        "twice": ([good, good], "is given twice"),
        "missing folder": ([good, root / "nope"], f"{root / 'nope'} does not exist"),
        "no weights": ([good, no_weights], f"{no_weights} has no model.safetensors"),
        "truncated": ([good, truncated], f"cannot read {truncated / 'model.safetensors'}: SafetensorError"),
        "incomplete": (
            [good, variant(".tmp-step-13", marker=False)],
            "incomplete checkpoint (no COMPLETE marker",
        ),
        "missing key": (
            [good, variant("step-14", lambda w: w.pop(key))],
            f"(missing {key}): only checkpoints",
        ),
        "extra key": (
            [good, variant("step-15", lambda w: w.update({"extra.weight": torch.ones(2)}))],
            "(extra extra.weight)",
        ),
        "shape": (
            [good, variant("step-16", lambda w: w.update({key: w[key][:-1].contiguous()}))],
            f"{key!r} has shape [31, 16] but [32, 16]",
        ),
        "nan": (
            [good, variant("step-17", lambda w: w[key].fill_(float("nan")))],
            f"{key!r} holds NaN/inf values",
        ),
    }


def test_bad_inputs_give_clear_errors_and_leave_inputs_untouched(run_dir, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    cases = _broken_inputs(run_dir, inputs)
    before, run_before = _snapshot(inputs), _snapshot(run_dir)
    template = run_dir / "final_model"
    for name, (paths, message) in cases.items():
        with pytest.raises(CheckpointAveragingError) as err:
            write_averaged_model(paths, tmp_path / "out", template=template)
        assert isinstance(err.value, DataError) and isinstance(err.value, ValueError)
        assert message in str(err.value), (name, str(err.value))
        argv = ["average-checkpoints", "--checkpoints", *map(str, paths), "--output", str(tmp_path / "out")]
        assert cli_main([*argv, "--template", str(template)]) == 1, name
        assert message in capsys.readouterr().err, name

    # Only complete checkpoints count: not .tmp-step-13 (an interrupted write), nor a step folder without marker.
    shutil.copytree(inputs / "checkpoints" / "step-16", inputs / "checkpoints" / "step-18")
    (inputs / "checkpoints" / "step-18" / "COMPLETE").unlink()
    before = _snapshot(inputs)
    assert [p.name for p in last_checkpoints(inputs, 2)] == ["step-16", "step-17"]
    assert cli_main(["average-checkpoints", "--run_dir", str(run_dir), "--last", "4", "--output", "x"]) == 1
    assert "has 3 complete checkpoint(s) (steps: 2, 4, 6), fewer than --last 4" in capsys.readouterr().err
    # A template of another model: the averaged weights do not fit it.
    tokenizer = tiny_tokenizer()
    wrong = save_model_folder(tiny_model("transformer", len(tokenizer)), tokenizer, tmp_path / "wrong")
    pair = [run_dir / "checkpoints" / "step-4", run_dir / "checkpoints" / "step-6"]
    with pytest.raises(CheckpointAveragingError, match=f"do not fit the model of template {wrong}"):
        write_averaged_model(pair, tmp_path / "out", template=wrong)
    # The output may not be (or contain) an input.
    with pytest.raises(CheckpointAveragingError, match="overlaps the input"):
        write_averaged_model(pair, run_dir, template=template, overwrite=True)

    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".old-"))]
    assert _snapshot(inputs) == before and _snapshot(run_dir) == run_before

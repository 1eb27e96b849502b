"""Model folders saved before the Hub-shipped files moved into ``hf_seq2seq/models/`` and lost the CPU kernels
(issue 24) still load, with the package and as remote code, and give the outputs they gave when saved.

``tests/fixtures/saved_before_models_move/`` holds one tiny folder per family (GRU + Bahdanau, LSTM + Luong
general with input feeding, Transformer, image captioning), written by the code of the commit before the move
(``make_fixtures.py``), and ``expected.json``: the inputs, the greedy and beam token ids and the teacher-forced
logits that code produced. Checked here:

- the package (``from_pretrained`` without remote code: today's ``hf_seq2seq.models``) reproduces them;
- without the package, ``trust_remote_code=True`` runs the folder's own (old) code files and reproduces them;
- a folder saved again by today's package has the same file names, ``auto_map`` and ``custom_pipelines``, and its
  (new, plain-torch) code files reproduce them too, as does its ``pipeline`` against the package's.
"""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_without_package
from transformers import (
    AutoImageProcessor,
    AutoModelForImageTextToText,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    pipeline,
)

import hf_seq2seq  # noqa: F401  (registers the model types)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "saved_before_models_move"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
NAMES = list(EXPECTED["outputs"])
TEXT_NAMES = [n for n in NAMES if n != "captioning"]


def outputs(name: str, model, data: dict) -> dict:
    """Greedy and beam-3 token ids and the teacher-forced logits (as make_fixtures.py records them). Also sent,
    as source, to the subprocess without the package."""
    import torch

    if name == "captioning":
        kwargs = {"pixel_values": torch.tensor(data["pixel_values"], dtype=torch.float32) / 1000}
    else:
        kwargs = {k: torch.tensor(v) for k, v in data["source"].items()}
    with torch.no_grad():
        found = {
            mode: model.generate(**kwargs, num_beams=beams).tolist()
            for mode, beams in (("greedy", 1), ("beam", 3))
        }
        decoder_input_ids = torch.tensor([[1, 7, 9, 4], [1, 5, 5, 8]])
        found["logits"] = model(**kwargs, decoder_input_ids=decoder_input_ids).logits.flatten().tolist()
    return found


def assert_same(found: dict, expected: dict, where: str) -> None:
    assert found["greedy"] == expected["greedy"], where
    assert found["beam"] == expected["beam"], where
    torch.testing.assert_close(
        torch.tensor(found["logits"]), torch.tensor(expected["logits"]), atol=2e-5, rtol=0, msg=where
    )


def auto_class(name: str):
    return AutoModelForImageTextToText if name == "captioning" else AutoModelForSeq2SeqLM


def config_of(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", NAMES)
def test_old_folder_loads_with_the_package(name):
    model = auto_class(name).from_pretrained(FIXTURES / name).eval()
    assert type(model).__module__.startswith("hf_seq2seq.models.")  # today's code, not the folder's
    assert_same(outputs(name, model, EXPECTED["inputs"]), EXPECTED["outputs"][name], f"{name}, package")


def _resave(name: str, target: Path) -> None:
    """What a user's ``save_pretrained`` of an old folder writes today (weights, config, today's code files)."""
    model = auto_class(name).from_pretrained(FIXTURES / name)
    model.save_pretrained(target)
    for extra in FIXTURES.joinpath(name).iterdir():  # tokenizer, processor, card, pipeline: as they were
        if not (target / extra.name).exists():
            shutil.copy(extra, target / extra.name)
    if name == "captioning":
        AutoImageProcessor.from_pretrained(FIXTURES / name).save_pretrained(target)
    for code in target.glob("*.py"):
        if code.name.startswith("pipeline_"):
            shutil.copy(Path(hf_seq2seq.__file__).parent / "models" / code.name, code)


@pytest.mark.slow
def test_old_and_resaved_folders_load_without_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))  # remote code of this test only
    for name in NAMES:
        _resave(name, tmp_path / f"resaved_{name}")
        old, new = FIXTURES / name, tmp_path / f"resaved_{name}"
        assert sorted(p.name for p in new.iterdir()) == sorted(p.name for p in old.iterdir()), name
        for key in ("auto_map", "custom_pipelines", "model_type"):
            assert config_of(new).get(key) == config_of(old).get(key), (name, key)
        assert "mkldnn" not in "".join(p.read_text(encoding="utf-8") for p in new.glob("*.py"))  # plain torch
    package_pipeline = {}
    for name in TEXT_NAMES:
        folder = FIXTURES / name
        pipe = pipeline(
            "text2text",
            model=auto_class(name).from_pretrained(folder),
            tokenizer=AutoTokenizer.from_pretrained(folder),
        )
        package_pipeline[name] = [r["generated_text"] for r in pipe(EXPECTED["inputs"]["sentences"])]

    code = (
        inspect.getsource(outputs)
        + f"""
import json
from pathlib import Path

from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoModelForSeq2SeqLM, pipeline

data = json.loads(Path({str(FIXTURES / "expected.json")!r}).read_text())["inputs"]
result = {{}}
for name in {NAMES!r}:
    auto = AutoModelForImageTextToText if name == "captioning" else AutoModelForSeq2SeqLM
    for kind, folder in (("old", Path({str(FIXTURES)!r}) / name), ("new", Path({str(tmp_path)!r}) / f"resaved_{{name}}")):
        model = auto.from_pretrained(folder, trust_remote_code=True).eval()
        assert "hf_seq2seq" not in type(model).__module__, type(model).__module__
        result[f"{{kind}} {{name}}"] = outputs(name, model, data)
        if name == "captioning":
            result[f"{{kind}} {{name}} processor"] = type(AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)).__name__
        else:
            pipe = pipeline(model=str(folder), trust_remote_code=True)
            result[f"{{kind}} {{name}} pipeline"] = [r["generated_text"] for r in pipe(data["sentences"])]
print("RESULT" + json.dumps(result))
"""
    )
    proc = run_without_package(code, cwd=tmp_path)
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
    result = json.loads(line[len("RESULT") :])
    for name in NAMES:
        for kind in ("old", "new"):
            assert_same(result[f"{kind} {name}"], EXPECTED["outputs"][name], f"{name}, {kind} code, remote")
            if name == "captioning":
                assert result[f"{kind} {name} processor"] == "ImageCaptioningImageProcessor"
            else:
                assert result[f"{kind} {name} pipeline"] == package_pipeline[name], (name, kind)

"""Model cards (valid Hub metadata, the evaluation numbers in model-index) and the push to a loopback Hub:
one commit with every file, and from_pretrained of what the server stored, in a fresh process without the
package, generates the same text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import PROJECT_ROOT
from hub_server import LoopbackHub, tiny_model, tiny_tokenizer
from huggingface_hub import ModelCard, ModelCardData, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results

from hf_seq2seq.hub import NOT_RECORDED, push_model_folder, save_model_folder

SENTENCES = ["drei und zwanzig", "neun tausend neun hundert sieben und achtzig"]
CARD = {
    "source_lang": "de",
    "target_lang": "en",
    "dataset": "bentrevett/multi30k",
    "dataset_name": "Multi30k (de-en)",
    "eval_split": "test",
    "num_eval_sentences": 1000,
    "bleu": 31.4159,
    "chrf": 55.5,
    "bleu_signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
    "chrf_signature": "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0",
    "steps": 1234,
    "epochs": 3,
    "train_time": 3725,
    "hardware": "1x CPU",
    "recipe": "configs/rnn_bahdanau.yaml",
    "training_args": {"learning_rate": 0.001, "batch_tokens": 4096},
    "history": [
        {"step": 1, "train_loss": 5.0},
        {"step": 2, "train_loss": 4.0, "valid_loss": 4.5, "bleu": 1.0},
    ],
    "example": SENTENCES[1],
    "repo_id": "user/tiny-transformer",
}


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def hub():
    server = LoopbackHub().start()
    yield server
    server.stop()


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_card_metadata_is_valid_and_holds_the_scores(tokenizer, tmp_path, family):
    model = tiny_model(family, len(tokenizer))
    folder = save_model_folder(model, tokenizer, tmp_path / "m", card=CARD)
    meta = metadata_load(folder / "README.md")
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "translation"
    assert meta["language"] == ["de", "en"]
    assert meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["bentrevett/multi30k"]
    model_name, results = model_index_to_eval_results(meta["model-index"])
    assert model_name == "tiny-transformer"
    scores = {r.metric_name: r for r in results}
    assert scores["BLEU"].metric_value == round(CARD["bleu"], 2)
    assert scores["chrF"].metric_value == round(CARD["chrf"], 2)
    assert scores["BLEU"].metric_args == {"signature": CARD["bleu_signature"]}
    assert {r.task_type for r in results} == {"translation"}
    assert {r.dataset_split for r in results} == {"test"}
    ModelCardData(**meta)  # the hub's own parser accepts the metadata

    card = ModelCard.load(folder / "README.md")
    text = card.text
    assert "31.42" in text and "55.50" in text
    assert CARD["bleu_signature"].replace("|", "\\|") in text  # escaped inside the Markdown table
    assert f"{model.num_parameters():,}" in text
    assert "](attention.png)" in text and "](learning_curve.png)" in text
    assert (folder / "attention.png").is_file() and (folder / "learning_curve.png").is_file()
    assert "1:02:05" in text and "1234" in text and "`learning_rate` | `0.001`" in text
    assert ("Bahdanau et al. 2015" if family == "rnn" else "Vaswani et al. 2017") in text
    assert 'from_pretrained("user/tiny-transformer", trust_remote_code=True)' in text
    assert NOT_RECORDED not in text


def test_card_with_nothing_known_renders_not_recorded(tokenizer, tmp_path):
    model = tiny_model("transformer", len(tokenizer))
    folder = save_model_folder(model, tokenizer, tmp_path / "m")
    meta = metadata_load(folder / "README.md")
    assert meta["library_name"] == "transformers" and "model-index" not in meta
    text = (folder / "README.md").read_text()
    assert text.count(NOT_RECORDED) >= 5
    assert "![" not in text  # no images when nothing was drawn or given


def test_card_with_several_splits_names_the_hub_dataset(tokenizer, tmp_path):
    """One model-index result per split and metric, one table row per split; the Hub id is the dataset's type and
    its `datasets:` key, the display name its name, and the Data line links the id."""
    model = tiny_model("rnn", len(tokenizer))
    sig = {"bleu_signature": CARD["bleu_signature"], "chrf_signature": CARD["chrf_signature"]}
    evaluations = [
        {"split": "validation", "bleu": 30.0, "chrf": 50.0, "num_sentences": 1014, "num_beams": 5, **sig},
        {
            "split": "test_2016_flickr",
            "bleu": 29.5,
            "chrf": 49.0,
            "num_sentences": 1000,
            "num_beams": 5,
            **sig,
        },
    ]
    folder = save_model_folder(model, tokenizer, tmp_path / "m", card={**CARD, "evaluations": evaluations})
    card = ModelCard.load(folder / "README.md")
    assert card.data.datasets == ["bentrevett/multi30k"]
    results = card.data.eval_results
    assert sorted((r.dataset_split, r.metric_name, r.metric_value) for r in results) == [
        ("test_2016_flickr", "BLEU", 29.5), ("test_2016_flickr", "chrF", 49.0),
        ("validation", "BLEU", 30.0), ("validation", "chrF", 50.0),
    ]  # fmt: skip
    assert {(r.dataset_type, r.dataset_name) for r in results} == {
        ("bentrevett/multi30k", "Multi30k (de-en)")
    }
    assert (
        "**Data**: Multi30k (de-en) ([bentrevett/multi30k](https://huggingface.co/datasets/bentrevett/multi30k))"
        in card.text
    )
    assert "| validation | 1014 | 5 | 30.00 | 50.00 |" in card.text
    assert "| test_2016_flickr | 1000 | 5 | 29.50 | 49.00 |" in card.text


def _hub_env(hub, tmp_path) -> dict:
    return dict(
        os.environ,
        HF_ENDPOINT=hub.url,
        HF_HUB_OFFLINE="0",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_TOKEN="hf_loopback_test_token",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
    )


@pytest.mark.slow
def test_push_one_commit_and_load_back_without_the_package(tokenizer, tmp_path, hub):
    model = tiny_model("transformer", len(tokenizer), seed=2)
    folder = save_model_folder(model, tokenizer, tmp_path / "tiny", card=CARD)
    with torch.no_grad():
        expected = [
            tokenizer.batch_decode(
                model.generate(**tokenizer([s], return_tensors="pt")), skip_special_tokens=True
            )[0]
            for s in SENTENCES
        ]
    env = _hub_env(hub, tmp_path)
    push = subprocess.run(
        [sys.executable, "-m", "hf_seq2seq.cli", "push", "--model", str(folder), "--repo_id", "user/tiny-transformer",
         "--commit_message", "first upload"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert push.returncode == 0, push.stdout + push.stderr + "\nunhandled: " + str(hub.state.unhandled)

    repo = hub.state.repos["user/tiny-transformer"]
    assert len(repo.commits) == 1 and repo.commits[0].summary == "first upload"
    uploaded = set(repo.commits[0].files)
    assert uploaded == {p.name for p in folder.iterdir() if p.is_file()}
    for name in [
        "model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
        "configuration_transformer_seq2seq.py", "modeling_transformer_seq2seq.py", "pipeline_text2text.py",
        "README.md", "attention.png", "learning_curve.png",
    ]:  # fmt: skip
        assert name in uploaded, name
        assert repo.commits[0].files[name] == (folder / name).read_bytes()
    assert "auto_map" in json.loads(repo.commits[0].files["config.json"])

    code = textwrap.dedent(
        f"""
        import sys, json
        sys.modules["hf_seq2seq"] = None  # the package is not importable: remote code only
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
        repo = "user/tiny-transformer"
        model = AutoModelForSeq2SeqLM.from_pretrained(repo, trust_remote_code=True).eval()
        tok = AutoTokenizer.from_pretrained(repo, trust_remote_code=True)
        texts = []
        for s in {SENTENCES!r}:
            with torch.no_grad():
                texts.append(tok.batch_decode(model.generate(**tok([s], return_tensors="pt")), skip_special_tokens=True)[0])
        pipe = pipeline(model=repo, trust_remote_code=True)
        print("RESULT" + json.dumps({{"generate": texts, "pipeline": [r["generated_text"] for r in pipe({SENTENCES!r})]}}))
        """
    )
    load = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=dict(env, PYTHONPATH=""), capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert load.returncode == 0, load.stdout + load.stderr + "\nunhandled: " + str(hub.state.unhandled)
    line = next(line for line in load.stdout.splitlines() if line.startswith("RESULT"))
    result = json.loads(line[len("RESULT") :])
    assert result["generate"] == expected
    assert result["pipeline"] == [t.strip() for t in expected]


def test_push_to_a_branch_and_bad_folders(tokenizer, tmp_path, hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest sets offline mode for the test process
    folder = save_model_folder(tiny_model("transformer", len(tokenizer)), tokenizer, tmp_path / "m")
    info = push_model_folder(
        folder, "user/branchy", revision="dev", private=True, endpoint=hub.url, token="x"
    )
    repo = hub.state.repos["user/branchy"]
    assert repo.private
    assert [c.revision for c in repo.commits] == ["dev"] and info.oid == repo.heads["dev"]
    assert "model.safetensors" in repo.branches["dev"] and "model.safetensors" not in repo.branches["main"]
    # a second push to the same repo is a new commit, not an error
    push_model_folder(folder, "user/branchy", endpoint=hub.url, token="x")
    assert [c.revision for c in repo.commits] == ["dev", "main"]

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="missing config.json, model.safetensors"):
        push_model_folder(tmp_path / "empty", "user/x", endpoint=hub.url)
    with pytest.raises(ValueError, match="USER/NAME"):
        push_model_folder(folder, "no-namespace", endpoint=hub.url)
    assert hub.state.unhandled == []


def test_model_without_attention_saves_a_card_without_heatmap(tokenizer, tmp_path):
    """The Sutskever/Cho model (attention="none") has no alignment: saving skips the heatmap, keeps the rest."""
    model = tiny_model("rnn", len(tokenizer), attention="none")
    folder = save_model_folder(model, tokenizer, tmp_path / "vanilla", card=CARD)
    assert (folder / "learning_curve.png").is_file()
    assert not (folder / "attention.png").exists()
    assert "attention.png" not in (folder / "README.md").read_text()

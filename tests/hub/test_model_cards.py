"""Model cards fit to publish (issue 19): every card the project writes — by training (translation and captioning),
by `hf-seq2seq evaluate --update_card`, by `scripts/regenerate_card.py` — parses with huggingface_hub's own
`ModelCard` / `EvalResult` as the Hub reads it, and no file of a saved folder holds a path of the machine it was
made on. Tiny real runs (a few steps on CPU), no mocks."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import MULTI30K, PROJECT_ROOT
from huggingface_hub import EvalResult, ModelCard

from hf_seq2seq.captioning_data import render_scene
from hf_seq2seq.commands import evaluate_main
from hf_seq2seq.commands.train import train_main
from hf_seq2seq.hub import (
    EVAL_TABLE_BEGIN,
    EVAL_TABLE_END,
    NOT_RECORDED,
    cpu_model_name,
    public_path,
    scrub_paths,
)

NUM_TEST = 6
RECIPE = """# a tiny Transformer recipe, with paths of this machine in it
model_type: transformer
model_config: {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "num_attention_heads": 2, "ffn_dim": 64}
train_prefix: {data}/train
validation_prefix: {relative_data}/val
learning_rate: 3e-3
warmup_steps: 2
"""


OVERRIDES = [
    "--model_config", json.dumps({"d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "num_attention_heads": 2,
                                  "ffn_dim": 32}),
    "--warmup_steps", "1",
]  # fmt: skip


def _text_args(output_dir: Path) -> list[str]:
    return [
        "--source_lang", "de", "--target_lang", "en",
        "--max_train_examples", "300", "--max_validation_examples", "8",
        "--vocab_size", "300", "--max_tokens", "400", "--max_source_length", "64", "--max_target_length", "64",
        "--max_steps", "3", "--eval_steps", "3", "--num_beams", "2", "--max_new_tokens", "8",
        "--log_with", "none", "--disable_progress_bar", "--output_dir", str(output_dir),
    ]  # fmt: skip


def _assert_no_machine_path(folder: Path, *paths) -> None:
    """No file of the folder (card, config, generation config, tokenizer, code) names one of ``paths``."""
    for file in folder.rglob("*"):
        if file.is_file() and file.suffix in ("", ".md", ".json", ".py", ".txt", ".yaml"):
            text = file.read_text(encoding="utf-8", errors="replace")
            for path in paths:
                assert str(path) not in text, f"{file.name} holds the local path {path}"


def _assert_hub_reads_translation_card(folder: Path, splits: list[str]) -> ModelCard:
    """The Hub's parser sees a translation model of de→en data with BLEU and chrF (with signatures) per split."""
    card = ModelCard.load(folder / "README.md")
    data = card.data
    assert data.pipeline_tag == "translation" and data.library_name == "transformers"
    assert data.language == ["de", "en"] and data.license == "apache-2.0"
    results = data.eval_results
    assert all(isinstance(r, EvalResult) for r in results)
    assert sorted((r.dataset_split, r.metric_name) for r in results) == sorted(
        (split, metric) for split in splits for metric in ("BLEU", "chrF")
    )
    for r in results:
        assert r.task_type == "translation" and r.metric_args["signature"].startswith("nrefs:1|")
        assert r.dataset_name and "/" not in r.dataset_name  # a name, not a path
    return card


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, multi30k_dir) -> tuple[Path, Path]:
    """A 3-step run started as a new user would: ``--config RECIPE`` with absolute paths, from another folder."""
    root = tmp_path_factory.mktemp("cards")
    (root / "recipes").mkdir()
    recipe = root / "recipes" / "tiny.yaml"
    relative = os.path.relpath(multi30k_dir, root)  # ../../.../multi30k: outside the working directory
    recipe.write_text(
        RECIPE.replace("{data}", str(multi30k_dir)).replace("{relative_data}", relative), encoding="utf-8"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        # the command line overrides two of the recipe's values (the model's sizes, warmup) and adds others
        assert train_main(["--config", str(recipe), *OVERRIDES, *_text_args(root / "runs" / "tiny")]) == 0
    return root, root / "runs" / "tiny"


def test_training_card_has_no_local_path_and_records_recipe_data_and_hardware(text_run, multi30k_dir):
    root, run = text_run
    for name in ("best_model", "final_model"):
        folder = run / name
        _assert_no_machine_path(folder, root, multi30k_dir)
        card = _assert_hub_reads_translation_card(folder, ["validation"])
        assert card.data.datasets is None  # local data: no Hub id to name
        assert {r.dataset_name for r in card.data.eval_results} == {multi30k_dir.name}
        text = card.text
        assert f"**Data**: {multi30k_dir.name}." in text
        # the recipe: its name relative to the working directory, its content without the data's path
        assert "**Recipe**: recipes/tiny.yaml." in text and "```yaml\n# a tiny Transformer recipe" in text
        assert "train_prefix: train" in text
        assert "| `output_dir` | `runs/tiny` |" in text and "| `train_prefix` | `train` |" in text
        assert f"**Hardware**: 1 x CPU {cpu_model_name()} (1 thread), fp32;" in text
        assert card.data.eval_results[0].dataset_type == multi30k_dir.name.lower()


def _card_recipe(text: str) -> tuple[list[str], dict]:
    """The comment lines and the values of the card's Recipe block."""
    import yaml

    block = text.split("<details><summary>Recipe ", 1)[1].split("```yaml\n", 1)[1].split("\n```", 1)[0]
    return [line for line in block.splitlines() if line.startswith("#")], yaml.safe_load(block)


def test_card_recipe_shows_what_ran_not_the_file(text_run, multi30k_dir):
    """Issue 28 row 13: the Recipe block is the recipe merged with the command line (the model that was built, the
    schedule that ran), so it can be given back to --config; data paths outside the working directory are base
    names whether the recipe wrote them absolute or relative."""
    root, run = text_run
    folder = run / "final_model"
    text = (folder / "README.md").read_text(encoding="utf-8")
    comments, ran = _card_recipe(text)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for key, value in ran["model_config"].items():
        assert config[key] == value, key  # the sizes of the saved model, not the recipe file's
    options = json.loads((run / "run_config.json").read_text(encoding="utf-8"))
    assert ran["warmup_steps"] == options["warmup_steps"] and ran["max_steps"] == options["max_steps"]
    assert ran["learning_rate"] == options["learning_rate"]  # a recipe value kept
    assert "max_steps" not in RECIPE and "learning_rate" in RECIPE
    assert list(ran)[:3] == ["model_type", "model_config", "train_prefix"]  # the file's order first
    assert comments[0] == "# a tiny Transformer recipe, with paths of this machine in it"
    assert "--model_config" in comments[-1] and "--warmup_steps" in comments[-1]
    assert "--learning_rate" not in comments[-1]  # 3e-3 in YAML is the 0.003 that ran
    assert (ran["train_prefix"], ran["validation_prefix"]) == ("train", "val")
    assert os.path.relpath(multi30k_dir, root) not in text and "../" not in text.split("## Evaluation")[0]
    assert "| `validation_prefix` | `val` |" in text


def _test_files(tmp_path: Path, multi30k_dir: Path) -> tuple[Path, Path]:
    """The first lines of Multi30k's test_2016_flickr, named as the corpus names them."""
    paths = []
    for lang in ("de", "en"):
        with gzip.open(multi30k_dir / f"test_2016_flickr.{lang}.gz", "rt", encoding="utf-8") as f:
            lines = [next(f) for _ in range(NUM_TEST)]
        path = tmp_path / f"test_2016_flickr.{lang}.gz"
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.writelines(lines)
        paths.append(path)
    return paths[0], paths[1]


def test_update_card_adds_then_replaces_the_split_and_push_ready(text_run, multi30k_dir, tmp_path):
    import shutil

    folder = shutil.copytree(text_run[1] / "final_model", tmp_path / "model")
    before = (folder / "README.md").read_text(encoding="utf-8")
    source, reference = _test_files(tmp_path, multi30k_dir)
    common = ["--model", str(folder), "--source", str(source), "--reference", str(reference), "--update_card"]

    # the split is named after the source file (test_2016_flickr.de.gz -> test_2016_flickr) ...
    assert evaluate_main([*common, "--num_beams", "1", "--output", str(tmp_path / "s1.json")]) == 0
    card = _assert_hub_reads_translation_card(folder, ["validation", "test_2016_flickr"])
    first = json.loads((tmp_path / "s1.json").read_text())
    test = {r.metric_name: r for r in card.data.eval_results if r.dataset_split == "test_2016_flickr"}
    assert test["BLEU"].metric_value == round(first["bleu"], 2)
    assert test["chrF"].metric_args == {"signature": first["chrf_signature"]}
    assert test["BLEU"].dataset_name == multi30k_dir.name  # the dataset the card's results already name

    # ... and a second run of the same split replaces its results (model-index and table row), never duplicates
    assert evaluate_main([*common, "--num_beams", "2", "--split_name", "test_2016_flickr"]) == 0
    card = _assert_hub_reads_translation_card(folder, ["validation", "test_2016_flickr"])
    rows = card.text.split(EVAL_TABLE_BEGIN)[1].split(EVAL_TABLE_END)[0].strip().splitlines()[2:]
    assert [row.split("|")[1].strip() for row in rows] == ["validation", "test_2016_flickr"]
    assert rows[1].split("|")[2:4] == [f" {NUM_TEST} ", " 2 "]  # sentences, beams of the second run

    # every other line of the card is kept, and nothing but README.md was written
    outside = before.split(EVAL_TABLE_BEGIN)[0].split("---\n", 2)[2], before.split(EVAL_TABLE_END)[1]
    assert all(part in card.text for part in outside)
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_update_card_errors_are_one_line_and_cost_no_translation(text_run, tmp_path, multi30k_dir, capsys):
    source, reference = _test_files(tmp_path, multi30k_dir)
    bare = tmp_path / "no_card"
    bare.mkdir()
    argv = ["--model", str(bare), "--source", str(source), "--reference", str(reference), "--update_card"]
    assert evaluate_main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--update_card" in err and "README.md" in err


def test_update_card_of_a_card_without_the_marked_table(text_run, multi30k_dir, tmp_path):
    """A card written before the table was marked gets one, rebuilt from its model-index, in its Evaluation
    section; nothing else of the card is lost."""
    import shutil

    from hf_seq2seq.hub import update_card_evaluation

    folder = shutil.copytree(text_run[1] / "best_model", tmp_path / "old")
    readme = folder / "README.md"
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(EVAL_TABLE_BEGIN)
    old_table = "| metric | score | sacreBLEU signature |\n|---|---|---|\n| BLEU | 1.00 | `x` |\n"
    readme.write_text(head + old_table + rest.split(EVAL_TABLE_END)[1], encoding="utf-8")
    scores = {"bleu": 12.5, "chrf": 40.0, "bleu_signature": "nrefs:1|a", "chrf_signature": "nrefs:1|b"}
    update_card_evaluation(folder, "test", {**scores, "num_eval_sentences": 3}, num_beams=5)
    card = ModelCard.load(readme)
    assert sorted({r.dataset_split for r in card.data.eval_results}) == ["test", "validation"]
    rows = card.text.split(EVAL_TABLE_BEGIN)[1].split(EVAL_TABLE_END)[0]
    assert "| validation |" in rows and "| test | 3 | 5 | 12.50 | 40.00 |" in rows
    assert "| metric | score |" not in card.text and "## How to use" in card.text


def _regenerate_card_script():
    """scripts/regenerate_card.py as a module (scripts/ is not a package)."""
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    try:
        import regenerate_card
    finally:
        sys.path.pop(0)
    return regenerate_card


def test_regenerated_card_of_an_older_run(text_run, tmp_path):
    """scripts/regenerate_card.py renders a folder's card again from run_config.json and the history."""
    regenerate_card = _regenerate_card_script()
    root, run = text_run
    folder = shutil.copytree(run / "best_model", tmp_path / "copy")
    (folder / "README.md").write_text(
        "---\nlicense: mit\n---\n**training time**: 0:30:54\n", encoding="utf-8"
    )
    argv = ["--run_dir", str(run), "--model", str(folder), "--config", str(root / "recipes" / "tiny.yaml")]
    assert regenerate_card.main([*argv, "--hardware", "1 x GPU, bf16 mixed precision"]) == 0
    _assert_no_machine_path(folder, root, MULTI30K.parent)
    card = _assert_hub_reads_translation_card(folder, ["validation"])
    assert card.data.model_name == "tiny" and "**training time**: 0:30:54" in card.text
    assert "**Hardware**: 1 x GPU, bf16 mixed precision;" in card.text and "train_prefix: train" in card.text
    assert (folder / "learning_curve.png").is_file() and NOT_RECORDED not in card.text.split("## Evaluation")[
        0
    ]


def test_regenerated_card_takes_the_recipe_run_config_recorded(text_run, tmp_path):
    """Without --config, regenerate_card.py shows the recipe run_config.json names; "config" is not a training option."""
    regenerate_card = _regenerate_card_script()
    root, run = text_run
    assert json.loads((run / "run_config.json").read_text(encoding="utf-8"))["config"].endswith("tiny.yaml")
    folder = shutil.copytree(run / "best_model", tmp_path / "copy")
    assert regenerate_card.main(["--run_dir", str(run), "--model", str(folder)]) == 0
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert "```yaml\n# a tiny Transformer recipe" in text
    assert "| `config` |" not in text  # the options table (the recipe shows above it)
    _assert_no_machine_path(folder, root, MULTI30K.parent)


@pytest.mark.slow
def test_captioning_card_from_an_image_folder(tmp_path):
    images = tmp_path / "flickr_like"
    images.mkdir()
    lines = []
    for i in range(8):
        scene = render_scene(5, i, 32)
        scene["image"].save(images / f"img{i}.png")
        lines.append(f"img{i}.png#0\t{scene['caption']}")
    captions = tmp_path / "captions.txt"
    captions.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = [
        "--model_type", "captioning", "--image_folder", str(images), "--captions_file", str(captions),
        "--validation_fraction", "0.25", "--image_size", "32", "--batch_size", "4", "--vocab_size", "60",
        "--model_config", json.dumps({"encoder_channels": [8], "embedding_size": 8, "hidden_size": 16}),
        "--max_steps", "2", "--eval_steps", "2", "--num_beams", "1", "--max_new_tokens", "6",
        "--log_with", "none", "--disable_progress_bar", "--output_dir", str(tmp_path / "run"),
        "--dataset_display_name", "Shapes (Flickr8k layout)",
    ]  # fmt: skip
    assert train_main(args) == 0
    folder = tmp_path / "run" / "final_model"
    _assert_no_machine_path(folder, tmp_path)
    card = ModelCard.load(folder / "README.md")
    assert card.data.pipeline_tag == "image-to-text" and card.data.license == "apache-2.0"
    results = card.data.eval_results
    assert {r.metric_name for r in results} >= {"BLEU-4", "chrF", "Exact match"}
    assert {(r.task_type, r.dataset_name, r.dataset_split) for r in results} == {
        ("image-to-text", "Shapes (Flickr8k layout)", "validation")
    }
    assert "**Data**: Shapes (Flickr8k layout)." in card.text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("/home/alice/data/multi30k/train", "train"),  # outside the working directory: the base name
        ("{cwd}/configs/x.yaml", "configs/x.yaml"),  # inside it: relative
        ("C:\\Users\\alice\\train.jsonl", "train.jsonl"),
        ("../shared/data/multi30k/train", "train"),  # relative, outside the working directory: the base name
        ("data/multi30k/train", "data/multi30k/train"),  # relative, inside it: kept
        ("../{cwdname}/data/train", "data/train"),  # leaves the working directory and comes back into it
        ("bentrevett/multi30k", "bentrevett/multi30k"),
    ],
)
def test_public_path(value, shown, tmp_path):
    value = value.replace("{cwd}", str(tmp_path)).replace("{cwdname}", tmp_path.name)
    assert public_path(value, cwd=tmp_path) == shown


def test_scrub_paths_keeps_urls_and_relative_paths(tmp_path):
    text = "see https://github.com/mjpost/sacrebleu; data: /srv/x/multi30k/val and ./a/b, de/en, ../../d/test.de\n"
    shown = text.replace("/srv/x/multi30k/val", "val").replace("../../d/test.de", "test.de")
    assert scrub_paths(text, cwd=tmp_path) == shown


@pytest.mark.parametrize(
    "card", sorted((PROJECT_ROOT / "model_cards").glob("*/README.md")), ids=lambda p: p.parent.name
)
def test_published_reference_cards_read_as_translation_models_without_local_paths(card):
    """The committed cards in model_cards/ are what `push` would publish: the Hub's parser must read their test
    split's BLEU/chrF with signatures, and no path of the machine that trained them may appear."""
    text = card.read_text(encoding="utf-8")
    parsed = ModelCard(text)
    assert parsed.data.pipeline_tag == "translation" and parsed.data.language
    test = [r for r in parsed.data.eval_results if r.dataset_split == "test_2016_flickr"]
    assert {r.metric_type for r in test} == {"sacrebleu", "chrf"}
    assert all("version:" in str(r.metric_args.get("signature", "")) for r in test)
    assert not any(marker in text for marker in ("/work/", "/tmp/", "/home/", "/root/", "C:\\"))
    for image in ("learning_curve.png", "attention.png"):
        if f"({image})" in text:
            assert (card.parent / image).is_file(), f"{card} shows {image}, which is missing"

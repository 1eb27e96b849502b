"""``scripts/train.py --model_type captioning`` end to end, ``plot-attention --image``, ``caption`` (issue 9).

Every training run is a real ``python scripts/train.py`` subprocess on CPU: the rendered shapes task at 32×32, a
tiny model (8×8 regions, hidden 32), dropout 0, a few dozen steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results
from PIL import Image
from safetensors.torch import load_file
from test_training import _train_one_process, _train_two_processes

from hf_seq2seq.captioning_data import render_scene
from hf_seq2seq.cli import main as cli_main
from hf_seq2seq.commands.train import train_main
from hf_seq2seq.training import parse_args
from hf_seq2seq.training.captioning import caption_scores

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train.py"
MAX_STEPS = 30
NUM_TRAIN = 400
NUM_VALIDATION = 24  # not a multiple of the validation batch size: the last batch is short
MODEL_CONFIG = {"encoder_channels": [8, 16], "embedding_size": 16, "hidden_size": 32, "dropout": 0.0}


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _args(output_dir: Path, *extra: str) -> list[str]:
    return [
        "--model_type", "captioning",
        "--task", "shapes",
        "--task_num_train", str(NUM_TRAIN),
        "--task_num_validation", str(NUM_VALIDATION),
        "--image_size", "32",
        "--model_config", json.dumps(MODEL_CONFIG),
        "--batch_size", "16",
        "--validation_batch_size", "10",
        "--vocab_size", "100",
        "--learning_rate", "3e-3",
        "--lr_scheduler", "constant",
        "--warmup_steps", "2",
        "--max_steps", str(MAX_STEPS),
        "--eval_steps", "15",
        "--num_beams", "2",
        "--max_new_tokens", "12",
        "--log_with", "none",
        "--disable_progress_bar",
        "--output_dir", str(output_dir),
        *extra,
    ]  # fmt: skip


def _train(args: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _history(output_dir: Path) -> tuple[list[dict], list[dict]]:
    history = json.loads((output_dir / "training_history.json").read_text())
    return [h for h in history if "loss" in h], [h for h in history if "eval_loss" in h]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("captioning") / "run"
    _train(_args(out))
    return out


@pytest.mark.slow
def test_training_run_leaves_loadable_captioning_folder(run, tmp_path):
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer, pipeline

    import hf_seq2seq  # noqa: F401  (registers the model type and the "image-captioning" pipeline)

    steps, evals = _history(run)
    assert [h["step"] for h in steps] == list(range(1, MAX_STEPS + 1))
    assert sum(h["loss"] for h in steps[-5:]) < sum(h["loss"] for h in steps[:5])  # it learns something
    for name in ("final_model", "best_model"):
        folder = run / name
        for f in (
            "config.json",
            "model.safetensors",
            "preprocessor_config.json",
            "tokenizer.json",
            "README.md",
        ):
            assert (folder / f).is_file(), f"{name}/{f}"
        assert (folder / "modeling_rnn_captioning.py").is_file()  # remote code beside the weights
    folder = run / "final_model"
    # the final card holds the last validation's numbers, the run's facts, the learning curve and attention figure
    meta = metadata_load(folder / "README.md")
    assert meta["pipeline_tag"] == "image-to-text" and meta["language"] == ["en"]
    _, results = model_index_to_eval_results(meta["model-index"])
    scores = {r.metric_name: r.metric_value for r in results}
    assert scores["BLEU-4"] == round(evals[-1]["eval_bleu"], 2)
    assert scores["Exact match"] == round(evals[-1]["eval_exact_match"], 2)
    assert {r.metric_name: r.metric_args for r in results}["BLEU-4"] == {
        "signature": evals[-1]["eval_bleu_signature"]
    }
    text = (folder / "README.md").read_text()
    assert f"**Steps**: {MAX_STEPS}" in text and "**Hardware**: 1 x " in text
    assert f"{NUM_VALIDATION} images" in text
    for image in ("learning_curve.png", "attention.png", "example.png"):
        assert (folder / image).is_file() and image in text, image
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.image_size == 32 and processor.size["height"] == 32
    assert model.generation_config.num_beams == 2
    image = render_scene(123, 0, 32)["image"]
    ids = model.generate(pixel_values=processor(images=[image], return_tensors="pt")["pixel_values"])
    direct = tokenizer.decode(ids[0], skip_special_tokens=True).strip()
    captioner = pipeline("image-captioning", model=model, tokenizer=tokenizer, image_processor=processor)
    assert captioner(image)[0]["generated_text"] == direct
    from_folder = pipeline(model=str(folder), trust_remote_code=True)  # the folder's custom_pipelines entry
    assert from_folder(image)[0]["generated_text"] == direct
    assert direct  # a non-empty caption


@pytest.mark.slow
def test_validation_scores_every_image_once_with_all_references(run):
    _, evals = _history(run)
    assert [e["step"] for e in evals] == [15, 30]
    for e in evals:
        assert e["eval_num_images"] == NUM_VALIDATION == e["eval_num_sentences"]
        assert e["eval_num_references"] == NUM_VALIDATION  # one caption per rendered scene
        for key in ("eval_loss", "eval_bleu", "eval_chrf", "eval_exact_match"):
            assert isinstance(e[key], float), key
        assert 0.0 <= e["eval_exact_match"] <= 100.0
        assert "nrefs:1" in e["eval_bleu_signature"]


def test_caption_scores_group_references_of_an_image():
    hyps = ["a red circle left of a blue square", "a green triangle above a yellow circle"]
    refs = [
        ["a red square left of a blue square", "a red circle left of a blue square"],  # 2nd reference matches
        ["a green triangle above a yellow circle"],  # fewer references than the first image
    ]
    grouped = caption_scores(hyps, refs)
    assert grouped["exact_match"] == 100.0
    assert grouped["bleu"] == pytest.approx(100.0)
    assert grouped["num_images"] == 2 and grouped["num_references"] == 3
    assert "nrefs:var" in grouped["bleu_signature"]
    first_only = caption_scores(hyps, [[r[0]] for r in refs])
    assert first_only["bleu"] < grouped["bleu"] and first_only["exact_match"] == 50.0
    with pytest.raises(ValueError, match="2 captions for 1 images"):
        caption_scores(hyps, refs[:1])


def test_cider_when_pycocoevalcap_is_installed():
    pytest.importorskip("pycocoevalcap.cider.cider")  # optional: pip install hf_seq2seq[cider]
    refs = [
        ["a red circle left of a blue square"],
        ["a green triangle above a yellow circle"],
        ["a blue square"],
    ]
    right = caption_scores([r[0] for r in refs], refs)["cider"]
    wrong = caption_scores(["a blue square", "a red circle", "a green triangle"], refs)["cider"]
    assert right > wrong >= 0.0


@pytest.mark.slow
def test_resume_equals_uninterrupted(run, tmp_path):
    out = tmp_path / "resumed"
    _train(_args(out, "--stop_after_step", "20", "--save_steps", "10"))
    assert not (out / "final_model").exists()
    _train(_args(out, "--resume", "--save_steps", "10"))
    full, resumed = _history(run)[0], _history(out)[0]
    assert [h["step"] for h in resumed] == list(range(1, MAX_STEPS + 1))
    for a, b in zip(full, resumed):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4), a["step"]
    wa, wb = (
        load_file(run / "final_model" / "model.safetensors"),
        load_file(out / "final_model" / "model.safetensors"),
    )
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_trains_from_a_flickr8k_folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    lines = []
    for i in range(12):
        scene = render_scene(7, i, 32)
        scene["image"].save(images / f"img{i}.png")
        lines += [f"img{i}.png#0\t{scene['caption']}", f"img{i}.png#1\tthere is a {scene['colors'][0]} shape"]
    captions = tmp_path / "Flickr8k.token.txt"
    captions.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    args = _args(out, "--image_folder", str(images), "--captions_file", str(captions))
    task_at = args.index("--task")
    del args[task_at : task_at + 2]
    args[args.index("--max_steps") + 1] = "3"
    args[args.index("--eval_steps") + 1] = "3"
    args += ["--validation_fraction", "0.25"]
    _train(args)
    _, evals = _history(out)
    # 3 of 12 images held out, each scored once against both of its captions
    assert evals[-1]["eval_num_images"] == 3 and evals[-1]["eval_num_references"] == 6
    assert "nrefs:2" in evals[-1]["eval_bleu_signature"]
    assert (out / "final_model" / "preprocessor_config.json").is_file()


@pytest.mark.slow
def test_plot_attention_over_image_and_caption_command(run, tmp_path, capsys):
    from hf_seq2seq.inference import load_captioner
    from hf_seq2seq.plotting import caption_attention

    scene = tmp_path / "scene.png"
    render_scene(5, 3, 32)["image"].save(scene)
    folder = str(run / "final_model")
    out_png = tmp_path / "plots" / "attention.png"
    assert (
        cli_main(["plot-attention", "--model", folder, "--image", str(scene), "--output", str(out_png)]) == 0
    )
    model, processor, tokenizer = load_captioner(folder, "cpu")
    maps, words, caption = caption_attention(model, processor, tokenizer, Image.open(scene).convert("RGB"))
    grid = model.config.grid_size
    assert maps.shape == (len(words), grid, grid)
    assert maps.sum(axis=(1, 2)) == pytest.approx([1.0] * len(words), abs=1e-4)  # a distribution per word
    # plot_attention_over_image: one panel for the image + one per word, 5 columns, 2.2 x 2.4 in per panel, 100 dpi
    panels = 1 + len(words)
    columns = min(5, panels)
    rows = -(-panels // columns)
    assert Image.open(out_png).size == (220 * columns, 240 * rows)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == caption and printed[1] == str(out_png)

    assert cli_main(["caption", "--model", folder, str(scene), str(scene), "--batch_size", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{scene}\t{caption}"] * 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model_type", "captioning", "--train_prefix", "x", "--validation_prefix", "y", "--source_lang", "de",
          "--target_lang", "en"], "--model_type captioning needs image data.*--train_prefix"),
        (["--model_type", "captioning", "--task", "numbers"], "needs image data.*--task=numbers"),
        (["--model_type", "transformer", "--task", "shapes"], "--task shapes is image data.*--model_type captioning"),
        (["--model_type", "captioning", "--image_folder", "/nonexistent/images", "--captions_file", "c.txt"],
         "--image_folder '/nonexistent/images': folder not found"),
        (["--model_type", "captioning", "--image_folder", "."], "--image_folder needs --captions_file"),
        (["--model_type", "captioning", "--task", "shapes", "--batch_size", "0"], "--batch_size=0 is invalid"),
        (["--model_type", "transformer", "--task", "numbers", "--metric_for_best_model", "exact_match"],
         "captioning only"),
        (["--model_type", "captioning", "--task", "shapes", "--model_config", '{"hiden_size": 3}'],
         "not options of ImageCaptioningConfig"),
        (["--model_type", "captioning", "--task", "shapes", "--scheduled_sampling", "0.2"], "rnn"),
    ],
)  # fmt: skip
def test_bad_captioning_options_fail_clearly(extra, message, capsys):
    with pytest.raises(ValueError, match=message):
        parse_args(extra)
    assert train_main([*extra, "--output_dir", "/nonexistent/never-written"]) == 2
    assert "hf-seq2seq train: error:" in capsys.readouterr().err


@pytest.mark.slow
def test_missing_captions_image_and_bad_plot_inputs(run, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    captions = tmp_path / "captions.txt"
    captions.write_text("missing.jpg#0\ta caption\n", encoding="utf-8")
    rc = train_main(
        ["--model_type", "captioning", "--image_folder", str(images), "--captions_file", str(captions),
         "--output_dir", str(tmp_path / "out"), "--log_with", "none"]
    )  # fmt: skip
    assert rc == 1
    assert "image 'missing.jpg' not found" in capsys.readouterr().err
    folder = str(run / "final_model")
    assert cli_main(["plot-attention", "--model", folder, "--image", str(tmp_path / "nope.png")]) == 1
    err = capsys.readouterr().err  # the CLI checks the path before it imports torch
    assert "--image" in err and "nope.png does not exist" in err
    assert cli_main(["plot-attention", "--model", folder, "--text", "a sentence"]) == 1
    assert "image-captioning model: give --image" in capsys.readouterr().err
    (tmp_path / "y.png").write_bytes(b"")  # exists, so the CLI's path check lets argparse see both options
    with pytest.raises(SystemExit):  # --text and --image exclude each other
        cli_main(["plot-attention", "--model", folder, "--text", "x", "--image", str(tmp_path / "y.png")])


# ------------------------------------------------------------------------------------------------ 2 processes
# Same global batch, different layout: 1 process x 2 accumulation steps == 2 processes x 1 (docs/training.md, "What a
# step is"). Both layouts see the same micro-batches (the same shuffled list on every rank, micro-batch m*world + r),
# so the only difference is the order of float32 sums (gloo all-reduce vs sequential accumulation), amplified a
# little by Adam over the steps: the same tolerance as the text test (tests/training/test_training.py).
DDP_STEPS = 10
DDP_VALIDATION = 13  # 4 validation batches of 4 (the last one short): 2 per rank
DDP_LOSS_RTOL = 1e-4


def _ddp_args(output_dir: Path) -> list[str]:
    args = _args(output_dir, "--seed", "3")
    for option, value in (
        ("--task_num_train", "200"),
        ("--task_num_validation", str(DDP_VALIDATION)),
        ("--batch_size", "8"),
        ("--validation_batch_size", "4"),
        ("--max_steps", str(DDP_STEPS)),
        ("--eval_steps", str(DDP_STEPS)),
    ):
        args[args.index(option) + 1] = value
    return args


@pytest.mark.slow
def test_two_processes_match_one_process_and_score_each_image_once(tmp_path):
    # doubly_stochastic_weight stays at its default 1.0: the attention penalty is weighted like the cross-entropy
    one, two = tmp_path / "one", tmp_path / "two"
    _train_one_process([*_ddp_args(one), "--gradient_accumulation_steps", "2"])
    _train_two_processes(_ddp_args(two))
    assert (two / "checkpoints" / f"step-{DDP_STEPS}" / "random_states_1.pkl").is_file()  # 2 ranks really ran
    one_steps, one_evals = _history(one)
    two_steps, two_evals = _history(two)
    assert [h["step"] for h in two_steps] == [h["step"] for h in one_steps] == list(range(1, DDP_STEPS + 1))
    assert [h["tokens"] for h in two_steps] == [h["tokens"] for h in one_steps]  # the same global batches
    for a, b in zip(one_steps, two_steps):
        assert b["loss"] == pytest.approx(a["loss"], rel=DDP_LOSS_RTOL), f"step {a['step']}"
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-9)
    assert two_steps[-1]["loss"] < two_steps[0]["loss"]  # it trains

    # Validation under 2 processes: every image scored exactly once, against its reference (duplicates or losses
    # would change the image and reference counts and BLEU's reference length).
    (one_eval,) = one_evals
    (two_eval,) = two_evals
    for e in (one_eval, two_eval):
        assert e["eval_num_images"] == e["eval_num_sentences"] == e["eval_num_references"] == DDP_VALIDATION
    assert two_eval["eval_ref_len"] == one_eval["eval_ref_len"]
    assert two_eval["eval_loss"] == pytest.approx(one_eval["eval_loss"], rel=DDP_LOSS_RTOL)
    a = load_file(one / "final_model" / "model.safetensors")
    b = load_file(two / "final_model" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-4)

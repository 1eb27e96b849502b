"""The training script end to end on a Multi30k slice: 1 vs 2 processes, resume, exact-once validation, options.

Every run is a real subprocess (``python scripts/train.py`` or ``accelerate launch --multi_gpu --num_processes 2``
with ``ACCELERATE_USE_CPU=1``): tiny Transformer, dropout 0, a handful of steps.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_seq2seq.commands.train import train_main
from hf_seq2seq.training import (
    COMPLETE_MARKER,
    TrainArguments,
    list_checkpoints,
    parse_args,
    prepare_output_dir,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train.py"
MAX_STEPS = 6
NUM_VALIDATION = 40
# Same global batch, different layout: 1 process x 2 accumulation steps == 2 processes x 1. Sums are reduced in a
# different order (gloo all-reduce vs sequential accumulation), so losses agree to float32 rounding, amplified a
# little by Adam over a few steps.
LOSS_RTOL = 1e-4


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _common_args(data_dir: Path, output_dir: Path) -> list[str]:
    model_config = {
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "num_attention_heads": 2,
        "ffn_dim": 64,
        "dropout": 0.0,
        "label_smoothing": 0.1,
    }
    return [
        "--train_prefix", str(data_dir / "train"),
        "--validation_prefix", str(data_dir / "val"),
        "--source_lang", "de",
        "--target_lang", "en",
        "--max_train_examples", "2000",
        "--max_validation_examples", str(NUM_VALIDATION),
        "--vocab_size", "500",
        "--max_tokens", "400",
        "--max_source_length", "64",
        "--max_target_length", "64",
        "--validation_batch_size", "16",
        "--model_type", "transformer",
        "--model_config", json.dumps(model_config),
        "--learning_rate", "3e-3",
        "--warmup_steps", "2",
        "--max_steps", str(MAX_STEPS),
        "--eval_steps", "100",
        "--num_beams", "2",
        "--max_new_tokens", "12",
        "--seed", "7",
        "--log_with", "none",
        "--disable_progress_bar",
        "--output_dir", str(output_dir),
    ]  # fmt: skip


def _run(cmd: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def _train_one_process(args: list[str]) -> subprocess.CompletedProcess:
    return _run([sys.executable, str(SCRIPT), *args])


def _train_two_processes(args: list[str]) -> subprocess.CompletedProcess:
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    env_cmd = [*cmd, str(SCRIPT), *args]
    os.environ["ACCELERATE_USE_CPU"] = "1"
    try:
        return _run(env_cmd)
    finally:
        del os.environ["ACCELERATE_USE_CPU"]


def assert_resumed_run_equals(resumed: Path, full: Path) -> None:
    """A run resumed from a checkpoint logged every step and ends equal to the uninterrupted run, up to float
    rounding: the same per-step losses and the same saved weights."""
    full_steps, _ = _history(full)
    resumed_steps, _ = _history(resumed)
    assert [h["step"] for h in resumed_steps] == list(range(1, MAX_STEPS + 1))
    for a, b in zip(full_steps, resumed_steps):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6, abs=1e-7), f"step {a['step']}"
    a, b = _weights(full), _weights(resumed)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-6, atol=1e-7)


def _history(output_dir: Path) -> tuple[list[dict], list[dict]]:
    history = json.loads((output_dir / "training_history.json").read_text())
    return [h for h in history if "loss" in h], [h for h in history if "eval_loss" in h]


def _weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(output_dir / "final_model" / "model.safetensors"))


@pytest.fixture(scope="module")
def single_process_run(multi30k_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    _train_one_process([*_common_args(multi30k_dir, out), "--gradient_accumulation_steps", "2"])
    return out


@pytest.mark.slow
def test_two_processes_match_one_process_and_score_each_sentence_once(
    multi30k_dir, tmp_path, single_process_run
):
    out = tmp_path / "two"
    _train_two_processes(_common_args(multi30k_dir, out))
    one_steps, one_evals = _history(single_process_run)
    two_steps, two_evals = _history(out)
    assert [h["step"] for h in two_steps] == list(range(1, MAX_STEPS + 1))
    assert [h["tokens"] for h in two_steps] == [h["tokens"] for h in one_steps]  # the same global batches
    for a, b in zip(one_steps, two_steps):
        assert b["loss"] == pytest.approx(a["loss"], rel=LOSS_RTOL), f"step {a['step']}"
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-9)
    assert two_steps[-1]["loss"] < two_steps[0]["loss"]  # it trains

    # Validation under 2 processes: every sentence scored exactly once (duplicates would raise ref_len).
    (one_eval,) = one_evals
    (two_eval,) = two_evals
    assert two_eval["eval_num_sentences"] == one_eval["eval_num_sentences"] == NUM_VALIDATION
    assert two_eval["eval_ref_len"] == one_eval["eval_ref_len"]
    assert two_eval["eval_loss"] == pytest.approx(one_eval["eval_loss"], rel=LOSS_RTOL)
    assert "nrefs:1" in two_eval["eval_bleu_signature"]
    a, b = _weights(single_process_run), _weights(out)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_resume_equals_uninterrupted_and_skips_incomplete_checkpoint(
    multi30k_dir, tmp_path, single_process_run
):
    out = tmp_path / "resumed"
    args = [*_common_args(multi30k_dir, out), "--gradient_accumulation_steps", "2"]
    _train_one_process([*args, "--stop_after_step", "3"])
    assert [s for s, _ in list_checkpoints(out)] == [3]
    assert not (out / "final_model").exists()

    # A newer checkpoint whose write was interrupted (no marker, garbage weights) must never be resumed from.
    broken = out / "checkpoints" / "step-5"
    shutil.copytree(out / "checkpoints" / "step-3", broken)
    (broken / COMPLETE_MARKER).unlink()
    (broken / "model.safetensors").write_bytes(b"truncated")
    assert [s for s, _ in list_checkpoints(out)] == [3]

    # Without --resume the run's folder is protected.
    with pytest.raises(AssertionError, match="already holds a run"):
        _train_one_process(args)
    _train_one_process([*args, "--resume"])

    # Same process layout, same batches, RNG and optimizer state restored: equal up to float rounding.
    assert_resumed_run_equals(out, single_process_run)


# ----------------------------------------------------------------------------------------------- options


def _base(tmp_path) -> list[str]:
    return ["--task", "numbers", "--output_dir", str(tmp_path / "out")]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model_type", "cnn"], "--model_type='cnn' is invalid; valid choices: 'rnn', 'transformer'"),
        (["--lr_scheduler", "exp"], "--lr_scheduler='exp' is invalid"),
        (["--mixed_precision", "fp8"], "--mixed_precision='fp8' is invalid"),
        (["--label_smoothing", "1.5"], "--label_smoothing=1.5 is invalid"),
        (["--model_config", "{hidden: 3"], "--model_config is not valid JSON"),
        (["--max_steps", "0"], "--max_steps=0 is invalid"),
        (["--metric_for_best_model", "ter"], "--metric_for_best_model='ter' is invalid"),
        (["--scheduled_sampling", "0.2"], "--scheduled_sampling is only supported for --model_type rnn"),
        (["--task", "poetry"], "--task='poetry' is invalid"),
        (["--train_file", "x.jsonl"], "give exactly one data source"),
        (["--resume", "--overwrite_output_dir"], "contradict"),
    ],
)
def test_bad_option_values_give_clear_errors(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_args([*_base(tmp_path), *extra])


def test_train_main_reports_errors_and_exit_code(tmp_path, capsys):
    assert train_main([*_base(tmp_path), "--model_type", "cnn"]) == 2
    assert "--model_type='cnn' is invalid" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: not a number
        parse_args([*_base(tmp_path), "--max_steps", "many"])


def test_recipe_values_are_defaults_and_command_line_wins(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "task: numbers\nmodel_type: rnn\nmodel_config:\n  hidden_size: 48\n  attention: bahdanau\n"
        "max_steps: 77\nlearning_rate: 0.002\n"
    )
    data, model, train = parse_args(["--config", str(recipe), "--max_steps", "5", "--output_dir", "o"])
    assert (data.task, model.model_type, train.max_steps, train.learning_rate) == ("numbers", "rnn", 5, 0.002)
    assert model.config_overrides() == {"hidden_size": 48, "attention": "bahdanau"}
    assert train.save_steps == train.eval_steps
    recipe.write_text("task: numbers\nmax_stepz: 3\n")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['max_stepz'\]"):
        parse_args(["--config", str(recipe)])
    with pytest.raises(ValueError, match="file not found"):
        parse_args(["--config", str(tmp_path / "missing.yaml")])


def test_recipe_is_a_declared_field_not_an_option(tmp_path):
    import dataclasses

    from hf_seq2seq.training import args_to_dict

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("task: numbers\nmax_steps: 7\n")
    data, model, train = parse_args(["--config", str(recipe), "--output_dir", "o"])
    assert (train.recipe, train.recipe_text) == (str(recipe), "task: numbers\nmax_steps: 7\n")
    assert {"recipe", "recipe_text"} <= {f.name for f in dataclasses.fields(TrainArguments)}
    assert TrainArguments().recipe is None and TrainArguments().recipe_text is None  # no --config
    assert not {"recipe", "recipe_text"} & set(args_to_dict(data, model, train))  # not training options
    # nor a command-line option
    with pytest.raises(ValueError, match=r"not used by the HfArgumentParser: \['--recipe'"):
        parse_args(["--task", "numbers", "--recipe", str(recipe)])
    recipe.write_text("task: numbers\nrecipe_text: x\n")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['recipe_text'\]"):
        parse_args(["--config", str(recipe)])


def test_renamed_training_names_still_resolve_with_a_warning():
    import hf_seq2seq.training as training

    with pytest.warns(DeprecationWarning, match="make_task is renamed build_training_task"):
        assert training.make_task is training.build_training_task
    with pytest.warns(DeprecationWarning, match="TEXT_MODEL_TYPES is renamed TEXT_MODEL_TYPE_CHOICES"):
        assert training.TEXT_MODEL_TYPES == training.TEXT_MODEL_TYPE_CHOICES == ("rnn", "transformer")
    with pytest.raises(AttributeError):
        training.no_such_name  # noqa: B018


def test_shipped_recipes_parse():
    recipes = sorted((ROOT / "configs").glob("*.yaml"))
    assert len(recipes) >= 5
    for recipe in recipes:
        parse_args(["--config", str(recipe)])


def test_output_dir_of_another_run_is_protected(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints" / "step-10").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="already holds a run .*--resume.*--overwrite_output_dir"):
        prepare_output_dir(out, TrainArguments(output_dir=str(out)), is_main=True)
    prepare_output_dir(out, TrainArguments(output_dir=str(out), overwrite_output_dir=True), is_main=True)
    assert not (out / "checkpoints").exists()
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files are removed


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    for option in ("--max_tokens", "--scheduled_sampling", "--resume", "--mixed_precision", "--config"):
        assert option in text


@pytest.mark.slow
def test_module_entry_point_names_itself():
    """``python -m hf_seq2seq.training`` says so in its usage line and its errors (not "train.py")."""
    prog = "python -m hf_seq2seq.training"
    run = [sys.executable, "-m", "hf_seq2seq.training"]
    proc = subprocess.run([*run, "--help"], env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: {prog} ")
    proc = subprocess.run(
        [*run, "--task", "numbers", "--max_steps", "0"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and f"{prog}: error: --max_steps=0 is invalid" in proc.stderr


def test_scheduled_sampling_replaces_gold_inputs_by_predictions_at_the_given_rate():
    """--scheduled_sampling: ratio 0 keeps teacher forcing, ratio 1 feeds every prediction, padding is never touched."""
    from hf_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
    from hf_seq2seq.training import scheduled_sampling_inputs

    torch.manual_seed(0)
    config = RNNSeq2SeqConfig(
        vocab_size=20, embedding_size=8, hidden_size=8, encoder_layers=1, decoder_layers=1
    )
    model = RNNSeq2SeqForConditionalGeneration(config).eval()
    labels = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, -100, -100]])
    batch = {
        "input_ids": torch.tensor([[4, 5, 6, 2], [7, 8, 2, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
        "decoder_input_ids": model.prepare_decoder_input_ids_from_labels(labels),
    }
    gold = batch["decoder_input_ids"]
    kept = scheduled_sampling_inputs(model, batch, labels, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(kept, gold)
    mixed = scheduled_sampling_inputs(model, batch, labels, 1.0, torch.Generator().manual_seed(0))
    predicted = model(**batch).logits.argmax(-1)
    real = labels[:, :-1] != -100
    assert torch.equal(mixed[:, 0], gold[:, 0])  # the start token stays
    assert torch.equal(mixed[:, 1:][real], predicted[:, :-1][real])
    assert torch.equal(mixed[:, 1:][~real], gold[:, 1:][~real])


@pytest.mark.slow
def test_max_train_minutes_stops_early_then_validates_and_saves(tmp_path):
    """--max_train_minutes ends the run long before --max_steps, and the run still ends with a saved model."""
    from hf_seq2seq.training import DataArguments, ModelArguments, run_training

    result = run_training(
        DataArguments(
            task="numbers", task_num_train=300, task_num_validation=10, task_num_test=10, vocab_size=120
        ),
        ModelArguments(model_type="rnn", model_config=json.dumps({"embedding_size": 8, "hidden_size": 8})),
        TrainArguments(
            output_dir=str(tmp_path / "out"),
            max_steps=100_000,
            eval_steps=100_000,
            max_train_minutes=1e-4,
            max_new_tokens=4,
            num_beams=2,
            log_with="none",
            disable_progress_bar=True,
        ),
    )
    assert result["status"] == "completed" and 1 <= result["step"] < 100
    assert result["final_metrics"]["num_sentences"] == 10
    assert (tmp_path / "out" / "final_model" / "model.safetensors").is_file()


def test_max_train_minutes_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="--max_train_minutes=0"):
        parse_args([*_base(tmp_path), "--max_train_minutes", "0"])


@pytest.mark.slow
def test_early_stopping_and_checkpoint_retention(tmp_path):
    """--early_stopping_patience stops after N validations without improvement; --save_total_limit keeps the last K
    checkpoints plus the best one."""
    from hf_seq2seq.training import DataArguments, ModelArguments, run_training

    out = tmp_path / "out"
    result = run_training(
        DataArguments(
            task="numbers", task_num_train=300, task_num_validation=8, task_num_test=8, vocab_size=120
        ),
        ModelArguments(model_type="rnn", model_config=json.dumps({"embedding_size": 8, "hidden_size": 8})),
        TrainArguments(
            output_dir=str(out),
            max_steps=50,
            eval_steps=1,
            save_total_limit=1,
            learning_rate=1e-9,  # nothing is learned: BLEU never rises above the first validation's
            warmup_steps=1,
            early_stopping_patience=2,
            max_new_tokens=1,
            num_beams=1,
            log_with="none",
            disable_progress_bar=True,
        ),
    )
    evals = [h for h in result["history"] if "eval_bleu" in h]
    assert result["step"] == 3 and [h["step"] for h in evals] == [1, 2, 3]  # best at 1, then 2 without gain
    assert [s for s, _ in list_checkpoints(out)] == [1, 3]  # the best (step 1) and the last one
    assert (out / "best_model" / "model.safetensors").is_file()


def test_validation_loop_returns_texts_in_item_order_and_refuses_a_duplicate():
    """The one validation loop (text and captioning): every item's text lands at its index whatever the batch order,
    the loss is the token mean over every batch, and an item scored twice is an error, not a silent duplicate."""
    from accelerate import Accelerator

    from hf_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
    from hf_seq2seq.training import ValidationBatch, validation_loop
    from hf_seq2seq.training.losses import token_loss_sum

    torch.manual_seed(0)
    model = RNNSeq2SeqForConditionalGeneration(
        RNNSeq2SeqConfig(vocab_size=16, embedding_size=8, hidden_size=8)
    )
    sources = torch.randint(3, 16, (5, 4))
    labels = torch.randint(3, 16, (5, 3))

    def make_batch(idx: list[int]) -> ValidationBatch:
        ids, lab = sources[idx], labels[idx]
        prompt = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        return ValidationBatch(forward={**prompt, "labels": lab}, labels=lab, generate=prompt)

    def decode(generated: torch.Tensor) -> list[str]:
        return [" ".join(map(str, row.tolist())) for row in generated]

    accelerator = Accelerator(cpu=True)
    args = TrainArguments(num_beams=1, max_new_tokens=2)
    loss, texts = validation_loop(accelerator, model, [[4, 1], [0, 3, 2]], 5, make_batch, decode, args)
    assert model.training  # the loop restores the mode it found
    with torch.no_grad():
        model.eval()
        expected = decode(
            model.generate(**make_batch(list(range(5))).generate, num_beams=1, max_new_tokens=2)
        )
        full = (
            token_loss_sum(model(**make_batch(list(range(5))).forward).logits, labels, 0.0) / labels.numel()
        )
    assert texts == expected
    assert loss == pytest.approx(float(full), rel=1e-5)
    with pytest.raises(RuntimeError, match="lost or duplicated images: 3 results for 2 images"):
        validation_loop(accelerator, model, [[0, 1], [1]], 2, make_batch, decode, args, what="images")

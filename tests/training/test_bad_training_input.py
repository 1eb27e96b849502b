"""Bad training options and runs: recipe and command-line values, another run's output folder, another
tokenizer, precisions the machine or the launch config rule out, a task direction that does not fit.

Part of the bad-input catalogue (issues 8 and 16: one test per case, each asserting a clear message that
names the problem and the file / line / option, nothing overwritten); docs/reliability.md lists the cases."""

from __future__ import annotations

import json

import pytest
import torch
from _bad_input import _copy
from hub_server import tiny_model

from hf_seq2seq.cli import main as cli_main
from hf_seq2seq.commands.train import train_main
from hf_seq2seq.hub import save_model_folder
from hf_seq2seq.training import (
    ModelArguments,
    TrainArguments,
    build_model,
    build_tokenizer,
    parse_args,
    prepare_output_dir,
    set_generation_defaults,
)


@pytest.mark.parametrize(
    "recipe, message",
    [
        ("learning_rate: -1\n", "--learning_rate=-1 is invalid; valid values: a number > 0"),
        ("max_steps: 2.5\n", "max_steps: 2.5 is not valid; it must be an integer"),
        ("max_steps: many\n", "max_steps: 'many' is not valid; it must be an integer"),
        (
            "disable_progress_bar: maybe\n",
            "disable_progress_bar: 'maybe' is not valid; it must be true/false",
        ),
        ("lr_scheduler: [linear]\n", "lr_scheduler: ['linear'] is not valid; it must be a string"),
        (
            "model_type: rnn\nmodel_config:\n  hidden_size: -3\n",
            "--model_config: RNNSeq2SeqConfig: `hidden_size` must be an integer >= 1, got -3",
        ),
        (
            "model_type: rnn\nmodel_config:\n  attention: luong\n",
            "--model_config: RNNSeq2SeqConfig: `attention`",
        ),
        (
            "model_config:\n  d_modle: 8\n",
            r"--model_config: ['d_modle'] are not options of TransformerSeq2SeqConfig",
        ),
        ("max_stepz: 3\n", "unknown option(s) ['max_stepz']"),
    ],
)
def test_recipe_value_out_of_range_or_wrong_type(tmp_path, recipe, message):
    path = tmp_path / "recipe.yaml"
    path.write_text("task: numbers\n" + recipe)
    with pytest.raises(ValueError) as info:
        parse_args(["--config", str(path)])
    assert message in str(info.value)  # names the option (and the recipe file for type errors)
    if "is not valid; it must be" in message:
        assert "recipe.yaml" in str(info.value)
    # the recipe's own YAML float syntax (5e-4 is a string to YAML) still works
    path.write_text("task: numbers\nlearning_rate: 5e-4\nresume: yes\n")
    _, _, train = parse_args(["--config", str(path)])
    assert (train.learning_rate, train.resume) == (5e-4, True)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--learning_rate", "0"], "--learning_rate=0.0 is invalid; valid values: a number > 0"),
        (["--label_smoothing", "1.5"], "--label_smoothing=1.5 is invalid; it must be in [0, 1)"),
        (["--nan_policy", "ignore"], "--nan_policy='ignore' is invalid; valid choices: 'stop', 'skip'"),
        (
            ["--model_type", "rnn", "--model_config", '{"cell": "rnn"}'],
            "--model_config: RNNSeq2SeqConfig: `cell`",
        ),
        (["--model_config", '{"num_attention_heads": 3, "d_model": 32}'], "--model_config: "),
        (["--max_tokens", "10", "--max_source_length", "64"], "--max_tokens=10 is smaller than one maximal"),
    ],
)
def test_command_line_value_out_of_range(tmp_path, capsys, argv, message):
    assert train_main(["--task", "numbers", "--output_dir", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-seq2seq train: error: ") and message in err


def test_command_line_value_of_the_wrong_type(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        train_main(["--task", "numbers", "--max_steps", "many"])
    assert info.value.code == 2
    assert "argument --max_steps/--max-steps: invalid int value: 'many'" in capsys.readouterr().err


def test_num_beams_1_gives_a_savable_generation_config(tmp_path, tokenizer):
    """Found by this catalogue: --num_beams 1 set early_stopping=True and saving the model then failed."""
    model = tiny_model("rnn", len(tokenizer))
    set_generation_defaults(model, TrainArguments(num_beams=1, output_dir=str(tmp_path)))
    save_model_folder(model, tokenizer, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "generation_config.json").read_text())["num_beams"] == 1


def test_continue_training_from_a_folder_with_another_tokenizer(tmp_path, folder, other_tokenizer):
    mixed = _copy(folder, tmp_path)
    other_tokenizer.save_pretrained(mixed)
    model_args = ModelArguments(model_name_or_path=str(mixed))
    tok = build_tokenizer(None, "de", "en", None, model_args)  # the folder's (replaced) tokenizer
    with pytest.raises(ValueError, match=rf"the tokenizer in {mixed} has {len(other_tokenizer)} tokens but the "
                       r"model's vocab_size is \d+: they do not belong together"):  # fmt: skip
        build_model(model_args, tok)


def test_output_dir_of_another_run_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints" / "step-10").mkdir(parents=True)
    (out / "checkpoints" / "step-10" / "COMPLETE").write_text("{}")
    with pytest.raises(ValueError, match=r"already holds a run \(checkpoints\); pass --resume .* or "
                       r"--overwrite_output_dir"):  # fmt: skip
        prepare_output_dir(out, TrainArguments(output_dir=str(out)), is_main=True)
    assert (out / "checkpoints" / "step-10" / "COMPLETE").is_file()  # nothing lost


def test_fp16_on_cpu_is_refused(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    argv = ["--task", "numbers", "--mixed_precision", "fp16", "--output_dir", str(tmp_path / "o")]
    assert train_main(argv) == 1
    err = capsys.readouterr().err
    assert "mixed precision fp16 (from --mixed_precision) needs a GPU" in err and "bf16" in err
    assert not (tmp_path / "o" / "run_config.json").exists()


@pytest.mark.slow
def test_launch_config_precision_wins_unless_given_and_the_run_records_it(tmp_path):
    """`accelerate launch --config_file` hands the config's mixed_precision over as ACCELERATE_MIXED_PRECISION;
    one real run of scripts/train.py with it (bf16: CPU autocast), English -> German numbers, tied embeddings."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "run"
    argv = ["--task", "numbers", "--source_lang", "en", "--target_lang", "de", "--model_type", "transformer",
            "--model_config", '{"d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "num_attention_heads": 2, '
            '"ffn_dim": 32}', "--task_num_train", "100", "--task_num_validation", "4", "--task_num_test", "4",
            "--vocab_size", "100", "--max_steps", "2", "--eval_steps", "1", "--warmup_steps", "1", "--num_beams", "1",
            "--max_new_tokens", "4", "--max_tokens", "256", "--log_with", "none", "--disable_progress_bar",
            "--output_dir", str(out)]  # fmt: skip
    env = dict(os.environ, ACCELERATE_MIXED_PRECISION="bf16", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(root / "scripts" / "train.py"), *argv], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "mixed precision: bf16 (from the Accelerate launch config" in log
    config = json.loads((out / "run_config.json").read_text())
    assert (config["mixed_precision"], config["source_lang"], config["target_lang"]) == ("bf16", "en", "de")
    card = (out / "final_model" / "README.md").read_text(encoding="utf-8")
    assert "(en → de)" in card and "bf16" in card
    # quiet: no per-checkpoint Accelerate INFO lines, no "Removed shared tensor", no bars; where the model went
    assert "Saving current state" not in log and "Removed shared tensor" not in log and "it/s]" not in log
    assert "examples/s]" not in log and "indexing errors" not in log
    assert f"the final model is saved in {out / 'final_model'}" in log
    # the command line wins over the launch config
    code = ("import sys; from hf_seq2seq.training import TrainArguments; from hf_seq2seq.training.setup import "
            "_accelerator; from pathlib import Path; a = TrainArguments(mixed_precision='no', output_dir=sys.argv[1]); "
            "acc = _accelerator(a, Path(sys.argv[1]), None); print(acc.mixed_precision, a.mixed_precision)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x")], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.stdout.split() == ["no", "no"], proc.stderr


def test_task_direction_reverse_or_refused(capsys, tmp_path):
    from hf_seq2seq.training import DataArguments
    from hf_seq2seq.training.task import load_raw_datasets

    args = DataArguments(task="numbers", source_lang="en", target_lang="de", task_num_train=5,
                         task_num_validation=2, task_num_test=2)  # fmt: skip
    raw, src, tgt = load_raw_datasets(args, seed=0)
    assert (src, tgt) == ("en", "de") and set(raw["train"][0]["translation"]) == {"de", "en"}
    assert (DataArguments(task="numbers").source_lang, DataArguments(task="numbers").target_lang) == (
        "de",
        "en",
    )
    assert train_main(["--task", "numbers", "--source_lang", "fr", "--output_dir", str(tmp_path / "o")]) == 2
    assert "--source_lang='fr' --target_lang=None do not fit --task numbers" in capsys.readouterr().err


def test_hf_seq2seq_train_names_itself(capsys):
    assert cli_main(["train", "--task", "numbers", "--max_steps", "-1"]) == 2
    assert capsys.readouterr().err.startswith("hf-seq2seq train: error: --max_steps=-1 is invalid")

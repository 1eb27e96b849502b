"""The bad-input catalogue (issue 8): one test per case, each asserting a clear message that names the problem and
the file / line / option. docs/reliability.md lists the cases and their outcomes.

Some cases are also tested next to the code they exercise (tests/test_data.py, test_training.py,
test_commands.py, test_pipeline.py); here every case is in one place, run through the public entry points.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil

import pytest
import torch
from hub_server import tiny_model, tiny_tokenizer
from transformers import pipeline

from hf_seq2seq import train_tokenizer
from hf_seq2seq.cli import main as cli_main
from hf_seq2seq.data import DataError, load_parallel_data, tokenize_parallel
from hf_seq2seq.hub import save_model_folder
from hf_seq2seq.inference import translate_lines
from hf_seq2seq.training import (
    ModelArguments,
    TrainArguments,
    build_model,
    build_tokenizer,
    parse_args,
    prepare_output_dir,
    set_generation_defaults,
    train_main,
)


def _pair(tmp_path, de: bytes, en: bytes, name: str = "train"):
    (tmp_path / f"{name}.de").write_bytes(de)
    (tmp_path / f"{name}.en").write_bytes(en)
    return tmp_path / name


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tokenizer):
    """A saved tiny Transformer (max_position_embeddings=32) and its tokenizer."""
    return save_model_folder(
        tiny_model("transformer", len(tokenizer)), tokenizer, tmp_path_factory.mktemp("bad") / "model"
    )


def _translate(folder, tmp_path, lines, *extra) -> int:
    src = tmp_path / "in.txt"
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return cli_main(["translate", "--model", str(folder), "--input", str(src), "--output", str(tmp_path / "out.txt"),
                     "--device", "cpu", *extra])  # fmt: skip


def _copy(folder, tmp_path, name="copy"):
    return shutil.copytree(folder, tmp_path / name)


# ------------------------------------------------------------------------------------------------ corpus files


def test_corpus_file_missing(tmp_path):
    _pair(tmp_path, b"a\n", b"b\n")
    (tmp_path / "train.en").unlink()
    with pytest.raises(
        DataError, match=r"file not found: .*train\.en \(nor train\.en\.gz\) for language 'en'"
    ):
        load_parallel_data("de", "en", train_prefix=tmp_path / "train")
    with pytest.raises(DataError, match=r"file not found: .*nope\.jsonl"):
        load_parallel_data("de", "en", train_file=tmp_path / "nope.jsonl")


def test_corpus_file_empty(tmp_path):
    prefix = _pair(tmp_path, b"", b"")
    with pytest.raises(DataError, match=r"train\.de is empty"):
        load_parallel_data("de", "en", train_prefix=prefix)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match=r"empty\.jsonl has no examples"):
        load_parallel_data("de", "en", train_file=tmp_path / "empty.jsonl")


def test_corpus_line_counts_differ(tmp_path):
    prefix = _pair(tmp_path, b"a\nb\nc\n", b"x\ny\n")
    with pytest.raises(
        DataError, match=r"line counts differ: .*train\.de has 3 lines, .*train\.en has 2 lines"
    ):
        load_parallel_data("de", "en", train_prefix=prefix)


def test_corpus_not_utf8(tmp_path):
    prefix = _pair(tmp_path, "a\nKöln\n".encode("latin-1"), b"x\ny\n")
    with pytest.raises(DataError, match=r"train\.de, line 2: text is not valid UTF-8"):
        load_parallel_data("de", "en", train_prefix=prefix)


def test_corpus_nul_bytes(tmp_path):
    with gzip.open(tmp_path / "train.en.gz", "wb") as f:
        f.write(b"x\ny\nz\n")
    (tmp_path / "train.de").write_bytes(b"a\nb\x00c\nd\n")
    with pytest.raises(DataError, match=r"train\.de, line 2: contains a NUL byte .*not UTF-8 text"):
        load_parallel_data("de", "en", train_prefix=tmp_path / "train")
    # a UTF-16 file (NUL in every other byte) is caught the same way, also when training a tokenizer
    (tmp_path / "utf16.txt").write_bytes("Hallo Welt\n".encode("utf-16-le"))
    with pytest.raises(ValueError, match=r"utf16\.txt, line 1: contains a NUL byte"):
        train_tokenizer(tmp_path / "utf16.txt", vocab_size=50)


def test_corpus_one_100k_character_line_is_dropped_with_a_count(tmp_path, tokenizer, caplog):
    long_line = ("neun tausend " * 10_000)[:100_000]
    prefix = _pair(tmp_path, f"drei\n{long_line}\nvier\n".encode(), b"three\nx\nfour\n")
    data = load_parallel_data("de", "en", train_prefix=prefix)
    with caplog.at_level(logging.INFO, logger="hf_seq2seq.data"):
        out, stats = tokenize_parallel(data, tokenizer, "de", "en", 64, 64, return_stats=True)
    assert stats["train"] == {"kept": 2, "empty": 0, "too_long": 1}
    assert len(out["train"]) == 2
    assert "dropped 0 empty and 1 over-long (max_source_length=64" in caplog.text


def test_jsonl_malformed_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"translation": {"de": "a", "en": "b"}}) + "\n" + '{"translation": {"de": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2: not valid JSON"):
        load_parallel_data("de", "en", train_file=path)


def test_dataset_without_the_requested_language(tmp_path):
    from datasets import Dataset

    Dataset.from_list([{"translation": {"de": "a", "en": "b"}}]).save_to_disk(tmp_path / "ds")
    with pytest.raises(
        DataError, match=r"split 'train' has no language 'fr'; available languages: \['de', 'en'\]"
    ):
        load_parallel_data("de", "fr", dataset_name=str(tmp_path / "ds"))
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"translation": {"de": "a", "en": "b"}}) + "\n")
    with pytest.raises(DataError, match=r"t\.jsonl, line 1: has no language 'fr'; available: \['de', 'en'\]"):
        load_parallel_data("fr", "en", train_file=path)


# ------------------------------------------------------------------------------------------------ options


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
    assert err.startswith("train.py: error: ") and message in err


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


# ------------------------------------------------------------------------------------------------ tokenizer ≠ model


@pytest.fixture(scope="module")
def other_tokenizer():
    return train_tokenizer(["ganz andere Wörter xyz qj"] * 5, vocab_size=60, min_frequency=1)


def test_continue_training_from_a_folder_with_another_tokenizer(tmp_path, folder, other_tokenizer):
    mixed = _copy(folder, tmp_path)
    other_tokenizer.save_pretrained(mixed)
    model_args = ModelArguments(model_name_or_path=str(mixed))
    tok = build_tokenizer(None, "de", "en", None, model_args)  # the folder's (replaced) tokenizer
    with pytest.raises(ValueError, match=rf"the tokenizer in {mixed} has {len(other_tokenizer)} tokens but the "
                       r"model's vocab_size is \d+: they do not belong together"):  # fmt: skip
        build_model(model_args, tok)


def test_translate_with_a_folder_whose_tokenizer_does_not_match(tmp_path, folder, other_tokenizer, capsys):
    mixed = _copy(folder, tmp_path)
    other_tokenizer.save_pretrained(mixed)
    assert _translate(mixed, tmp_path, ["drei"]) == 1
    err = capsys.readouterr().err
    assert (
        f"error: the tokenizer in {mixed} has {len(other_tokenizer)} tokens" in err
        and "IndexError" not in err
    )


# ------------------------------------------------------------------------------------------------ generation


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_generate_pipeline_translate_with_an_empty_string(tokenizer, family):
    model = tiny_model(family, len(tokenizer))
    enc = tokenizer([""], return_tensors="pt")
    assert enc["input_ids"].tolist() == [[tokenizer.eos_token_id]]  # "" encodes as </s>: a valid input
    out = model.generate(**enc, max_new_tokens=3)
    assert out.shape[0] == 1
    result = pipeline("text2text", model=model, tokenizer=tokenizer)("")
    assert isinstance(result[0]["generated_text"], str)
    assert translate_lines(model, tokenizer, ["", "  "]) == [[""], [""]]  # not even sent to the model


def test_input_longer_than_max_positions(tokenizer, folder, tmp_path, capsys):
    model = tiny_model("transformer", len(tokenizer))  # max_position_embeddings=32
    long_text = " ".join(["neun tausend"] * 40)
    enc = tokenizer([long_text], return_tensors="pt")
    assert enc["input_ids"].shape[1] > 32
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=32; truncate the input"):
        model.generate(**enc)  # generate() itself: a clear error, not an index error in the embedding
    pipe = pipeline("text2text", model=model, tokenizer=tokenizer)
    with pytest.warns(UserWarning, match="truncated to 32"):
        pipe(long_text)
    with pytest.raises(ValueError, match="more than the 32 the model accepts"):
        pipe(long_text, truncation=False)
    assert _translate(folder, tmp_path, ["drei", long_text]) == 0
    assert "warning: 1 line(s) longer than 32 tokens truncated (lines [2])" in capsys.readouterr().err
    assert len((tmp_path / "out.txt").read_text().split("\n")) == 3


def test_num_return_sequences_greater_than_num_beams(tokenizer, folder, tmp_path):
    model = tiny_model("rnn", len(tokenizer))
    enc = tokenizer(["drei"], return_tensors="pt")
    message = r"`num_return_sequences` \(3\) has to be smaller or equal to `num_beams` \(2\)"
    with pytest.raises(ValueError, match=message):
        model.generate(**enc, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match=message):
        pipeline("text2text", model=model, tokenizer=tokenizer)("drei", num_beams=2, num_return_sequences=3)
    # translate --n_best K widens the beam to K (documented): K lines per input
    assert _translate(folder, tmp_path, ["drei", "vier"], "--n_best", "3", "--num_beams", "2") == 0
    assert len((tmp_path / "out.txt").read_text().split("\n")[:-1]) == 6


# ------------------------------------------------------------------------------------------------ model folders


def test_model_folder_missing_safetensors(tmp_path, folder, capsys):
    broken = _copy(folder, tmp_path)
    (broken / "model.safetensors").unlink()
    assert _translate(broken, tmp_path, ["drei"]) == 1
    assert f"no file named model.safetensors found in directory {broken}" in capsys.readouterr().err


def test_model_folder_with_pickled_weights_only_is_refused(tmp_path, folder, capsys):
    from safetensors.torch import load_file

    broken = _copy(folder, tmp_path)
    torch.save(load_file(str(broken / "model.safetensors")), broken / "pytorch_model.bin")
    (broken / "model.safetensors").unlink()
    assert _translate(broken, tmp_path, ["drei"]) == 1  # never unpickled
    assert "no file named model.safetensors" in capsys.readouterr().err


def test_model_folder_truncated_safetensors(tmp_path, folder, capsys):
    broken = _copy(folder, tmp_path)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert _translate(broken, tmp_path, ["drei"]) == 1
    err = capsys.readouterr().err
    assert f"error: cannot load the weights in {broken}: SafetensorError" in err
    assert "truncated or corrupt" in err and "Traceback" not in err


@pytest.mark.parametrize("keep_auto_map", [False, True])
def test_config_with_an_unknown_model_type(tmp_path, folder, capsys, keep_auto_map):
    broken = _copy(folder, tmp_path)
    config = json.loads((broken / "config.json").read_text())
    config["model_type"] = "mystery_seq2seq"
    if not keep_auto_map:
        config.pop("auto_map")
    (broken / "config.json").write_text(json.dumps(config))
    assert _translate(broken, tmp_path, ["drei"]) == 1
    err = capsys.readouterr().err
    assert f"{broken / 'config.json'} has model_type 'mystery_seq2seq', which is neither one of ours" in err
    assert "--trust_remote_code" in err


def test_config_json_not_json(tmp_path, folder, capsys):
    broken = _copy(folder, tmp_path)
    (broken / "config.json").write_text('{"model_type": "rnn_seq2seq", ')
    assert _translate(broken, tmp_path, ["drei"]) == 1
    assert f"{broken / 'config.json'} is not a valid JSON object" in capsys.readouterr().err


def test_translation_input_with_empty_lines_keeps_them(tmp_path, folder):
    lines = ["drei", "", "vier und zwanzig", "   ", "", "neun"]
    assert _translate(folder, tmp_path, lines) == 0
    out = (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(out) == len(lines)
    assert [i for i, line in enumerate(out) if not line] == [1, 3, 4]  # line N of output is line N of input


def test_output_dir_of_another_run_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints" / "step-10").mkdir(parents=True)
    (out / "checkpoints" / "step-10" / "COMPLETE").write_text("{}")
    with pytest.raises(ValueError, match=r"already holds a run \(checkpoints\); pass --resume .* or "
                       r"--overwrite_output_dir"):  # fmt: skip
        prepare_output_dir(out, TrainArguments(output_dir=str(out)), is_main=True)
    assert (out / "checkpoints" / "step-10" / "COMPLETE").is_file()  # nothing lost


# ------------------------------------------------------------------------------------------------ issue 16: every
# entry point as a new user meets it (one line, no traceback, nothing silently wrong, nothing overwritten)


def _stdin(monkeypatch, data: bytes) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_non_utf8_stdin_and_input_file_name_the_line(folder, tmp_path, monkeypatch, capsys):
    _stdin(monkeypatch, b"drei und zwanzig\nf\xfcnf\n")
    assert cli_main(["translate", "--model", str(folder), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "<stdin>, line 2: text is not valid UTF-8" in err and "Traceback" not in err
    src = tmp_path / "latin1.txt"
    src.write_bytes("drei\nfünf\n".encode("latin-1"))
    assert cli_main(["translate", "--model", str(folder), "--input", str(src), "--device", "cpu"]) == 1
    assert f"{src}, line 2: text is not valid UTF-8" in capsys.readouterr().err


def test_byte_order_mark_is_dropped_by_every_reader(folder, tmp_path, monkeypatch, capsys):
    lines = ["drei und zwanzig", "vier"]
    plain = "".join(line + "\n" for line in lines).encode()
    assert _translate(folder, tmp_path, lines) == 0
    expected = (tmp_path / "out.txt").read_text(encoding="utf-8")
    (tmp_path / "in.txt").write_bytes(b"\xef\xbb\xbf" + plain)
    out = tmp_path / "bom_out.txt"
    assert cli_main(["translate", "--model", str(folder), "--input", str(tmp_path / "in.txt"), "--output",
                     str(out), "--device", "cpu"]) == 0  # fmt: skip
    assert out.read_text(encoding="utf-8") == expected
    _stdin(monkeypatch, b"\xef\xbb\xbf" + plain)
    assert cli_main(["translate", "--model", str(folder), "--device", "cpu"]) == 0
    assert capsys.readouterr().out == expected
    # training files (prefix pair and JSONL)
    prefix = _pair(tmp_path, b"\xef\xbb\xbfdrei\nvier\n", b"\xef\xbb\xbfthree\nfour\n")
    assert load_parallel_data("de", "en", train_prefix=prefix)["train"][0]["translation"] == {
        "de": "drei",
        "en": "three",
    }
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"translation": {"de": "drei", "en": "three"}}).encode() + b"\n"
    )
    assert (
        load_parallel_data("de", "en", train_file=jsonl, validation_file=jsonl)["train"][0]["translation"][
            "de"
        ]
        == "drei"
    )


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

    root = Path(__file__).resolve().parents[1]
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


def test_devices_this_machine_lacks(folder, tmp_path, capsys):
    cases = [("gpu", "--device 'gpu' is not a device; valid: auto, cpu, cuda, cuda:N, mps")]
    if not torch.cuda.is_available():
        cases.append(("cuda", "--device 'cuda': this machine has 0 CUDA device(s); use --device cpu"))
    if not torch.backends.mps.is_available():
        cases.append(("mps", "--device 'mps': MPS (Apple GPU) is not available here"))
    for device, message in cases:
        assert _translate(folder, tmp_path, ["drei"], "--device", device) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


@pytest.mark.parametrize("option, value", [("--num_beams", "-3"), ("--num_beams", "0"), ("--max_new_tokens", "0"),
                                           ("--batch_size", "0"), ("--n_best", "0")])  # fmt: skip
def test_generation_options_below_one_are_refused(folder, tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as info:
        _translate(folder, tmp_path, ["drei"], option, value)
    assert info.value.code == 2
    assert f"argument {option}: must be >= 1, got {value}" in capsys.readouterr().err


def test_push_without_network_is_one_line(folder, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: connection refused
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite runs offline; a user's push is not
    assert cli_main(["push", "--model", str(folder), "--repo_id", "user/x", "--token", "x"]) == 1
    err = capsys.readouterr().err
    assert "error: cannot reach the Hub at http://127.0.0.1:9" in err and "Traceback" not in err


def test_model_paths_that_are_not_model_folders(folder, tmp_path, capsys):
    assert _translate(tmp_path / "no" / "such" / "folder", tmp_path, ["drei"]) == 1
    assert "folder not found" in capsys.readouterr().err
    assert _translate(folder / "config.json", tmp_path, ["drei"]) == 1
    assert (
        f"is a file, not a saved model folder; give its folder: --model {folder}" in capsys.readouterr().err
    )
    no_tok = _copy(folder, tmp_path, "no_tok")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tok / name).unlink()
    assert _translate(no_tok, tmp_path, ["drei"]) == 1
    err = capsys.readouterr().err
    assert "has no tokenizer (tokenizer.json / tokenizer_config.json missing)" in err
    assert "sentencepiece" not in err and "tiktoken" not in err
    exported = _copy(folder, tmp_path, "exported")  # what `hf-seq2seq export` leaves beside the weights
    (exported / "export.json").write_text('{"format": "onnx"}')
    assert _translate(exported, tmp_path, ["drei"]) == 1
    assert (
        "is an exported (onnx) folder, not a PyTorch model folder: translate it with --engine onnxruntime"
        in (capsys.readouterr().err)
    )


def test_evaluate_reads_a_pipe(folder, tmp_path):
    """`--source <(zcat test.de.gz)`: a named pipe is a file to read, not a missing one."""
    import os
    import threading

    from hf_seq2seq.tokenization import read_text_lines

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(b"eins\nzwei\n"))
    writer.start()
    assert read_text_lines(str(fifo)) == ["eins", "zwei"]
    writer.join()


def test_a_model_of_the_other_kind(folder, tmp_path, capsys):
    from hf_seq2seq.families import CAPTIONING_MODEL_TYPE

    captioner = _copy(folder, tmp_path, "captioner")
    config = json.loads((captioner / "config.json").read_text())
    (captioner / "config.json").write_text(json.dumps({**config, "model_type": CAPTIONING_MODEL_TYPE}))
    assert _translate(captioner, tmp_path, ["drei"]) == 1
    err = capsys.readouterr().err
    assert "is an image-captioning model: use `hf-seq2seq caption`" in err and "Config" not in err
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    assert cli_main(["caption", "--model", str(folder), str(image), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "not an image-captioning model" in err and "hf-seq2seq translate" in err and "--text" not in err


def test_plot_attention_on_an_sdpa_marian_folder(tokenizer, tmp_path, capsys):
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                          decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=0, eos_token_id=2,
                          decoder_start_token_id=0, bos_token_id=1)  # fmt: skip
    model = MarianMTModel(config)
    assert model.config._attn_implementation == "sdpa"  # Marian's default: no attention weights returned
    model.save_pretrained(tmp_path / "marian")
    tokenizer.save_pretrained(tmp_path / "marian")
    out = tmp_path / "att.png"
    argv = ["plot-attention", "--model", str(tmp_path / "marian"), "--text", "drei", "--max_new_tokens", "3",
            "--device", "cpu", "--output", str(out)]  # fmt: skip
    assert cli_main(argv) == 0, capsys.readouterr().err
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_hf_seq2seq_train_names_itself(capsys):
    assert cli_main(["train", "--task", "numbers", "--max_steps", "-1"]) == 2
    assert capsys.readouterr().err.startswith("hf-seq2seq train: error: --max_steps=-1 is invalid")


def test_output_equal_to_input_is_refused_and_kept(folder, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("drei\n", encoding="utf-8")
    assert cli_main(["translate", "--model", str(folder), "--input", str(src), "--output", str(src)]) == 1
    assert "--output" in capsys.readouterr().err and src.read_text(encoding="utf-8") == "drei\n"
    ref = tmp_path / "ref.txt"
    ref.write_text("three\n", encoding="utf-8")
    argv = ["evaluate", "--model", str(folder), "--source", str(src), "--reference", str(ref)]
    assert cli_main([*argv, "--hypotheses", str(src)]) == 1
    assert "--hypotheses" in capsys.readouterr().err and src.read_text(encoding="utf-8") == "drei\n"
    assert cli_main([*argv, "--output", str(tmp_path), "--device", "cpu"]) == 1
    assert "is a folder; give a file name" in capsys.readouterr().err
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    before = image.read_bytes()
    assert (
        cli_main(["plot-attention", "--model", str(folder), "--image", str(image), "--output", str(image)])
        == 1
    )
    assert "--image" in capsys.readouterr().err and image.read_bytes() == before


def test_outputs_are_replaced_whole_or_not_at_all(tmp_path):
    from hf_seq2seq.hub import write_atomic

    out = tmp_path / "out.txt"
    out.write_text("the old translations\n", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(out, "half written \udcff")  # fails while writing: a lone surrogate is not UTF-8
    assert out.read_text(encoding="utf-8") == "the old translations\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left behind
    write_atomic(out, "new\n")
    assert out.read_text(encoding="utf-8") == "new\n"


def test_cli_help_imports_neither_torch_nor_transformers():
    import subprocess
    import sys

    code = ("import sys\nfrom hf_seq2seq_cli import main\nassert main(['--help']) == 0 and main(['nope']) == 2\n"
            "print([m for m in ('torch', 'transformers', 'hf_seq2seq') if m in sys.modules])")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"


def test_help_texts(capsys):
    from hf_seq2seq.training import build_parser

    text = " ".join(build_parser().format_help().split())  # argparse wraps lines anywhere
    assert "longer training pairs are dropped" in text and "Truncate source" not in text
    options = text[text.index("options:") :]
    assert options.index("--config") < options.index("--task")  # listed first, not after 70 options
    with pytest.raises(SystemExit):
        cli_main(["caption", "--help"])
    assert "images per generate() call" in " ".join(capsys.readouterr().out.split())


def test_captioning_overlay_has_a_colour_bar(tmp_path):
    import numpy as np
    from PIL import Image

    from hf_seq2seq.plotting import plot_attention_over_image

    maps = np.random.default_rng(0).random((2, 4, 4))
    path = plot_attention_over_image(Image.new("RGB", (32, 32)), maps, ["a", "square"], tmp_path / "att.svg")
    assert "attention weight" in path.read_text(encoding="utf-8")  # the colour bar's label


def test_no_indexing_errors_warning_ahead_of_ours(folder, tmp_path, capfd):
    """transformers warns "… will result in indexing errors" for any over-long encoding; translate, the pipeline
    and the training filter each handle over-long inputs themselves and say so."""
    long_text = " ".join(["neun tausend"] * 40)
    assert _translate(folder, tmp_path, ["drei", long_text]) == 0
    tok = tiny_tokenizer()
    tok.model_max_length = 32
    with pytest.warns(UserWarning, match="truncated to 32"):
        pipeline("text2text", model=tiny_model("transformer", len(tok)), tokenizer=tok)(
            long_text, max_new_tokens=2
        )
    data = load_parallel_data("de", "en", train_prefix=_pair(tmp_path, f"{long_text}\n".encode(), b"x\n"))
    tokenize_parallel(data, tok, "de", "en", 16, 16)
    err = capfd.readouterr().err
    assert "line(s) longer than 32 tokens truncated" in err and "indexing errors" not in err

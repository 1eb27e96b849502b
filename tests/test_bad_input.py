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
from hf_seq2seq.commands import translate_lines
from hf_seq2seq.data import DataError, load_parallel_data, tokenize_parallel
from hf_seq2seq.hub import save_model_folder
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
        ("learning_rate: -1\n", "--learning_rate=-1 is invalid; it must be > 0"),
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
        (["--learning_rate", "0"], "--learning_rate=0.0 is invalid; it must be > 0"),
        (["--label_smoothing", "1.5"], "--label_smoothing=1.5 is invalid; it must be in [0, 1)"),
        (["--nan_policy", "ignore"], "--nan_policy='ignore' is invalid; valid choices: stop, skip"),
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

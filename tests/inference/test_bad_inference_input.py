"""Bad model folders and inputs at inference: mismatched tokenizers, empty and over-long inputs, missing,
pickled or truncated weights, unknown model types, paths that are not model folders, a model of the other kind,
devices this machine lacks.

Part of the bad-input catalogue (issues 8 and 16: one test per case, each asserting a clear message that
names the problem and the file / line / option, nothing overwritten); docs/reliability.md lists the cases."""

from __future__ import annotations

import json

import pytest
import torch
from _bad_input import _copy, _pair, _translate
from hub_server import tiny_model, tiny_tokenizer
from transformers import pipeline

from hf_seq2seq.cli import main as cli_main
from hf_seq2seq.data import load_parallel_data, tokenize_parallel
from hf_seq2seq.inference import translate_lines


def test_translate_with_a_folder_whose_tokenizer_does_not_match(tmp_path, folder, other_tokenizer, capsys):
    mixed = _copy(folder, tmp_path)
    other_tokenizer.save_pretrained(mixed)
    assert _translate(mixed, tmp_path, ["drei"]) == 1
    err = capsys.readouterr().err
    assert (
        f"error: the tokenizer in {mixed} has {len(other_tokenizer)} tokens" in err
        and "IndexError" not in err
    )


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

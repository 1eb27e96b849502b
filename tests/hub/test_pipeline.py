"""The "text2text" pipeline in process, and the saved folder's remote code in a fresh process without the
package: AutoModelForSeq2SeqLM, AutoTokenizer and pipeline(model=dir) must give the same text."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_without_package
from hub_server import tiny_model, tiny_tokenizer
from transformers import pipeline

from hf_seq2seq import Text2TextPipeline
from hf_seq2seq.hub import save_model_folder

FAMILIES = ["rnn", "transformer"]
SENTENCES = ["drei und zwanzig", "neun tausend neun hundert sieben und achtzig", "", "ein Hund läuft."]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _generate(model, tokenizer, text, **kwargs):
    enc = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, **kwargs)
    return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]


@pytest.mark.parametrize("family", FAMILIES)
def test_pipeline_outputs_batching_and_options(tokenizer, family):
    model = tiny_model(family, len(tokenizer))
    pipe = pipeline("text2text", model=model, tokenizer=tokenizer)
    assert isinstance(pipe, Text2TextPipeline)

    single = pipe(SENTENCES[0])
    assert single == [{"generated_text": _generate(model, tokenizer, SENTENCES[0])[0]}]
    one_by_one = [pipe(s)[0] for s in SENTENCES]
    batched = pipe(SENTENCES, batch_size=3)
    assert batched == one_by_one  # padding does not change the output; order kept; "" handled
    assert all(isinstance(r["generated_text"], str) for r in batched)

    # generation options pass through; num_return_sequences gives a list per input
    nbest = pipe(SENTENCES[:2], num_beams=3, num_return_sequences=3, max_new_tokens=4)
    assert [len(r) for r in nbest] == [3, 3]
    assert [r["generated_text"] for r in nbest[1]] == _generate(
        model, tokenizer, SENTENCES[1], num_beams=3, num_return_sequences=3, max_new_tokens=4
    )
    assert len(pipe(SENTENCES[0], num_beams=2, num_return_sequences=2)) == 2
    greedy = pipe(SENTENCES[1], num_beams=1, max_new_tokens=3)[0]["generated_text"]
    assert greedy == _generate(model, tokenizer, SENTENCES[1], num_beams=1, max_new_tokens=3)[0]
    torch.manual_seed(3)
    sampled = pipe(SENTENCES[1], do_sample=True, top_k=5, top_p=0.9, temperature=0.7, num_beams=1)
    torch.manual_seed(3)
    assert sampled == pipe(SENTENCES[1], do_sample=True, top_k=5, top_p=0.9, temperature=0.7, num_beams=1)
    # construction-time options are defaults for every call
    short = pipeline("text2text", model=model, tokenizer=tokenizer, max_new_tokens=2, num_beams=1)
    assert short(SENTENCES[1]) == [
        {"generated_text": _generate(model, tokenizer, SENTENCES[1], max_new_tokens=2, num_beams=1)[0]}
    ]


def test_overlong_input_is_truncated_with_a_warning(tokenizer):
    model = tiny_model("transformer", len(tokenizer))  # max_position_embeddings=32
    pipe = pipeline("text2text", model=model, tokenizer=tokenizer)
    long_text = " ".join(["neun tausend"] * 40)
    assert len(tokenizer(long_text)["input_ids"]) > 32
    with pytest.warns(UserWarning, match="truncated to 32"):
        result = pipe(long_text)
    enc = tokenizer([long_text], truncation=True, max_length=32, return_tensors="pt")
    expected = tokenizer.batch_decode(model.generate(**enc), skip_special_tokens=True)[0].strip()
    assert result == [{"generated_text": expected}]
    with pytest.raises(ValueError, match="more than the 32"):
        pipe(long_text, truncation=False)


@pytest.mark.slow
def test_remote_code_in_a_fresh_process_gives_the_same_text(tokenizer, tmp_path):
    expected = {}
    for family in FAMILIES:
        model = tiny_model(family, len(tokenizer), seed=1)
        folder = save_model_folder(model, tokenizer, tmp_path / family)
        config = json.loads((folder / "config.json").read_text())
        assert set(config["auto_map"]) == {"AutoConfig", "AutoModelForSeq2SeqLM"}
        assert config["custom_pipelines"]["text2text"]["impl"] == "pipeline_text2text.Text2TextPipeline"
        for name in (
            "pipeline_text2text.py",
            f"modeling_{family}_seq2seq.py",
            f"configuration_{family}_seq2seq.py",
        ):
            assert (folder / name).is_file(), name
        pipe = pipeline("text2text", model=model, tokenizer=tokenizer)
        expected[family] = {
            "generate": [_generate(model, tokenizer, s)[0] for s in SENTENCES],
            "pipeline": [r["generated_text"] for r in pipe(SENTENCES)],
        }
    assert (tmp_path / "rnn" / "attention.py").is_file()  # the RNN model's relative import travels with it

    proc = run_without_package(
        f"""
        import json
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
        sentences = {SENTENCES!r}
        out = {{}}
        for family in {FAMILIES!r}:
            folder = {str(tmp_path)!r} + "/" + family
            model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
            tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            texts = []
            for s in sentences:
                with torch.no_grad():
                    ids = model.generate(**tok([s], return_tensors="pt"))
                texts.append(tok.batch_decode(ids, skip_special_tokens=True)[0].strip())
            pipe = pipeline(model=folder, trust_remote_code=True)
            assert type(pipe).__name__ == "Text2TextPipeline", type(pipe)
            out[family] = {{"generate": texts, "pipeline": [r["generated_text"] for r in pipe(sentences)]}}
        print("RESULT" + json.dumps(out))
        """,
        cwd=tmp_path,
    )
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
    assert json.loads(line[len("RESULT") :]) == expected

"""Issue 28, row 12: what README.md and docs/hub.md say about ``import hf_seq2seq`` holds. With the package the
Auto classes load a folder without ``trust_remote_code`` and an in-memory model goes into ``pipeline("text2text")``;
a pipeline built from a folder's name asks for ``trust_remote_code`` (transformers runs ``custom_pipelines`` only as
remote code), as the README now says."""

from __future__ import annotations

import pytest
from hub_server import tiny_model, tiny_tokenizer
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

import hf_seq2seq
from hf_seq2seq.hub import save_model_folder


def test_import_registers_the_models_and_the_task_but_a_folder_pipeline_asks_for_trust(tmp_path):
    tok = tiny_tokenizer()
    folder = save_model_folder(tiny_model("transformer", len(tok)), tok, tmp_path / "model")
    model = AutoModelForSeq2SeqLM.from_pretrained(folder)  # no trust_remote_code: the installed classes
    assert type(model) is hf_seq2seq.TransformerSeq2SeqForConditionalGeneration
    translate = pipeline("text2text", model=model, tokenizer=AutoTokenizer.from_pretrained(folder))
    assert translate("sieben", max_new_tokens=3)[0]["generated_text"] is not None
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        pipeline("text2text", model=str(folder))
    readme = hf_seq2seq.__file__.rsplit("/hf_seq2seq/", 1)[0] + "/README.md"
    with open(readme, encoding="utf-8") as f:
        assert "still needs\n`trust_remote_code=True`" in f.read()

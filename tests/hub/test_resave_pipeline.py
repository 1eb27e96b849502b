"""Issue 28, row 1: a folder re-saved by any path (``model.save_pretrained``, a pipeline's ``save_pretrained``,
``Seq2SeqTrainer.save_model``) keeps what its ``custom_pipelines`` names, so ``pipeline(model=folder,
trust_remote_code=True)`` loads it in a Python without this package. (The PEFT variant,
``merge_and_unload().save_pretrained``, goes through the same ``model.save_pretrained``; PEFT is not installed.)"""

from __future__ import annotations

import json

import pytest
from conftest import run_without_package
from hub_server import tiny_model, tiny_tokenizer
from transformers import (
    AutoModelForSeq2SeqLM,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)

from hf_seq2seq.hub import save_model_folder

PIPELINE_LOADS = """
import json
from transformers import pipeline
for folder in {folders!r}:
    translate = pipeline(model=folder, trust_remote_code=True)
    assert type(translate.model).__module__.startswith("transformers_modules."), type(translate.model).__module__
    print(json.dumps(translate("ein Hund", max_new_tokens=3)))
"""


def _folder(tmp_path, family):
    tok = tiny_tokenizer()
    return save_model_folder(tiny_model(family, len(tok)), tok, tmp_path / "original")


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_model_save_pretrained_keeps_the_pipeline_file(tmp_path, family):
    original = _folder(tmp_path, family)
    model = AutoModelForSeq2SeqLM.from_pretrained(original)  # with the package: our installed classes
    resaved = tmp_path / "resaved"
    model.save_pretrained(resaved)
    tiny_tokenizer().save_pretrained(resaved)  # what a user saves beside it
    assert "custom_pipelines" in json.loads((resaved / "config.json").read_text())
    assert (resaved / "pipeline_text2text.py").is_file()
    # the trainer's save
    tok = tiny_tokenizer()
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path / "run"), report_to=[], use_cpu=True)
    trainer = Seq2SeqTrainer(
        model=model, args=args, data_collator=DataCollatorForSeq2Seq(tok, model=model), processing_class=tok
    )
    trainer.save_model(str(tmp_path / "trainer"))
    assert (tmp_path / "trainer" / "pipeline_text2text.py").is_file()
    # re-saved where the package is absent: the model loaded as remote code, and a pipeline's save
    remote, piped = tmp_path / "remote", tmp_path / "piped"
    run_without_package(
        f"""
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
        model = AutoModelForSeq2SeqLM.from_pretrained({str(original)!r}, trust_remote_code=True)
        model.save_pretrained({str(remote)!r})
        AutoTokenizer.from_pretrained({str(original)!r}).save_pretrained({str(remote)!r})
        pipeline(model={str(original)!r}, trust_remote_code=True).save_pretrained({str(piped)!r})
        """
    )
    folders = [str(f) for f in (resaved, tmp_path / "trainer", remote, piped)]
    proc = run_without_package(PIPELINE_LOADS.format(folders=folders))
    assert len(proc.stdout.strip().splitlines()) == 4

"""Issue 28, row 1: a folder re-saved by any path (``model.save_pretrained``, a pipeline's ``save_pretrained``,
``Seq2SeqTrainer.save_model``) keeps what its ``custom_pipelines`` names, so ``pipeline(model=folder,
trust_remote_code=True)`` loads it in a Python without this package. (The PEFT variant,
``merge_and_unload().save_pretrained``, goes through the same ``model.save_pretrained``; PEFT is not installed.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_captioning_model_save_pretrained_keeps_the_pipeline_file(tmp_path):
    from transformers import AutoModelForImageTextToText

    from hf_seq2seq.captioning_data import render_scene
    from hf_seq2seq.hub import save_captioning_folder
    from hf_seq2seq.models.configuration_rnn_captioning import ImageCaptioningConfig
    from hf_seq2seq.models.image_processing_rnn_captioning import ImageCaptioningImageProcessor
    from hf_seq2seq.models.modeling_rnn_captioning import ImageCaptioningForConditionalGeneration
    from hf_seq2seq.tokenization import train_tokenizer

    tok = train_tokenizer([render_scene(7, i)["caption"] for i in range(50)], vocab_size=100)
    config = ImageCaptioningConfig(
        image_size=32, encoder_channels=[4, 8], vocab_size=len(tok), embedding_size=8, hidden_size=16
    )
    proc = ImageCaptioningImageProcessor.for_image_size(32)
    original = save_captioning_folder(
        ImageCaptioningForConditionalGeneration(config).eval(), tok, proc, tmp_path / "original"
    )
    resaved = tmp_path / "resaved"
    AutoModelForImageTextToText.from_pretrained(original).save_pretrained(resaved)
    tok.save_pretrained(resaved)
    proc.save_pretrained(resaved)
    assert "image-captioning" in json.loads((resaved / "config.json").read_text())["custom_pipelines"]
    assert (resaved / "pipeline_image_captioning.py").is_file()
    image = tmp_path / "scene.png"
    render_scene(3, 1)["image"].save(image)
    run_without_package(
        f"""
        from transformers import pipeline
        captioner = pipeline(model={str(resaved)!r}, trust_remote_code=True)
        print(captioner({str(image)!r}, max_new_tokens=3))
        """
    )


@pytest.mark.slow  # a loopback Hub server and a remote-code download (20 s on 2 shared cores)
def test_a_model_loaded_from_the_hub_resaves_with_its_pipeline_file(tmp_path):
    """Loaded by repository id (the pipeline file is not beside the model's module in the remote-code cache): the
    copy comes from the repository."""
    from hub_server import LoopbackHub

    from hf_seq2seq.hub import push_model_folder

    original = _folder(tmp_path, "transformer")
    hub = LoopbackHub().start()
    try:
        from huggingface_hub import constants

        offline, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, False
        try:
            push_model_folder(original, "user/tiny", endpoint=hub.url, token="x")
        finally:
            constants.HF_HUB_OFFLINE = offline
        resaved = tmp_path / "resaved"
        code = f"""
            import os
            from transformers import AutoModelForSeq2SeqLM
            model = AutoModelForSeq2SeqLM.from_pretrained("user/tiny", trust_remote_code=True)
            model.save_pretrained({str(resaved)!r})
            print(sorted(os.listdir({str(resaved)!r})))
            """
        env = dict(
            HF_ENDPOINT=hub.url,
            HF_HUB_OFFLINE="0",
            HF_HOME=str(tmp_path / "hf_home"),
            HF_TOKEN="x",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_XET="1",
        )
        proc = subprocess.run(
            [sys.executable, "-c", "import sys\nsys.modules['hf_seq2seq'] = None\n" + textwrap.dedent(code)],
            env=dict(os.environ, PYTHONPATH="", **env),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        hub.stop()
    assert proc.returncode == 0, proc.stderr
    assert (resaved / "pipeline_text2text.py").is_file(), proc.stdout
    assert "custom_pipelines" in json.loads((resaved / "config.json").read_text())

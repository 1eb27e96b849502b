"""``POST /v1/translate`` with ``return_alignment`` (issue 26): the server gives what ``translate --alignments``
gives, for every engine that has attention, and refuses the others in one line. A real server on 127.0.0.1."""

from __future__ import annotations

import pytest
from _serving import SENTENCES, build_models, request, server_thread

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from hf_seq2seq.inference import load_engine  # noqa: E402
from hf_seq2seq.inference.alignment import format_pharaoh, hard_alignment, parse_pharaoh  # noqa: E402

pytestmark = pytest.mark.slow  # builds the tiny copy models and their exports, and talks to a real server


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return build_models(tmp_path_factory.mktemp("serve_align"))


@pytest.fixture(scope="module")
def served(folders):
    from hf_seq2seq.serving import ModelSpec, ServerSettings, create_app, load_served_model

    models = [load_served_model(ModelSpec(name, str(path))) for name, path in folders.items()]
    with server_thread(create_app(models, ServerSettings(max_wait_ms=30))) as url:
        yield url


@pytest.mark.parametrize("name", ["de-en", "rnn", "transformer-ct2"])
def test_alignments_are_those_of_translate(served, folders, name):
    if name not in folders:
        pytest.skip(f"{name}: engine not installed")
    lines = [*SENTENCES[:3], ""]
    body = {"model": name, "segments": lines, "n_best": 2, "num_beams": 2, "return_alignment": True}
    status, _, answer = request(served + "/v1/translate", body)
    assert status == 200, answer
    engine = load_engine(folders[name], "ctranslate2" if name.endswith("ct2") else "torch", device="cpu")
    expected = engine.translate(lines, num_beams=2, n_best=2, return_alignment=True)
    for line, result, translation in zip(lines, answer["results"], expected, strict=True):
        assert result["hypotheses"] == translation.hypotheses
        assert result["alignments"] == [format_pharaoh(hard_alignment(a)) for a in translation.alignments]
        for hypothesis, links in zip(result["hypotheses"], result["alignments"], strict=True):
            parse_pharaoh(links, len(line.split()), len(hypothesis.split()))  # every index in range
    assert answer["results"][-1]["alignments"] == ["", ""]  # an empty segment


def test_an_engine_without_attention_is_refused_in_one_line(served, folders):
    if "rnn-onnx" not in folders:
        pytest.skip("onnxruntime not installed")
    body = {"model": "rnn-onnx", "segments": ["drei"], "return_alignment": True}
    status, _, answer = request(served + "/v1/translate", body)
    assert status == 400 and answer["error"].startswith(
        "return_alignment: alignments need --engine torch or ctranslate2"
    )

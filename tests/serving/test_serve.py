"""`hf-seq2seq serve`: a real server on 127.0.0.1 with tiny models built here (nothing downloaded).

- LibreTranslate's own client (libretranslatepy) translates through it;
- batched == one by one == the offline engine, token for token, for both families on every engine installed
  (torch for both, CTranslate2 for the Transformer, onnxruntime for both);
- every bad input is one JSON line with its status and changes nothing else; a full queue answers 503 with
  Retry-After at once; a client that goes away leaves the queue; a poisoned batch fails only its requests;
- SIGTERM finishes the requests in flight and exits 0 (slow: its own server process);
- docs/serving_openapi.json is the schema the app generates.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _serving import SENTENCES, build_models, request, server_process, server_thread

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from hf_seq2seq.inference import GenerateEngine, load_engine, load_model  # noqa: E402
from hf_seq2seq.serving import ServedModel, ServerSettings, create_app, openapi_schema  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # every test talks to a real server process


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return build_models(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def served(folders):
    """One `hf-seq2seq serve` process with every model (engine read from each folder)."""
    args = [arg for name, path in folders.items() for arg in ("--model", f"{name}={path}")]
    with server_process([*args, "--max_wait_ms", "30", "--threads", "1"]) as (url, _):
        yield url


def test_libretranslate_client_translates_through_the_server(served, folders):
    from libretranslatepy import LibreTranslateAPI

    api = LibreTranslateAPI(served + "/")
    assert api.languages() == [{"code": "de", "name": "German", "targets": ["en"]}]
    expected = load_engine(folders["de-en"], device="cpu").translate(SENTENCES[:2])
    assert [api.translate(s, "de", "en") for s in SENTENCES[:2]] == [r.text for r in expected]
    # q as a list, with alternatives (n-best): LibreTranslate's JSON shape
    status, _, body = request(
        served + "/translate", {"q": SENTENCES[:2], "source": "de", "target": "en", "alternatives": 1}
    )
    assert status == 200 and body["translatedText"] == [r.text for r in expected]
    assert [len(a) for a in body["alternatives"]] == [1, 1]


def _v1(url, name, segments, **options):
    status, _, body = request(url + "/v1/translate", {"model": name, "segments": segments, **options})
    assert status == 200, body
    return body["results"]


@pytest.mark.parametrize("name", ["de-en", "rnn", "transformer-ct2", "transformer-onnx", "rnn-onnx"])
def test_batched_equals_one_by_one_and_the_offline_engine(served, folders, name):
    if name not in folders:
        pytest.skip(f"{name}: its engine is not installed")
    engine = load_engine(folders[name], _engine_of(name), device="cpu")
    options = dict(num_beams=2, n_best=2, return_scores=True)
    offline = engine.translate(SENTENCES + [""], **options)
    one_request = _v1(served, name, SENTENCES + [""], **options)
    with ThreadPoolExecutor(len(SENTENCES)) as pool:  # concurrent requests: batched across requests
        concurrent = list(pool.map(lambda s: _v1(served, name, [s], **options)[0], SENTENCES))
    one_by_one = [_v1(served, name, [s], **options)[0] for s in SENTENCES]
    for results in (one_request[:-1], concurrent, one_by_one):
        assert [r["hypotheses"] for r in results] == [t.hypotheses for t in offline[:-1]]
        flat = [x for r in results for x in r["scores"]]
        assert flat == pytest.approx([x for t in offline[:-1] for x in t.scores], abs=1e-4)
    assert one_request[-1] == {"hypotheses": ["", ""], "scores": [0.0, 0.0]}
    metrics = request(served + "/metrics")[2]
    count = _metric(metrics, "hf_seq2seq_batch_segments_count", name)
    total = _metric(metrics, "hf_seq2seq_batch_segments_sum", name)
    assert total >= 3 * len(SENTENCES) and count < total  # some engine calls held several
    assert _metric(metrics, "hf_seq2seq_engine_seconds_count", name) == count  # each engine call timed
    assert _metric(metrics, "hf_seq2seq_engine_seconds_sum", name) > 0


def _engine_of(name: str) -> str:
    return {
        "transformer-ct2": "ctranslate2",
        "transformer-onnx": "onnxruntime",
        "rnn-onnx": "onnxruntime",
    }.get(name, "torch")


def _metric(text: str, metric: str, model: str) -> float:
    match = re.search(rf'^{metric}{{model="{re.escape(model)}"}} (\S+)$', text, re.MULTILINE)
    assert match, f"{metric} for {model} not in /metrics"
    return float(match.group(1))


def test_attention_status_models_metrics_page(served, folders):
    (result,) = _v1(served, "rnn", [SENTENCES[0]], num_beams=1, return_attention=True)
    attention = result["attention"]
    weights = attention["weights"]  # layers x heads x T x S
    assert len(weights) == 1 and len(weights[0]) == 1
    assert len(weights[0][0]) == len(attention["target_tokens"]) and attention["target_tokens"][-1] == "</s>"
    assert [len(row) for row in weights[0][0]] == [len(attention["source_tokens"])] * len(weights[0][0])
    (result,) = _v1(served, "de-en", [SENTENCES[1]], return_attention=True)
    assert len(result["attention"]["weights"]) == 2 and len(result["attention"]["weights"][0]) == 2
    status, _, body = request(
        served + "/v1/translate", {"model": "rnn-onnx", "segments": ["x"], "return_attention": True}
    )
    if "rnn-onnx" in folders:
        assert status == 400 and body["error"].startswith(
            "return_attention needs the torch or ctranslate2 engine"
        )
    if "transformer-ct2" in folders:  # the export's one attention (its alignment layer and heads, averaged)
        (result,) = _v1(served, "transformer-ct2", [SENTENCES[1]], return_attention=True)
        weights, target = result["attention"]["weights"], result["attention"]["target_tokens"]
        assert (
            len(weights) == len(weights[0]) == 1
            and len(weights[0][0]) == len(target)
            and target[-1] == "</s>"
        )
        rows = weights[0][0][:-1]  # each target token's row is a distribution over the source
        assert all(
            len(r) == len(result["attention"]["source_tokens"]) and abs(sum(r) - 1) < 1e-2 for r in rows
        )
    assert request(served + "/health")[2] == {"status": "ok"}
    assert request(served + "/ready")[2]["status"] == "ready"
    models = {m["name"]: m for m in request(served + "/v1/models")[2]["models"]}
    assert set(models) == set(folders)
    assert models["rnn"]["family"] == "rnn_seq2seq" and models["de-en"]["config"]["d_model"] == 16
    assert {models[n]["engine"] for n in models} <= {"torch", "ctranslate2", "onnxruntime"}
    status, headers, text = request(served + "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for metric in (
        "requests_total",
        "request_seconds_bucket",
        "batch_segments",
        "queue_depth",
        "generated_tokens",
    ):
        assert f"hf_seq2seq_{metric}" in text
    status, _, page = request(served + "/")
    assert status == 200 and 'id="heatmap"' in page and "://" not in page  # no CDN: works offline
    assert request(served + "/docs")[0] == 200


def test_curl_examples_in_the_docs_run_verbatim(served):
    """Every `curl` line of docs/deployment.md's serving section, against this server (only the port differs)."""
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    section = text.split("## Serving over HTTP")[1]
    commands = [line for line in section.splitlines() if line.startswith("curl ")]
    assert len(commands) >= 5
    port = served.rsplit(":", 1)[1]
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", command.replace("127.0.0.1:5000", f"127.0.0.1:{port}") + " -f"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, (command, result.stderr)
        if "/metrics" not in command:
            assert "error" not in json.loads(result.stdout), command


def test_openapi_file_is_what_the_app_generates():
    checked_in = json.loads((ROOT / "docs" / "serving_openapi.json").read_text(encoding="utf-8"))
    assert checked_in == openapi_schema(), (
        "docs/serving_openapi.json is stale: hf-seq2seq serve --write_openapi docs/serving_openapi.json"
    )


# ------------------------------------------------------------------------------- bad input, overload, faults
class PoisonedEngine(GenerateEngine):
    """The torch engine, failing on any batch that holds the source "POISON" (an engine exception)."""

    def translate_ids(self, sources, **options):
        if self.encode(["POISON"])[0] in [list(s) for s in sources]:
            raise RuntimeError("poisoned batch\nsecond line")
        return super().translate_ids(sources, **options)


@pytest.fixture(scope="module")
def guarded(folders):
    """The app in a thread of this process, with an API key, small limits and the poisoned engine."""
    model, tokenizer = load_model(folders["de-en"], "cpu")
    served = ServedModel("de-en", "torch", str(folders["de-en"]), PoisonedEngine.from_model(model, tokenizer))
    served.source, served.target = "de", "en"
    settings = ServerSettings(
        api_key="secret",
        max_input_chars=40,
        max_segments=3,
        max_body_bytes=2000,
        max_num_beams=4,
        max_n_best=4,
        max_new_tokens=20,
    )
    with server_thread(create_app([served], settings)) as url:
        yield url


LT = {"source": "de", "target": "en", "api_key": "secret"}
V1 = {"model": "de-en", "api_key": "secret"}
BAD = [
    ("/translate", b'{"q": "drei", ', 400, "malformed JSON"),
    ("/translate", b'{"q": "dr\xffei", "source": "de", "target": "en"}', 400, "not valid UTF-8"),
    ("/translate", b"[1, 2]", 400, "must be a JSON object"),
    ("/translate", {**LT, "q": 5}, 400, "q"),
    ("/translate", {**LT, "q": "drei", "alternatives": "two"}, 400, "alternatives"),
    ("/translate", {**LT, "q": ""}, 400, "q is empty"),
    ("/translate", {**LT, "q": []}, 400, "q is empty"),
    ("/translate", {**LT, "q": "x" * 41}, 400, "--max_input_chars"),
    ("/translate", {**LT, "q": ["a", "b", "c", "d"]}, 400, "--max_segments"),
    ("/translate", {**LT, "q": "drei", "source": "fr"}, 400, "no model translates source='fr'"),
    ("/translate", {**LT, "q": "drei", "format": "html"}, 400, "format='html' is not supported"),
    ("/translate", {**LT, "q": "drei", "alternatives": 9}, 400, "n_best=10 is out of range"),
    ("/translate", {**LT, "q": "drei", "api_key": "wrong"}, 403, "api_key is invalid"),
    ("/translate", {"q": "drei", "source": "de", "target": "en"}, 403, "api_key is missing"),
    ("/translate", {**LT, "q": "a" * 3000}, 413, "--max_body_bytes"),
    ("/v1/translate", {**V1, "segments": "drei"}, 400, "segments"),
    ("/v1/translate", {**V1, "segments": ["drei"], "model": "fr-en"}, 400, "model='fr-en' is unknown"),
    ("/v1/translate", {**V1, "segments": ["drei"], "num_beams": 0}, 400, "num_beams=0 is out of range"),
    ("/v1/translate", {**V1, "segments": ["drei"], "num_beams": 5}, 400, "valid: 1 to 4 (--max_num_beams)"),
    ("/v1/translate", {**V1, "segments": ["drei"], "n_best": 5}, 400, "n_best=5 is out of range"),
    ("/v1/translate", {**V1, "segments": ["drei"], "max_new_tokens": 21}, 400, "--max_new_tokens"),
    ("/v1/translate", {**V1, "segments": ["drei"], "num_beams": "2"}, 400, "num_beams"),
    ("/v1/translate", {**V1, "segments": ["drei"], "beams": 2}, 400, "unknown field 'beams'"),
    ("/v1/translate", {**V1, "segments": []}, 400, "segments is empty"),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"), BAD, ids=[f"{i}-{b[3][:24]}" for i, b in enumerate(BAD)]
)
def test_bad_input_is_one_json_line_and_changes_nothing(guarded, path, body, status, message):
    got, _, answer = request(guarded + path, body)
    assert got == status and set(answer) == {"error"} and message in answer["error"], answer
    assert "\n" not in answer["error"]
    ok, _, fine = request(guarded + "/translate", {**LT, "q": "drei und zwanzig"})
    assert ok == 200 and fine["translatedText"]


def test_form_body_and_header_key(guarded):
    status, _, body = request(
        guarded + "/translate",
        b"q=drei+und+zwanzig&source=de&target=en&api_key=secret&alternatives=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200 and len(body["alternatives"]) == 1
    status, _, body = request(
        guarded + "/v1/translate", {"model": "de-en", "segments": ["neun"]}, headers={"X-API-Key": "secret"}
    )
    assert status == 200


def test_a_poisoned_batch_fails_only_its_requests(guarded):
    status, _, body = request(guarded + "/translate", {**LT, "q": "POISON"})
    assert status == 500 and "poisoned batch second line" in body["error"] and "\n" not in body["error"]
    status, _, body = request(guarded + "/translate", {**LT, "q": "neun"})
    assert status == 200
    assert 'hf_seq2seq_errors_total{code="500",path="/translate"} 1.0' in request(guarded + "/metrics")[2]


@pytest.fixture()
def slow_queue(folders):
    """A queue of 2 segments whose worker waits 1.5 s for company (every segment: ``batch_wait="always"``): easy to
    fill."""
    engine = load_engine(folders["de-en"], device="cpu")
    served = ServedModel("de-en", "torch", str(folders["de-en"]), engine, "de", "en")
    settings = ServerSettings(max_queue=2, max_wait_ms=1500, batch_wait="always", max_batch_tokens=10_000)
    with server_thread(create_app([served], settings)) as url:
        yield url


def test_full_queue_answers_503_at_once_and_the_queued_request_completes(slow_queue):
    first = {}
    thread = threading.Thread(
        target=lambda: first.update(answer=request(slow_queue + "/translate", {**LT, "q": SENTENCES[:2]}))
    )
    thread.start()
    time.sleep(0.4)
    start = time.monotonic()
    status, headers, body = request(slow_queue + "/translate", {**LT, "q": "neun"})
    assert status == 503 and headers["retry-after"] == "1" and "queue" in body["error"]
    assert time.monotonic() - start < 1.0
    # the queue is full: turned away before the body is read (shed), on either API, whatever the body
    status, headers, body = request(slow_queue + "/v1/translate", {"segments": ["neun"]})
    assert status == 503 and headers["retry-after"] == "1" and "queue is full" in body["error"]
    metrics = request(slow_queue + "/metrics")[2]
    assert re.search(r"^hf_seq2seq_shed_total 2\.0$", metrics, re.MULTILINE)
    assert 'hf_seq2seq_requests_total{code="503",path="/v1/translate"} 1.0' in metrics
    thread.join(30)
    assert first["answer"][0] == 200 and len(first["answer"][2]["translatedText"]) == 2


def test_one_full_queue_sheds_nothing_for_the_other_model(folders):
    """Only when every model's queue is full are requests turned away unread; a full queue of one model leaves the
    other model's requests served."""
    engine = load_engine(folders["de-en"], device="cpu")
    models = [ServedModel(name, "torch", str(folders["de-en"]), engine, "de", "en") for name in ("a", "b")]
    settings = ServerSettings(max_queue=2, max_wait_ms=1500, batch_wait="always", max_batch_tokens=10_000)
    with server_thread(create_app(models, settings)) as url:
        filler = threading.Thread(
            target=lambda: request(url + "/v1/translate", {"model": "a", "segments": SENTENCES[:2]})
        )
        filler.start()
        time.sleep(0.4)
        status, _, body = request(url + "/v1/translate", {"model": "a", "segments": ["neun"]})
        assert status == 503 and "the queue of model 'a' is full" in body["error"]  # the route's own 503
        status, _, body = request(url + "/v1/translate", {"model": "b", "segments": ["neun"]})
        assert status == 200 and len(body["results"]) == 1
        filler.join(30)
        assert re.search(r"^hf_seq2seq_shed_total 0\.0$", request(url + "/metrics")[2], re.MULTILINE)


def test_the_long_lived_heap_is_frozen_while_serving(folders):
    """The garbage collector leaves the models' and libraries' objects alone while the server runs (gc.freeze), and
    gets them back when it stops."""
    import gc

    engine = load_engine(folders["de-en"], device="cpu")
    with server_thread(
        create_app([ServedModel("de-en", "torch", str(folders["de-en"]), engine, "de", "en")])
    ) as url:
        assert gc.get_freeze_count() > 10_000  # torch and transformers alone are far more
        assert request(url + "/translate", {**LT, "q": "neun"})[0] == 200
    assert gc.get_freeze_count() == 0


def test_a_client_that_goes_away_leaves_the_queue(slow_queue):
    body = json.dumps({**LT, "q": SENTENCES[:2]}).encode()
    with socket.create_connection(("127.0.0.1", int(slow_queue.rsplit(":", 1)[1]))) as sock:
        head = f"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        time.sleep(0.3)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        metrics = request(slow_queue + "/metrics")[2]
        if _metric(metrics, "hf_seq2seq_dropped_segments_total", "de-en") == 2:
            break
        time.sleep(0.1)
    assert _metric(metrics, "hf_seq2seq_dropped_segments_total", "de-en") == 2
    assert _metric(metrics, "hf_seq2seq_queue_depth", "de-en") == 0
    assert request(slow_queue + "/translate", {**LT, "q": "neun"})[0] == 200  # the queue has room again


@pytest.mark.slow
def test_sigterm_finishes_requests_in_flight_and_exits_0(folders):
    args = ["--model", f"de-en={folders['de-en']}", "--max_wait_ms", "1500", "--batch_wait", "always"]
    # uvicorn's pure-Python parts here (the other servers use the C ones the server extra installs)
    with server_process([*args, "--http", "h11", "--loop", "asyncio"]) as (url, process):
        answers = []
        thread = threading.Thread(
            target=lambda: answers.append(
                request(url + "/translate", {"q": SENTENCES[:2], "source": "de", "target": "en"})
            )
        )
        thread.start()
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        thread.join(60)
        assert process.wait(60) == 0
        assert answers and answers[0][0] == 200 and len(answers[0][2]["translatedText"]) == 2
        with pytest.raises(OSError):
            request(url + "/health", timeout=2)


def test_serve_command_refuses_bad_options_in_one_line(tmp_path, capsys, monkeypatch):
    from hf_seq2seq.commands.serve import serve_main

    def run(*argv):
        status = serve_main(list(argv))
        return status, capsys.readouterr().err.strip().splitlines()[-1]

    status, line = run("--model", f"de-en={tmp_path / 'nope'}")
    assert status == 1 and line.startswith("hf-seq2seq serve: error: ") and "folder not found" in line
    assert run() == (1, "hf-seq2seq serve: error: give at least one --model NAME=PATH (or --models_file)")
    status, line = run("--model", f"x={tmp_path}", "--engine", "tensorrt")
    assert status == 1 and "--engine 'tensorrt' is invalid; valid choices: auto, torch" in line
    status, line = run("--model", f"a={tmp_path}", "--model", f"a={tmp_path}")
    assert status == 1 and "each model needs its own name" in line
    for option, module in (("--http", "httptools"), ("--loop", "uvloop")):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed: its import fails
        status, line = run("--model", f"a={tmp_path}", option, module)
        assert status == 1 and line == (
            f'hf-seq2seq serve: error: {option} {module}: {module} is not installed: pip install "hf_seq2seq[server]"'
        )


@pytest.mark.slow
def test_bench_server_quick_runs_and_reports_every_cell(tmp_path):
    """benchmarks/bench_server.py --quick (tiny models, 16 sentences, N = 1 and 4): every cell answered, no error;
    --overload_rate is the rate offered, --server_args reach every server (h11 and asyncio instead of the C parts)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_server

    out = tmp_path / "bench_server"
    argv = ["--quick", "--out", str(out), "--overload", "2", "--overload_rate", "30", "--faults"]
    assert bench_server.main([*argv, "--server_args", "--http h11 --loop asyncio"]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    overload = report["overload"]
    assert overload["offered_rate"] == 30 and 30 <= overload["sent"] <= 62  # 2 s at 30/s, on time or late
    assert overload["ok"] + overload["503"] + overload["other"] == overload["sent"]
    assert "--http h11 --loop asyncio" in out.with_suffix(".md").read_text()
    cells = {(r["model"], r["engine"], r["clients"]) for r in report["rows"]}
    assert len(cells) == len(report["rows"]) == 2 * sum(len(e) for e in bench_server.ENGINES.values())
    assert all(r["errors"] == 0 and r["sent_s"] > 0 and r["offline_sent_s"] > 0 for r in report["rows"])
    # the engine figures read from /metrics: N one-sentence clients make engine calls of 1..N segments
    assert all(1 <= r["mean_batch"] <= r["clients"] and r["ceiling_sent_s"] > 0 for r in report["rows"])
    assert all(r["mean_batch"] == 1 for r in report["rows"] if r["clients"] == 1)
    assert all(0 < r["engine_busy"] for r in report["rows"])
    assert "load (1 min)" in out.with_suffix(".md").read_text()
    faults = report[
        "faults"
    ]  # clients that walk away cost the others nothing; SIGTERM: answered, then exit 0
    assert faults["walk_away"]["errors"] == 0 and faults["after"]["errors"] == 0
    assert faults["exit_code"] == 0 and faults["sigterm"]["errors"] < faults["sigterm_sent"]


def test_models_file_and_model_options(tmp_path, folders):
    from hf_seq2seq.serving import parse_model_option, read_models_file
    from hf_seq2seq.serving.models import detect_engine

    spec = parse_model_option(f"de-en={folders['de-en']}")
    assert (spec.name, spec.source, spec.target, spec.engine) == ("de-en", "de", "en", "auto")
    assert parse_model_option(str(folders["rnn"])).name == "rnn"
    assert detect_engine(folders["de-en"]) == "torch"
    if "rnn-onnx" in folders:
        assert detect_engine(folders["rnn-onnx"]) == "onnxruntime"
    good = tmp_path / "models.yaml"
    good.write_text(f"models:\n  - {{name: bigru, path: {folders['rnn']}, source: de, target: en}}\n")
    (spec,) = read_models_file(good)
    assert (spec.name, spec.source, spec.target) == ("bigru", "de", "en")
    for text, message in [
        ("models: []", "needs a non-empty list under 'models:'"),
        ("models:\n  - {path: x}", "models[0] needs 'name' and 'path'"),
        ("models:\n  - {name: a, path: x, beams: 2}", "models[0] has unknown keys ['beams']"),
        ("models:\n  - {name: a, path: x, engine: tensorrt}", "--engine 'tensorrt' is invalid"),
        ("models: [", "cannot read it"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=re.escape(message)):
            read_models_file(bad)
    with pytest.raises(ValueError, match="give NAME=PATH"):
        parse_model_option("=x")

"""Benchmark: `hf-seq2seq serve` under N concurrent clients against the same engine's offline `translate`, in one run.

For each model × engine (the Transformer on torch and CTranslate2 int8, the bi-GRU on torch and onnxruntime), the
Multi30k test2016 sources (the first ``--n``) are translated twice, taking turns so that a change in the shared
machine's load hits both sides alike:

- **offline**: :meth:`Engine.translate` in this process, batches of ``--batch_size`` (what ``hf-seq2seq translate``
  does), and one sentence at a time (the direct engine call a request replaces);
- **server**: a real ``hf-seq2seq serve`` process on 127.0.0.1 with the same engine and ``--threads``, and N client
  threads (``--clients``, default 1 8 32 128) each sending one sentence per ``POST /v1/translate`` on a kept-alive
  connection: sentences/s, latency p50/p95/p99, errors (anything but 200).

Reported: the server's throughput as a share of offline (target at N = 32: >= 80%), and at N = 1 its overhead per
request over the direct engine call (target <= 5 ms). ``--compete`` adds the N = 32 row again with a competing CPU
job (one busy process) running. The machine's 1-minute load average is recorded before and after each row. Models:
``--model NAME=FOLDER`` (trained folders, ``FAMILY`` = transformer / bigru as NAME), or, by default, a small
Transformer and bi-GRU trained here for ``--train_steps`` steps on Multi30k (under-trained: real sentence lengths,
not real quality). ``--quick`` runs a seconds-long version (tiny models, few sentences) for the tests.

    python benchmarks/bench_server.py --n 200 --clients 1 8 32 128 --compete
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import (
    MULTI30K,
    ROOT,
    bench_parser,
    env_line,
    environment,
    load_average,
    markdown_table,
    read_lines,
)
from harness import write_report as _write_report

ENGINES = {
    "transformer": [("torch", None), ("ctranslate2", "int8")],
    "bigru": [("torch", None), ("onnxruntime", None)],
}


def parse_args(argv):
    parser = bench_parser(__doc__, "bench_server", threads=1, threads_help="intra-op threads of each engine")
    parser.add_argument("--model", action="append", default=[], help="transformer=FOLDER or bigru=FOLDER")
    parser.add_argument("--n", type=int, default=200, help="test2016 sentences")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--batch_size", type=int, default=32, help="offline translate's batch size")
    parser.add_argument("--num_beams", type=int, default=1, help="beam size on both sides (default: greedy)")
    parser.add_argument("--max_wait_ms", type=float, default=5.0, help="the server's --max_wait_ms")
    parser.add_argument(
        "--batch_wait", choices=["adaptive", "always"], default="adaptive", help="the server's --batch_wait"
    )
    parser.add_argument("--train_steps", type=int, default=300, help="steps of the models trained here")
    parser.add_argument("--compete", action="store_true", help="repeat N = 32 with a competing CPU job")
    parser.add_argument("--quick", action="store_true", help="tiny models, 16 sentences, N = 1 and 4 (tests)")
    parser.add_argument(
        "--workdir",
        default=None,
        help="where models and exports go (default: a temp dir); models found there are reused",
    )
    parser.add_argument(
        "--no_load_table", action="store_true", help="skip the N-clients table (e.g. overload only)"
    )
    parser.add_argument(
        "--server_args",
        default="",
        help="more hf-seq2seq serve options for every server started, e.g. '--http h11 --loop asyncio'",
    )
    parser.add_argument(
        "--faults",
        action="store_true",
        help="clients that go away and a SIGTERM, under N = 32 (--overload_cell)",
    )
    parser.add_argument("--overload", type=float, default=0, help="seconds of open-loop overload (0: none)")
    parser.add_argument("--overload_cell", default="bigru-torch", help="FAMILY-ENGINE the overload runs on")
    parser.add_argument("--overload_factor", type=float, default=4.0, help="offered rate / measured capacity")
    parser.add_argument(
        "--overload_rate",
        type=float,
        default=0,
        help="offered requests/s (default 0: --overload_factor × the capacity measured just before)",
    )
    parser.add_argument("--overload_queue", type=int, default=64, help="the overloaded server's --max_queue")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.clients, args.train_steps = min(args.n, 16), [1, 4], 10
    return args


# ------------------------------------------------------------------------------------------------- models
def train_models(workdir: Path, steps: int, quick: bool) -> dict[str, Path]:
    """A Transformer and a bi-GRU (Bahdanau) trained ``steps`` steps on Multi30k de→en (batch 64, Adam 1e-3)."""
    import torch

    from hf_seq2seq import (
        RNNSeq2SeqConfig,
        RNNSeq2SeqForConditionalGeneration,
        TransformerSeq2SeqConfig,
        TransformerSeq2SeqForConditionalGeneration,
        train_tokenizer,
    )
    from hf_seq2seq.hub import save_model_folder

    n_train = 2000 if quick else 29000
    src = read_lines(MULTI30K / "train.de.gz", n_train)
    tgt = read_lines(MULTI30K / "train.en.gz", n_train)
    tokenizer = train_tokenizer(src + tgt, vocab_size=500 if quick else 4000)
    size = 32 if quick else 128
    models = {
        "transformer": TransformerSeq2SeqForConditionalGeneration(
            TransformerSeq2SeqConfig(
                vocab_size=len(tokenizer), d_model=size, encoder_layers=2, decoder_layers=2,
                num_attention_heads=4, ffn_dim=4 * size, dropout=0.1, max_position_embeddings=128,
            )
        ),
        "bigru": RNNSeq2SeqForConditionalGeneration(
            RNNSeq2SeqConfig(
                vocab_size=len(tokenizer), embedding_size=size, hidden_size=size, cell="gru",
                attention="bahdanau", bidirectional_encoder=True, dropout=0.1, max_position_embeddings=128,
            )
        ),
    }  # fmt: skip
    folders = {}
    generator = torch.Generator().manual_seed(0)
    for name, model in models.items():
        torch.manual_seed(0)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3 if not quick else 1e-2)
        model.train()
        for step in range(steps):
            index = torch.randint(len(src), (64,), generator=generator).tolist()
            batch = tokenizer(
                [src[i] for i in index],
                text_target=[tgt[i] for i in index],
                padding=True,
                return_tensors="pt",
            )
            batch["labels"] = batch["labels"].masked_fill(batch["labels"] == tokenizer.pad_token_id, -100)
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if (step + 1) % 50 == 0:
                print(f"{name}: step {step + 1} of {steps}", file=sys.stderr, flush=True)
        model.eval()
        model.generation_config.max_new_tokens = 16 if quick else 64
        model.generation_config.num_beams = 1
        folders[name] = save_model_folder(model, tokenizer, workdir / name)
        print(f"trained {name}: {steps} steps", file=sys.stderr)
    return folders


def engine_folders(folders: dict[str, Path], workdir: Path) -> list[tuple[str, str, str | None, Path]]:
    """``(family, engine, compute_type, folder)`` per cell: exports made here for ctranslate2 / onnxruntime."""
    from hf_seq2seq.export import export_ctranslate2, export_onnx

    cells = []
    for family, folder in folders.items():
        for engine, compute in ENGINES[family]:
            if engine == "ctranslate2":
                folder_ = export_ctranslate2(
                    folder, workdir / f"{family}_ct2_int8", quantization="int8", force=True
                )
            elif engine == "onnxruntime":
                folder_ = export_onnx(folder, workdir / f"{family}_onnx", force=True)
            else:
                folder_ = folder
            cells.append((family, engine, compute, Path(folder_)))
    return cells


# ---------------------------------------------------------------------------------------------- measuring
def offline(engine, sentences: list[str], batch_size: int, num_beams: int) -> dict:
    start = time.perf_counter()
    engine.translate(sentences, batch_size=batch_size, num_beams=num_beams)
    batched = time.perf_counter() - start
    singles = []
    for sentence in sentences[: max(8, len(sentences) // 4)]:
        t = time.perf_counter()
        engine.translate([sentence], num_beams=num_beams)
        singles.append(time.perf_counter() - t)
    return {"sent_s": len(sentences) / batched, "single_ms": 1000 * sorted(singles)[len(singles) // 2]}


def unsorted(engine, sentences: list[str], clients: int, num_beams: int) -> float:
    """The ceiling of a server with ``clients`` one-sentence clients: offline sentences/s when each engine call
    holds ``clients`` sentences in the order they came (not sorted by length, as offline ``translate`` sorts)."""
    ids = engine.encode(sentences)
    start = time.perf_counter()
    for i in range(0, len(ids), clients):
        engine.translate_ids([x for x in ids[i : i + clients] if x], num_beams=num_beams)
    return len(sentences) / (time.perf_counter() - start)


def _engine_figures(port: int, model: str) -> tuple[float, float, float]:
    """From the server's /metrics: engine calls, segments in them, seconds in them (so far)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    figures = []
    for metric in ("batch_segments_count", "batch_segments_sum", "engine_seconds_sum"):
        found = re.search(rf'^hf_seq2seq_{metric}{{model="{re.escape(model)}"}} (\S+)$', text, re.MULTILINE)
        figures.append(float(found.group(1)) if found else math.nan)
    return tuple(figures)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] if ordered else math.nan


async def _read_answer(reader) -> int:
    """Read one HTTP/1.1 answer with a Content-Length body off ``reader``; its status. A connection the server
    closed before answering raises ``ConnectionResetError``."""
    line = await reader.readline()
    if not line:
        raise ConnectionResetError("closed before an answer")
    status, length = int(line.split()[1]), 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


def translate_request(model: str, sentence: str, close: bool = False, **options) -> bytes:
    """The bytes of one ``POST /v1/translate`` of ``sentence`` to ``model`` (HTTP/1.1; ``close`` asks the server to
    close the connection after answering), made in advance so that sending it costs the client nothing more."""
    body = json.dumps({"model": model, "segments": [sentence], **options}).encode()
    head = "POST /v1/translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "Connection: close\r\n" if close else ""
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def load_clients(port: int, model: str, sentences: list[str], clients: int, num_beams: int) -> dict:
    """``clients`` closed-loop clients, each on its own kept-alive connection, sending one sentence per request and
    the next as soon as the answer is read. Like the open loop's client (:func:`_open_loop`) it must cost little, as
    it shares the server's cores: asyncio streams and request bytes made in advance (32 ``http.client`` threads took
    10 ms and more of GIL time to send the next requests after a batch was answered, so the server saw them arrive
    as two alternating half batches)."""
    import asyncio

    pending = [translate_request(model, sentence, num_beams=num_beams) for sentence in reversed(sentences)]
    latencies, errors = [], []

    async def client() -> None:
        writer = None  # connected on first use, again after an error (a refused one is that request's error)
        while pending:
            request, t = pending.pop(), time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                status = await asyncio.wait_for(_read_answer(reader), 120)
            except (OSError, IndexError, ValueError, asyncio.IncompleteReadError, TimeoutError) as err:
                status = type(err).__name__
                if writer is not None:
                    writer.close()
                writer = None
            latencies.append(time.perf_counter() - t)
            if status != 200:
                errors.append(status)
        if writer is not None:
            writer.close()

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - start

    wall = asyncio.run(run())
    return {
        "sent_s": len(sentences) / wall,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p95_ms": 1000 * percentile(latencies, 0.95),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "errors": len(errors),
        "error_kinds": dict(collections.Counter(str(e) for e in errors)),
    }


def start_server(cells, args, workdir: Path, max_queue: int = 100000) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    command = [sys.executable, "-m", "hf_seq2seq.cli", "serve", "--port", str(port), "--log_level", "warning"]
    command += [
        "--threads",
        str(args.threads),
        "--max_wait_ms",
        str(args.max_wait_ms),
        "--batch_wait",
        args.batch_wait,
        "--max_queue",
        str(max_queue),
    ]
    for family, engine, _, folder in cells:
        command += ["--model", f"{family}-{engine}={folder}"]
    command += shlex.split(args.server_args)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    log = open(workdir / "server.log", "w")  # noqa: SIM115  (closed with the process)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {(workdir / 'server.log').read_text()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/ready")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("the server did not become ready in 300 s")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _busy() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(cells, args, sentences, port) -> list[dict]:
    from hf_seq2seq.inference import load_engine

    rows = []
    for family, engine_name, compute, folder in cells:
        engine = load_engine(folder, engine_name, args.threads, compute, device="cpu")
        name = f"{family}-{engine_name}"
        load_clients(port, name, sentences[:8], 4, args.num_beams)  # warm-up
        runs = [(n, False) for n in args.clients] + ([(32, True)] if args.compete else [])
        for clients, compete in runs:
            busy = _busy() if compete else None
            try:
                load_before = load_average()[0]
                base = offline(engine, sentences, args.batch_size, args.num_beams)
                ceiling = unsorted(
                    engine, sentences[::-1], clients, args.num_beams
                )  # the clients pop from the end
                calls, segments, seconds = _engine_figures(port, name)
                served = load_clients(port, name, sentences, clients, args.num_beams)
                calls2, segments2, seconds2 = _engine_figures(port, name)
                again = offline(engine, sentences, args.batch_size, args.num_beams)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            off = (base["sent_s"] + again["sent_s"]) / 2
            single = (base["single_ms"] + again["single_ms"]) / 2
            row = {"model": family, "engine": engine_name + (f" {compute}" if compute else ""), "clients": clients,
                   "competing_job": compete, "offline_sent_s": off, "direct_call_ms": single, **served,
                   "ratio": served["sent_s"] / off, "ceiling_sent_s": ceiling, "ceiling_ratio": ceiling / off,
                   "mean_batch": (segments2 - segments) / max(1.0, calls2 - calls),
                   "engine_busy": (seconds2 - seconds) * served["sent_s"] / len(sentences), "load_before": load_before, "load_after": load_average()[0]}  # fmt: skip
            if clients == 1:
                row["overhead_ms"] = served["p50_ms"] - single
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    return rows


def _open_loop(port: int, name: str, sentences: list[str], rate: float, seconds: float) -> list[tuple]:
    """Requests fired at ``rate`` per second for ``seconds`` without waiting for answers (a true open loop), each
    on its own connection with a 30 s limit: ``(status, latency from its send time)``; a status that is not a
    number says where the time ran out (``connect timeout``, ``answer timeout``) or which error ended it. The
    client shares the server's cores, so it must cost little: asyncio streams and request bytes made in advance
    (httpx's client cost 4× more CPU per request than the server it loaded)."""
    import asyncio

    requests = [translate_request(name, sentence, close=True) for sentence in sentences]

    async def one(request: bytes) -> tuple:
        t, writer, phase = time.perf_counter(), None, "connect"
        try:
            async with asyncio.timeout(30):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                phase = "answer"
                writer.write(request)
                status = int((await reader.readline()).split()[1])
                await reader.read()  # Connection: close, so the answer ends at EOF
        except TimeoutError:
            status = f"{phase} timeout"
        except (OSError, IndexError, ValueError) as err:  # EMFILE: this client's limit, not the server's
            status = (
                "client out of file descriptors" if getattr(err, "errno", None) == 24 else type(err).__name__
            )
        finally:
            if writer is not None:
                writer.close()
        return status, time.perf_counter() - t

    async def run() -> list[tuple]:
        tasks, start, sent = [], time.perf_counter(), 0
        while (now := time.perf_counter() - start) < seconds:
            for _ in range(int(now * rate) + 1 - sent):
                tasks.append(asyncio.create_task(one(requests[sent % len(requests)])))
                sent += 1
            await asyncio.sleep(0.002)
        return list(await asyncio.gather(*tasks))

    return asyncio.run(run())


def overload(cells, args, sentences, workdir: Path) -> dict:
    """The cell's own server with ``--overload_queue``: capacity (N = 32), ``--overload_factor`` × capacity offered
    open-loop for ``--overload`` s (every answer counted, the server's RSS sampled), then capacity again."""
    import psutil

    cell = next(c for c in cells if f"{c[0]}-{c[1]}" == args.overload_cell)
    name = f"{cell[0]}-{cell[1]}"
    process, port = start_server([cell], args, workdir, max_queue=args.overload_queue)
    try:
        server = psutil.Process(process.pid)
        load_clients(port, name, sentences[:8], 4, args.num_beams)  # warm-up
        before = load_clients(port, name, sentences, 32, args.num_beams)["sent_s"]
        rss, stop = [server.memory_info().rss], threading.Event()

        def sample():
            while not stop.wait(0.25):
                with contextlib.suppress(OSError):  # no file descriptor left while the client holds them all
                    rss.append(server.memory_info().rss)

        sampler = threading.Thread(target=sample)
        sampler.start()
        load_before = load_average()[0]
        rate = args.overload_rate or args.overload_factor * before
        results = _open_loop(port, name, sentences, rate, args.overload)
        stop.set()
        sampler.join()
        after = load_clients(port, name, sentences, 32, args.num_beams)["sent_s"]
    finally:
        process.terminate()
        process.wait(60)
    ok = [lat for status, lat in results if status == 200]
    busy = [lat for status, lat in results if status == 503]
    other = [status for status, _ in results if status not in (200, 503)]
    return {"cell": name, "seconds": args.overload, "capacity_before": before, "capacity_after": after,
            "offered_rate": rate, "sent": len(results), "ok": len(ok), "503": len(busy),
            "other": len(other), "other_kinds": sorted({str(o) for o in other}),
            "ok_p99_ms": 1000 * percentile(ok, 0.99), "ok_max_ms": 1000 * max(ok, default=math.nan),
            "503_p99_ms": 1000 * percentile(busy, 0.99), "503_max_ms": 1000 * max(busy, default=math.nan),
            "rss_start_mb": rss[0] / 2**20, "rss_peak_mb": max(rss) / 2**20, "queue": args.overload_queue,
            "load_before": load_before, "load_after": load_average()[0]}  # fmt: skip


def _walk_away(port: int, name: str, sentences: list[str], count: int) -> None:
    """``count`` clients that send a request and close their connection before the answer."""
    for sentence in sentences[:count]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(translate_request(name, sentence))
        time.sleep(0.005)


def faults(cells, args, sentences, workdir: Path) -> dict:
    """On the ``--overload_cell`` server, under N = 32 clients: (1) 100 more clients that go away mid-request;
    (2) SIGTERM while the 32 clients are sending. Counted from the clients' side and the server's /metrics."""
    cell = next(c for c in cells if f"{c[0]}-{c[1]}" == args.overload_cell)
    name = f"{cell[0]}-{cell[1]}"
    process, port = start_server([cell], args, workdir)
    try:
        load_clients(port, name, sentences[:8], 4, args.num_beams)  # warm-up
        quiet = load_clients(port, name, sentences, 32, args.num_beams)
        walker = threading.Thread(target=_walk_away, args=(port, name, sentences, 100))
        walker.start()
        loud = load_clients(port, name, sentences, 32, args.num_beams)
        walker.join()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/metrics")
        dropped = re.search(
            r"^hf_seq2seq_dropped_segments_total\S* (\S+)$", connection.getresponse().read().decode(), re.M
        )
        after = load_clients(port, name, sentences, 32, args.num_beams)
        # SIGTERM 1 s into a run of 32 clients over 4x the sentences
        timer = threading.Timer(1.0, process.send_signal, (signal.SIGTERM,))
        timer.start()
        stop = time.perf_counter() + 1.0
        stopped = load_clients(port, name, sentences * 4, 32, args.num_beams)
        exit_code = process.wait(120)
        exit_s = time.perf_counter() - stop
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return {"cell": name, "quiet": quiet, "walk_away": loud, "dropped": float(dropped.group(1)) if dropped else math.nan,
            "after": after, "sigterm": stopped, "sigterm_sent": 4 * len(sentences), "exit_code": exit_code,
            "exit_s": exit_s}  # fmt: skip


def markdown(report: dict) -> list[str]:
    rows = [
        [r["model"], r["engine"], r["clients"] if not r["competing_job"] else f"{r['clients']} + busy job",
         f"{r['offline_sent_s']:.1f}", f"{r['sent_s']:.1f}", f"{100 * r['ratio']:.0f}%",
         f"{100 * r['ceiling_ratio']:.0f}%" if "ceiling_ratio" in r else "",
         f"{r['mean_batch']:.1f}" if "mean_batch" in r else "",
         f"{100 * r['engine_busy']:.0f}%" if "engine_busy" in r else "", f"{r['p50_ms']:.0f}",
         f"{r['p95_ms']:.0f}", f"{r['p99_ms']:.0f}", r["errors"],
         f"{r['overhead_ms']:+.1f}" if "overhead_ms" in r else "", f"{r['load_before']:.1f} → {r['load_after']:.1f}"]
        for r in report["rows"]
    ]  # fmt: skip
    header = ["model", "engine", "clients", "offline sent/s", "server sent/s", "server/offline",
              "ceiling/offline", "mean batch", "engine busy", "p50 ms",
              "p95 ms", "p99 ms", "errors", "N=1 overhead ms", "load (1 min)"]  # fmt: skip
    meta = report["meta"]
    lines = ["# hf-seq2seq serve under load", "", env_line(meta), ""]
    server = " ".join([f"--max_wait_ms {meta['max_wait_ms']}", f"--batch_wait {meta.get('batch_wait', 'always')}",
                       meta.get("server_args", "")]).strip()  # fmt: skip
    lines += [f"Models: {meta['models']}. {meta['n']} Multi30k test2016 sentences, beam {meta['num_beams']}, "
              f"{meta['threads']} intra-op thread(s) per engine, server {server}, "
              f"offline batch {meta['batch_size']}.", ""]  # fmt: skip
    if report["rows"]:
        lines += markdown_table(header, rows, "lllrrrrrrrrrrrl")
        lines += ["", "ceiling/offline: offline sentences/s with engine calls of N sentences in the order the "
                  "clients send them (unsorted), over the sorted offline figure: what a server whose engine is "
                  "never idle could reach with N one-sentence clients. Mean batch and engine busy (the share of "
                  "the wall time the engine was computing) come from the server's /metrics."]  # fmt: skip
    o = report.get("overload")
    if o:
        lines += ["", f"Overload: {o['cell']}, {o['seconds']:.0f} s of requests offered open-loop at "
                  f"{o['offered_rate']:.0f}/s ({args_factor(o)}× the {o['capacity_before']:.1f} sentences/s measured "
                  f"at N = 32 just before), server --max_queue {o['queue']}.", ""]  # fmt: skip
        lines += markdown_table(
            ["sent", "200", "503", "other", "200 p99 / max ms", "503 p99 / max ms", "RSS start → peak MB",
             "N = 32 sent/s before → after", "load (1 min)"],
            [[o["sent"], o["ok"], o["503"], f"{o['other']} {o['other_kinds'] or ''}".strip(),
              f"{o['ok_p99_ms']:.0f} / {o['ok_max_ms']:.0f}", f"{o['503_p99_ms']:.0f} / {o['503_max_ms']:.0f}",
              f"{o['rss_start_mb']:.0f} → {o['rss_peak_mb']:.0f}",
              f"{o['capacity_before']:.1f} → {o['capacity_after']:.1f}",
              f"{o['load_before']:.1f} → {o['load_after']:.1f}"]],
            "rrrrrrrrl",
        )  # fmt: skip
    f = report.get("faults")
    if f:

        def kinds(run):
            return ", ".join(f"{n} {k}" for k, n in sorted(run.get("error_kinds", {}).items())) or "none"

        sig = f["sigterm"]
        answered = f["sigterm_sent"] - sig["errors"]
        lines += ["", f"Faults: {f['cell']}, 32 clients.", ""]
        lines += markdown_table(
            ["run", "sent/s", "p99 ms", "errors"],
            [["32 clients", f"{f['quiet']['sent_s']:.1f}", f"{f['quiet']['p99_ms']:.0f}", kinds(f["quiet"])],
             [f"32 clients + 100 that go away mid-request ({f['dropped']:.0f} segments left the queue)",
              f"{f['walk_away']['sent_s']:.1f}", f"{f['walk_away']['p99_ms']:.0f}", kinds(f["walk_away"])],
             ["32 clients, right after", f"{f['after']['sent_s']:.1f}", f"{f['after']['p99_ms']:.0f}", kinds(f["after"])],
             [f"SIGTERM 1 s into 32 clients: {answered} answered 200, exit status {f['exit_code']} after "
              f"{f['exit_s']:.1f} s", "", f"{sig['p99_ms']:.0f}", kinds(sig)]],
            "lrrl",
        )  # fmt: skip
    return lines


def args_factor(o: dict) -> str:
    return f"{o['offered_rate'] / o['capacity_before']:.0f}" if o["capacity_before"] else "?"


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        given = dict(spec.split("=", 1) for spec in args.model)
        saved = {name: workdir / name for name in ENGINES if (workdir / name / "config.json").is_file()}
        if given:
            folders, trained = {k: Path(v) for k, v in given.items()}, "given folders"
        elif args.workdir and not args.quick and len(saved) == len(ENGINES):
            folders = saved
            trained = f"a Transformer and a bi-GRU trained by an earlier run in {args.workdir}"
        else:
            folders = train_models(workdir, args.train_steps, args.quick)
            trained = f"a Transformer and a bi-GRU trained here for {args.train_steps} steps on Multi30k"
        cells = engine_folders(folders, workdir)
        sentences = [s for s in read_lines(MULTI30K / "test_2016_flickr.de.gz", args.n)]
        meta = environment("cpu", "bench_server.py", argv, n=len(sentences), num_beams=args.num_beams,
                           max_wait_ms=args.max_wait_ms, batch_wait=args.batch_wait, server_args=args.server_args, batch_size=args.batch_size, models=trained)  # fmt: skip
        rows = []
        if not args.no_load_table:
            process, port = start_server(cells, args, workdir)
            try:
                rows = measure(cells, args, sentences, port)
            finally:
                process.terminate()
                process.wait(60)
        extra = {"overload": overload(cells, args, sentences, workdir)} if args.overload else {}
        if args.faults:
            extra["faults"] = faults(cells, args, sentences, workdir)
    report = {"meta": {**meta, "load_average_end": load_average()}, "rows": rows, **extra}
    _write_report(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Helpers of the server tests (tests/serving/test_serve.py, tests/serving/test_serve_page.py): tiny model folders and exports
built here, a real `hf-seq2seq serve` process on a free 127.0.0.1 port, or the same app under uvicorn in a thread
of the test process (when a test needs to hand the app an engine of its own)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from hub_server import TINY_SENTENCES, tiny_model, tiny_tokenizer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "drei und zwanzig",
    "neun tausend neun hundert sieben und achtzig",
    "ein Hund läuft über die Wiese.",
    "neun",
    "zwanzig und drei",
    "ein Hund",
    "neun hundert",
    "die Wiese",
]


def build_models(root: Path, exports: bool = True) -> dict[str, Path]:
    """``{name: folder}``: the tiny Transformer and bi-GRU (torch), and with ``exports`` the Transformer's
    CTranslate2 export and both ONNX exports (those the installed engines allow)."""
    from hf_seq2seq.hub import save_model_folder

    tokenizer = tiny_tokenizer()
    folders = {
        "de-en": save_model_folder(_copier("transformer", tokenizer), tokenizer, root / "transformer"),
        "rnn": save_model_folder(_copier("rnn", tokenizer), tokenizer, root / "rnn"),
    }
    if not exports:
        return folders
    with contextlib.suppress(ImportError):
        import ctranslate2  # noqa: F401

        from hf_seq2seq.export import export_ctranslate2

        folders["transformer-ct2"] = export_ctranslate2(folders["de-en"], root / "ct2")
    with contextlib.suppress(ImportError):
        import onnxruntime  # noqa: F401

        from hf_seq2seq.export import export_onnx

        folders["transformer-onnx"] = export_onnx(folders["de-en"], root / "t_onnx")
        folders["rnn-onnx"] = export_onnx(folders["rnn"], root / "r_onnx")
    return {k: Path(v) for k, v in folders.items()}


def _copier(family: str, tokenizer):
    """A tiny model trained for 60 steps (a second of CPU) to copy its input: untrained, the Transformer says the
    same for every input, and a mixed-up batch would go unnoticed."""
    import torch

    model = tiny_model(family, len(tokenizer)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    texts = TINY_SENTENCES + SENTENCES
    batch = tokenizer(texts, text_target=texts, padding=True, return_tensors="pt")
    batch["labels"] = batch["labels"].masked_fill(batch["labels"] == tokenizer.pad_token_id, -100)
    for _ in range(60):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.generation_config.max_new_tokens = 10
    return model.eval()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, body=None, method: str | None = None, headers: dict | None = None, timeout: float = 60):
    """``(status, headers, parsed JSON or text)``; HTTP errors are answers too."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, headers_, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        status, headers_, raw = err.code, dict(err.headers), err.read()
    text = raw.decode("utf-8")
    try:
        return status, headers_, json.loads(text)
    except ValueError:
        return status, headers_, text


def wait_ready(url: str, process: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"the server exited with {process.returncode}: {process.stderr.read()[-3000:]}"
            )
        try:
            if request(url + "/ready", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout} s")


@contextlib.contextmanager
def server_process(args: list[str], timeout: float = 120):
    """``hf-seq2seq serve ARGS --port P`` as a child process; yields ``(url, process)``; terminated at the end."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable,
        "-m",
        "hf_seq2seq.cli",
        "serve",
        *args,
        "--port",
        str(port),
        "--log_level",
        "warning",
    ]
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, timeout)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def server_thread(app):
    """The app under uvicorn in a thread of this process (a real socket); yields the URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout=30)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)

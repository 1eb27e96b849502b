"""A loopback Hugging Face Hub for tests: a real HTTP server on 127.0.0.1 answering the calls that
``HfApi.create_repo`` / ``create_branch`` / ``upload_folder`` and ``from_pretrained`` make.

Repos live in memory: every commit is recorded (message, files it carried) and each branch points at a snapshot
``{path: bytes}``. Point a *subprocess* at it with ``HF_ENDPOINT=server.url`` (huggingface_hub reads the endpoint
once, when it is imported) and ``HF_HUB_OFFLINE=0``.

Answered:
    POST /api/repos/create                              → {"url": ...} (409 if it exists)
    POST /api/models/{repo}/branch/{branch}             → create a branch from main
    POST /api/validate-yaml                              → 200 (the front matter must parse as a YAML mapping)
    POST /api/models/{repo}/preupload/{rev}              → "uploadMode": "regular" for every file (no LFS / Xet)
    POST /api/models/{repo}/commit/{rev}                 → NDJSON: header line + one "file" line (base64) per file
    GET  /api/models/{repo}[/revision/{rev}]             → model info with siblings and sha
    GET  /api/models/{repo}/tree/{rev}[/{path}]          → file listing
    HEAD/GET /{repo}/resolve/{rev}/{path}               → file bytes, X-Repo-Commit, ETag, Content-Length
Anything else is a 404 and is recorded in ``server.unhandled`` so a test can show what it missed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml


@dataclass
class Commit:
    oid: str
    revision: str
    summary: str
    description: str
    files: dict[str, bytes]  # what this commit added or changed
    deleted: list[str]


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    heads: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    commits: list[Commit] = field(default_factory=list)


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


class HubState:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []
        self.unhandled: list[str] = []
        self.lock = threading.Lock()

    def create_repo(self, repo_id: str, private: bool) -> Repo:
        repo = Repo(repo_id, private)
        init = _sha1(f"init {repo_id}".encode())
        repo.heads["main"] = init
        self.repos[repo_id] = repo
        return repo


_REPO = r"(?P<repo>[^/]+/[^/]+)"


class _Handler(BaseHTTPRequestHandler):
    server_version = "LoopbackHub/1.0"
    protocol_version = "HTTP/1.1"

    @property
    def state(self) -> HubState:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # keep test output quiet
        pass

    # -------------------------------------------------------------- helpers
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _send(
        self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"
    ):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj, headers: dict | None = None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, status: int, message: str):
        self._json(status, {"error": message}, {"X-Error-Message": message})

    def _repo(self, repo_id: str) -> Repo | None:
        return self.state.repos.get(unquote(repo_id))

    def _route(self, routes):
        path = unquote(urlsplit(self.path).path)
        with self.state.lock:
            self.state.requests.append(f"{self.command} {path}")
        for pattern, func in routes:
            match = re.fullmatch(pattern, path)
            if match:
                try:
                    return func(**match.groupdict())
                except Exception as err:  # a server bug must show up as a failing request, not a hang
                    return self._error(500, f"{type(err).__name__}: {err}")
        with self.state.lock:
            self.state.unhandled.append(f"{self.command} {path}")
        self._body()
        return self._error(404, f"not handled by the loopback hub: {self.command} {path}")

    # -------------------------------------------------------------- verbs
    def do_POST(self):
        self._route(
            [
                (r"/api/repos/create", self.create_repo),
                (rf"/api/models/{_REPO}/branch/(?P<branch>.+)", self.create_branch),
                (r"/api/validate-yaml", self.validate_yaml),
                (rf"/api/models/{_REPO}/preupload/(?P<rev>[^/]+)", self.preupload),
                (rf"/api/models/{_REPO}/commit/(?P<rev>[^/]+)", self.commit),
            ]
        )

    def do_GET(self):
        self._route(
            [
                (rf"/api/models/{_REPO}", self.model_info),
                (rf"/api/models/{_REPO}/revision/(?P<rev>[^/]+)", self.model_info),
                (rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<sub>.*))?", self.tree),
                (rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self.resolve),
            ]
        )

    def do_HEAD(self):
        self._route([(rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self.resolve)])

    # -------------------------------------------------------------- endpoints
    def create_repo(self):
        payload = json.loads(self._body() or b"{}")
        name, org = payload.get("name"), payload.get("organization")
        repo_id = f"{org}/{name}" if org else name
        if not repo_id or "/" not in repo_id:
            return self._error(400, f"repo name must be namespace/name, got {repo_id!r}")
        if payload.get("type", "model") != "model":
            return self._error(400, "the loopback hub only stores model repos")
        host = self.headers.get("Host")
        with self.state.lock:
            if (
                repo_id in self.state.repos
            ):  # the Hub's 409 carries the url too (create_repo(exist_ok=True) reads it)
                message = "You already created this model repo"
                return self._json(
                    409, {"error": message, "url": f"http://{host}/{repo_id}"}, {"X-Error-Message": message}
                )
            private = payload.get("private") or payload.get("visibility") == "private"
            self.state.create_repo(repo_id, bool(private))
        self._json(200, {"url": f"http://{host}/{repo_id}", "name": repo_id})

    def create_branch(self, repo, branch):
        self._body()
        repo_obj = self._repo(repo)
        if repo_obj is None:
            return self._error(404, f"Repository {repo} not found")
        with self.state.lock:
            if branch in repo_obj.branches:
                return self._error(409, f"Reference already exists: {branch}")
            repo_obj.branches[branch] = dict(repo_obj.branches["main"])
            repo_obj.heads[branch] = repo_obj.heads["main"]
        self._json(200, {})

    def validate_yaml(self):
        payload = json.loads(self._body() or b"{}")
        content = payload.get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.DOTALL)
        if match:
            try:
                meta = yaml.safe_load(match.group(1))
            except yaml.YAMLError as err:
                return self._send(400, f"invalid YAML: {err}".encode(), content_type="text/plain")
            if not isinstance(meta, dict):
                return self._send(400, b"metadata must be a mapping", content_type="text/plain")
        self._json(200, {"errors": [], "warnings": []})

    def preupload(self, repo, rev):
        payload = json.loads(self._body() or b"{}")
        if self._repo(repo) is None:
            return self._error(404, f"Repository {repo} not found")
        files = [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in payload["files"]
        ]
        self._json(200, {"files": files, "commitOid": self._repo(repo).heads.get(unquote(rev))})

    def commit(self, repo, rev):
        rev = unquote(rev)
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        repo_obj = self._repo(repo)
        if repo_obj is None:
            return self._error(404, f"Repository {repo} not found")
        if rev not in repo_obj.branches:
            return self._error(404, f"Invalid rev id: {rev}")
        if not lines or lines[0].get("key") != "header":
            return self._error(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        added, deleted = {}, []
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                if value.get("encoding") != "base64":
                    return self._error(400, f"unsupported encoding {value.get('encoding')!r}")
                added[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
            else:
                return self._error(400, f"the loopback hub does not store {key!r} operations (LFS)")
        with self.state.lock:
            snapshot = repo_obj.branches[rev]
            for path in deleted:
                for existing in [p for p in snapshot if p == path or p.startswith(path.rstrip("/") + "/")]:
                    del snapshot[existing]
            snapshot.update(added)
            oid = _sha1(
                repr((repo_obj.heads[rev], sorted((p, _sha1(b)) for p, b in snapshot.items()))).encode()
            )
            repo_obj.heads[rev] = oid
            repo_obj.commits.append(
                Commit(oid, rev, header.get("summary", ""), header.get("description", ""), added, deleted)
            )
        host = self.headers.get("Host")
        self._json(
            200, {"commitUrl": f"http://{host}/{repo}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}
        )

    def _snapshot(self, repo_obj: Repo, rev: str) -> tuple[str, dict[str, bytes]] | None:
        if rev in repo_obj.branches:
            return repo_obj.heads[rev], repo_obj.branches[rev]
        for branch, head in repo_obj.heads.items():  # a commit sha that is a branch head
            if head == rev:
                return head, repo_obj.branches[branch]
        return None

    def model_info(self, repo, rev="main"):
        repo_obj = self._repo(repo)
        found = self._snapshot(repo_obj, unquote(rev)) if repo_obj else None
        if found is None:
            return self._error(404, f"Repository {repo} (revision {rev}) not found")
        sha, files = found
        self._json(
            200,
            {
                "id": repo_obj.repo_id,
                "modelId": repo_obj.repo_id,
                "sha": sha,
                "private": repo_obj.private,
                "siblings": [{"rfilename": p, "size": len(b)} for p, b in sorted(files.items())],
                "tags": [],
            },
        )

    def tree(self, repo, rev, sub=None):
        repo_obj = self._repo(repo)
        found = self._snapshot(repo_obj, unquote(rev)) if repo_obj else None
        if found is None:
            return self._error(404, f"Repository {repo} (revision {rev}) not found")
        _, files = found
        prefix = (sub or "").strip("/")
        entries = [
            {"type": "file", "path": p, "size": len(b), "oid": _sha1(b)}
            for p, b in sorted(files.items())
            if not prefix or p.startswith(prefix + "/")
        ]
        if prefix and not entries:
            return self._error(404, f"{prefix} does not exist on {rev}")
        self._json(200, entries)

    def resolve(self, repo, rev, file):
        repo_obj = self._repo(repo)
        found = self._snapshot(repo_obj, unquote(rev)) if repo_obj else None
        if found is None:
            return self._error(404, f"Repository {repo} (revision {rev}) not found")
        sha, files = found
        if file not in files:
            return self._send(
                404, b"Entry not found", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha}, "text/plain"
            )
        data = files[file]
        self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{_sha1(data)}"'}, "application/octet-stream")


class LoopbackHub:
    """Start with ``hub = LoopbackHub().start()``; ``hub.url`` is the endpoint, ``hub.state`` what it stored."""

    def __init__(self):
        self.state = HubState()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.state = self.state  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-hub", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LoopbackHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------------- tiny models
TINY_SENTENCES = [
    "drei und zwanzig",
    "neun tausend neun hundert sieben und achtzig",
    "twenty-three",
    "nine thousand, nine hundred and eighty-seven",
    "ein Hund läuft über die Wiese.",
    "a dog runs across the meadow.",
]


def tiny_tokenizer():
    """A real BPE tokenizer (hf_seq2seq.train_tokenizer) on a handful of sentences; <pad>=0 <s>=1 </s>=2 <unk>=3."""
    from hf_seq2seq import train_tokenizer

    return train_tokenizer(TINY_SENTENCES * 4, vocab_size=120, min_frequency=1)


def tiny_model(family: str, vocab_size: int, seed: int = 0, **overrides):
    """An untrained tiny model of one family (``"rnn"`` or ``"transformer"``), in eval mode."""
    import torch

    from hf_seq2seq import (
        RNNSeq2SeqConfig,
        RNNSeq2SeqForConditionalGeneration,
        TransformerSeq2SeqConfig,
        TransformerSeq2SeqForConditionalGeneration,
    )

    torch.manual_seed(seed)
    if family == "rnn":
        options = dict(
            vocab_size=vocab_size,
            embedding_size=16,
            hidden_size=16,
            encoder_layers=1,
            decoder_layers=1,
            attention="bahdanau",
            dropout=0.0,
            max_position_embeddings=32,
        )
        options.update(overrides)
        model = RNNSeq2SeqForConditionalGeneration(RNNSeq2SeqConfig(**options))
    elif family == "transformer":
        options = dict(
            vocab_size=vocab_size,
            d_model=16,
            encoder_layers=1,
            decoder_layers=2,
            num_attention_heads=2,
            ffn_dim=32,
            dropout=0.0,
            max_position_embeddings=32,
        )
        options.update(overrides)
        model = TransformerSeq2SeqForConditionalGeneration(TransformerSeq2SeqConfig(**options))
    else:
        raise ValueError(f"family must be 'rnn' or 'transformer', got {family!r}")
    # short, deterministic generation so tests stay fast
    model.generation_config.max_new_tokens = 6
    model.generation_config.num_beams = 2
    return model.eval()

"""The FastAPI application of ``hf-seq2seq serve``: LibreTranslate's API, the native ``/v1`` API, health, readiness,
Prometheus metrics and the page at ``/``.

Every model is an :class:`~hf_seq2seq.inference.engines.Engine` loaded once (:func:`hf_seq2seq.inference.load_engine`)
with its own :class:`~hf_seq2seq.serving.batcher.Batcher`; a request's segments are tokenized with the engine's
:meth:`~hf_seq2seq.inference.engines.Engine.encode` and translated by the batcher with
:meth:`~hf_seq2seq.inference.engines.Engine.translate_ids`, so the server gives what ``hf-seq2seq translate`` gives.

Errors are ``{"error": "one line"}`` with LibreTranslate's status codes: 400 bad input (malformed JSON, non-UTF-8,
wrong types, unknown model or language pair, empty ``q``, limits, out-of-range search options), 403 a wrong API key,
413 a body over ``max_body_bytes``, 503 a full queue (with ``Retry-After``), 500 an engine failure (that batch only).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ValidationError

from ..inference import Engine
from ..inference.alignment import format_pharaoh, hard_alignment
from .batcher import Batcher, EngineError, QueueFull, SearchOptions, SegmentOutput
from .metrics import ServerMetrics
from .schemas import (
    ErrorResponse,
    Language,
    LibreTranslateRequest,
    LibreTranslateResponse,
    ModelInfo,
    ModelsResponse,
    StatusResponse,
    TranslateRequest,
    TranslateResponse,
)

ERRORS = {
    400: {
        "model": ErrorResponse,
        "description": "bad input (one line naming the field, value and what is allowed)",
    },
    403: {"model": ErrorResponse, "description": "a missing or wrong api_key"},
    413: {"model": ErrorResponse, "description": "the body is over --max_body_bytes"},
    500: {"model": ErrorResponse, "description": "the engine failed on the batch that held this request"},
    503: {"model": ErrorResponse, "description": "the queue is full: retry after Retry-After seconds"},
}


@dataclass
class ServerSettings:
    """The limits and batching options (``hf-seq2seq serve --help`` documents each)."""

    api_key: str | None = None
    cors_origins: Sequence[str] = ()
    max_input_chars: int = 5000
    max_segments: int = 128
    max_body_bytes: int = 1_000_000
    max_num_beams: int = 8
    max_n_best: int = 8
    max_new_tokens: int = 512
    max_batch_tokens: int = 4096
    max_wait_ms: float = 5.0
    batch_wait: str = "adaptive"
    max_queue: int = 1024
    workers: int = 1
    retry_after_s: int = 1


SUMMARY_KEYS = (
    "model_type", "quantization", "vocab_size", "d_model", "encoder_layers", "decoder_layers",
    "num_attention_heads", "ffn_dim", "pre_norm", "cell", "attention", "hidden_size", "embedding_size",
    "bidirectional_encoder", "input_feeding",
)  # fmt: skip


@dataclass
class ServedModel:
    """A loaded engine, its name, languages and batcher."""

    name: str
    engine_name: str
    path: str
    engine: Engine
    source: str | None = None
    target: str | None = None
    batcher: Batcher | None = field(default=None, repr=False)

    @property
    def has_attention(self) -> bool:
        return self.engine_name in ("torch", "ctranslate2") and hasattr(self.engine, "cross_attention")

    def config_summary(self) -> dict:
        """The model's shape: its config (torch / onnxruntime), or for CTranslate2 the export's facts and the
        config of the folder it was exported from, when that is still there."""
        config = getattr(getattr(self.engine, "model", None), "config", None)
        values = config.to_dict() if config is not None else {}
        if config is None:
            info_file = Path(self.path) / "export.json"
            info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
            values = {k: info[k] for k in ("model_type", "quantization") if k in info}
            source_config = Path(info.get("source", "")) / "config.json"
            if info.get("source") and source_config.is_file():
                values = {**json.loads(source_config.read_text(encoding="utf-8")), **values}
        return {k: values[k] for k in SUMMARY_KEYS if k in values}

    def info(self) -> dict:
        summary = self.config_summary()
        return ModelInfo(
            name=self.name,
            family=summary.get("model_type"),
            engine=self.engine_name,
            source=self.source,
            target=self.target,
            path=self.path,
            max_source_length=self.engine.max_source_length,
            default_num_beams=self.engine.default_beams,
            attention=self.has_attention,
            config=summary,
        ).model_dump()


class ApiError(Exception):
    """An answer other than 200: status, one line, optional headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)


# ------------------------------------------------------------------------------------------ reading requests
async def read_payload(request: Request, limit: int) -> dict:
    """The body as a dict: JSON, or a urlencoded form (LibreTranslate's client); 413 past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body has {declared} bytes; the limit (--max_body_bytes) is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is over the limit (--max_body_bytes) of {limit} bytes")
        chunks.append(chunk)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as err:
        raise ApiError(400, f"the request body is not valid UTF-8 (byte {err.start})") from None
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return _form(text)
    if not text.strip():
        raise ApiError(400, "the request body is empty; send a JSON object")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as err:
        raise ApiError(400, f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, f"the body must be a JSON object, got {type(payload).__name__}")
    return payload


def _form(text: str) -> dict:
    fields = parse_qs(text, keep_blank_values=True)
    payload: dict = {key: values[-1] for key, values in fields.items()}
    alternatives = payload.get("alternatives")
    if isinstance(alternatives, str) and alternatives.strip().lstrip("-").isdigit():
        payload["alternatives"] = int(alternatives)
    return payload


def validate(model: type[BaseModel], payload: dict):
    """``model.model_validate(payload)``, a ValidationError becoming one line (field, problem, value)."""
    try:
        return model.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        if first["type"] == "extra_forbidden":
            valid = ", ".join(model.model_fields)
            raise ApiError(400, f"unknown field {where!r}; valid fields: {valid}") from None
        if first["type"] == "missing":
            raise ApiError(400, f"the field {where!r} is missing") from None
        got = json.dumps(first.get("input"), ensure_ascii=False)[:80]
        raise ApiError(400, f"{where}: {first['msg'].lower()}, got {got}") from None


def _in_range(name: str, value: int | None, low: int, high: int, option: str) -> None:
    if value is not None and not low <= value <= high:
        raise ApiError(400, f"{name}={value} is out of range; valid: {low} to {high} ({option})")


class Server:
    """The state every route reads: the models, the settings, the metrics."""

    def __init__(self, models: Sequence[ServedModel], settings: ServerSettings):
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"--model: each model needs its own name, got {names}")
        self.models = {m.name: m for m in models}
        self.settings = settings
        self.metrics = ServerMetrics()
        self.ready = False
        for m in models:
            m.batcher = Batcher(
                m.engine,
                max_batch_tokens=settings.max_batch_tokens,
                max_wait_ms=settings.max_wait_ms,
                batch_wait=settings.batch_wait,
                max_queue=settings.max_queue,
                workers=settings.workers,
                on_batch=self.metrics.batch_observer(m.name),
                name=m.name,
            )
            self.metrics.watch_queue(m.name, m.batcher)

    def all_queues_full(self) -> bool:
        return all(
            m.batcher is None or m.batcher.depth >= self.settings.max_queue for m in self.models.values()
        )

    def close(self) -> None:
        self.ready = False
        for m in self.models.values():
            if m.batcher is not None:
                m.batcher.close()

    # ---------------------------------------------------------------------------------------------- checks
    def check_key(self, given: str | None, request: Request) -> None:
        expected = self.settings.api_key
        if expected is None:
            return
        given = given or request.headers.get("x-api-key")
        if given != expected:
            what = "missing" if not given else "invalid"
            raise ApiError(403, f"api_key is {what}: this server requires the key given to --api_key")

    def check_segments(self, segments: list[str], field_name: str) -> None:
        s = self.settings
        if not segments:
            raise ApiError(400, f"{field_name} is empty: give at least one segment")
        if len(segments) > s.max_segments:
            raise ApiError(
                400,
                f"{field_name} has {len(segments)} segments; the limit (--max_segments) is {s.max_segments}",
            )
        for i, text in enumerate(segments):
            if len(text) > s.max_input_chars:
                raise ApiError(
                    400,
                    f"{field_name}[{i}] has {len(text)} characters; the limit (--max_input_chars) is "
                    f"{s.max_input_chars}",
                )

    def model_named(self, name: str | None) -> ServedModel:
        if name is None:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise ApiError(400, f"model is missing; valid models: {', '.join(self.models)}")
        if name not in self.models:
            raise ApiError(400, f"model={name!r} is unknown; valid models: {', '.join(self.models)}")
        return self.models[name]

    def model_for(self, source: str, target: str) -> ServedModel:
        for m in self.models.values():
            if (m.source, m.target) == (source, target):
                return m
        pairs = sorted({f"{m.source}-{m.target}" for m in self.models.values() if m.source and m.target})
        raise ApiError(
            400,
            f"no model translates source={source!r} to target={target!r}; available pairs: {', '.join(pairs)}",
        )

    def search_options(
        self, num_beams, n_best, max_new_tokens, return_scores, return_alignment=False
    ) -> SearchOptions:
        s = self.settings
        _in_range("num_beams", num_beams, 1, s.max_num_beams, "--max_num_beams")
        _in_range("n_best", n_best, 1, s.max_n_best, "--max_n_best")
        _in_range("max_new_tokens", max_new_tokens, 1, s.max_new_tokens, "--max_new_tokens")
        return SearchOptions(num_beams, n_best, max_new_tokens, return_scores, return_alignment)

    # --------------------------------------------------------------------------------------- translating
    async def translate(
        self,
        request: Request,
        model: ServedModel,
        segments: list[str],
        options: SearchOptions,
        attention=False,
    ) -> list[SegmentOutput]:
        ids = model.engine.encode(segments)
        assert model.batcher is not None
        try:
            future, handle = model.batcher.submit(ids, options, attention, segments)
        except QueueFull as err:
            self.metrics.rejected.labels(model.name).inc()
            raise ApiError(503, str(err), {"Retry-After": str(self.settings.retry_after_s)}) from None
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait({future, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if future not in done:
            self.metrics.dropped.labels(model.name).inc(model.batcher.cancel(handle))
            raise ApiError(499, "the client closed the connection")
        try:
            outputs = future.result()
        except EngineError as err:
            raise ApiError(500, str(err)) from None
        self.metrics.segments.labels(model.name).inc(len(segments))
        return outputs


def shedding_middleware(server: Server):
    """A pure ASGI middleware that answers a translate request 503 before FastAPI reads its body, while every
    model's queue is full (the route would answer 503 anyway): an overloaded server then spends a fraction of a
    request's handling on each one it turns away, and keeps up with a flood instead of timing out at connect."""
    paths = {"/translate", "/v1/translate"}
    retry = str(server.settings.retry_after_s).encode()

    class SheddingMiddleware:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            shed = scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in paths
            if shed and server.all_queues_full():
                server.metrics.shed.inc()
                body = b'{"error":"every model\'s queue is full; retry later"}'
                headers = [(b"content-type", b"application/json"), (b"retry-after", retry),
                           (b"content-length", str(len(body)).encode())]  # fmt: skip
                await send({"type": "http.response.start", "status": 503, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await self.app(scope, receive, send)

    return SheddingMiddleware


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (the body has been read, so the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _attention_json(model: ServedModel, ids: list[int] | None, output: SegmentOutput) -> dict | None:
    if output.attention is None or not ids:
        return None
    tokenizer = model.engine.tokenizer
    target = [*output.translation.token_ids[0], tokenizer.eos_token_id]
    return {
        "source_tokens": tokenizer.convert_ids_to_tokens(ids),
        "target_tokens": tokenizer.convert_ids_to_tokens(target),
        "weights": output.attention.round(4).tolist(),
    }


def _body_schema(model: type[BaseModel], form: bool = False) -> dict:
    schema = model.model_json_schema()
    content = {"application/json": {"schema": schema}}
    if form:
        content["application/x-www-form-urlencoded"] = {"schema": schema}
    return {"requestBody": {"required": True, "content": content}}


def page_html() -> str:
    return resources.files(__package__).joinpath("static", "index.html").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------ the app
def create_app(models: Sequence[ServedModel], settings: ServerSettings | None = None) -> FastAPI:
    """The application serving ``models`` (each with an engine already loaded)."""
    server = Server(models, settings or ServerSettings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # The models, torch and transformers are millions of objects that live as long as the server: out of the
        # collector's sight, a full collection no longer stops the event loop and the engine's Python for tens of
        # ms every few hundred requests (it was 30% of the loop's time under load; docs/deployment.md).
        gc.collect()  # what is garbage now is freed, not frozen
        gc.freeze()
        server.ready = True
        yield
        server.ready = False
        gc.unfreeze()
        await asyncio.get_running_loop().run_in_executor(None, server.close)

    from .. import __version__ as version

    app = FastAPI(
        title="hf-seq2seq serve",
        version=version,
        description="Translation with classic encoder-decoder models: LibreTranslate's API, a native batch API "
        "with n-best, scores and cross-attention, health, readiness and Prometheus metrics.",
        lifespan=lifespan,
    )
    app.state.server = server
    if server.settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(server.settings.cors_origins), allow_methods=["*"]
        )
    app.add_middleware(shedding_middleware(server))  # inside the metrics one: its 503s are counted
    app.add_middleware(server.metrics.middleware)
    _add_libretranslate_routes(app, server)
    _add_native_routes(app, server)
    _add_status_routes(app, server)
    return app


def _add_libretranslate_routes(app: FastAPI, server: Server) -> None:
    @app.post(
        "/translate",
        response_model=LibreTranslateResponse,
        responses=ERRORS,
        openapi_extra=_body_schema(LibreTranslateRequest, form=True),
        tags=["LibreTranslate"],
        summary="Translate text (LibreTranslate's API; JSON or form)",
    )
    async def translate(request: Request):
        try:
            body = validate(
                LibreTranslateRequest, await read_payload(request, server.settings.max_body_bytes)
            )
            server.check_key(body.api_key, request)
            if body.format != "text":
                raise ApiError(400, f"format={body.format!r} is not supported; valid: text")
            segments = [body.q] if isinstance(body.q, str) else list(body.q)
            server.check_segments(segments, "q")
            if isinstance(body.q, str) and not body.q.strip():
                raise ApiError(400, "q is empty: give the text to translate")
            model = server.model_for(body.source, body.target)
            options = server.search_options(None, body.alternatives + 1, None, False)
            outputs = await server.translate(request, model, segments, options)
        except ApiError as err:
            return error_response(err)
        texts = [o.translation.hypotheses for o in outputs]
        if isinstance(body.q, str):
            result = {"translatedText": texts[0][0]}
            if body.alternatives:
                result["alternatives"] = texts[0][1:]
        else:
            result = {"translatedText": [t[0] for t in texts]}
            if body.alternatives:
                result["alternatives"] = [t[1:] for t in texts]
        return JSONResponse(result)

    # POST too: LibreTranslate answers both, and libretranslatepy before 2.1.4 POSTs
    @app.post("/languages", include_in_schema=False)
    @app.get("/languages", response_model=list[Language], tags=["LibreTranslate"], summary="Languages served")
    async def languages():
        targets: dict[str, list[str]] = {}
        for m in server.models.values():
            if m.source and m.target:
                targets.setdefault(m.source, [])
                if m.target not in targets[m.source]:
                    targets[m.source].append(m.target)
        return JSONResponse(
            [{"code": code, "name": _language_name(code), "targets": t} for code, t in targets.items()]
        )


def _language_name(code: str) -> str:
    try:
        from babel import Locale

        return Locale.parse(code).get_display_name("en") or code
    except Exception:  # not a language babel knows: show the code
        return code


def _add_native_routes(app: FastAPI, server: Server) -> None:
    @app.post(
        "/v1/translate",
        response_model=TranslateResponse,
        responses=ERRORS,
        openapi_extra=_body_schema(TranslateRequest),
        tags=["native"],
        summary="Translate a batch of segments: n-best, scores, cross-attention",
    )
    async def translate_v1(request: Request):
        try:
            body = validate(TranslateRequest, await read_payload(request, server.settings.max_body_bytes))
            server.check_key(body.api_key, request)
            model = server.model_named(body.model)
            server.check_segments(body.segments, "segments")
            if body.return_attention and not model.has_attention:
                raise ApiError(
                    400,
                    f"return_attention needs the torch or ctranslate2 engine; model {model.name!r} runs "
                    f"{model.engine_name}",
                )
            if body.return_alignment:
                try:  # a model without attention, an onnxruntime export: one line
                    model.engine.check_alignment(None, None)
                except ValueError as err:
                    raise ApiError(400, f"return_alignment: {err}") from None
            options = server.search_options(
                body.num_beams, body.n_best, body.max_new_tokens, body.return_scores, body.return_alignment
            )
            outputs = await server.translate(request, model, body.segments, options, body.return_attention)
        except ApiError as err:
            return error_response(err)
        ids = model.engine.encode(body.segments) if body.return_attention else [None] * len(outputs)
        results = []
        for source_ids, output in zip(ids, outputs, strict=True):
            item: dict = {"hypotheses": output.translation.hypotheses}
            if body.return_scores:
                item["scores"] = output.translation.scores
            if body.return_attention:
                item["attention"] = _attention_json(model, source_ids, output)
            if body.return_alignment:
                item["alignments"] = [
                    format_pharaoh(hard_alignment(a)) for a in output.translation.alignments or []
                ]
            results.append(item)
        return JSONResponse({"model": model.name, "results": results})

    @app.get("/v1/models", response_model=ModelsResponse, tags=["native"], summary="The models served")
    async def models():
        return JSONResponse({"models": [m.info() for m in server.models.values()]})


def _add_status_routes(app: FastAPI, server: Server) -> None:
    @app.get("/health", response_model=StatusResponse, tags=["status"], summary="Liveness")
    async def health():
        return JSONResponse({"status": "ok"})

    @app.get(
        "/ready",
        response_model=StatusResponse,
        responses={503: {"model": StatusResponse}},
        tags=["status"],
        summary="Readiness: every model loaded and the server accepting work",
    )
    async def ready():
        status = 200 if server.ready else 503
        return JSONResponse(
            {"status": "ready" if server.ready else "not ready", "models": list(server.models)},
            status_code=status,
        )

    @app.get("/metrics", tags=["status"], summary="Prometheus metrics (text format)")
    async def metrics():
        body, content_type = server.metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(page_html())


def openapi_schema(app: FastAPI | None = None) -> dict:
    """The schema FastAPI generates (served at /openapi.json, rendered at /docs; the same for any models), with the
    package version left out so that docs/serving_openapi.json changes only when the API does."""
    schema = dict((app or create_app([])).openapi())
    schema["info"] = {**schema["info"], "version": "see /openapi.json"}
    return schema


def write_openapi(path: str | Path, app: FastAPI | None = None) -> Path:
    path = Path(path)
    path.write_text(json.dumps(openapi_schema(app), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path

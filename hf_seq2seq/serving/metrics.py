"""Prometheus metrics of ``hf-seq2seq serve`` (``GET /metrics``, text format), in the server's own registry.

- ``hf_seq2seq_requests_total{path, code}`` and ``hf_seq2seq_errors_total{path, code}`` (status >= 400);
- ``hf_seq2seq_request_seconds{path}``: latency histogram;
- ``hf_seq2seq_batch_segments{model}`` and ``hf_seq2seq_batch_tokens{model}`` (padded source tokens): one
  observation per engine call;
- ``hf_seq2seq_engine_seconds{model}``: the time of each engine call (its ``_sum`` over wall time is how busy the
  engine is: near 1, the engine is the bottleneck; well below 1 under load, the requests' own handling is);
- ``hf_seq2seq_queue_depth{model}``: segments waiting;
- ``hf_seq2seq_segments_total{model}``, ``hf_seq2seq_generated_tokens_total{model}`` (``</s>`` included, best
  hypotheses), ``hf_seq2seq_rejected_total{model}`` (503), ``hf_seq2seq_dropped_segments_total{model}`` (clients
  that went away);
- ``hf_seq2seq_shed_total``: translate requests answered 503 before their body was read, while every model's queue
  was full.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# the paths the app serves; anything else is counted as "other" (no label per scanned URL)
PATHS = {"/translate", "/languages", "/v1/translate", "/v1/models", "/health", "/ready", "/metrics", "/"}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    def __init__(self):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "hf_seq2seq_requests", "HTTP requests by path and status", ["path", "code"], registry=registry
        )
        self.errors = Counter(
            "hf_seq2seq_errors", "HTTP answers with status >= 400", ["path", "code"], registry=registry
        )
        self.latency = Histogram(
            "hf_seq2seq_request_seconds",
            "request latency",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_segments = Histogram(
            "hf_seq2seq_batch_segments", "segments per engine call", ["model"], buckets=BATCH_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.batch_tokens = Histogram(
            "hf_seq2seq_batch_tokens", "padded source tokens per engine call", ["model"],
            buckets=(16, 64, 256, 1024, 4096, 16384), registry=registry,
        )  # fmt: skip
        self.engine_seconds = Histogram(
            "hf_seq2seq_engine_seconds", "time of each engine call", ["model"], buckets=LATENCY_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.queue = Gauge("hf_seq2seq_queue_depth", "segments waiting", ["model"], registry=registry)
        self.segments = Counter("hf_seq2seq_segments", "segments translated", ["model"], registry=registry)
        self.generated = Counter(
            "hf_seq2seq_generated_tokens", "tokens generated (best hypotheses)", ["model"], registry=registry
        )
        self.rejected = Counter(
            "hf_seq2seq_rejected", "requests refused with 503 (queue full)", ["model"], registry=registry
        )
        self.shed = Counter(
            "hf_seq2seq_shed", "translate requests answered 503 before their body was read (every queue full)",
            registry=registry,
        )  # fmt: skip
        self.dropped = Counter(
            "hf_seq2seq_dropped_segments", "queued segments of clients that went away", ["model"],
            registry=registry,
        )  # fmt: skip

    def batch_observer(self, model: str):
        def observe(segments: int, tokens: int, generated: int, seconds: float) -> None:
            self.batch_segments.labels(model).observe(segments)
            self.engine_seconds.labels(model).observe(seconds)
            self.batch_tokens.labels(model).observe(tokens)
            self.generated.labels(model).inc(generated)

        return observe

    def watch_queue(self, model: str, batcher) -> None:
        self.queue.labels(model).set_function(lambda: batcher.depth)
        for counter in (self.segments, self.generated, self.rejected, self.dropped):
            counter.labels(model)  # present at 0 from the start

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    @property
    def middleware(self):
        """A pure ASGI middleware class (no wrapping of ``receive``: the routes see the client's disconnect)."""
        metrics = self

        class MetricsMiddleware:
            def __init__(self, app):
                self.app = app

            async def __call__(self, scope, receive, send):
                if scope["type"] != "http":
                    return await self.app(scope, receive, send)
                start, status = time.perf_counter(), [500]

                async def send_status(message):
                    if message["type"] == "http.response.start":
                        status[0] = message["status"]
                    await send(message)

                try:
                    await self.app(scope, receive, send_status)
                finally:
                    path = scope["path"] if scope["path"] in PATHS else "other"
                    code = str(status[0])
                    metrics.requests.labels(path, code).inc()
                    if status[0] >= 400:
                        metrics.errors.labels(path, code).inc()
                    metrics.latency.labels(path).observe(time.perf_counter() - start)

        return MetricsMiddleware

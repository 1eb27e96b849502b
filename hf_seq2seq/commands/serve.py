"""``hf-seq2seq serve --model de-en=runs/transformer/best_model``: a translation server (LibreTranslate's API, the
native ``/v1`` API, ``/health``, ``/ready``, ``/metrics``, the page at ``/``) over :mod:`hf_seq2seq.serving`."""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
from collections.abc import Sequence

from .common import fail, positive_int


def _non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-seq2seq serve",
        description="Serve translation models over HTTP: LibreTranslate's POST /translate and GET /languages, the "
        "native POST /v1/translate (n-best, scores, cross-attention) and GET /v1/models, GET /health, /ready, "
        "/metrics (Prometheus), the OpenAPI page at /docs and a page for people at /. Segments of concurrent "
        'requests are batched together. Needs the server extra: pip install "hf_seq2seq[server]".',
    )
    models = parser.add_argument_group("models")
    models.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a saved model folder (torch) or an hf-seq2seq export folder (ctranslate2 / onnxruntime, read from its "
        "export.json); a NAME like de-en gives the languages for LibreTranslate's API (repeatable)",
    )
    models.add_argument(
        "--models_file", help="a YAML file with a 'models:' list (name, path, engine, source, ...)"
    )
    models.add_argument(
        "--engine",
        default="auto",
        help="for every --model: auto (default), torch, ctranslate2 or onnxruntime",
    )
    models.add_argument("--device", default="cpu", help="torch engine: cpu (default), cuda, auto")
    models.add_argument(
        "--threads", type=positive_int, default=1, help="intra-op threads of each engine (default: 1)"
    )
    net = parser.add_argument_group("network")
    net.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)"
    )
    net.add_argument("--port", type=int, default=5000, help="port (default: 5000, LibreTranslate's)")
    net.add_argument("--api_key", default=None, help="require this key (api_key field or X-API-Key header)")
    net.add_argument(
        "--cors_origin",
        action="append",
        default=[],
        help="allow cross-origin requests from this origin (repeatable)",
    )
    net.add_argument(
        "--http",
        choices=["auto", "h11", "httptools"],
        default="auto",
        help="uvicorn's HTTP parser (default: auto: httptools, C, when installed, else h11, pure Python)",
    )
    net.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="uvicorn's event loop (default: auto: uvloop when installed, else asyncio)",
    )
    batching = parser.add_argument_group("batching")
    batching.add_argument(
        "--max_batch_tokens", type=positive_int, default=4096, help="padded source tokens per engine call"
    )
    batching.add_argument(
        "--max_wait_ms", type=_non_negative_float, default=5.0, help="how long a segment waits for company"
    )
    batching.add_argument(
        "--batch_wait",
        choices=["adaptive", "always"],
        default="adaptive",
        help="when a segment waits --max_wait_ms for company: adaptive (default: only when the previous request "
        "arrived within --max_wait_ms, so a lone request goes at once) or always",
    )
    batching.add_argument(
        "--max_queue", type=positive_int, default=1024, help="waiting segments per model; beyond: 503"
    )
    batching.add_argument(
        "--workers", type=positive_int, default=1, help="engine threads per model (default: 1)"
    )
    batching.add_argument(
        "--max_connections",
        type=positive_int,
        default=None,
        help="connections / requests in progress; beyond: uvicorn answers 503 (plain text) at once (default: no "
        "limit; see docs/deployment.md's overload measurement before setting one)",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max_input_chars", type=positive_int, default=5000, help="characters per segment")
    limits.add_argument("--max_segments", type=positive_int, default=128, help="segments per request")
    limits.add_argument("--max_body_bytes", type=positive_int, default=1_000_000, help="request body size")
    limits.add_argument(
        "--max_num_beams", type=positive_int, default=8, help="largest num_beams a request may ask"
    )
    limits.add_argument("--max_n_best", type=positive_int, default=8, help="largest n_best a request may ask")
    limits.add_argument("--max_new_tokens", type=positive_int, default=512, help="largest max_new_tokens")
    parser.add_argument(
        "--log_level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    parser.add_argument(
        "--write_openapi",
        metavar="PATH",
        help="write the OpenAPI schema (docs/serving_openapi.json) and exit",
    )
    return parser


def settings_from(args):
    from ..serving import ServerSettings

    return ServerSettings(
        api_key=args.api_key,
        cors_origins=tuple(args.cors_origin),
        max_input_chars=args.max_input_chars,
        max_segments=args.max_segments,
        max_body_bytes=args.max_body_bytes,
        max_num_beams=args.max_num_beams,
        max_n_best=args.max_n_best,
        max_new_tokens=args.max_new_tokens,
        max_batch_tokens=args.max_batch_tokens,
        max_wait_ms=args.max_wait_ms,
        batch_wait=args.batch_wait,
        max_queue=args.max_queue,
        workers=args.workers,
    )


def model_specs(args) -> list:
    from ..serving import ModelSpec, parse_model_option, read_models_file

    specs = [parse_model_option(value) for value in args.model]
    if args.engine != "auto":
        specs = [ModelSpec(s.name, s.path, args.engine, s.source, s.target) for s in specs]
    if args.models_file:
        specs += read_models_file(args.models_file)
    if not specs:
        raise ValueError("give at least one --model NAME=PATH (or --models_file)")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"--model: each model needs its own name, got {names}")
    return specs


def serve_main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        import uvicorn

        from ..serving import create_app, load_served_model, write_openapi
    except ImportError as err:
        return fail(parser.prog, f'{err.name} is not installed: pip install "hf_seq2seq[server]"')
    if args.write_openapi:
        print(f"wrote {write_openapi(args.write_openapi)}")
        return 0
    for option, module in (("--http", args.http), ("--loop", args.loop)):
        if module in ("httptools", "uvloop") and importlib.util.find_spec(module) is None:
            return fail(
                parser.prog, f'{option} {module}: {module} is not installed: pip install "hf_seq2seq[server]"'
            )
    if not 0 <= args.port < 65536:
        return fail(parser.prog, f"--port {args.port} is invalid; valid: 0 to 65535")
    try:
        specs = model_specs(args)
        loaded = []
        for spec in specs:
            loaded.append(load_served_model(spec, threads=args.threads, device=args.device))
            print(f"loaded {spec.name}: {loaded[-1].engine_name} engine, {spec.path}", file=sys.stderr)
        app = create_app(loaded, settings_from(args))
    except (OSError, ValueError) as err:
        return fail(parser.prog, " ".join(str(err).split()))
    print(f"serving {', '.join(s.name for s in specs)} on http://{args.host}:{args.port}", file=sys.stderr)
    # uvicorn handles SIGTERM / Ctrl-C: stop accepting, finish the requests in flight, then the app's shutdown
    # (the batchers finish their queues). It then re-raises the signal to the handler it found; with these no-op
    # handlers that is a clean exit, status 0, rather than death by the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=60,
        limit_concurrency=args.max_connections,
        http=args.http,
        loop=args.loop,
    )
    print("stopped: the requests in flight were answered", file=sys.stderr)
    return 0

"""``hf-seq2seq serve``: a translation server over the one inference path (:mod:`hf_seq2seq.inference`).

    from hf_seq2seq.serving import ModelSpec, ServerSettings, create_app, load_served_model

    app = create_app([load_served_model(ModelSpec("de-en", "runs/transformer/best_model"))], ServerSettings())
    # uvicorn.run(app, host="127.0.0.1", port=5000)

- :mod:`~hf_seq2seq.serving.app`: the FastAPI app (LibreTranslate's ``/translate`` and ``/languages``, the native
  ``/v1/translate`` and ``/v1/models``, ``/health``, ``/ready``, ``/metrics``, the page at ``/``);
- :mod:`~hf_seq2seq.serving.batcher`: cross-request batching on worker threads, a bounded queue;
- :mod:`~hf_seq2seq.serving.schemas`: the request and response bodies; :mod:`~hf_seq2seq.serving.metrics`;
- :mod:`~hf_seq2seq.serving.models`: ``--model NAME=PATH`` / a models file → loaded engines.

Needs the ``server`` extra (``pip install "hf_seq2seq[server]"``: fastapi, uvicorn with httptools and uvloop,
prometheus-client).
"""

from .app import ServedModel, ServerSettings, create_app, openapi_schema, write_openapi
from .batcher import Batcher, EngineError, QueueFull, SearchOptions
from .models import ModelSpec, load_served_model, parse_model_option, read_models_file

__all__ = [
    "Batcher",
    "EngineError",
    "ModelSpec",
    "QueueFull",
    "SearchOptions",
    "ServedModel",
    "ServerSettings",
    "create_app",
    "load_served_model",
    "openapi_schema",
    "parse_model_option",
    "read_models_file",
    "write_openapi",
]

"""Deployment: export a saved model folder to CTranslate2 or ONNX. The engine packages are optional (``pip install
"hf_seq2seq[serve]"``) and imported only when used. Translating an export is :mod:`hf_seq2seq.inference`'s job
(``load_engine(folder, "ctranslate2" | "onnxruntime")``).

- :func:`export_ctranslate2` — the Transformer family, any configuration, optional int8/float16/bfloat16 weights.
- :func:`export_onnx` — both families: ``encoder.onnx`` + a one-step ``decoder.onnx`` with explicit state.
- :class:`ORTModelForSeq2SeqLM` — an ONNX export as a ``generate()``-capable model on onnxruntime.

``ENGINES``, ``load_engine``, ``translate`` and ``translate_with_engine`` are still offered here (they moved to
:mod:`hf_seq2seq.inference`).
"""

from .common import ExportError
from .ctranslate2_export import export_ctranslate2
from .onnx_export import export_onnx
from .onnx_model import ORTModelForSeq2SeqLM

__all__ = [
    "ENGINES",
    "ExportError",
    "ORTModelForSeq2SeqLM",
    "export_ctranslate2",
    "export_onnx",
    "load_engine",
    "translate",
    "translate_with_engine",
]

_MOVED_TO_INFERENCE = ("ENGINES", "load_engine", "translate", "translate_with_engine")


def __getattr__(name: str):
    if name in _MOVED_TO_INFERENCE:
        from .. import inference

        return getattr(inference, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

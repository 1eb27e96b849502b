"""Deployment: export a saved model folder to CTranslate2 or ONNX, and translate on torch / CTranslate2 /
onnxruntime through one engine interface. The engine packages are optional (``pip install "hf_seq2seq[serve]"``)
and imported only when used.

- :func:`export_ctranslate2` — the Transformer family, any configuration, optional int8/float16/bfloat16 weights.
- :func:`export_onnx` — both families: ``encoder.onnx`` + a one-step ``decoder.onnx`` with explicit state.
- :class:`ORTModelForSeq2SeqLM` — an ONNX export as a ``generate()``-capable model on onnxruntime.
- :func:`load_engine` / :func:`translate` / :func:`translate_with_engine` — translation on any engine.
"""

from .common import ExportError
from .ctranslate2_export import export_ctranslate2
from .engines import ENGINES, load_engine, translate, translate_with_engine
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

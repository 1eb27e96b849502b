"""Moved to :mod:`hf_seq2seq.inference` (the engines, ``load_engine`` and the translate loop); this module keeps the
old import path working (``benchmarks/bench_serving.py`` and user code)."""

from ..inference import (  # noqa: F401
    ENGINES,
    CTranslate2Engine,
    Engine,
    GenerateEngine,
    load_engine,
    translate,
    translate_with_engine,
)

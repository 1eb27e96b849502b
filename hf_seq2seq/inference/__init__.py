"""Inference: load a saved model folder, or an export with its engine, once; translate lines with it.

    from hf_seq2seq.inference import load_engine

    engine = load_engine("runs/transformer/best_model")             # torch; or an export with engine="onnxruntime"
    results = engine.translate(["ein Satz", ""], num_beams=5, n_best=2, return_scores=True)
    results[0].hypotheses, results[0].scores, results[1].text       # ["...", "..."], [-0.21, -0.9], ""

- :func:`load_engine` — the one loader (``torch`` / ``ctranslate2`` / ``onnxruntime``); :func:`load_model` is its
  torch part (model and tokenizer, for code that needs the model itself), :func:`load_captioner` the captioning one.
- :meth:`Engine.translate` — the one translate loop: order kept, empty lines kept, length-sorted batches, truncation
  warning, n-best, scores. Every command (``translate``, ``evaluate``, ``analyze``, ``demo``) calls it.
- :func:`translate`, :func:`translate_with_engine`, :func:`translate_lines` — hypothesis strings only.
- :func:`average_length_beam_search`, :func:`wu_length_beam_search` — OpenNMT-py's / eole's beam search
  (``length_penalty: avg`` / ``wu``) as decoding methods:
  ``model.generate(..., num_beams=5, length_penalty=1.0, custom_generate=average_length_beam_search)``.
"""

from .engines import (
    CTranslate2Engine,
    Engine,
    GenerateEngine,
    Translation,
    max_source_length,
    max_target_length,
)
from .loading import (
    ENGINES,
    ModelLoadError,
    check_model_folder,
    folder_model_type,
    load_captioner,
    load_engine,
    load_model,
    resolve_device,
)
from .search import average_length_beam_search, wu_length_beam_search
from .translate import translate, translate_lines, translate_with_engine

__all__ = [
    "CTranslate2Engine",
    "ENGINES",
    "Engine",
    "GenerateEngine",
    "ModelLoadError",
    "Translation",
    "average_length_beam_search",
    "wu_length_beam_search",
    "check_model_folder",
    "folder_model_type",
    "load_captioner",
    "load_engine",
    "load_model",
    "max_source_length",
    "max_target_length",
    "resolve_device",
    "translate",
    "translate_lines",
    "translate_with_engine",
]

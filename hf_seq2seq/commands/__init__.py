"""``hf-seq2seq <command>``: one module per command, each a thin parser over library functions.

``demo``, ``train``, ``translate``, ``evaluate``, ``plot-attention``, ``caption``, ``push``, ``analyze``, ``export``
and ``average-checkpoints``: each module's ``<name>_main(argv) -> int`` owns its argparse parser, and the console
script (``hf_seq2seq_cli``, re-exported by ``hf_seq2seq/cli.py``) dispatches to it, importing a command's module only
when that command runs. Modules import torch / transformers inside functions, after the options are parsed; what
they share is in :mod:`.common`.

``translate_lines`` and ``caption_attention`` are library functions (:mod:`hf_seq2seq.inference`,
:mod:`hf_seq2seq.plotting`), still offered here under their old import path.
"""

from .caption import caption_main
from .evaluate import evaluate_main
from .plot_attention import plot_attention_main
from .push import push_main
from .translate import translate_main

__all__ = [
    "caption_attention",
    "caption_main",
    "evaluate_main",
    "plot_attention_main",
    "push_main",
    "translate_lines",
    "translate_main",
]


def __getattr__(name: str):
    # library functions, re-exported lazily so that importing a command module does not load torch / matplotlib
    if name == "caption_attention":
        from ..plotting import caption_attention

        return caption_attention
    if name == "translate_lines":
        from ..inference import translate_lines

        return translate_lines
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

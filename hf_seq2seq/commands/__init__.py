"""``hf-seq2seq translate | evaluate | plot-attention | caption | push``: what a user does with a saved model folder.

One module per command; each ``<name>_main(argv) -> int`` owns its argparse parser and the console script
(``hf_seq2seq_cli``, re-exported by ``hf_seq2seq/cli.py``) dispatches to it, importing a command's module only
when that command runs. Modules import torch / transformers inside functions, after the options are parsed.
"""

from .caption import caption_main

# the loaders are used by the tests and other commands under their old names
from .common import _load as _load
from .common import _load_captioner as _load_captioner
from .common import _open_image as _open_image
from .common import _read_lines as _read_lines
from .evaluate import evaluate_main, score
from .plot_attention import plot_attention_main
from .push import push_main
from .translate import translate_lines, translate_main

__all__ = [
    "caption_attention",
    "caption_main",
    "evaluate_main",
    "plot_attention_main",
    "push_main",
    "score",
    "translate_lines",
    "translate_main",
]


def __getattr__(name: str):
    # caption_attention is a library function (hf_seq2seq.plotting); re-exported lazily so that importing a
    # command module does not load torch / matplotlib
    if name == "caption_attention":
        from ..plotting import caption_attention

        return caption_attention
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

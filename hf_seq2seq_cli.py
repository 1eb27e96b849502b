"""The ``hf-seq2seq`` console script: the table of commands and the dispatch, outside the ``hf_seq2seq`` package.

Importing ``hf_seq2seq`` registers the model types with transformers, which loads torch and transformers (seconds
of CPU). This module imports neither, so ``hf-seq2seq --help`` and a mistyped command answer at once; a command's
own module (and with it torch) is imported only when that command runs. Each command module exposes
``<name>_main(argv: list[str]) -> int`` with its own argparse parser (``prog="hf-seq2seq <name>"``), so
``hf-seq2seq <name> --help`` documents every option. ``hf_seq2seq.cli`` re-exports :data:`COMMANDS` and
:func:`main` (``python -m hf_seq2seq.cli`` works too).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": (
        "hf_seq2seq.commands.demo",
        "demo_main",
        "train both families on the embedded task, evaluate, save, plot",
    ),
    "train": ("hf_seq2seq.commands.train", "train_main", "train a model (same options as scripts/train.py)"),
    "translate": (
        "hf_seq2seq.commands.translate",
        "translate_main",
        "translate stdin or a file with a saved model",
    ),
    "evaluate": (
        "hf_seq2seq.commands.evaluate",
        "evaluate_main",
        "BLEU/chrF of a saved model on a source/reference pair",
    ),
    "plot-attention": (
        "hf_seq2seq.commands.plot_attention",
        "plot_attention_main",
        "draw the alignment heatmap for a sentence, or attention over an image per word",
    ),
    "caption": (
        "hf_seq2seq.commands.caption",
        "caption_main",
        "caption image files with a saved captioning model",
    ),
    "push": ("hf_seq2seq.commands.push", "push_main", "upload a saved model folder to the Hub"),
    "analyze": ("hf_seq2seq.commands.analyze", "analyze_main", "BLEU by source length, attention alignment"),
    "export": ("hf_seq2seq.commands.export", "export_main", "export a saved model to CTranslate2 or ONNX"),
    "serve": (
        "hf_seq2seq.commands.serve",
        "serve_main",
        "serve models over HTTP (LibreTranslate API, /v1, a page)",
    ),
    "average-checkpoints": (
        "hf_seq2seq.commands.average_checkpoints",
        "average_checkpoints_main",
        "average the weights of a run's last N checkpoints into a model folder",
    ),
}


def _usage() -> str:
    lines = ["usage: hf-seq2seq <command> [options]", "", "commands:"]
    width = max(map(len, COMMANDS)) + 2
    lines += [f"  {name:<{width}}{help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "Run `hf-seq2seq <command> --help` for the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"hf-seq2seq: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except ImportError as error:
        # torch/transformers outside the supported range (hf_seq2seq.dependencies): one line, not a traceback
        if type(error).__name__ != "IncompatibleDependencyError":
            raise
        print(f"hf-seq2seq {name}: {error}", file=sys.stderr)
        return 1
    try:
        return int(func(rest) or 0)
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback (outputs are written atomically)
        print(f"hf-seq2seq {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

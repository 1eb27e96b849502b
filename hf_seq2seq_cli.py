"""The ``hf-seq2seq`` console script: the table of commands and the dispatch, outside the ``hf_seq2seq`` package.

Importing ``hf_seq2seq`` registers the model types with transformers, which loads torch and transformers (seconds
of CPU). This module imports neither, so ``hf-seq2seq --help`` and a mistyped command answer at once; a command's
own module (and with it torch) is imported only when that command runs. Each command module exposes
``<name>_main(argv: list[str]) -> int`` with its own argparse parser (``prog="hf-seq2seq <name>"``), so
``hf-seq2seq <name> --help`` documents every option. ``hf_seq2seq.cli`` re-exports :data:`COMMANDS` and
:func:`main` (``python -m hf_seq2seq.cli`` works too).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
import tempfile
from pathlib import Path

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
    "align": (
        "hf_seq2seq.commands.align",
        "align_main",
        "word-align sentence pairs with a saved model (forced attention, Pharaoh output)",
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
    "convert": (
        "hf_seq2seq.commands.convert",
        "convert_main",
        "convert a model from/to Marian (stock transformers) or from JoeyNMT / eole",
    ),
}


def _usage() -> str:
    lines = ["usage: hf-seq2seq <command> [options]", "", "commands:"]
    width = max(map(len, COMMANDS)) + 2
    lines += [f"  {name:<{width}}{help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "Run `hf-seq2seq <command> --help` for the options of a command."]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- pre-flight
# Options that name a file the command reads, a model folder, or a place it writes. They are checked here, before the
# command's module (and with it torch and transformers, seconds of imports) is loaded, so a mistyped path or an
# output in a read-only place ends in one line at once, not after the work (the commands check them again).
INPUT_OPTIONS = ("--input", "--source", "--target", "--reference", "--config", "--image", "--models_file")
MODEL_OPTIONS = ("--model", "--template", "--model_name_or_path", "--tokenizer_name_or_path")
OUTPUT_OPTIONS = ("--output", "--output_dir", "--hypotheses", "--write_openapi", "--alignments_output")
# a Hub repository id ("name" or "owner/name"); anything else that does not exist here is a mistyped path
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


# the flags (options without a value) of the commands whose positional arguments are paths, and what those are
FLAGS = ("--force", "--no_check", "--trust_remote_code", "--no_path")
POSITIONAL_PATHS = {
    "export": (("--model", "model_dir"), ("--output", "out_dir")),
    "caption": (("--input", "image"),),
}


def positional_values(name: str, argv: list[str]) -> list[tuple[str, str, str]]:
    """``(kind, label, value)`` for the positional paths of ``name`` (export: the model and output folders; caption:
    the images), kinds as the option tables name them; the last kind repeats. (analyze checks its models itself.)"""
    kinds = POSITIONAL_PATHS.get(name)
    if not kinds:
        return []
    values, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token.startswith("--"):
            skip = "=" not in token and token not in FLAGS
        else:
            values.append(token)
    return [(*kinds[min(i, len(kinds) - 1)], v) for i, v in enumerate(values)]


def option_values(argv: list[str]) -> list[tuple[str, str]]:
    """``(option, value)`` pairs of ``argv`` (``--opt value`` and ``--opt=value``), up to a ``--``."""
    pairs = []
    for i, token in enumerate(argv):
        if token == "--":
            break
        if token.startswith("--") and "=" in token:
            pairs.append(tuple(token.split("=", 1)))
        elif token.startswith("--") and i + 1 < len(argv):
            pairs.append((token, argv[i + 1]))
    return pairs  # type: ignore[return-value]


def writable(path: Path) -> bool:
    """Whether a file can be created where ``path`` goes (its nearest existing folder): a real probe, since
    permission bits say nothing on a read-only mount or for root."""
    path = Path(path).expanduser()
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".hf_seq2seq_probe_")
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def unwritable_output(label: str, value: str) -> str | None:
    """The one-line refusal of an output ``value`` (of option or positional ``label``) that cannot be written, or
    None. The pre-flight asks it of the outputs on the command line; a command asks it of its default or recipe
    outputs once its options are parsed (``commands.common.check_writable``)."""
    if value == "-" or writable(Path(value)):
        return None
    return f"{label} {value}: cannot write there (read-only or no permission); choose another place"


def read_only_card(folder: str) -> str | None:
    """The one-line refusal of ``--update_card`` for a local model ``folder`` that cannot be written, or None."""
    path = Path(folder).expanduser()
    if path.is_dir() and not writable(path):
        return f"--update_card: {folder} is read-only; its README.md card cannot be updated"
    return None


def _empty_folder(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _model_problem(option: str, value: str) -> str | None:
    value = value.split("=", 1)[1] if "=" in value else value  # serve: --model NAME=PATH
    if Path(value).expanduser().exists():
        return None
    first = value.split("/", 1)[0]
    if _HUB_ID.fullmatch(value) and not Path(first).is_dir():
        return None  # a Hub repository id: the loader asks the Hub
    return f"--model {value}: folder not found (relative paths are read from {os.getcwd()})".replace(
        "--model", option, 1
    )


def preflight(argv: list[str], name: str = "") -> str | None:
    """The first problem with a path option (or a positional path of command ``name``) of ``argv`` (one line), or
    None. Non-UTF-8 arguments too."""
    if "-h" in argv or "--help" in argv:
        return None
    for token in argv:
        if any("\udc80" <= ch <= "\udcff" for ch in token):  # undecodable bytes (surrogateescape)
            shown = token.encode("utf-8", "surrogateescape")
            return f"argument {shown!r} is not valid UTF-8; pass text in UTF-8"
    entries = [(o, o, v) for o, v in option_values(argv)] + positional_values(name, argv)
    for option, label, value in entries:
        path = Path(value).expanduser()
        if option in INPUT_OPTIONS and value != "-" and not path.is_file():
            return f"{label} {value} " + ("is a folder, not a file" if path.is_dir() else "does not exist")
        if option in MODEL_OPTIONS and (problem := _model_problem(label, value)):
            return problem
        if option in OUTPUT_OPTIONS and (problem := unwritable_output(label, value)):
            return problem
        if name == "convert" and option == "--output" and path.exists() and not _empty_folder(path):
            return f"--output {value} exists and is not empty; choose a new or empty folder (nothing was written)"
        if option == "--model" and "--update_card" in argv and (problem := read_only_card(value)):
            return problem
    return None


def quiet_when_not_a_terminal() -> None:
    """stderr going to a file or a pipe (``make demo > log``, CI) gets no progress bars of the libraries: a bar
    redrawn with carriage returns and cursor-up escape codes is noise there. Set before torch, datasets,
    huggingface_hub and transformers are imported (they read these once); a value the user exported wins. The
    training bar turns itself off the same way (tqdm's ``disable=None``) and logs a line every --logging_steps."""
    if sys.stderr.isatty():
        return
    switches = {  # the variable each library reads at import; the switch for one imported already (python -m)
        "HF_DATASETS_DISABLE_PROGRESS_BARS": ("datasets", "disable_progress_bars"),
        "HF_HUB_DISABLE_PROGRESS_BARS": ("transformers.utils.logging", "disable_progress_bar"),
    }
    for variable, (module, switch) in switches.items():
        if os.environ.setdefault(variable, "1") == "1" and module.split(".")[0] in sys.modules:
            getattr(importlib.import_module(module), switch)()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"hf-seq2seq: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    problem = preflight(rest, name)
    if problem:
        print(f"hf-seq2seq {name}: error: {problem}", file=sys.stderr)
        return 1
    quiet_when_not_a_terminal()
    try:
        return _run(name, rest)
    except KeyboardInterrupt:  # Ctrl-C, during the imports too: one line (outputs are written atomically)
        print(f"hf-seq2seq {name}: interrupted", file=sys.stderr)
        return 130


def _run(name: str, rest: list[str]) -> int:
    module_name, func_name, _ = COMMANDS[name]
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except ImportError as error:
        # torch/transformers outside the supported range (hf_seq2seq.dependencies): one line, not a traceback
        if type(error).__name__ != "IncompatibleDependencyError":
            raise
        print(f"hf-seq2seq {name}: {error}", file=sys.stderr)
        return 1
    with _one_line_usage_errors():
        return int(func(rest) or 0)


@contextlib.contextmanager
def _one_line_usage_errors():
    """argparse prints a command's whole usage synopsis before its error line (``train``'s runs to dozens of lines,
    burying the one that matters). Every mistake ends in one line: while a command runs from here, a refused
    option prints only ``<prog>: error: <message>`` (exit status 2, as argparse); ``--help`` has the synopsis."""
    original = argparse.ArgumentParser.error

    def error(parser: argparse.ArgumentParser, message: str):
        parser.exit(2, f"{parser.prog}: error: {message}\n")

    argparse.ArgumentParser.error = error  # type: ignore[method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original  # type: ignore[method-assign]


if __name__ == "__main__":
    sys.exit(main())

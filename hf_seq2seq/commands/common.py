"""What the commands share: the generation options, reading stdin, refusing an output that is an input or cannot be
written, opening an image, and the one-line error exit. Loading a folder is the library's
(:mod:`hf_seq2seq.inference`), reading and writing files too (``tokenization.read_text_lines``,
``hub.write_atomic``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class CommandError(ValueError):
    """A bad option or input of a command: the message is the one line the user sees."""


# ---------------------------------------------------------------------------------------------------- options
def positive_int(value: str) -> int:
    """argparse type: an integer >= 1 (0 or a negative beam size / length / batch is a mistake, not a default)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def add_generation_args(parser: argparse.ArgumentParser, unit: str = "sentences") -> None:
    """``--num_beams``, ``--max_new_tokens``, ``--batch_size``, ``--device`` and ``--trust_remote_code``."""
    parser.add_argument(
        "--num_beams", type=positive_int, default=None, help="beam size (default: generation_config.json)"
    )
    parser.add_argument(
        "--max_new_tokens",
        type=positive_int,
        default=None,
        help="longest output (default: generation_config.json)",
    )
    parser.add_argument(
        "--batch_size", type=positive_int, default=32, help=f"{unit} per generate() call (default 32)"
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto: cuda if available)"
    )
    add_trust_arg(parser)


def add_trust_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="run the code files of a model folder/repo whose model_type is not one of ours (off by default: "
        "only enable it for code you trust)",
    )


def generate_kwargs(args) -> dict:
    """``num_beams`` / ``max_new_tokens`` where given (otherwise the folder's generation config decides)."""
    pairs = (("num_beams", args.num_beams), ("max_new_tokens", args.max_new_tokens))
    return {k: v for k, v in pairs if v is not None}


def translate_options(args) -> dict:
    """The keyword arguments of ``Engine.translate`` from the generation options."""
    return {"num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size}


# ---------------------------------------------------------------------------------------------------- input
def read_stdin() -> list[str]:
    """The lines of stdin, under the rules of the package's line reader (:mod:`hf_seq2seq.tokenization`)."""
    from ..tokenization import decode_lines

    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # a text stream that was put in place of stdin (tests, notebooks)
        return [
            line.removeprefix("\ufeff") if i == 0 else line
            for i, line in enumerate(sys.stdin.read().splitlines())
        ]
    return [line for _, line in decode_lines(buffer.read().splitlines(), "<stdin>")]


def open_image(path: str):
    """The image file ``path`` as RGB; a one-line error for a missing or unreadable file."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image file not found: {p}")
    try:
        with Image.open(p) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise CommandError(f"{p} is not a readable image: {err}") from None


# ---------------------------------------------------------------------------------------------------- output
def check_outputs(outputs: dict[str, str | None], inputs: dict[str, str | None]) -> None:
    """Refuse an output file that is one of the inputs (or another output), or a folder: the user's text is never
    overwritten by what is computed from it."""
    seen: dict[Path, str] = {}
    for option, value in inputs.items():
        if value is not None:
            seen[Path(value).expanduser().resolve()] = option
    for option, value in outputs.items():
        if value is None:
            continue
        path = Path(value).expanduser().resolve()
        if path in seen:
            raise CommandError(f"{option} {value} is also given as {seen[path]}: choose another output file")
        if path.is_dir():
            raise CommandError(f"{option} {value} is a folder; give a file name")
        seen[path] = option


def check_writable(outputs: dict[str, str | None]) -> None:
    """Refuse an output that cannot be written (read-only place, no permission), before any work: the console
    script's pre-flight checks the outputs written on the command line, this one those that come from a default or
    a recipe file too, once the options are parsed. The same probe and message (``hf_seq2seq_cli``)."""
    from hf_seq2seq_cli import unwritable_output

    for option, value in outputs.items():
        if value is not None and (problem := unwritable_output(option, str(value))):
            raise CommandError(problem)


def check_card_folders(folders: list[str]) -> None:
    """``--update_card``: refuse a local model folder that cannot be written, before anything is loaded."""
    from hf_seq2seq_cli import read_only_card

    for folder in folders:
        if problem := read_only_card(folder):
            raise CommandError(problem)


def check_something_to_score(files: dict[str, tuple[str, list[str]]]) -> None:
    """Refuse source/reference files (``{option: (path, lines)}``) without a non-empty line: nothing to score."""
    for option, (path, lines) in files.items():
        if not any(line.strip() for line in lines):
            raise CommandError(f"{option} {path} has no non-empty line: there is nothing to score")


def fail(prog: str, err: Exception | str) -> int:
    """Print ``prog: error: err`` (one line) on stderr; the exit status 1."""
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 1

"""Bring models in and out: ``convert(source, output, from_format=..., to_format=...)`` (``hf-seq2seq convert``).

Conversions (``CONVERSIONS``), each exact (the same logits, the same ``generate()`` output) or refused in one line:

- ``marian`` → ``hf-seq2seq``: a transformers ``MarianMTModel`` folder (or Hub id) to our Transformer folder.
- ``joeynmt`` / ``eole`` → ``hf-seq2seq``: a JoeyNMT 2.x or eole model directory to our model (:mod:`.joeynmt`,
  :mod:`.eole`), read without importing either toolkit.
- ``hf-seq2seq`` → ``marian``: our post-norm sinusoidal Transformer to a stock ``MarianMTModel`` folder that loads
  with plain transformers, no remote code (:mod:`.marian` says what maps to what and what is refused).

The output folder is never an existing non-empty one: it is built in a temporary folder beside it and renamed into
place only when complete, so a failure leaves nothing behind. A folder of ours is written by
``hub.save_model_folder`` (config, code, weights, tokenizer, card) and its card says where the weights came from.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import ConversionError

OURS = "hf-seq2seq"
FORMATS = (OURS, "marian", "joeynmt", "eole")
CONVERSIONS = (("marian", OURS), (OURS, "marian"), ("joeynmt", OURS), ("eole", OURS))
SOURCE_KINDS = {OURS: "a hf-seq2seq model folder", "marian": "a transformers MarianMTModel folder"}
CARD_SECTION = "converted-from"

__all__ = ["CONVERSIONS", "FORMATS", "ConversionError", "convert"]


def convert(source, output, *, from_format: str, to_format: str) -> Path:
    """Convert the model at ``source`` (a folder; a Hub id for ``marian``) into a new folder ``output``.

    Raises `ConversionError` (one line) for an unknown or unsupported pair of formats, a source that is not a model
    of ``from_format``, a configuration without an exact equivalent, or an ``output`` that exists and is not empty;
    nothing is written then. Returns ``output``.
    """
    for option, value in (("--from", from_format), ("--to", to_format)):
        if value not in FORMATS:
            raise ConversionError(
                f"{option} {value!r} is not a known format; valid choices: {', '.join(FORMATS)}"
            )
    if (from_format, to_format) not in CONVERSIONS:
        offered = "; ".join(f"{a} → {b}" for a, b in CONVERSIONS)
        raise ConversionError(f"--from {from_format} --to {to_format} is not offered; conversions: {offered}")
    output = Path(output)
    check_output(output)
    if from_format == "joeynmt":
        from .joeynmt import load_joeynmt

        model, tokenizer, notes = load_joeynmt(source)
        writer = _ours_writer(model, tokenizer, source, "a JoeyNMT model directory", from_format, notes)
    elif from_format == "eole":
        from .eole import load_eole

        model, tokenizer, notes, search = load_eole(source)
        writer = _ours_writer(model, tokenizer, source, "an eole model directory", from_format, notes, search)
    elif from_format == "marian":
        model, tokenizer, notes = _load_marian(source)
        writer = _ours_writer(model, tokenizer, source, SOURCE_KINDS["marian"], from_format, notes)
    else:
        model, tokenizer = _load_ours(source)
        writer = _marian_writer(model, tokenizer, source)
    with staged_folder(output) as folder:
        writer(folder)
    return output


# ------------------------------------------------------------------------------------------------------ output
def check_output(output: Path) -> None:
    """Refuse an output that exists and is not an empty folder (one line; nothing is overwritten)."""
    if output.is_file():
        raise ConversionError(f"output {output} is a file; choose a new folder (nothing was written)")
    if output.is_dir() and any(output.iterdir()):
        raise ConversionError(
            f"output {output} exists and is not empty; choose a new or empty folder (nothing was written)"
        )


def _folder_mode() -> int:
    umask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o777 & ~umask


@contextlib.contextmanager
def staged_folder(output: Path) -> Iterator[Path]:
    """A temporary folder beside ``output``, renamed to ``output`` when the block succeeds, removed when it fails."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.converting-"))
    try:
        yield staging
        check_output(output)  # nothing appeared there meanwhile
        os.chmod(staging, _folder_mode())
        if output.is_dir():
            output.rmdir()  # an empty folder the user made for it
        os.replace(staging, output)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------ sources
def read_model_config(source, from_format: str) -> dict:
    """``config.json`` of ``source`` as a dict, after checking it is a model folder of ``from_format``."""
    from transformers import PretrainedConfig

    path = Path(source).expanduser()
    if path.is_file():
        raise ConversionError(f"{source} is a file, not a model folder")
    if path.is_dir() and not (path / "config.json").is_file():
        if (path / "config.yaml").is_file() or any(path.glob("*.ckpt")):
            raise ConversionError(
                f"{source} has no config.json but a JoeyNMT config.yaml / checkpoint: use --from joeynmt"
            )
        raise ConversionError(f"{source} is not a model folder: it has no config.json")
    if not path.exists() and (str(source).startswith((".", "/", "~")) or str(source).count("/") > 1):
        raise ConversionError(f"{source}: folder not found")
    try:
        config, _ = PretrainedConfig.get_config_dict(str(source))
    except (OSError, ValueError) as err:
        raise ConversionError(f"{source}: cannot read config.json ({_first_line(err)})") from None
    return config


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _check_model_type(source, config: dict, expected: str, from_format: str) -> None:
    from ..families import BY_MODEL_TYPE

    found = config.get("model_type")
    if found == expected:
        return
    hint = ""
    if found is None and (Path(str(source)).expanduser() / "vocab.json").is_file():
        hint = "; an eole model directory (config.json, vocab.json): use --from eole"
    if found == "marian":
        hint = "; use --from marian"
    elif found in BY_MODEL_TYPE:
        hint = "; use --from hf-seq2seq" if from_format != OURS else ""
        if from_format == OURS:
            hint = f" (only our Transformer, model_type {expected!r}, has a stock Marian equivalent)"
    raise ConversionError(
        f"--from {from_format}: {source} holds model_type {found!r}, not {SOURCE_KINDS[from_format]} "
        f"(model_type {expected!r}){hint}"
    )


def _load_tokenizer(source):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(source))
    # TypeError: transformers' MarianTokenizer (with sentencepiece installed) given a folder without its .spm files
    except (OSError, ValueError, ImportError, TypeError) as err:
        raise ConversionError(
            f"{source}: no tokenizer that AutoTokenizer loads (tokenizer.json / tokenizer_config.json): "
            f"{_first_line(err)}"
        ) from None


def _load_marian(source):
    from transformers import MarianMTModel

    from .marian import from_marian, layerdrop_note

    _check_model_type(source, read_model_config(source, "marian"), "marian", "marian")
    try:
        marian = MarianMTModel.from_pretrained(str(source)).eval()
    except (OSError, ValueError) as err:
        raise ConversionError(f"{source}: cannot load the Marian model ({_first_line(err)})") from None
    model = from_marian(marian)  # refuses what ours cannot express, before anything else is read
    tokenizer = _load_tokenizer(source)
    notes = [n for n in (layerdrop_note(marian.config),) if n]
    return model, tokenizer, notes


def _load_ours(source):
    from ..families import FAMILIES
    from .marian import marian_refusal

    family = FAMILIES["transformer"]
    config = read_model_config(source, OURS)
    _check_model_type(source, config, family.model_type, OURS)
    try:
        our_config = family.config_class.from_pretrained(str(source))
    except ValueError as err:
        raise ConversionError(f"{source}: invalid config.json ({_first_line(err)})") from None
    problem = marian_refusal(our_config)
    if problem:  # refused before any weight is read
        raise ConversionError(f"--to marian: {problem}")
    try:
        model = family.model_class.from_pretrained(str(source)).eval()
    except (OSError, ValueError) as err:
        raise ConversionError(f"{source}: cannot load the model ({_first_line(err)})") from None
    return model, _load_tokenizer(source)


# ------------------------------------------------------------------------------------------------------ writers
def provenance(source, source_kind: str, from_format: str, to_format: str) -> str:
    """The card's lines saying where the weights came from."""
    import transformers

    from .. import __version__
    from ..hub import public_path

    today = datetime.date.today().isoformat()
    return (
        f"The weights were converted from `{public_path(source)}` ({source_kind}) with `hf-seq2seq convert "
        f"--from {from_format} --to {to_format}` (hf_seq2seq {__version__}, transformers "
        f"{transformers.__version__}) on {today}. The conversion maps every weight exactly: the converted model "
        f"computes the source model's logits."
    )


def _ours_writer(
    model, tokenizer, source, source_kind: str, from_format: str, notes: list[str], search: str | None = None
):
    """``search``: a decoding method of ``hf_seq2seq.inference.search`` to store with the folder, or None."""

    def write(folder: Path) -> None:
        from ..hub import save_model_folder, section_markers, with_marked_section, write_atomic
        from ..inference.search import write_custom_generate

        # generation_defaults={}: keep the source's generation settings, so generate() decodes what it decoded
        save_model_folder(
            model, tokenizer, folder, card={"model_name": Path(str(source)).name}, generation_defaults={}
        )
        if search is not None:
            write_custom_generate(folder, search)
        begin, end = section_markers(CARD_SECTION)
        lines = [provenance(source, source_kind, from_format, OURS), *notes]
        section = f"{begin}\n## Where the weights came from\n\n" + "\n\n".join(lines) + f"\n{end}\n"
        readme = folder / "README.md"
        write_atomic(readme, with_marked_section(readme.read_text(encoding="utf-8"), section, CARD_SECTION))

    return write


MARIAN_CARD = """---
library_name: transformers
pipeline_tag: translation
tags:
- marian
- hf_seq2seq
---

# {name}

A stock `MarianMTModel` (plain transformers, no remote code):

```python
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

model = AutoModelForSeq2SeqLM.from_pretrained("{name}")
tokenizer = AutoTokenizer.from_pretrained("{name}")
```

## Where the weights came from

{provenance}
"""


def _marian_writer(model, tokenizer, source):
    def write(folder: Path) -> None:
        from ..hub import write_atomic
        from .marian import to_marian

        marian = to_marian(model)
        marian.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        _check_stock_tokenizer(folder)
        text = provenance(source, SOURCE_KINDS[OURS], OURS, "marian")
        write_atomic(folder / "README.md", MARIAN_CARD.format(name=Path(str(source)).name, provenance=text))

    return write


def _check_stock_tokenizer(folder: Path) -> None:
    """The tokenizer of a Marian folder must load by its own class name (not MarianTokenizer, whose sentencepiece
    files ours does not have, and not remote code)."""
    import json

    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    config.pop("auto_map", None)
    if not config.get("tokenizer_class") or not (folder / "tokenizer.json").is_file():
        raise ConversionError(
            "the tokenizer is not a fast tokenizer with tokenizer.json; a stock Marian folder needs one"
        )
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

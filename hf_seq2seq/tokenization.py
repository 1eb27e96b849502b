"""Train a subword tokenizer (``tokenizers`` BPE or Unigram) on raw text → ``transformers.PreTrainedTokenizerFast``.

Every tokenizer trained here has the project's fixed special tokens ``<pad>``=0, ``<s>``=1, ``</s>``=2,
``<unk>``=3, and

* an NFKC normalizer (plus lowercasing if asked),
* a pre-tokenizer that marks word starts with ``▁`` (``Metaspace``, as SentencePiece/Marian do), isolates
  punctuation and (by default) splits digits, with the matching ``Metaspace`` decoder, so
  ``decode(encode(x)) == x`` for normal text (single spaces, no leading/trailing space),
* a ``TemplateProcessing`` post-processor that appends ``</s>`` to every sequence (source and target).

The result saves as ``tokenizer.json`` + ``tokenizer_config.json`` and reloads with
``AutoTokenizer.from_pretrained`` to identical ids. With one joint vocabulary (the default),
``tok(src, text_target=tgt)`` returns ``input_ids`` and ``labels``. Separate source/target vocabularies
(:func:`train_tokenizers` with ``joint=False``) are two tokenizers saved in ``source_tokenizer/`` and
``target_tokenizer/`` sub-folders, as Marian keeps two vocabularies; then encode targets with the target
tokenizer (``hf_seq2seq.data.tokenize_parallel(..., target_tokenizer=...)`` does).
"""

from __future__ import annotations

import gzip
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from .families import TEXT_MODEL_TYPES

__all__ = [
    "SPECIAL_TOKENS",
    "PAD_TOKEN",
    "BOS_TOKEN",
    "EOS_TOKEN",
    "UNK_TOKEN",
    "TOKENIZER_MODELS",
    "train_tokenizer",
    "train_tokenizers",
    "save_tokenizers",
    "load_tokenizers",
    "iter_text_lines",
    "read_text_lines",
    "decode_lines",
    "check_tokenizer_fits_model",
]

PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)  # ids 0, 1, 2, 3 in this order
TOKENIZER_MODELS = ("bpe", "unigram")
SOURCE_SUBFOLDER, TARGET_SUBFOLDER = "source_tokenizer", "target_tokenizer"


# ------------------------------------------------------------------------------------------------ text files
# The package's one line reader: corpora, tokenizer training texts, `translate --input`, `evaluate --source` and
# stdin are all read under these rules:
# - a path must exist and not be a folder; a named pipe (<(zcat test.de.gz), /dev/stdin) is a file to read;
# - a .gz name is read as gzip;
# - text is UTF-8: a line that is not is an error naming the file, the line and the byte, with the fix (iconv);
# - a NUL byte is an error (a binary or UTF-16 file read as text would otherwise be trained on as garbage);
# - a byte-order mark at the start of the first line is dropped (left in, it changes the first sentence's tokens);
# - the line ending (\n or \r\n) is removed and nothing else: spaces and empty lines are kept, since line N of an
#   output answers line N of the input.


def decode_lines(raw_lines: Iterable[bytes], where: str) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` (1-based) of raw byte lines under the line reader's rules (above); ``where`` names the source in
    errors (a file name, ``<stdin>``)."""
    for lineno, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{where}, line {lineno}: text is not valid UTF-8 ({e.reason} at byte {e.start}); "
                "convert it, e.g. iconv -f latin1 -t utf-8"
            ) from None
        if "\x00" in line:
            raise ValueError(
                f"{where}, line {lineno}: contains a NUL byte (at character {line.index(chr(0)) + 1}); "
                "this looks like a binary or UTF-16 file, not UTF-8 text"
            )
        if lineno == 1:
            line = line.removeprefix("\ufeff")
        yield lineno, line.rstrip("\r\n")


def iter_text_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a UTF-8 text file (gzipped if ``.gz``), read lazily.

    Raises ``FileNotFoundError`` for a missing path and ``ValueError`` naming the file (and line) for a folder,
    text that is not UTF-8 or a NUL byte.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a text file")
    if not path.exists():  # not is_file(): a pipe such as <(zcat file.gz) or /dev/stdin is a fine input
        raise FileNotFoundError(f"{path} does not exist")
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        yield from decode_lines(f, str(path))


def read_text_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a UTF-8 text file (``.gz`` too), as :func:`iter_text_lines` reads them."""
    return [line for _, line in iter_text_lines(path)]


def _iter_texts(texts_or_files) -> Iterator[str]:
    """Strings from a file path (str/PathLike), or an iterable of texts (str) and/or file paths (PathLike)."""
    if isinstance(texts_or_files, str | os.PathLike):
        texts_or_files = [Path(texts_or_files)]
    for item in texts_or_files:
        if isinstance(item, os.PathLike):
            for _, line in iter_text_lines(item):
                yield line
        elif isinstance(item, str):
            yield item
        else:
            raise TypeError(f"texts_or_files: expected str texts or path objects, got {type(item).__name__}")


def _validate(vocab_size: int, model: str, min_frequency: int, model_max_length: int) -> None:
    if model not in TOKENIZER_MODELS:
        raise ValueError(f"model={model!r} is not valid; choose one of {list(TOKENIZER_MODELS)}")
    if not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(
            f"vocab_size={vocab_size!r} is not valid; it must be an integer > {len(SPECIAL_TOKENS)} "
            f"(the special tokens {list(SPECIAL_TOKENS)} take ids 0-{len(SPECIAL_TOKENS) - 1})"
        )
    if not isinstance(min_frequency, int) or min_frequency < 0:
        raise ValueError(f"min_frequency={min_frequency!r} is not valid; use an integer >= 0")
    if not isinstance(model_max_length, int) or model_max_length < 2:
        raise ValueError(f"model_max_length={model_max_length!r} is not valid; use an integer >= 2")


def _build_backend(model: str, lowercase: bool, split_digits: bool) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=UNK_TOKEN) if model == "bpe" else models.Unigram())
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    )
    pieces = [
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        pre_tokenizers.Punctuation(behavior="isolated"),
    ]
    if split_digits:
        pieces.append(pre_tokenizers.Digits(individual_digits=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(pieces)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    return tok


def _wrap(backend: Tokenizer, model_max_length: int) -> PreTrainedTokenizerFast:
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS_TOKEN}",
        pair=f"$A $B {EOS_TOKEN}",
        special_tokens=[(EOS_TOKEN, backend.token_to_id(EOS_TOKEN))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=model_max_length,
        padding_side="right",
        truncation_side="right",
        clean_up_tokenization_spaces=False,
    )


def train_tokenizer(
    texts_or_files: str | os.PathLike | Iterable[str | os.PathLike],
    vocab_size: int = 8000,
    model: str = "bpe",
    min_frequency: int = 2,
    lowercase: bool = False,
    *,
    split_digits: bool = True,
    model_max_length: int = 512,
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a BPE (Sennrich et al. 2016) or Unigram (Kudo 2018) tokenizer and wrap it for transformers.

    Args:
        texts_or_files: one file path (``str`` or ``Path``), or an iterable mixing texts (``str``) and file paths
            (``pathlib.Path`` — inside an iterable a plain ``str`` is a text, not a path). Files are UTF-8 text,
            one sentence per line, gzipped if their name ends in ``.gz``. Pass both sides of a parallel corpus for
            a joint vocabulary.
        vocab_size: final vocabulary size, special tokens included (an upper bound: a tiny corpus may give fewer).
        model: ``"bpe"`` or ``"unigram"``.
        min_frequency: BPE only: a pair must occur this often to be merged.
        lowercase: lowercase in the normalizer (after NFKC).
        split_digits: every digit its own token (helps copy numbers and dates).
        model_max_length: the tokenizer's truncation length (``truncation=True`` cuts to it).
        show_progress: show the ``tokenizers`` trainer's progress bar.

    Returns:
        A ``PreTrainedTokenizerFast`` with ``<pad>``=0, ``<s>``=1, ``</s>``=2, ``<unk>``=3 whose encodings end in
        ``</s>``.
    """
    _validate(vocab_size, model, min_frequency, model_max_length)
    backend = _build_backend(model, lowercase, split_digits)
    if model == "bpe":
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            show_progress=show_progress,
        )
    else:
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            unk_token=UNK_TOKEN,
            show_progress=show_progress,
        )
    backend.train_from_iterator(_iter_texts(texts_or_files), trainer=trainer)
    for expected_id, token in enumerate(SPECIAL_TOKENS):  # the cross-module contract; fail loudly if broken
        if backend.token_to_id(token) != expected_id:
            raise RuntimeError(
                f"special token {token} got id {backend.token_to_id(token)}, expected {expected_id}"
            )
    if backend.get_vocab_size() > vocab_size:  # BPE keeps every character of the corpus, whatever the budget
        warnings.warn(
            f"vocab_size={vocab_size} is below what the corpus needs (its characters and the special tokens): "
            f"the tokenizer has {backend.get_vocab_size()} entries",
            stacklevel=2,
        )
    return _wrap(backend, model_max_length)


def train_tokenizers(
    source_texts_or_files,
    target_texts_or_files,
    *,
    joint: bool = True,
    **kwargs,
) -> tuple[PreTrainedTokenizerFast, PreTrainedTokenizerFast]:
    """``(source_tokenizer, target_tokenizer)`` for a parallel corpus; ``kwargs`` go to :func:`train_tokenizer`.

    ``joint=True`` (the default) trains one vocabulary on both sides and returns the same object twice (allows
    tied embeddings). ``joint=False`` trains one tokenizer per side, each with ``vocab_size`` entries.
    Generators can only be read once: with ``joint=True`` both inputs are chained.
    """
    if joint:
        if isinstance(source_texts_or_files, str | os.PathLike):
            source_texts_or_files = [Path(source_texts_or_files)]
        if isinstance(target_texts_or_files, str | os.PathLike):
            target_texts_or_files = [Path(target_texts_or_files)]

        def both():
            yield from source_texts_or_files
            yield from target_texts_or_files

        tok = train_tokenizer(both(), **kwargs)
        return tok, tok
    return train_tokenizer(source_texts_or_files, **kwargs), train_tokenizer(target_texts_or_files, **kwargs)


def save_tokenizers(
    source_tokenizer: PreTrainedTokenizerFast,
    target_tokenizer: PreTrainedTokenizerFast | None,
    output_dir: str | os.PathLike,
) -> None:
    """Save a joint tokenizer at ``output_dir`` (when both are the same object or the target is None), or two
    tokenizers in ``output_dir/source_tokenizer`` and ``output_dir/target_tokenizer``.

    With separate vocabularies the source tokenizer is also saved at the top level, so
    ``AutoTokenizer.from_pretrained(output_dir)`` (and the pipeline) gets the one that encodes inputs.
    """
    output_dir = Path(output_dir)
    source_tokenizer.save_pretrained(output_dir)
    if target_tokenizer is not None and target_tokenizer is not source_tokenizer:
        source_tokenizer.save_pretrained(output_dir / SOURCE_SUBFOLDER)
        target_tokenizer.save_pretrained(output_dir / TARGET_SUBFOLDER)


def load_tokenizers(
    path: str | os.PathLike, **kwargs
) -> tuple[PreTrainedTokenizerFast, PreTrainedTokenizerFast]:
    """``(source_tokenizer, target_tokenizer)`` saved by :func:`save_tokenizers` (a local folder or Hub repo id).

    Loads the two sub-folders when ``path/target_tokenizer`` exists, else the top-level tokenizer twice
    (the same object: a joint vocabulary). ``kwargs`` go to ``AutoTokenizer.from_pretrained``.
    """
    local = Path(path)
    if (local / TARGET_SUBFOLDER).is_dir():
        return (
            AutoTokenizer.from_pretrained(path, subfolder=SOURCE_SUBFOLDER, **kwargs),
            AutoTokenizer.from_pretrained(path, subfolder=TARGET_SUBFOLDER, **kwargs),
        )
    tok = AutoTokenizer.from_pretrained(path, **kwargs)
    return tok, tok


OUR_MODEL_TYPES = TEXT_MODEL_TYPES  # the registry's text families (hf_seq2seq.families)


def check_tokenizer_fits_model(tokenizer, config, where: str = "") -> None:
    """Raise ``ValueError`` if ``tokenizer`` cannot drive a model with ``config`` (``where`` names the folder).

    A tokenizer with more entries than the model's embedding (``config.vocab_size``) would fail deep inside the
    embedding with an index error, or worse, on some inputs only; one with fewer entries (for our model types, whose
    training always sets ``vocab_size = len(tokenizer)``) means the two come from different runs and the output
    would be garbage. Models of other types often pad their embedding, so there only a larger tokenizer is an error.
    The special-token ids (pad, eos) must also agree.
    """
    n_tok, n_model = len(tokenizer), getattr(config, "vocab_size", None)
    at = f" in {where}" if where else ""
    if n_model is not None and (
        n_tok > n_model or (n_tok != n_model and getattr(config, "model_type", None) in OUR_MODEL_TYPES)
    ):
        raise ValueError(
            f"the tokenizer{at} has {n_tok} tokens but the model's vocab_size is {n_model}: they do not belong "
            "together (a tokenizer from another run?); use the tokenizer the model was trained with"
        )
    for name in ("pad_token_id", "eos_token_id"):
        tok_id, cfg_id = getattr(tokenizer, name, None), getattr(config, name, None)
        if tok_id is not None and isinstance(cfg_id, int) and tok_id != cfg_id:
            raise ValueError(
                f"the tokenizer{at} has {name}={tok_id} but the model config has {name}={cfg_id}: they do not "
                "belong together; use the tokenizer the model was trained with"
            )

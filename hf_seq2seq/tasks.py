"""Embedded toy translation tasks, generated at run time (no corpus download), that need **reordering**.

Two tasks, each a deterministic function of a seed, named like a translation pair:

``"numbers"`` (the default) — source ``"de"``, target ``"en"``
    German number words → English number words for the integers ``0 .. max_number`` (default 9999), both
    written by `num2words <https://pypi.org/project/num2words/>`_::

        {"de": "drei und zwanzig",                            "en": "twenty-three"}
        {"de": "neun tausend neun hundert sieben und achtzig", "en": "nine thousand, nine hundred and eighty-seven"}

    Every digit count is about equally likely (four-digit numbers would otherwise be 90% of the data).
    German says the units before the tens ("dreiundzwanzig" = three-and-twenty), English the tens first, so the
    alignment of every two-digit ending above twenty *crosses*: ``drei→three`` and ``zwanzig→twenty`` appear in
    opposite orders on the two sides, and an attention heatmap shows an anti-diagonal block there.

    Why the German side is written with **spaces between morphemes**: German writes the whole number as one
    compound word ("dreiundzwanzig"), and a subword tokenizer is free to split a compound anywhere ("dreiun",
    "dzwanzig"), which would hide the reordering inside a token. Splitting into the morphemes num2words composes
    (units ``null..neunzehn``, tens ``zwanzig..neunzig``, ``hundert``, ``tausend`` and the linker ``und``) makes
    each morpheme a whitespace word, so the reordering is real at the token level for any tokenizer. The English
    side stays as num2words writes it; :func:`hf_seq2seq.tokenization.train_tokenizer` isolates punctuation, so
    ``twenty-three`` becomes the tokens ``▁twenty - three``.

``"dates"`` — source ``"de"``, target ``"iso"``
    Dates between 1950-01-01 and 2049-12-31 written out by `Babel <https://babel.pocoo.org/>`_ in the German long
    format (day, month name, year) → ISO 8601::

        {"de": "23. März 2021", "iso": "2021-03-23"}

    The year moves from the end to the front and the day from the front to the end.

Sequences stay short (at most ~12 tokens with a joint BPE vocabulary of a few hundred entries), so a tiny
attention model (embeddings 32–64, hidden 64–128) learns either task to high exact match in well under a minute
of CPU training.

API: :func:`make_task` returns a list of ``{"translation": {src: ..., tgt: ...}}`` rows;
:func:`load_task_dataset` returns a :class:`datasets.DatasetDict` with ``train`` / ``validation`` / ``test``
splits that share no source sentence; :data:`TASKS` maps each task name to its ``(source_lang, target_lang)``.

Two additions for the analyses of :mod:`hf_seq2seq.analysis` (they leave the generated data above unchanged):

* :func:`gold_alignment` — the true word alignment of any pair of a task, computed from the pair's text: which
  source words each target word translates (Bahdanau et al. 2015, fig. 3; Luong et al. 2015, sec. 4.4).
* :func:`make_number_lists` — lists of numbers joined by ``" ; "`` on both sides (``"drei ; elf und achtzig"`` →
  ``"three ; eighty-one"``): the same words and reordering as ``"numbers"``, but with source lengths up to 60+
  words, for measuring how translation quality falls with input length (Bahdanau et al. 2015, fig. 2).
"""

from __future__ import annotations

import datetime
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from num2words import num2words

__all__ = [
    "TASKS",
    "make_task",
    "load_task_dataset",
    "task_languages",
    "task_direction",
    "german_number_words",
    "make_number_lists",
    "WordAlignment",
    "gold_alignment",
    "LIST_SEPARATOR",
]

# task name -> (source language code, target language code)
TASKS: dict[str, tuple[str, str]] = {"numbers": ("de", "en"), "dates": ("de", "iso")}

_DATE_START = datetime.date(1950, 1, 1)
_DATE_END = datetime.date(2049, 12, 31)


def task_languages(name: str) -> tuple[str, str]:
    """``(source_lang, target_lang)`` of a task; ``ValueError`` naming the choices for an unknown name."""
    if name not in TASKS:
        raise ValueError(f"task name={name!r} is not valid; choose one of {sorted(TASKS)}")
    return TASKS[name]


def task_direction(
    name: str, source_lang: str | None = None, target_lang: str | None = None
) -> tuple[str, str]:
    """``(source_lang, target_lang)`` a task is trained in: its own direction (:data:`TASKS`) unless the languages
    ask for the reverse (``source_lang="en", target_lang="de"`` trains ``"numbers"`` English → German; every row
    holds both sides). Either language may be left out; a language the task does not have is a ``ValueError``."""
    src, tgt = task_languages(name)
    source = source_lang or (tgt if target_lang == src else src)
    target = target_lang or (src if source == tgt else tgt)
    if (source, target) not in ((src, tgt), (tgt, src)):
        raise ValueError(
            f"--source_lang={source_lang!r} --target_lang={target_lang!r} do not fit --task {name}, whose "
            f"languages are {src!r} and {tgt!r}: train {src} -> {tgt} (the default) or {tgt} -> {src}"
        )
    return source, target


@cache
def _german_morphemes() -> tuple[str, ...]:
    """The morphemes num2words composes German numbers from, longest first (for greedy longest-match)."""
    words = {num2words(n, lang="de") for n in range(20)}  # null .. neunzehn
    words |= {num2words(10 * t, lang="de") for t in range(2, 10)}  # zwanzig .. neunzig
    words |= {"ein", "hundert", "tausend", "und"}  # "ein" as in "einhundert", "einundzwanzig"
    return tuple(sorted(words, key=len, reverse=True))


def german_number_words(n: int) -> str:
    """German words for ``n`` (num2words), with a space between morphemes: 23 → ``"drei und zwanzig"``."""
    compound = num2words(n, lang="de")
    morphemes = _german_morphemes()
    out, i = [], 0
    while i < len(compound):
        match = next((m for m in morphemes if compound.startswith(m, i)), None)
        if match is None:  # a num2words release that spells numbers differently
            raise ValueError(f"cannot split German number word {compound!r} (n={n}) into morphemes at {i}")
        out.append(match)
        i += len(match)
    return " ".join(out)


def _number_pair(n: int) -> dict[str, str]:
    return {"de": german_number_words(n), "en": num2words(n, lang="en")}


def _date_pair(day_index: int) -> dict[str, str]:
    from babel.dates import format_date  # only the "dates" task needs Babel

    date = _DATE_START + datetime.timedelta(days=day_index)
    return {"de": format_date(date, format="long", locale="de"), "iso": date.isoformat()}


def _population(name: str, max_number: int) -> tuple[int, Callable[[int], dict[str, str]]]:
    task_languages(name)
    if name == "numbers":
        if not isinstance(max_number, int) or max_number < 1:
            raise ValueError(f"max_number={max_number!r} is not valid; use an integer >= 1")
        return max_number + 1, _number_pair
    return (_DATE_END - _DATE_START).days + 1, _date_pair


def _sample(name: str, total: int, seed: int, max_number: int) -> list[dict]:
    size, make_pair = _population(name, max_number)
    if not isinstance(total, int) or total < 0:
        raise ValueError(f"number of examples={total!r} is not valid; use an integer >= 0")
    if total > size:
        raise ValueError(
            f"task {name!r} has only {size} distinct examples, {total} requested"
            + (" (raise max_number)" if name == "numbers" else "")
        )
    rng = random.Random(seed)
    if name == "numbers":
        indices = _sample_numbers_by_length(rng, size, total)
    else:
        indices = rng.sample(range(size), total)  # distinct, so no source sentence repeats
    return [{"translation": make_pair(i)} for i in indices]


def _sample_numbers_by_length(rng: random.Random, size: int, total: int) -> list[int]:
    """``total`` distinct integers of ``0 .. size-1``, every digit count about equally likely.

    A uniform draw over 0..9999 is 90% four-digit numbers and shows "drei und zwanzig" almost never, so a model
    trained on it translates long numbers and fails short ones. Weighted sampling without replacement
    (Efraimidis & Spirakis 2006: keep the ``total`` largest keys ``u ** (1 / w)``) with weight ``1 / (how many
    numbers have this many digits)`` gives each length the same share until a length is exhausted; the draw is then
    shuffled so that splits taken from its prefix mix all lengths.
    """

    def weight(n: int) -> float:
        digits = len(str(n))
        return 1.0 / (10 if digits == 1 else 9 * 10 ** (digits - 1))

    keys = sorted(range(size), key=lambda n: rng.random() ** (1.0 / weight(n)), reverse=True)[:total]
    rng.shuffle(keys)
    return keys


def make_task(
    name: str = "numbers", num_examples: int = 4000, seed: int = 0, *, max_number: int = 9999
) -> list[dict]:
    """``num_examples`` distinct pairs of task ``name`` as ``{"translation": {src: ..., tgt: ...}}`` rows.

    Deterministic for ``(name, num_examples, seed, max_number)``; no source sentence appears twice.
    ``max_number`` bounds the integers of the ``"numbers"`` task (ignored for ``"dates"``).
    """
    return _sample(name, num_examples, seed, max_number)


def load_task_dataset(
    name: str = "numbers",
    num_train: int = 4000,
    num_validation: int = 500,
    num_test: int = 500,
    seed: int = 0,
    *,
    max_number: int = 9999,
):
    """A ``datasets.DatasetDict`` with ``train`` / ``validation`` / ``test`` splits of task ``name``.

    The splits are disjoint (drawn together without replacement, so no source sentence is shared) and
    deterministic for the arguments.
    """
    from datasets import Dataset, DatasetDict

    rows = _sample(name, num_train + num_validation + num_test, seed, max_number)
    bounds = {
        "train": (0, num_train),
        "validation": (num_train, num_train + num_validation),
        "test": (num_train + num_validation, len(rows)),
    }
    return DatasetDict({split: Dataset.from_list(rows[a:b]) for split, (a, b) in bounds.items()})


# ----------------------------------------------------------------------------------------------- long inputs
LIST_SEPARATOR = (
    ";"  # not produced by num2words in either language, so it never clashes with a number's words
)


def make_number_lists(
    num_examples: int,
    seed: int = 0,
    *,
    min_count: int = 1,
    max_count: int = 12,
    max_number: int = 999,
) -> list[dict]:
    """``num_examples`` distinct pairs, each a list of ``min_count .. max_count`` numbers (uniform count).

    Each number is drawn uniformly from ``0 .. max_number`` and written as in the ``"numbers"`` task; the numbers
    are joined by ``" ; "`` on both sides. With the defaults a source has 1 to ~70 words, uniformly spread in the
    number count, so every length bucket holds enough sentences. Deterministic for the arguments.
    """
    if not isinstance(min_count, int) or not isinstance(max_count, int) or not 1 <= min_count <= max_count:
        raise ValueError(
            f"min_count={min_count!r}, max_count={max_count!r} are not valid; use 1 <= min <= max"
        )
    if not isinstance(max_number, int) or max_number < 1:
        raise ValueError(f"max_number={max_number!r} is not valid; use an integer >= 1")
    if not isinstance(num_examples, int) or num_examples < 0:
        raise ValueError(f"number of examples={num_examples!r} is not valid; use an integer >= 0")
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set()
    rows = []
    for _ in range(100 * num_examples + 100):  # redraw repeats; gives up on a population too small
        if len(rows) == num_examples:
            break
        numbers = tuple(rng.randint(0, max_number) for _ in range(rng.randint(min_count, max_count)))
        if numbers in seen:
            continue
        seen.add(numbers)
        sep = f" {LIST_SEPARATOR} "
        rows.append(
            {
                "translation": {
                    "de": sep.join(german_number_words(n) for n in numbers),
                    "en": sep.join(num2words(n, lang="en") for n in numbers),
                }
            }
        )
    if len(rows) < num_examples:
        raise ValueError(f"could draw only {len(rows)} distinct number lists, {num_examples} requested")
    return rows


# ----------------------------------------------------------------------------------------------- alignment
_WORD = re.compile(
    r"\w+|[^\w\s]"
)  # a word, or one punctuation mark (as the tokenizer's pre-tokenizer isolates it)


@dataclass(frozen=True)
class WordAlignment:
    """The gold word alignment of one pair.

    Words are the text's ``\\w+`` runs and single punctuation marks (``twenty-three`` → ``twenty``, ``-``,
    ``three``), each with its character span, so any tokenizer's tokens map onto them through their offsets.
    ``sure`` and ``possible`` hold ``(source word, target word)`` index pairs, ``sure`` ⊆ ``possible``, as in the
    alignment error rate of Och & Ney (2003): content words are sure links; function words with a counterpart
    (German ``und`` in ``drei und zwanzig`` and the English hyphen of ``twenty-three``) are possible links; words
    with no counterpart (English ``and``, the comma after ``thousand``, the dots and hyphens of a date) have none.
    """

    source_words: tuple[str, ...]
    target_words: tuple[str, ...]
    source_spans: tuple[tuple[int, int], ...]
    target_spans: tuple[tuple[int, int], ...]
    sure: frozenset[tuple[int, int]]
    possible: frozenset[tuple[int, int]]


def _words(text: str) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
    found = list(_WORD.finditer(text))
    return tuple(m.group() for m in found), tuple(m.span() for m in found)


@cache
def _number_lexicon() -> dict[str, str]:
    """German content morpheme -> its English word: units, teens, tens, ``ein(s)``, ``hundert``, ``tausend``."""
    lexicon = {num2words(n, lang="de"): num2words(n, lang="en") for n in range(20)}
    lexicon |= {num2words(10 * t, lang="de"): num2words(10 * t, lang="en") for t in range(2, 10)}
    lexicon |= {"ein": "one", "hundert": "hundred", "tausend": "thousand", LIST_SEPARATOR: LIST_SEPARATOR}
    return lexicon


def _match_in_order(source: Sequence[str], target: Sequence[str], lexicon: dict[str, str]) -> set:
    """Link the k-th source word translating to ``w`` with the k-th target ``w``.

    Correct for number words because the only reordering (units before tens in German) swaps *different* words:
    equal English words (the ``nine`` s of 9999) come in the same order on both sides.
    """
    by_word: dict[str, list[int]] = {}
    for j, word in enumerate(target):
        by_word.setdefault(word, []).append(j)
    used: dict[str, int] = {}
    links = set()
    for i, word in enumerate(source):
        translation = lexicon.get(word)
        if translation is None:
            continue
        k = used.get(translation, 0)
        positions = by_word.get(translation, [])
        if k >= len(positions):
            raise ValueError(f"no target word {translation!r} left for source word {word!r} (word {i})")
        links.add((i, positions[k]))
        used[translation] = k + 1
    return links


def _number_alignment(src: tuple[str, ...], tgt: tuple[str, ...]) -> tuple[set, set]:
    lexicon = _number_lexicon()
    unknown = [w for w in src if w not in lexicon and w != "und"]
    if unknown:
        raise ValueError(f"source words {unknown} are not German number words of the 'numbers' task")
    sure = _match_in_order(src, tgt, lexicon)
    possible = sure | _match_in_order(src, tgt, {"und": "-"})
    covered = {j for _, j in sure}
    missed = [w for j, w in enumerate(tgt) if j not in covered and w not in {"and", ",", "-"}]
    if missed:
        raise ValueError(f"target words {missed} have no source word: not a pair of the 'numbers' task")
    return sure, possible


def _date_alignment(src: tuple[str, ...], tgt: tuple[str, ...]) -> tuple[set, set]:
    if len(src) != 4 or len(tgt) != 5 or src[1] != "." or tgt[1] != "-" or tgt[3] != "-":
        raise ValueError(f"{src} -> {tgt} is not a 'dates' pair ('23. März 2021' -> '2021-03-23')")
    sure = {(0, 4), (2, 2), (3, 0)}  # day, month name -> month number, year
    return sure, set(sure)


def gold_alignment(name: str, translation: dict[str, str]) -> WordAlignment:
    """The true word alignment of one pair of task ``name`` (``"numbers"`` also covers number lists).

    ``translation`` is a row's ``{"de": ..., "en": ...}`` (or ``"iso"``) dict. A pair the task could not have
    generated raises ``ValueError`` saying which words do not fit.
    """
    src_lang, tgt_lang = task_languages(name)
    src, src_spans = _words(translation[src_lang])
    tgt, tgt_spans = _words(translation[tgt_lang])
    sure, possible = (_number_alignment if name == "numbers" else _date_alignment)(src, tgt)
    return WordAlignment(src, tgt, src_spans, tgt_spans, frozenset(sure), frozenset(possible))

"""The embedded tasks: deterministic, disjoint splits, short, and needing reordering at the token level."""

from __future__ import annotations

import pytest
from num2words import num2words

from hf_seq2seq.tasks import TASKS, german_number_words, load_task_dataset, make_task, task_languages
from hf_seq2seq.tokenization import train_tokenizer


@pytest.fixture(scope="module")
def numbers_rows():
    return make_task("numbers", 1500, seed=0)


@pytest.fixture(scope="module")
def numbers_tokenizer(numbers_rows):
    return train_tokenizer(
        [t for r in numbers_rows for t in r["translation"].values()], vocab_size=300, min_frequency=1
    )


@pytest.mark.parametrize("name", sorted(TASKS))
def test_deterministic_per_seed(name):
    assert make_task(name, 200, seed=3) == make_task(name, 200, seed=3)
    assert make_task(name, 200, seed=3) != make_task(name, 200, seed=4)
    src, tgt = task_languages(name)
    for row in make_task(name, 50, seed=0):
        assert set(row["translation"]) == {src, tgt}
        assert row["translation"][src] and row["translation"][tgt]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_splits_disjoint(name):
    dd = load_task_dataset(name, num_train=600, num_validation=100, num_test=100, seed=1)
    assert {k: len(v) for k, v in dd.items()} == {"train": 600, "validation": 100, "test": 100}
    src, _ = task_languages(name)
    sources = {split: {r[src] for r in dd[split]["translation"]} for split in dd}
    assert len(sources["train"]) == 600  # no repeats inside a split either
    assert not sources["train"] & sources["validation"]
    assert not sources["train"] & sources["test"]
    assert not sources["validation"] & sources["test"]
    assert load_task_dataset(name, 600, 100, 100, seed=1)["test"]["translation"] == dd["test"]["translation"]


def test_german_morphemes_compose_back():
    for n in [0, 1, 7, 16, 17, 21, 23, 70, 99, 100, 101, 117, 999, 1000, 1001, 7777, 9999]:
        words = german_number_words(n)
        assert words.replace(" ", "") == num2words(n, lang="de")
    assert german_number_words(23) == "drei und zwanzig"


def test_sequences_short(numbers_rows, numbers_tokenizer):
    for row in numbers_rows:
        for text in row["translation"].values():
            assert len(numbers_tokenizer(text)["input_ids"]) <= 15


def _aligned_positions(src_tokens, tgt_tokens, lexicon):
    """Pairs (i, j) aligning the k-th occurrence of a source word to the k-th occurrence of its translation."""
    tgt_seen: dict[str, list[int]] = {}
    for j, tok in enumerate(tgt_tokens):
        tgt_seen.setdefault(tok, []).append(j)
    used: dict[str, int] = {}
    pairs = []
    for i, tok in enumerate(src_tokens):
        translation = lexicon.get(tok)
        if translation is None:
            continue
        k = used.get(translation, 0)
        if k < len(tgt_seen.get(translation, [])):
            pairs.append((i, tgt_seen[translation][k]))
            used[translation] = k + 1
    return pairs


def test_numbers_need_reordering_at_token_level(numbers_rows, numbers_tokenizer):
    lexicon = {num2words(d, lang="de"): num2words(d, lang="en") for d in range(1, 10)}
    lexicon |= {num2words(10 * t, lang="de"): num2words(10 * t, lang="en") for t in range(2, 10)}
    lexicon |= {"ein": "one", "hundert": "hundred", "tausend": "thousand"}
    crossing = 0
    for row in numbers_rows:
        tr = row["translation"]

        def tokens(text):
            ids = numbers_tokenizer(text)["input_ids"][:-1]  # drop </s>
            return [t.lstrip("▁") for t in numbers_tokenizer.convert_ids_to_tokens(ids)]

        src, tgt = tokens(tr["de"]), tokens(tr["en"])
        assert all(
            t in lexicon or t in {"und", "null", "zehn", "elf", "zwölf"} or t.endswith("zehn") for t in src
        ), src
        pairs = _aligned_positions(src, tgt, lexicon)
        if any(i1 < i2 and j1 > j2 for i1, j1 in pairs for i2, j2 in pairs):
            crossing += 1
    # every number whose last two digits are 21..99 without a zero unit crosses: ~72% of them
    assert crossing / len(numbers_rows) > 0.6


def test_dates_need_reordering():
    months = {}
    for row in make_task("dates", 300, seed=2):
        de, iso = row["translation"]["de"], row["translation"]["iso"]
        day, month, year = de.split()
        assert year == iso[:4]  # last in the source, first in the target
        assert int(day.rstrip(".")) == int(iso[-2:])  # first in the source, last in the target
        months.setdefault(iso[5:7], set()).add(month)
    assert all(len(names) == 1 for names in months.values())  # one German name per month


def test_invalid_arguments():
    with pytest.raises(ValueError, match="task name='nope'.*numbers"):
        make_task("nope")
    with pytest.raises(ValueError, match="only 11 distinct"):
        make_task("numbers", 12, max_number=10)
    with pytest.raises(ValueError, match="max_number"):
        make_task("numbers", 1, max_number=0)


# ----------------------------------------------------------------------------------------------- gold alignment
def test_number_alignment_links_each_content_word_once():
    from hf_seq2seq.tasks import _number_lexicon, gold_alignment

    lexicon = _number_lexicon()
    for n in [*range(0, 10000, 7), 21, 99, 100, 101, 1000, 1001, 1100, 9999]:
        row = {"de": german_number_words(n), "en": num2words(n, lang="en")}
        a = gold_alignment("numbers", row)
        assert a.sure <= a.possible
        sources = [i for i, _ in a.sure]
        targets = [j for _, j in a.sure]
        assert len(set(sources)) == len(sources) and len(set(targets)) == len(targets)  # one link per word
        assert sorted(sources) == [i for i, w in enumerate(a.source_words) if w != "und"], (n, a)
        assert all(lexicon[a.source_words[i]] == a.target_words[j] for i, j in a.sure)  # a link translates
        for words, spans, text in (
            (a.source_words, a.source_spans, row["de"]),
            (a.target_words, a.target_spans, row["en"]),
        ):
            assert [text[s:e] for s, e in spans] == list(words)


def test_number_alignment_crosses_where_german_reorders():
    from hf_seq2seq.tasks import gold_alignment

    a = gold_alignment("numbers", {"de": "drei und zwanzig", "en": "twenty-three"})
    assert a.target_words == ("twenty", "-", "three")
    assert a.sure == {(0, 2), (2, 0)}  # drei→three, zwanzig→twenty: crossing
    assert a.possible == a.sure | {(1, 1)}  # und ~ the hyphen
    nines = gold_alignment("numbers", _number_row(9999))
    assert sorted(nines.sure) == [(0, 0), (1, 1), (2, 3), (3, 4), (4, 8), (6, 6)]


def _number_row(n):
    return {"de": german_number_words(n), "en": num2words(n, lang="en")}


def test_date_alignment():
    from hf_seq2seq.tasks import gold_alignment

    for row in make_task("dates", 50, seed=5):
        a = gold_alignment("dates", row["translation"])
        day, _, month, year = a.source_words
        assert a.target_words[0] == year and int(a.target_words[4]) == int(day)
        assert (3, 0) in a.sure and (0, 4) in a.sure and (2, 2) in a.sure


def test_gold_alignment_rejects_other_pairs():
    from hf_seq2seq.tasks import gold_alignment

    with pytest.raises(ValueError, match="Hund"):
        gold_alignment("numbers", {"de": "ein Hund", "en": "a dog"})
    with pytest.raises(ValueError, match="no source word"):
        gold_alignment("numbers", {"de": "drei", "en": "three four"})
    with pytest.raises(ValueError, match="not a 'dates' pair"):
        gold_alignment("dates", {"de": "drei", "iso": "3"})


def test_number_lists_long_distinct_and_aligned():
    from hf_seq2seq.tasks import LIST_SEPARATOR, gold_alignment, make_number_lists

    rows = make_number_lists(300, seed=2)
    assert rows == make_number_lists(300, seed=2) and rows != make_number_lists(300, seed=3)
    sources = [r["translation"]["de"] for r in rows]
    assert len(set(sources)) == len(sources)
    lengths = [len(s.split()) for s in sources]
    assert min(lengths) <= 5 and max(lengths) >= 60
    for row in rows[:50]:
        tr = row["translation"]
        assert tr["de"].count(LIST_SEPARATOR) == tr["en"].count(LIST_SEPARATOR)
        a = gold_alignment("numbers", tr)
        seps = [(i, j) for i, j in a.sure if a.source_words[i] == LIST_SEPARATOR]
        assert len(seps) == tr["de"].count(LIST_SEPARATOR)
        assert all(a.target_words[j] == LIST_SEPARATOR for _, j in seps)
    with pytest.raises(ValueError, match="min_count"):
        make_number_lists(3, min_count=0)


def test_every_gold_word_has_a_token(numbers_rows, numbers_tokenizer):
    from hf_seq2seq.analysis import token_word_map
    from hf_seq2seq.tasks import gold_alignment

    for row in numbers_rows[:200]:
        a = gold_alignment("numbers", row["translation"])
        for text, spans in (
            (row["translation"]["de"], a.source_spans),
            (row["translation"]["en"], a.target_spans),
        ):
            offsets = numbers_tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
            mapped = token_word_map(offsets, spans)
            assert set(mapped) - {None} == set(range(len(spans)))
            assert mapped[-1] is None  # </s> belongs to no word

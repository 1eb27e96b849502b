"""Tokenizer training: fixed special ids, </s> appended, round trips (text and save/load), separate vocabularies."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from hf_seq2seq.tokenization import (
    SPECIAL_TOKENS,
    load_tokenizers,
    save_tokenizers,
    train_tokenizer,
    train_tokenizers,
)

DE = [
    "Ein Hund läuft über die Wiese.",
    "Zwei Männer spielen Fußball im Park.",
    "Eine Frau liest ein Buch, während ihr Kind schläft.",
    "Am 23. März 2021 regnete es in Köln!",
    "Drei junge Mädchen essen Eis.",
] * 20
EN = [
    "A dog runs across the meadow.",
    "Two men play soccer in the park.",
    "A woman reads a book while her child sleeps.",
    "On March 23, 2021 it rained in Cologne!",
    "Three young girls are eating ice cream.",
] * 20


@pytest.fixture(scope="module", params=["bpe", "unigram"])
def tok(request):
    return train_tokenizer(DE + EN, vocab_size=150, model=request.param)


def test_special_ids_fixed(tok):
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.model_max_length == 512


def test_eos_appended_and_labels_from_text_target(tok):
    enc = tok("Ein Hund läuft.", text_target="A dog runs.")
    assert enc["input_ids"][-1] == 2 and enc["input_ids"].count(2) == 1
    assert enc["labels"][-1] == 2
    assert enc["labels"] == tok(text_target="A dog runs.")["input_ids"]
    assert 1 not in enc["input_ids"]  # no <s> on the source: the decoder start token is the model's business
    batch = tok(["Ein Hund.", "Zwei Männer spielen Fußball im Park."], padding=True)
    assert batch["input_ids"][0][-1] == 0  # right padding with <pad>=0
    assert batch["input_ids"][0].count(2) == 1


@pytest.mark.parametrize(
    "text",
    [
        "Ein Hund läuft über die Wiese.",
        "A woman reads a book, while her child sleeps!",
        "Am 23. März 2021 regnete es, in Köln!",
    ],
)
def test_decode_encode_round_trip(tok, text):
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text


def test_nfkc_normalization(tok):
    assert tok("ﬁne")["input_ids"] == tok("fine")["input_ids"]  # the ligature is NFKC-normalized


def test_unknown_character_maps_to_unk():
    tok = train_tokenizer(DE + EN, vocab_size=150, model="bpe")
    assert 3 in tok("☃")["input_ids"]


def test_save_and_autotokenizer_reload_identical(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    texts = DE[:5] + EN[:5] + ["Ünbekannte Wörter ☃ 12345"]
    assert reloaded(texts)["input_ids"] == tok(texts)["input_ids"]
    assert reloaded("x", text_target="y")["labels"] == tok("x", text_target="y")["labels"]
    assert (reloaded.pad_token_id, reloaded.bos_token_id, reloaded.eos_token_id, reloaded.unk_token_id) == (
        0,
        1,
        2,
        3,
    )
    assert reloaded.model_max_length == tok.model_max_length


def test_train_from_plain_and_gzip_files(tmp_path):
    (tmp_path / "a.de").write_text("\n".join(DE) + "\n", encoding="utf-8")
    with gzip.open(tmp_path / "a.en.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(EN) + "\n")
    from_files = train_tokenizer([tmp_path / "a.de", tmp_path / "a.en.gz"], vocab_size=150)
    from_texts = train_tokenizer(DE + EN, vocab_size=150)
    assert from_files.get_vocab() == from_texts.get_vocab()
    single = train_tokenizer(str(tmp_path / "a.de"), vocab_size=150)  # a single str is a path
    assert single.get_vocab() == train_tokenizer(DE, vocab_size=150).get_vocab()


def test_bad_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train_tokenizer([missing], vocab_size=50)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("ok line\nKöln\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt, line 2: .*not valid UTF-8"):
        train_tokenizer(bad, vocab_size=50)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "wordpiece"}, r"model='wordpiece'.*\['bpe', 'unigram'\]"),
        ({"vocab_size": 4}, r"vocab_size=4.*> 4"),
        ({"min_frequency": -1}, r"min_frequency=-1"),
        ({"model_max_length": 0}, r"model_max_length=0"),
    ],
)
def test_invalid_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_tokenizer(DE, **kwargs)


def test_joint_tokenizers_are_one_object(tmp_path):
    src, tgt = train_tokenizers(DE, EN, vocab_size=150)
    assert src is tgt
    assert src.get_vocab() == train_tokenizer(DE + EN, vocab_size=150).get_vocab()
    save_tokenizers(src, tgt, tmp_path)
    assert not (tmp_path / "target_tokenizer").exists()
    src2, tgt2 = load_tokenizers(tmp_path)
    assert src2 is tgt2
    assert src2(DE[:3])["input_ids"] == src(DE[:3])["input_ids"]


def test_separate_tokenizers_save_and_load(tmp_path):
    src, tgt = train_tokenizers(iter(DE), iter(EN), joint=False, vocab_size=300)
    assert src is not tgt
    assert "▁Hund" in src.get_vocab() and "▁Hund" not in tgt.get_vocab()
    assert "▁dog" in tgt.get_vocab() and "▁dog" not in src.get_vocab()
    save_tokenizers(src, tgt, tmp_path)
    assert (tmp_path / "source_tokenizer" / "tokenizer.json").is_file()
    assert (tmp_path / "target_tokenizer" / "tokenizer.json").is_file()
    src2, tgt2 = load_tokenizers(tmp_path)
    assert src2(DE[:5])["input_ids"] == src(DE[:5])["input_ids"]
    assert tgt2(text_target=EN[:5])["input_ids"] == tgt(text_target=EN[:5])["input_ids"]
    # the top level holds the source tokenizer: what the pipeline uses to encode inputs
    assert AutoTokenizer.from_pretrained(tmp_path)(DE[:2])["input_ids"] == src(DE[:2])["input_ids"]
    assert Path(tmp_path / "tokenizer.json").is_file()

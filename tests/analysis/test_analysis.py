"""hf_seq2seq.analysis and ``hf-seq2seq analyze``: length buckets, per-bucket scores, alignment metrics, the command."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import sacrebleu
from hub_server import tiny_model, tiny_tokenizer

from hf_seq2seq.analysis import (
    CARD_BEGIN,
    CARD_END,
    CARD_FIGURE,
    CARD_SECTION,
    alignment_counts,
    alignment_report,
    alignment_scores,
    attention_entropy,
    bucket_of,
    bucket_scores,
    length_buckets,
    source_lengths,
    token_word_map,
    word_attention,
)
from hf_seq2seq.cli import main as cli_main
from hf_seq2seq.hub import save_model_folder, section_markers, with_marked_section, write_model_card
from hf_seq2seq.tasks import gold_alignment, make_task


# ------------------------------------------------------------------------------------------- buckets
@pytest.mark.parametrize("min_size", [1, 7, 50, 1000])
def test_every_sentence_in_exactly_one_bucket(min_size):
    rng = random.Random(min_size)
    lengths = [rng.choice([1, 2, 3, 5, 8, 13, 21, 40, 41, 70]) for _ in range(300)]
    buckets = length_buckets(lengths, min_size)
    members = bucket_of(lengths, buckets)
    flat = sorted(i for m in members for i in m)
    assert flat == list(range(len(lengths)))  # every sentence once
    assert all(len(m) >= min(min_size, len(lengths)) for m in members)
    assert buckets[0][0] == min(lengths) and buckets[-1][1] == max(lengths)
    assert all(buckets[k][1] + 1 == buckets[k + 1][0] for k in range(len(buckets) - 1))  # touching ranges
    if min_size == 1:
        assert len(buckets) == len(set(lengths))  # one bucket per distinct length


def test_bucket_errors():
    with pytest.raises(ValueError, match="min_size=0"):
        length_buckets([1, 2], 0)
    with pytest.raises(ValueError, match="outside every bucket"):
        bucket_of([1, 9], [(1, 5)])


def test_bucket_scores_equal_sacrebleu_on_the_subset():
    rows = make_task("numbers", 120, seed=4)
    refs = [r["translation"]["en"] for r in rows]
    sources = [r["translation"]["de"] for r in rows]
    rng = random.Random(0)
    hyps = [" ".join(w for w in ref.split() if rng.random() > 0.3) for ref in refs]  # imperfect hypotheses
    lengths = source_lengths(sources)
    buckets = length_buckets(lengths, 25)
    scores = bucket_scores(hyps, refs, lengths, buckets)
    assert sum(s["num_sentences"] for s in scores) == len(refs)
    for s, idx in zip(scores, bucket_of(lengths, buckets), strict=True):
        subset_h, subset_r = [hyps[i] for i in idx], [refs[i] for i in idx]
        assert s["bleu"] == pytest.approx(sacrebleu.corpus_bleu(subset_h, [subset_r]).score)
        assert s["chrf"] == pytest.approx(sacrebleu.corpus_chrf(subset_h, [subset_r]).score)
        assert s["lo"] <= s["mean_length"] <= s["hi"]
    with pytest.raises(ValueError, match="line-aligned"):
        bucket_scores(hyps[:-1], refs, lengths, buckets)


# ------------------------------------------------------------------------------------------- alignment
def test_alignment_metrics_on_a_hand_made_case():
    # 3 target words × 3 source words; gold: t0←s2, t1←s1 (sure), t2←s0 possible only
    sure, possible = {(2, 0), (1, 1)}, {(2, 0), (1, 1), (0, 2)}
    perfect = np.array([[0.1, 0.1, 0.8], [0.0, 1.0, 0.0], [0.6, 0.2, 0.2]])
    scores = alignment_scores([alignment_counts(perfect, sure, possible)])
    assert (
        scores["aer"] == pytest.approx(0.0) and scores["accuracy"] == 1.0 and scores["num_target_words"] == 2
    )
    # argmax of t0 on s0 (wrong), t1 right, t2 on s1 (wrong): A = {(0,0), (1,1), (1,2)}; |A∩S| = |A∩P| = 1
    wrong = np.array([[0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.2, 0.7, 0.1]])
    scores = alignment_scores([alignment_counts(wrong, sure, possible)])
    assert scores["aer"] == pytest.approx(1 - (1 + 1) / (3 + 2)) and scores["accuracy"] == 0.5
    # corpus scores sum counts over sentences before dividing
    both = alignment_scores(
        [alignment_counts(perfect, sure, possible), alignment_counts(wrong, sure, possible)]
    )
    assert both["aer"] == pytest.approx(1 - (2 + 3 + 1 + 1) / (3 + 2 + 3 + 2)) and both["accuracy"] == 0.75


def test_subword_attention_becomes_word_attention():
    # source "ab cd": tokens "▁a" "b" "▁cd" "</s>"; target "xy": tokens "▁x" "y" "</s>"
    src_map = token_word_map([(0, 1), (1, 2), (2, 5), (0, 0)], [(0, 2), (3, 5)])
    tgt_map = token_word_map([(0, 1), (1, 2), (0, 0)], [(0, 2)])
    assert src_map == [0, 0, 1, None] and tgt_map == [0, 0, None]
    att = np.array([[0.2, 0.2, 0.5, 0.1], [0.4, 0.4, 0.2, 0.0], [0.0, 0.0, 0.0, 1.0]])
    words = word_attention(att, tgt_map, src_map, 1, 2)
    np.testing.assert_allclose(words, [[0.6, 0.35]])  # mean over target tokens of the summed source words
    with pytest.raises(ValueError, match="shape"):
        word_attention(att[:2], tgt_map, src_map, 1, 2)


def test_entropy_bounds():
    uniform = np.full((2, 4), 0.25)
    nats, normalised = attention_entropy(uniform)
    assert nats == pytest.approx(2 * math.log(4)) and normalised == pytest.approx(2.0)
    assert attention_entropy(np.eye(3)) == pytest.approx((0.0, 0.0), abs=1e-9)


@pytest.fixture(scope="module")
def numbers_pairs():
    rows = make_task("numbers", 12, seed=7)
    return [r["translation"]["de"] for r in rows], [r["translation"]["en"] for r in rows]


def test_alignment_report_shapes(numbers_pairs):
    sources, references = numbers_pairs
    gold = [gold_alignment("numbers", {"de": s, "en": r}) for s, r in zip(sources, references, strict=True)]
    tokenizer = tiny_tokenizer()
    transformer = tiny_model("transformer", len(tokenizer))
    report = alignment_report(transformer, tokenizer, sources, references, gold, batch_size=5)
    layers, heads = transformer.config.decoder_layers, transformer.config.num_attention_heads
    assert len(report["heads"]) == layers * heads + layers  # every head and each layer's mean
    assert report["best"]["head"] != "mean"
    assert report["best"]["aer"] == min(h["aer"] for h in report["heads"] if h["head"] != "mean")
    for h in report["heads"]:
        assert (
            0.0 <= h["aer"] <= 1.0 and 0.0 <= h["accuracy"] <= 1.0 and 0.0 <= h["entropy_normalised"] <= 1.0
        )
    assert [m.shape for m in report["word_attention"]] == [
        (len(g.target_words), len(g.source_words)) for g in gold
    ]
    # batching (padding) does not change the scores
    single = alignment_report(transformer, tokenizer, sources, references, gold, batch_size=1)
    assert single["best"] == pytest.approx(report["best"])
    none = tiny_model("rnn", len(tokenizer), attention="none")
    assert alignment_report(none, tokenizer, sources, references, gold) is None


# ------------------------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tokenizer = tiny_tokenizer()
    root = tmp_path_factory.mktemp("analyze")
    out = {}
    for name, family, extra in (
        ("rnn_none", "rnn", {"attention": "none"}),
        ("rnn_dot", "rnn", {"attention": "dot", "input_feeding": True}),
        ("transformer", "transformer", {}),
    ):
        model = tiny_model(family, len(tokenizer), **extra)
        model.generation_config.max_new_tokens = 8
        out[name] = save_model_folder(model, tokenizer, root / name / "best_model")
    return out


@pytest.mark.slow
def test_analyze_end_to_end(folders, numbers_pairs, tmp_path, capsys):
    sources, references = numbers_pairs
    (tmp_path / "src.de").write_text("".join(s + "\n" for s in sources), encoding="utf-8")
    (tmp_path / "ref.en").write_text("".join(r + "\n" for r in references), encoding="utf-8")
    card = folders["rnn_dot"] / "README.md"
    original = card.read_text(encoding="utf-8")
    options = [
        "--source",
        str(tmp_path / "src.de"),
        "--reference",
        str(tmp_path / "ref.en"),
        "--min_bucket_size",
        "4",
        "--alignment",
        "numbers",
        "--heatmap_line",
        "2",
        "--output_dir",
        str(tmp_path / "out"),
        "--name",
        "a",
        "--num_beams",
        "1",
        "--device",
        "cpu",
    ]
    assert cli_main(["analyze", *map(str, folders.values()), *options, "--update_card"]) == 0
    result = json.loads((tmp_path / "out" / "a.json").read_text(encoding="utf-8"))
    models = {m["label"]: m for m in result["models"]}
    assert list(models) == ["rnn_none", "rnn_dot", "transformer"]  # labels from the run folders
    assert models["rnn_none"]["alignment"] is None
    assert len(models["rnn_dot"]["alignment"]["heads"]) == 1
    for m in models.values():
        assert sum(b["num_sentences"] for b in m["buckets"]) == len(sources)
        assert m["bleu_signature"].startswith("nrefs:1")
    for name in ("a_length.png", "a_heatmaps.png", "a.md"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    table = (tmp_path / "out" / "a.md").read_text(encoding="utf-8")
    assert "AER" in table and "no attention" in table and "best head" in table
    # the card keeps what it had and gains one analysis section; a rerun replaces it instead of adding another
    assert cli_main(["analyze", str(folders["rnn_dot"]), *options, "--update_card"]) == 0
    text = card.read_text(encoding="utf-8")
    assert text.count(CARD_BEGIN) == 1 and text.index(CARD_BEGIN) < text.index("## How to use")
    head, rest = text.split(CARD_BEGIN)
    without = head + rest.split(CARD_END)[1]
    assert without.split() == original.split()  # nothing the card had is lost (blank lines aside)
    assert (folders["rnn_dot"] / CARD_FIGURE).stat().st_size > 0


def test_rewriting_the_card_keeps_the_analysis_section(tmp_path):
    """`regenerate_card.py` / `write_model_card` render the card anew: the analysis section must survive, once,
    where analyze put it (before "How to use"), and a second rewrite changes nothing."""
    assert section_markers(CARD_SECTION) == (CARD_BEGIN, CARD_END)  # analyze spells hub's markers out
    tokenizer = tiny_tokenizer()
    model = tiny_model("rnn", len(tokenizer), attention="dot")
    folder = save_model_folder(model, tokenizer, tmp_path / "m")
    readme = folder / "README.md"
    section = f"{CARD_BEGIN}\n## Quality by source length\n\n| 1–9 | 12 | 3.0 | 9.0 |\n{CARD_END}\n"
    readme.write_text(with_marked_section(readme.read_text(encoding="utf-8"), section, CARD_SECTION), "utf-8")
    write_model_card(model, tokenizer, folder, {"dataset_name": "renamed data"})
    text = readme.read_text(encoding="utf-8")
    assert "renamed data" in text  # the card was rendered anew
    assert text.count(CARD_BEGIN) == 1 and section.strip() in text
    assert text.index(CARD_BEGIN) < text.index("## How to use")
    write_model_card(model, tokenizer, folder, {"dataset_name": "renamed data"})
    assert readme.read_text(encoding="utf-8") == text


def test_analyze_errors_are_clear(folders, numbers_pairs, tmp_path, capsys):
    sources, references = numbers_pairs
    (tmp_path / "src").write_text("".join(s + "\n" for s in sources), encoding="utf-8")
    (tmp_path / "ref").write_text("".join(r + "\n" for r in references[:-1]), encoding="utf-8")
    (tmp_path / "dog").write_text("ein Hund\n" * (len(sources) - 1), encoding="utf-8")
    captioner = tmp_path / "captioner"
    captioner.mkdir()
    (captioner / "config.json").write_text('{"model_type": "rnn_captioning"}', encoding="utf-8")
    model = str(folders["transformer"])
    cases = [
        ([model, "--source", str(tmp_path / "src"), "--reference", str(tmp_path / "ref")], "line-aligned"),
        (
            [model, "--source", str(tmp_path / "dog"), "--reference", str(tmp_path / "ref"), "--alignment",
             "numbers"],
            "line 1 is not a pair",
        ),
        (
            [str(captioner), "--source", str(tmp_path / "ref"), "--reference", str(tmp_path / "ref")],
            "image-captioning model",
        ),
        (
            [model, "--source", str(tmp_path / "ref"), "--reference", str(tmp_path / "ref"), "--labels", "a,b"],
            "--labels names 2 models",
        ),
        (
            [str(tmp_path / "missing"), "--source", str(tmp_path / "ref"), "--reference", str(tmp_path / "ref"),
             "--update_card"],
            "--update_card writes into local model folders",
        ),
    ]  # fmt: skip
    for argv, message in cases:
        assert cli_main(["analyze", *argv, "--output_dir", str(tmp_path / "o")]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err

"""corpus_scores and the local evaluate metric modules: they load offline and agree with sacrebleu called directly."""

from __future__ import annotations

import evaluate
import pytest
import sacrebleu

from hf_seq2seq.metrics import corpus_scores, load_metric, metric_path

PREDICTIONS = ["a dog runs on the grass .", "two men are playing football", "the cat sleeps", ""]
REFERENCES = ["a dog runs across the grass .", "two men play soccer", "a cat is sleeping", "nothing"]
SECOND_REFERENCES = ["a dog is running on grass .", "two men are playing football", "the cat sleeps", "none"]


def test_sacrebleu_module_loads_offline_and_matches_sacrebleu(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bleu = evaluate.load(metric_path("sacrebleu"))
    out = bleu.compute(predictions=PREDICTIONS, references=[[r] for r in REFERENCES])
    direct = sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES])
    assert out["score"] == pytest.approx(direct.score)
    assert out["counts"] == direct.counts and out["ref_len"] == direct.ref_len
    assert out["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    flat = bleu.compute(predictions=PREDICTIONS, references=REFERENCES)  # one string per prediction
    assert flat["score"] == pytest.approx(direct.score)
    multi = bleu.compute(
        predictions=PREDICTIONS, references=[list(p) for p in zip(REFERENCES, SECOND_REFERENCES)]
    )
    assert multi["score"] == pytest.approx(
        sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES, SECOND_REFERENCES]).score
    )
    assert multi["signature"].startswith("nrefs:2")
    lower = bleu.compute(predictions=["A Dog"], references=[["a dog"]], lowercase=True)
    assert lower["score"] == pytest.approx(
        sacrebleu.corpus_bleu(["A Dog"], [["a dog"]], lowercase=True).score
    )


def test_chrf_module_loads_offline_and_matches_sacrebleu(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    chrf = load_metric("chrf")
    out = chrf.compute(predictions=PREDICTIONS, references=[[r] for r in REFERENCES])
    assert out["score"] == pytest.approx(sacrebleu.corpus_chrf(PREDICTIONS, [REFERENCES]).score)
    plus = chrf.compute(predictions=PREDICTIONS, references=REFERENCES, word_order=2)
    assert plus["score"] == pytest.approx(
        sacrebleu.corpus_chrf(PREDICTIONS, [REFERENCES], word_order=2).score
    )
    assert "nw:2" in plus["signature"]


def test_bad_metric_inputs():
    with pytest.raises(ValueError, match="unknown metric 'ter'; valid choices: sacrebleu, chrf"):
        metric_path("ter")
    with pytest.raises(ValueError, match="same number of references"):
        load_metric("sacrebleu").compute(predictions=["a", "b"], references=[["a"], ["b", "c"]])


def test_corpus_scores_match_sacrebleu_with_signatures():
    out = corpus_scores(PREDICTIONS, REFERENCES)
    assert set(out) == {"bleu", "bleu_signature", "chrf", "chrf_signature"}
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    assert out["bleu"] == pytest.approx(bleu.corpus_score(PREDICTIONS, [REFERENCES]).score)
    assert out["chrf"] == pytest.approx(chrf.corpus_score(PREDICTIONS, [REFERENCES]).score)
    assert out["bleu_signature"] == str(bleu.get_signature())
    assert out["chrf_signature"] == str(chrf.get_signature())
    assert out["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    # the same numbers as the evaluate module the package used before
    module = load_metric("sacrebleu").compute(predictions=PREDICTIONS, references=[[r] for r in REFERENCES])
    assert out["bleu"] == pytest.approx(module["score"]) and out["bleu_signature"] == module["signature"]
    assert set(corpus_scores(PREDICTIONS, REFERENCES, metrics=("chrf",))) == {"chrf", "chrf_signature"}
    with_lengths = corpus_scores(PREDICTIONS, REFERENCES, metrics=("chrf",), with_lengths=True)
    assert (with_lengths["ref_len"], with_lengths["sys_len"]) == (module["ref_len"], module["sys_len"])


def test_corpus_scores_multi_reference_lists_may_differ_in_length():
    groups = [[a, b] for a, b in zip(REFERENCES, SECOND_REFERENCES)]
    groups[0] = groups[0][:1]  # the first segment has one reference only
    out = corpus_scores(PREDICTIONS, groups)
    streams = [REFERENCES, [None, *SECOND_REFERENCES[1:]]]
    assert out["bleu"] == pytest.approx(sacrebleu.corpus_bleu(PREDICTIONS, streams).score)
    assert out["chrf"] == pytest.approx(sacrebleu.corpus_chrf(PREDICTIONS, streams).score)
    assert out["bleu_signature"].startswith("nrefs:var")
    one = corpus_scores(PREDICTIONS, [[r] for r in REFERENCES])  # one-element lists == plain strings
    assert one == corpus_scores(PREDICTIONS, REFERENCES)


def test_corpus_scores_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="0 lines"):  # sacrebleu alone would raise an IndexError
        corpus_scores([], [])
    with pytest.raises(ValueError, match="3 hypotheses but 2 references"):
        corpus_scores(["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="unknown metric 'ter'; valid choices: bleu, chrf"):
        corpus_scores(["a"], ["a"], metrics=("bleu", "ter"))
    with pytest.raises(ValueError, match="unknown metric None"):
        corpus_scores(["a"], ["a"], metrics=())
    with pytest.raises(ValueError, match="hypothesis 1 has no reference"):
        corpus_scores(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match="not one string"):
        corpus_scores(["a"], "a")

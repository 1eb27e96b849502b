"""The local evaluate metric modules load offline and agree with sacrebleu called directly."""

from __future__ import annotations

import evaluate
import pytest
import sacrebleu

from hf_seq2seq.metrics import load_metric, metric_path

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

"""sacreBLEU as a local ``evaluate`` module: ``evaluate.load("hf_seq2seq/metrics/sacrebleu")`` works offline.

Post (2018), "A Call for Clarity in Reporting BLEU Scores": BLEU computed by ``sacrebleu.corpus_bleu`` on detokenized
text with a fixed tokenizer, reported together with its signature so that numbers are comparable across papers.
The output keys follow the Hub's ``sacrebleu`` metric, plus ``signature``.

One import per line: ``evaluate``'s import scanner misreads ``import a, b``.
"""

import datasets
import evaluate
import sacrebleu

_CITATION = """\
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    pages = "186--191",
}
"""

_DESCRIPTION = """\
Corpus-level BLEU (Papineni et al., 2002) computed with sacreBLEU on detokenized text. Every prediction has one or
more references; all predictions must have the same number of references.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list[str]): system outputs, one per sentence.
    references (list[str] | list[list[str]]): one reference string per prediction, or a list of references.
    smooth_method (str): "none", "floor", "add-k" or "exp" (default).
    smooth_value (float | None): the value for "floor" / "add-k".
    tokenize (str | None): sacreBLEU tokenizer ("13a" default, "intl", "char", "zh", "none", ...).
    lowercase (bool): lowercase before scoring.
    force (bool): score even if the text looks tokenized.
Returns:
    score (float, 0-100), counts, totals, precisions, bp, sys_len, ref_len, signature (str).
Example:
    >>> bleu = evaluate.load("hf_seq2seq/metrics/sacrebleu")
    >>> bleu.compute(predictions=["a cat sat"], references=[["a cat sat"]])["score"]
    100.0...
"""


def _as_reference_lists(references):
    """Accept ``list[str]`` (one reference each) or ``list[list[str]]``; return the latter."""
    return [[ref] if isinstance(ref, str) else list(ref) for ref in references]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Sacrebleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            homepage="https://github.com/mjpost/sacrebleu",
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Sequence(
                            datasets.Value("string", id="sequence"), id="references"
                        ),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Value("string", id="sequence"),
                    }
                ),
            ],
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
            reference_urls=["https://aclanthology.org/W18-6319/"],
        )

    def _compute(
        self,
        predictions,
        references,
        smooth_method="exp",
        smooth_value=None,
        tokenize=None,
        lowercase=False,
        force=False,
    ):
        refs = _as_reference_lists(references)
        num_refs = {len(r) for r in refs}
        if len(num_refs) > 1:
            raise ValueError(
                f"every prediction needs the same number of references, got counts {sorted(num_refs)}"
            )
        transposed = [[r[i] for r in refs] for i in range(num_refs.pop() if refs else 1)]
        metric = sacrebleu.metrics.BLEU(
            lowercase=lowercase,
            force=force,
            tokenize=tokenize,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
        )
        result = metric.corpus_score(list(predictions), transposed)
        return {
            "score": result.score,
            "counts": list(result.counts),
            "totals": list(result.totals),
            "precisions": list(result.precisions),
            "bp": result.bp,
            "sys_len": result.sys_len,
            "ref_len": result.ref_len,
            "signature": str(metric.get_signature()),
        }

"""chrF / chrF++ as a local ``evaluate`` module: ``evaluate.load("hf_seq2seq/metrics/chrf")`` works offline.

Popović (2015), "chrF: character n-gram F-score for automatic MT evaluation" (``word_order=2`` gives chrF++,
Popović 2017), computed with ``sacrebleu.metrics.CHRF`` and reported with its signature.

One import per line: ``evaluate``'s import scanner misreads ``import a, b``.
"""

import datasets
import evaluate
import sacrebleu

_CITATION = """\
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    year = "2015",
    pages = "392--395",
}
"""

_DESCRIPTION = """\
Corpus-level chrF (character n-gram F-score), or chrF++ with word_order=2, computed with sacreBLEU.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list[str]): system outputs, one per sentence.
    references (list[str] | list[list[str]]): one reference string per prediction, or a list of references.
    char_order (int): character n-gram order (default 6).
    word_order (int): word n-gram order (0 = chrF, 2 = chrF++).
    beta (int): recall weight (default 2).
    lowercase (bool), whitespace (bool), eps_smoothing (bool): see sacrebleu.metrics.CHRF.
Returns:
    score (float, 0-100), char_order, word_order, beta, signature (str).
"""


def _as_reference_lists(references):
    return [[ref] if isinstance(ref, str) else list(ref) for ref in references]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Chrf(evaluate.Metric):
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
            reference_urls=["https://aclanthology.org/W15-3049/"],
        )

    def _compute(
        self,
        predictions,
        references,
        char_order=6,
        word_order=0,
        beta=2,
        lowercase=False,
        whitespace=False,
        eps_smoothing=False,
    ):
        refs = _as_reference_lists(references)
        num_refs = {len(r) for r in refs}
        if len(num_refs) > 1:
            raise ValueError(
                f"every prediction needs the same number of references, got counts {sorted(num_refs)}"
            )
        transposed = [[r[i] for r in refs] for i in range(num_refs.pop() if refs else 1)]
        metric = sacrebleu.metrics.CHRF(
            char_order=char_order,
            word_order=word_order,
            beta=beta,
            lowercase=lowercase,
            whitespace=whitespace,
            eps_smoothing=eps_smoothing,
        )
        result = metric.corpus_score(list(predictions), transposed)
        return {
            "score": result.score,
            "char_order": char_order,
            "word_order": word_order,
            "beta": beta,
            "signature": str(metric.get_signature()),
        }

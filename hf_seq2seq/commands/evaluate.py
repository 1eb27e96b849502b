"""``hf-seq2seq evaluate``: translate a source file and score it with sacreBLEU (BLEU, chrF)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from .common import _fail, _generate_kwargs, _generation_args, _load, _read_lines, check_outputs, write_atomic
from .translate import translate_lines


def score(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """Corpus BLEU and chrF (sacreBLEU defaults) with their signatures, keyed as the model card expects."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    bleu, chrf = BLEU(), CHRF()
    bleu_score = bleu.corpus_score(list(hypotheses), [list(references)])
    chrf_score = chrf.corpus_score(list(hypotheses), [list(references)])
    return {
        "bleu": bleu_score.score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf": chrf_score.score,
        "chrf_signature": str(chrf.get_signature()),
        "num_eval_sentences": len(references),
    }


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-seq2seq evaluate",
        description="Translate a source file and score it against a reference file with sacreBLEU (BLEU, chrF).",
    )
    parser.add_argument("--model", required=True, help="saved model folder (or Hub repo id)")
    parser.add_argument("--source", required=True, help="source sentences, one per line")
    parser.add_argument(
        "--reference", required=True, help="reference translations, line-aligned with --source"
    )
    parser.add_argument("--output", default=None, help="write the scores and signatures to this JSON file")
    parser.add_argument("--hypotheses", default=None, help="also write the translations to this file")
    parser.add_argument(
        "--update_card",
        action="store_true",
        help="add (or replace) this split's BLEU and chrF with their signatures in the model folder's card "
        "(README.md: model-index and the evaluation table); `hf-seq2seq push` then publishes it",
    )
    parser.add_argument(
        "--split_name",
        default=None,
        help="the split's name in the card (default: the --source file name without its language and .gz "
        "suffixes, e.g. test_2016_flickr)",
    )
    _generation_args(parser)
    args = parser.parse_args(argv)
    try:
        check_outputs(
            {"--output": args.output, "--hypotheses": args.hypotheses},
            {"--source": args.source, "--reference": args.reference},
        )
        sources, references = _read_lines(args.source), _read_lines(args.reference)
        if len(sources) != len(references):
            raise ValueError(
                f"--source {args.source} has {len(sources)} lines but --reference {args.reference} has "
                f"{len(references)}: the files must be line-aligned"
            )
        if args.update_card and not (Path(args.model) / "README.md").is_file():
            raise FileNotFoundError(
                f"--update_card: {args.model} is not a model folder with a README.md card"
            )
        model, tokenizer = _load(args.model, args.device, args.trust_remote_code)
        hyps = [
            h[0]
            for h in translate_lines(
                model, tokenizer, sources, batch_size=args.batch_size, progress=True, **_generate_kwargs(args)
            )
        ]
        result = score(hyps, references)
    except (OSError, ValueError) as err:
        return _fail(parser.prog, err)
    result["num_beams"] = args.num_beams or model.generation_config.num_beams
    print(f"BLEU = {result['bleu']:.2f}  ({result['bleu_signature']})")
    print(f"chrF = {result['chrf']:.2f}  ({result['chrf_signature']})")
    if args.hypotheses:
        write_atomic(args.hypotheses, "".join(h + "\n" for h in hyps))
    if args.output:
        write_atomic(args.output, json.dumps(result, indent=2) + "\n")
    if args.update_card:
        try:
            readme = _update_card(args, result)
        except (OSError, ValueError) as err:
            return _fail(parser.prog, err)
        print(f"{readme}: {_split_name(args)} results added to the model card")
    return 0


def _split_name(args) -> str:
    """``--split_name``, else the source file's name without ``.gz`` and its language suffix."""
    if args.split_name:
        return args.split_name
    name = Path(args.source).name.removesuffix(".gz")
    return Path(name).stem if Path(name).suffix else name


def _update_card(args, result: dict) -> Path:
    from ..hub import dataset_display_name, update_card_evaluation

    return update_card_evaluation(
        args.model,
        _split_name(args),
        result,
        num_beams=result["num_beams"],
        dataset_name=dataset_display_name(args.source),
    )

"""``hf-seq2seq evaluate``: translate a source file and score it with sacreBLEU (BLEU, chrF)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from .common import (
    add_generation_args,
    check_card_folders,
    check_outputs,
    check_something_to_score,
    fail,
    translate_options,
)


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
    add_generation_args(parser)
    args = parser.parse_args(argv)
    from ..hub import write_atomic
    from ..inference import load_engine
    from ..metrics import corpus_scores
    from ..tokenization import read_text_lines

    try:
        check_outputs(
            {"--output": args.output, "--hypotheses": args.hypotheses},
            {"--source": args.source, "--reference": args.reference},
        )
        sources, references = read_text_lines(args.source), read_text_lines(args.reference)
        if len(sources) != len(references):
            raise ValueError(
                f"--source {args.source} has {len(sources)} lines but --reference {args.reference} has "
                f"{len(references)}: the files must be line-aligned"
            )
        check_something_to_score(
            {"--source": (args.source, sources), "--reference": (args.reference, references)}
        )
        if args.update_card and not (Path(args.model) / "README.md").is_file():
            raise FileNotFoundError(
                f"--update_card: {args.model} is not a model folder with a README.md card"
            )
        if args.update_card:
            check_card_folders([args.model])  # the pre-flight's check, for a caller of evaluate_main too
        engine = load_engine(args.model, device=args.device, trust_remote_code=args.trust_remote_code)
        hyps = [r.text for r in engine.translate(sources, progress=True, **translate_options(args))]
        result = corpus_scores(hyps, references) | {"num_eval_sentences": len(references)}
    except (OSError, ValueError) as err:
        return fail(parser.prog, err)
    result["num_beams"] = args.num_beams or engine.default_beams
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
            return fail(parser.prog, err)
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

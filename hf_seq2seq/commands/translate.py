"""``hf-seq2seq translate``: one sentence per line through a saved model or an export (:mod:`hf_seq2seq.inference`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .align import add_alignment_args, alignment_kwargs, format_alignment
from .common import add_generation_args, check_outputs, fail, positive_int, read_stdin, translate_options

ENGINES = (
    "torch",
    "ctranslate2",
    "onnxruntime",
)  # hf_seq2seq.inference.ENGINES, spelled out for a fast --help


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """``--engine``, ``--threads`` and ``--compute_type``."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="torch",
        help="torch: --model is a saved model folder; ctranslate2 / onnxruntime: --model is a folder written by "
        "`hf-seq2seq export` (CPU; --device and --trust_remote_code apply to torch only)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="intra-op threads of the engine (default: its own)",
    )
    parser.add_argument(
        "--compute_type",
        default=None,
        help="ctranslate2: float32, int8, int8_float32, ... (default: the type stored by the export)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-seq2seq translate",
        description="Translate one sentence per line with a saved model (stdin → stdout, or files). Output line N "
        "is the translation of input line N; empty lines stay empty. With --n_best K, K lines (best first) per "
        "input line.",
    )
    parser.add_argument(
        "--model", required=True, help="saved model folder (or Hub repo id), or an export folder"
    )
    parser.add_argument("--input", default=None, help="source file (default: stdin)")
    parser.add_argument(
        "--output",
        default=None,
        help="output file, replaced only once every line is translated (default: stdout)",
    )
    parser.add_argument(
        "--n_best", type=positive_int, default=1, help="hypotheses per input line (default 1)"
    )
    add_generation_args(parser)
    add_engine_args(parser)
    add_alignment_args(parser, optional=True)
    parser.add_argument(
        "--alignments_output",
        default=None,
        help="with --alignments: write the alignments to this file, line for line with the translations (default: "
        "a second tab-separated column after each translation)",
    )
    return parser


def translate_main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.engine != "ctranslate2" and args.compute_type is not None:
        how = {"torch": "load the folder in its dtype", "onnxruntime": "the ONNX export runs in float32"}
        parser.error(
            f"--compute_type applies to --engine ctranslate2 only ({args.engine}: {how[args.engine]})"
        )
    if args.alignments is None:
        given = [
            o
            for o in ("alignments_output", "alignment_layer", "alignment_heads")
            if getattr(args, o) is not None
        ]
        if given:
            parser.error(f"--{given[0]} applies with --alignments only")
    from ..hub import write_atomic
    from ..inference import load_engine
    from ..tokenization import read_text_lines

    try:
        check_outputs(
            {"--output": args.output, "--alignments_output": args.alignments_output}, {"--input": args.input}
        )
        lines = read_text_lines(args.input) if args.input else read_stdin()
        engine = load_engine(
            args.model,
            args.engine,
            args.threads,
            args.compute_type,
            device=args.device,
            trust_remote_code=args.trust_remote_code,
        )
        aligned = {}
        if args.alignments is not None:
            choice = alignment_kwargs(args)
            aligned = {
                "return_alignment": True,
                "alignment_layer": choice["layer"],
                "alignment_heads": choice["heads"],
            }
        results = engine.translate(
            lines, n_best=args.n_best, progress=args.output is not None, **translate_options(args), **aligned
        )
    except (OSError, ValueError) as err:
        return fail(parser.prog, err)
    text = "".join(hyp + "\n" for r in results for hyp in r.hypotheses)
    if args.alignments is not None:
        links = [format_alignment(a, args.alignments) for r in results for a in r.alignments]
        if args.alignments_output:
            write_atomic(args.alignments_output, "".join(line + "\n" for line in links))
        else:
            hyps = [hyp for r in results for hyp in r.hypotheses]
            text = "".join(f"{h}\t{a}\n" for h, a in zip(hyps, links, strict=True))
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0

"""``hf-seq2seq align``: forced word alignment of existing sentence pairs with a saved model (teacher forcing, no
search), in Pharaoh format — a trained model as a word aligner, like fast_align or eflomal
(:func:`hf_seq2seq.inference.alignment.align_pairs`). Also the alignment options ``translate --alignments`` shares."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .common import add_generation_args, check_outputs, fail


def head_list(value: str) -> list[int]:
    """argparse type of ``--alignment_heads``: comma-separated head indices (``0,2``), or ``all``."""
    if value == "all":
        return []
    try:
        heads = [int(x) for x in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid head list {value!r}: give comma-separated head indices such as 0,2, or all"
        ) from None
    if any(h < 0 for h in heads):
        raise argparse.ArgumentTypeError(f"invalid head list {value!r}: head indices are >= 0")
    return heads


def alignment_mode(value: str) -> str | float:
    """argparse type of ``--alignments``: hard, soft or a threshold in (0, 1] (checked here, before torch loads)."""
    if value in ("hard", "soft"):
        return value
    try:
        threshold = float(value)
    except ValueError:
        threshold = float("nan")
    if not 0.0 < threshold <= 1.0:
        raise argparse.ArgumentTypeError(
            f"invalid choice {value!r} (choose hard, soft or a threshold in (0, 1] such as 0.3)"
        )
    return threshold


def add_alignment_args(parser: argparse.ArgumentParser, *, optional: bool) -> None:
    """``--alignments``, ``--alignment_layer`` and ``--alignment_heads`` (translate: ``--alignments`` off unless
    given; align: always on, default hard)."""
    parser.add_argument(
        "--alignments",
        type=alignment_mode,
        nargs="?" if optional else None,
        const="hard" if optional else None,
        default=None if optional else "hard",
        metavar="hard|soft|THRESHOLD",
        help="word alignment in Pharaoh format (i-j: source word i, target word j, 0-based, whitespace words): "
        "hard (the attention argmax of each target word, the default), THRESHOLD (every link whose word "
        "attention is at least it, e.g. 0.3), soft (the word attention matrix: per target word, its weights over "
        "the source words, comma-separated)",
    )
    parser.add_argument(
        "--alignment_layer",
        type=int,
        default=None,
        help="Transformer: the decoder layer whose cross-attention aligns (default: the last; negative counts "
        "from the end; docs/alignment.md says why)",
    )
    parser.add_argument(
        "--alignment_heads",
        type=head_list,
        default=None,
        help="Transformer: comma-separated heads of that layer to average, e.g. 1 or 0,3 (default: all; "
        "`hf-seq2seq analyze --alignment` finds the head that aligns best)",
    )


def alignment_kwargs(args) -> dict:
    """``layer`` / ``heads`` for the library from the parsed options (``all`` is ``None``)."""
    return {"layer": args.alignment_layer, "heads": args.alignment_heads or None}


def format_alignment(soft, mode: str | float) -> str:
    """One output line for a soft word alignment under ``--alignments`` ``mode``."""
    from ..inference.alignment import format_pharaoh, format_soft, hard_alignment

    if mode == "soft":
        return format_soft(soft)
    return format_pharaoh(hard_alignment(soft, None if mode == "hard" else float(mode)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-seq2seq align",
        description="Word-align existing sentence pairs with a saved translation model: each target line is forced "
        "through the decoder (teacher forcing, no search) and its cross-attention merged into whitespace words. "
        "Output line N is the alignment of pair N in Pharaoh format (i-j, source word i to target word j, "
        "0-based); a pair with an empty side gets an empty line.",
    )
    parser.add_argument("--model", required=True, help="saved model folder (or Hub repo id) with attention")
    parser.add_argument("--source", required=True, help="source sentences, one per line")
    parser.add_argument("--target", required=True, help="their translations, line by line")
    parser.add_argument(
        "--output",
        default=None,
        help="alignment file, replaced only once every pair is aligned (default: stdout)",
    )
    parser.add_argument(
        "--engine",
        choices=("torch", "ctranslate2"),
        default="torch",
        help="torch: --model is a saved model folder; ctranslate2: a folder written by `hf-seq2seq export --format "
        "ctranslate2` (its alignment layer and heads are fixed at export). onnxruntime's graphs return no attention",
    )
    add_alignment_args(parser, optional=False)
    add_generation_args(parser, unit="pairs")
    return parser


def align_main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.num_beams is not None or args.max_new_tokens is not None:
        parser.error(
            "--num_beams and --max_new_tokens do not apply: align forces the given targets (no search)"
        )
    from ..hub import write_atomic
    from ..inference import load_engine
    from ..inference.alignment import align_pairs
    from ..tokenization import read_text_lines

    try:
        check_outputs({"--output": args.output}, {"--source": args.source, "--target": args.target})
        sources, targets = read_text_lines(args.source), read_text_lines(args.target)
        if len(sources) != len(targets):
            raise ValueError(
                f"--source {args.source} has {len(sources)} lines but --target {args.target} has "
                f"{len(targets)}: give one target line per source line"
            )
        engine = load_engine(
            args.model, args.engine, device=args.device, trust_remote_code=args.trust_remote_code
        )
        soft = align_pairs(
            engine,
            sources,
            targets,
            batch_size=args.batch_size,
            progress=True,
            **alignment_kwargs(args),
        )
    except (OSError, ValueError) as err:
        return fail(parser.prog, err)
    text = "".join(format_alignment(a, args.alignments) + "\n" for a in soft)
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0

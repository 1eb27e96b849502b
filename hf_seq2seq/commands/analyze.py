"""``hf-seq2seq analyze``: BLEU/chrF by source length and attention alignment accuracy of saved models.

Decodes the source file once per model, scores each source-length bucket (:mod:`hf_seq2seq.analysis`), and with
``--alignment TASK`` scores each attention model's alignment against the task's gold alignment. Writes, under
``--output_dir``: ``NAME.json`` (every number, the sacreBLEU signatures, the bucket edges), ``NAME.md`` (the
tables), ``NAME_length.png`` (one line per model) and, with ``--alignment``, ``NAME_heatmaps.png`` (the same
sentence for every model). ``--update_card`` also puts each model's own length figure and table into its folder's
model card (a marked section of ``README.md``, replaced on a rerun; the rest of the card is kept).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .common import (
    add_generation_args,
    check_card_folders,
    check_something_to_score,
    check_writable,
    fail,
    positive_int,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-seq2seq analyze",
        description="Score saved translation models by source-length bucket (BLEU, chrF; Bahdanau et al. 2015, "
        "fig. 2) and, with --alignment, score their attention against a task's gold word alignment (AER, argmax "
        "accuracy, entropy; per layer and head for the Transformer).",
    )
    parser.add_argument(
        "models", nargs="+", metavar="MODEL_DIR", help="saved model folders (or Hub repo ids)"
    )
    parser.add_argument("--source", required=True, help="source sentences, one per line (.gz read as gzip)")
    parser.add_argument(
        "--reference", required=True, help="reference translations, line-aligned with --source"
    )
    parser.add_argument("--labels", default=None, help="comma-separated model names (default: folder names)")
    parser.add_argument("--output_dir", default="analysis", help="where the JSON, tables and figures go")
    parser.add_argument("--name", default="analysis", help="file name stem of the outputs (default analysis)")
    parser.add_argument(
        "--min_bucket_size",
        type=positive_int,
        default=50,
        help="fewest sentences in a length bucket (default 50)",
    )
    parser.add_argument(
        "--alignment",
        default=None,
        metavar="TASK",
        help="score attention against the gold alignment of this embedded task ('numbers' also covers number "
        "lists, 'dates'); the source/reference pairs must be that task's",
    )
    parser.add_argument(
        "--heatmap_line",
        type=int,
        default=1,
        help="1-based line drawn in the side-by-side heatmaps (default 1)",
    )
    parser.add_argument(
        "--update_card", action="store_true", help="add each model's length figure and table to its README.md"
    )
    add_generation_args(parser)
    return parser


def analyze_main(argv: Sequence[str] | None = None) -> int:
    from ..analysis import (
        analyze_model,
        gold_alignments,
        length_buckets,
        model_label,
        refuse_captioning_model,
        source_lengths,
    )
    from ..inference import check_model_folder
    from ..tokenization import read_text_lines

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        check_writable({"--output_dir": args.output_dir})  # the default "analysis" too: before any work
        if args.update_card:
            check_card_folders(args.models)
        sources, references = read_text_lines(args.source), read_text_lines(args.reference)
        if len(sources) != len(references):
            raise ValueError(
                f"--source {args.source} has {len(sources)} lines but --reference {args.reference} has "
                f"{len(references)}: the files must be line-aligned"
            )
        check_something_to_score(
            {"--source": (args.source, sources), "--reference": (args.reference, references)}
        )
        labels = args.labels.split(",") if args.labels else [model_label(m) for m in args.models]
        if len(labels) != len(args.models):
            raise ValueError(f"--labels names {len(labels)} models but {len(args.models)} were given")
        if not 1 <= args.heatmap_line <= len(sources):
            raise ValueError(
                f"--heatmap_line={args.heatmap_line} is not a line of {args.source} (1..{len(sources)})"
            )
        remote = [m for m in args.models if not Path(m).is_dir()]
        if args.update_card and remote:
            # checked before decoding, so that a long run does not fail at its last step
            raise ValueError(f"--update_card writes into local model folders; {remote[0]} is not one")
        for model in args.models:  # every folder is a model before anything is decoded or said about buckets
            refuse_captioning_model(model)  # first: its own message says more than what such a folder lacks
            check_model_folder(model)
        gold = gold_alignments(args.alignment, sources, references) if args.alignment else None
        lengths = source_lengths(sources)
        buckets = length_buckets(lengths, args.min_bucket_size)
        if len(buckets) == 1:
            print(
                f"warning: {len(lengths)} sentences give one length bucket (--min_bucket_size="
                f"{args.min_bucket_size}): no breakdown by source length; lower --min_bucket_size for one",
                file=sys.stderr,
            )
        results = [
            analyze_model(m, label, sources, references, lengths, buckets, gold, **_model_options(args))
            for m, label in zip(args.models, labels, strict=True)
        ]
        written = _write_outputs(results, sources, gold, args)
    except (OSError, ValueError) as err:
        return fail(parser.prog, err)
    print("\n".join(str(p) for p in written))
    return 0


def _model_options(args) -> dict:
    return {
        "device": args.device,
        "trust_remote_code": args.trust_remote_code,
        "num_beams": args.num_beams,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
    }


def _write_outputs(results, sources, gold, args) -> list[Path]:
    from ..analysis import markdown_tables, update_card
    from ..hub import write_atomic
    from ..plotting import plot_alignment_grid, plot_length_curves

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    caption = f"{results[0]['bleu_signature']}; chrF {results[0]['chrf_signature']}"
    written = [
        plot_length_curves(
            {r["label"]: r["buckets"] for r in results},
            out / f"{args.name}_length.png",
            caption=f"{Path(args.source).name}, {len(sources)} sentences. {caption}",
        )
    ]
    line = args.heatmap_line - 1
    panels = []
    for r in results:
        matrices = r.pop("_word_attention", None)
        r["heatmap_hypothesis"] = r.pop("_hypotheses")[line]
        if matrices is not None:
            best = r["alignment"]["best"]
            where = "" if len(r["alignment"]["heads"]) == 1 else f" (L{best['layer']} H{best['head']})"
            panels.append({"title": f"{r['label']}{where}: AER {best['aer']:.2f}", "matrix": matrices[line]})
    if panels:
        g = gold[line]
        written.append(
            plot_alignment_grid(
                panels, g.source_words, g.target_words, out / f"{args.name}_heatmaps.png", gold=sorted(g.sure)
            )
        )
    summary = {
        "source": str(args.source),
        "reference": str(args.reference),
        "num_sentences": len(sources),
        "min_bucket_size": args.min_bucket_size,
        "alignment_task": args.alignment,
        "heatmap_line": args.heatmap_line,
        "models": results,
    }
    write_atomic(out / f"{args.name}.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    write_atomic(out / f"{args.name}.md", markdown_tables(results, caption))
    written += [out / f"{args.name}.json", out / f"{args.name}.md"]
    if args.update_card:
        written += [update_card(r, f"{Path(args.source).name}, {caption}") for r in results]
    return written

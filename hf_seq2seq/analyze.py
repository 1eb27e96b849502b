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

from .commands.common import (
    _fail,
    _folder_model_type,
    _generate_kwargs,
    _generation_args,
    _load,
    _read_lines,
    write_atomic,
)
from .families import CAPTIONING_MODEL_TYPE

# The card section this command owns, in hub.MARKED_SECTION's form, so that rewriting the card keeps it (spelled out
# here rather than imported: `hf-seq2seq analyze --help` stays free of the hub module's imports).
CARD_SECTION = "analyze"
CARD_BEGIN = "<!-- hf-seq2seq analyze: begin -->"
CARD_END = "<!-- hf-seq2seq analyze: end -->"
CARD_FIGURE = "analysis_length.png"


def model_label(path: str) -> str:
    """A short name for a model folder: ``runs/gru/best_model`` → ``gru``."""
    p = Path(path)
    return p.parent.name if p.name in ("best_model", "final_model") and p.parent.name else p.name


def analyze_model(path: str, label: str, sources, references, lengths, buckets, gold, args) -> dict:
    """Decode, score overall and per bucket, and (with ``gold``) score the alignment of one saved model."""
    from .analysis import alignment_report, bucket_scores
    from .commands.evaluate import score
    from .commands.translate import translate_lines

    if _folder_model_type(path) == CAPTIONING_MODEL_TYPE:
        raise ValueError(
            f"{path} is an image-captioning model; analyze measures translation models (BLEU by source length, "
            "word alignment)"
        )
    model, tokenizer = _load(path, args.device, args.trust_remote_code)
    print(f"{label}: translating {len(sources)} sentences", file=sys.stderr)
    hyps = [
        h[0]
        for h in translate_lines(
            model, tokenizer, sources, batch_size=args.batch_size, progress=True, **_generate_kwargs(args)
        )
    ]
    result = {"label": label, "path": str(path), "model_type": model.config.model_type}
    result |= score(hyps, references)
    result["num_beams"] = args.num_beams or model.generation_config.num_beams or 1
    result["buckets"] = bucket_scores(hyps, references, lengths, buckets)
    if gold is not None:
        report = alignment_report(model, tokenizer, sources, references, gold, batch_size=args.batch_size)
        result["alignment"] = None if report is None else {k: report[k] for k in ("heads", "best")}
        result["_word_attention"] = None if report is None else report["word_attention"]
    result["_hypotheses"] = hyps
    return result


def _fmt(x, digits=1) -> str:
    return "–" if x is None or x != x else f"{x:.{digits}f}"


def markdown_tables(results: Sequence[dict], caption: str) -> str:
    """The bucket table (BLEU / chrF per model) and, where measured, the alignment table, as Markdown."""
    lines = ["| source words | sentences | " + " | ".join(r["label"] for r in results) + " |"]
    lines.append("|---|---:|" + "---:|" * len(results))
    for k, b in enumerate(results[0]["buckets"]):
        cells = [f"{_fmt(r['buckets'][k]['bleu'])} / {_fmt(r['buckets'][k]['chrf'])}" for r in results]
        lines.append(f"| {_span(b)} | {b['num_sentences']} | " + " | ".join(cells) + " |")
    cells = [f"**{_fmt(r['bleu'])} / {_fmt(r['chrf'])}**" for r in results]
    lines.append(f"| all | {results[0]['num_eval_sentences']} | " + " | ".join(cells) + " |")
    lines += ["", f"BLEU / chrF per bucket. {caption}"]
    aligned = [r for r in results if "alignment" in r]
    if aligned:
        lines += [
            "",
            "| model | AER ↓ | argmax accuracy ↑ | entropy (nats) | entropy / log S | head |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in aligned:
            if r["alignment"] is None:
                lines.append(f"| {r['label']} | – | – | – | – | no attention |")
                continue
            for h in _table_heads(r["alignment"]):
                where = _where(r["alignment"], h)
                lines.append(
                    f"| {r['label']} | {_fmt(h['aer'], 3)} | {_fmt(h['accuracy'], 3)} | {_fmt(h['entropy'], 2)} "
                    f"| {_fmt(h['entropy_normalised'], 2)} | {where} |"
                )
        for r in aligned:
            if r["alignment"] is not None and len(r["alignment"]["heads"]) > 1:
                lines += ["", *_head_grid(r)]
    return "\n".join(lines) + "\n"


def _head_grid(result: dict) -> list[str]:
    """AER / argmax accuracy of every (layer, head) of one multi-head model, layers as rows."""
    heads = [h for h in result["alignment"]["heads"] if h["head"] != "mean"]
    num_heads = 1 + max(h["head"] for h in heads)
    lines = [
        f"{result['label']}, AER / argmax accuracy of each head:",
        "",
        "| layer | " + " | ".join(f"head {k}" for k in range(num_heads)) + " |",
        "|---|" + "---:|" * num_heads,
    ]
    for layer in sorted({h["layer"] for h in heads}):
        row = sorted((h for h in heads if h["layer"] == layer), key=lambda h: h["head"])
        lines.append(
            f"| {layer} | "
            + " | ".join(f"{_fmt(h['aer'], 2)} / {_fmt(h['accuracy'], 2)}" for h in row)
            + " |"
        )
    return lines


def _where(alignment: dict, head: dict) -> str:
    if len(alignment["heads"]) == 1:
        return ""
    if head["head"] == "mean":
        return f"layer {head['layer']}, mean of heads"
    return f"best head: layer {head['layer']}, head {head['head']}"


def _table_heads(alignment: dict) -> list[dict]:
    """The rows shown for one model: its only head, or the best head and every layer's head average."""
    if len(alignment["heads"]) == 1:
        return alignment["heads"]
    return [alignment["best"]] + [h for h in alignment["heads"] if h["head"] == "mean"]


def _span(bucket: dict) -> str:
    """A bucket's source lengths as a table cell: "8" or "11–12"."""
    lo, hi = bucket["lo"], bucket["hi"]
    return str(lo) if lo == hi else f"{lo}–{hi}"


def update_card(result: dict, caption: str) -> Path:
    """Put the model's own length figure and bucket table into its folder's card (a marked README section)."""
    from .hub import with_marked_section
    from .plotting_analysis import plot_length_curves

    folder = Path(result["path"])
    if not folder.is_dir():
        raise ValueError(f"--update_card needs a local model folder; {folder} is not one")
    plot_length_curves({result["label"]: result["buckets"]}, folder / CARD_FIGURE, caption=caption)
    rows = "\n".join(
        f"| {_span(b)} | {b['num_sentences']} | {_fmt(b['bleu'])} | {_fmt(b['chrf'])} |"
        for b in result["buckets"]
    )
    section = (
        f"{CARD_BEGIN}\n## Quality by source length\n\n![BLEU and chrF by source length]({CARD_FIGURE})\n\n"
        f"| source words | sentences | BLEU | chrF |\n|---|---:|---:|---:|\n{rows}\n\n"
        f"Measured with `hf-seq2seq analyze` ({caption.replace('|', chr(92) + '|')}).\n{CARD_END}\n"
    )
    readme = folder / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    write_atomic(
        readme, with_marked_section(text, section, CARD_SECTION)
    )  # the card is never left half-written
    return readme


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
        "--min_bucket_size", type=int, default=50, help="fewest sentences in a length bucket (default 50)"
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
    _generation_args(parser)
    return parser


def analyze_main(argv: Sequence[str] | None = None) -> int:
    from .analysis import length_buckets, source_lengths

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        sources, references = _read_lines(args.source), _read_lines(args.reference)
        if len(sources) != len(references):
            raise ValueError(
                f"--source {args.source} has {len(sources)} lines but --reference {args.reference} has "
                f"{len(references)}: the files must be line-aligned"
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
        gold = _gold(args.alignment, sources, references) if args.alignment else None
        lengths = source_lengths(sources)
        buckets = length_buckets(lengths, args.min_bucket_size)
        results = [
            analyze_model(m, label, sources, references, lengths, buckets, gold, args)
            for m, label in zip(args.models, labels, strict=True)
        ]
        written = _write_outputs(results, sources, gold, args)
    except (OSError, ValueError) as err:
        return _fail(parser.prog, err)
    print("\n".join(str(p) for p in written))
    return 0


def _gold(task: str, sources, references):
    from .tasks import gold_alignment, task_languages

    src, tgt = task_languages(task)
    gold = []
    for n, (s, r) in enumerate(zip(sources, references, strict=True), start=1):
        try:
            gold.append(gold_alignment(task, {src: s, tgt: r}))
        except ValueError as err:
            raise ValueError(f"--alignment {task}: line {n} is not a pair of the task: {err}") from None
    return gold


def _write_outputs(results, sources, gold, args) -> list[Path]:
    from .plotting_analysis import plot_alignment_grid, plot_length_curves

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

#!/usr/bin/env python
"""The cost of word alignments: ``translate --alignments`` against plain ``translate``, same engine, same process.

    python benchmarks/bench_alignments.py                                  # trains its own tiny models (~3 min)
    python benchmarks/bench_alignments.py --model transformer=RUN/final_model bahdanau=RUN2/final_model
    python benchmarks/bench_alignments.py --out docs/benchmarks/bench_alignments_before
    python benchmarks/bench_alignments.py --model transformer=T bahdanau=B --source ../shared/data/multi30k/test_2016_flickr.de.gz

For each model (a Transformer and a Bahdanau GRU, tiny, trained on the embedded ``numbers`` task unless ``--model``
gives folders) and each search (greedy, beam ``--beams``), ``Engine.translate`` runs over the same ``--lines`` German
test sentences (of the numbers task, or the first lines of ``--source``) with and without ``return_alignment=True``, alternating the two, ``--repeats`` times each; reported:
the minimum and median time of each, and their ratio (alignments / plain, minimum over minimum: the least
disturbed runs of a shared machine). The Transformer is also exported to CTranslate2 (``--no_ctranslate2`` skips
it) and measured the same way. The load average is recorded at the start and after each model. Numbers, not
assertions; the translations with and without alignments are checked to be identical before timing.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import (
    ROOT,
    bench_parser,
    env_line,
    environment,
    load_average,
    markdown_table,
    public_arg,
    write_report,
)

# the tiny models of docs/results.md "Word alignments" (configs/demo_numbers_bahdanau.yaml's data and schedule)
MODEL_CONFIGS = {
    "transformer": (
        "transformer",
        '{"d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "num_attention_heads": 4, "ffn_dim": 128, '
        '"dropout": 0.0}',
        ["--learning_rate", "0.002", "--warmup_steps", "100"],
    ),
    "bahdanau": (
        "rnn",
        '{"cell": "gru", "bidirectional_encoder": true, "attention": "bahdanau", "input_feeding": false, '
        '"embedding_size": 32, "hidden_size": 64, "encoder_layers": 1, "decoder_layers": 1, "dropout": 0.0}',
        [],
    ),
}


def train_model(name: str, work: Path, steps: int) -> Path:
    """A tiny ``name`` model trained ``steps`` steps on the numbers task with ``scripts/train.py``; its folder."""
    model_type, model_config, extra = MODEL_CONFIGS[name]
    out = work / name
    cmd = [
        sys.executable, str(ROOT / "scripts" / "train.py"), "--config", "configs/demo_numbers_bahdanau.yaml",
        "--output_dir", str(out), "--model_type", model_type, "--model_config", model_config,
        *extra, "--max_steps", str(steps), "--eval_steps", str(steps), "--log_with", "none",
        "--disable_progress_bar", "true", "--seed", "0",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    print(f"training {name} ({steps} steps) into {out}", flush=True)
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if done.returncode != 0:
        sys.exit(f"training {name} failed:\n{done.stderr[-3000:]}")
    return out / "final_model"


def timed(fn, repeats: int) -> dict[bool, list[float]]:
    """``fn(alignment)`` timed ``repeats`` times each, plain and with alignments alternating."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for align in (False, True):
            start = time.perf_counter()
            fn(align)
            times[align].append(time.perf_counter() - start)
    return times


def measure(engine, lines: list[str], beams: int, repeats: int, batch_size: int) -> dict:
    def run(align: bool):
        return engine.translate(lines, num_beams=beams, batch_size=batch_size, return_alignment=align)

    plain, aligned = run(False), run(True)  # warm-up, and the check that alignments change no translation
    same = [t.hypotheses for t in plain] == [t.hypotheses for t in aligned]
    times = timed(run, repeats)
    best = {k: min(v) for k, v in times.items()}
    return {
        "beams": beams,
        "same_translations": same,
        "plain_min_s": round(best[False], 4),
        "plain_median_s": round(statistics.median(times[False]), 4),
        "alignments_min_s": round(best[True], 4),
        "alignments_median_s": round(statistics.median(times[True]), 4),
        "ratio": round(best[True] / best[False], 3),
        "ratio_median": round(statistics.median(times[True]) / statistics.median(times[False]), 3),
    }


def export_ctranslate2(folder: Path, work: Path) -> Path | None:
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        print("ctranslate2 is not installed: its rows are skipped", flush=True)
        return None
    out = work / "transformer_ct2"
    cmd = [
        sys.executable,
        "-m",
        "hf_seq2seq.cli",
        "export",
        "--format",
        "ctranslate2",
        "--force",
        str(folder),
        str(out),
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "bench_alignments", threads=1)
    parser.add_argument(
        "--model",
        nargs="+",
        default=[],
        metavar="FAMILY=FOLDER",
        help="use these trained folders (transformer=..., bahdanau=...) instead of training tiny ones",
    )
    parser.add_argument(
        "--families", nargs="+", default=["transformer", "bahdanau"], choices=list(MODEL_CONFIGS)
    )
    parser.add_argument("--train_steps", type=int, default=600, help="steps of each model the bench trains")
    parser.add_argument("--lines", type=int, default=200, help="test sentences per translate call")
    parser.add_argument(
        "--source", default=None, help="a text file (.gz too) whose first --lines lines are translated"
    )
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no_ctranslate2", action="store_true", help="skip the CTranslate2 rows")
    parser.add_argument("--workdir", default=None, help="where trained models go (default: a temp dir)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from hf_seq2seq.inference import load_engine
    from hf_seq2seq.tasks import make_task

    given = dict(item.split("=", 1) for item in args.model)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_alignments_"))
    meta = environment("cpu", "bench_alignments.py", argv)
    if args.source:
        from hf_seq2seq.tokenization import read_text_lines

        lines = read_text_lines(args.source)[: args.lines]
    else:
        lines = [row["translation"]["de"] for row in make_task("numbers", args.lines, seed=1)]

    rows = []
    for family in args.families:
        folder = Path(given[family]) if family in given else train_model(family, work, args.train_steps)
        engines = [("torch", folder)]
        if family == "transformer" and not args.no_ctranslate2:
            ct2 = export_ctranslate2(folder, work)
            if ct2 is not None:
                engines.append(("ctranslate2", ct2))
        for engine_name, path in engines:
            engine = load_engine(path, engine_name, threads=args.threads, device="cpu")
            for beams in args.beams:
                result = measure(engine, lines, beams, args.repeats, args.batch_size)
                result.update(family=family, engine=engine_name, load_after=round(load_average()[0], 2))
                print(
                    f"{family} {engine_name} beams={beams}: plain {result['plain_min_s']:.3f}s, alignments "
                    f"{result['alignments_min_s']:.3f}s, ratio {result['ratio']:.3f} "
                    f"(median {result['ratio_median']:.3f}), load {result['load_after']}",
                    flush=True,
                )
                rows.append(result)

    report = {
        "meta": meta,
        "lines": args.lines,
        "source": public_arg(args.source) if args.source else "the numbers task (seed 1)",
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "models": {
            f: public_arg(given[f]) if f in given else f"trained here, {args.train_steps} steps"
            for f in args.families
        },
        "results": rows,
    }
    table = markdown_table(
        [
            "model",
            "engine",
            "beams",
            "plain (s)",
            "--alignments (s)",
            "ratio (min)",
            "ratio (median)",
            "same output",
            "load",
        ],
        [
            [
                r["family"],
                r["engine"],
                r["beams"],
                f"{r['plain_min_s']:.3f}",
                f"{r['alignments_min_s']:.3f}",
                f"{r['ratio']:.3f}",
                f"{r['ratio_median']:.3f}",
                "yes" if r["same_translations"] else "**no**",
                r["load_after"],
            ]
            for r in rows
        ],  # fmt: skip
        "lllrrrrlr",
    )
    markdown = [
        "# Word alignments: cost of `translate --alignments`",
        "",
        env_line(meta),
        "",
        f"{len(lines)} German sentences ({report['source']}), models: "
        + ", ".join(f"{f} {m}" for f, m in report["models"].items())
        + f"; batch size {args.batch_size}, {args.threads} thread(s); "
        f"minimum (and median) of {args.repeats} alternating runs each. Ratio = with alignments / plain. "
        "Load: the 1-minute load average after each row (at the start: the line above).",
        "",
        *table,
    ]
    write_report(args.out, report, markdown)
    return 0 if all(r["same_translations"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

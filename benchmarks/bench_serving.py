"""Benchmark: translating Multi30k test_2016_flickr with trained models on every engine — our ``generate()``
(torch), CTranslate2 fp32 and int8 (Transformer only) and onnxruntime — against ``generate()`` in the same process.

Each model folder is exported with ``hf-seq2seq export`` into a temporary folder, every engine is loaded through
``hf_seq2seq.export.load_engine`` with the same ``--threads`` (torch threads = CTranslate2 ``intra_threads`` =
onnxruntime ``intra_op_num_threads``), and the engines translate the same source token ids: sentences sorted by
length (longest first) and cut into batches, as ``translate`` does. The machine is shared, so the engines take
turns chunk by chunk (``--chunk`` batches each) rather than one engine after the other: a change in load hits all of
them alike. Per cell (model × batch size, beam ``--beams``): sentences/s, generated tokens/s (each engine's own
tokens, specials excluded), the speed ratio to torch, the share of sentences whose tokens equal torch's, and
sacreBLEU against the references. Batch 1 runs on the first ``--n_batch1`` sentences (the whole test set at batch 1
would take an hour per model on this machine); the files say so.

    python benchmarks/bench_serving.py --model transformer=/path/best_model --model bigru=/path/best_model
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from harness import (
    MULTI30K,
    bench_parser,
    env_line,
    environment,
    load_average,
    markdown_table,
    read_lines,
    write_report,
)

from hf_seq2seq.export import export_ctranslate2, export_onnx, load_engine
from hf_seq2seq.export.common import read_model_config
from hf_seq2seq.inference import GenerateEngine
from hf_seq2seq.metrics import corpus_scores

RUNS = Path("/work/cpu_runs/out")
DEFAULT_MODELS = ("transformer_de_en", "bigru_bahdanau_de_en", "lstm_luong_de_en")
LABELS = {
    "torch": "torch generate()",
    "torch_es": "torch generate(early_stopping=True)",
    "ct2": "CT2 fp32",
    "ct2_int8": "CT2 int8",
    "ort": "onnxruntime",
}


def parse_args(argv):
    parser = bench_parser(__doc__, "bench_serving", threads=1, threads_help="threads of every engine")
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="NAME=MODEL_DIR (repeatable; default: the runs under /work/cpu_runs/out that have a best_model)",
    )
    parser.add_argument("--src", default=str(MULTI30K / "test_2016_flickr.de.gz"))
    parser.add_argument("--ref", default=str(MULTI30K / "test_2016_flickr.en.gz"))
    parser.add_argument("--n", type=int, default=1000, help="sentences at batch > 1")
    parser.add_argument("--n_batch1", type=int, default=200, help="sentences at batch 1 (the first ones)")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 1])
    parser.add_argument("--beams", type=int, default=5)
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--chunk", type=int, default=4, help="batches per engine turn")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of other models already in OUT.json (models trained at different times)",
    )
    return parser.parse_args(argv)


def default_models() -> list[str]:
    return [f"{n}={RUNS / n / 'best_model'}" for n in DEFAULT_MODELS if (RUNS / n / "best_model").is_dir()]


def load_engines(model_dir: Path, work: Path, threads: int) -> dict:
    """{engine key: Engine}: the model itself plus its exports (CTranslate2 only for the Transformer)."""
    engines = {"torch": load_engine(model_dir, "torch", threads)}
    if read_model_config(model_dir)["model_type"] == "transformer_seq2seq":
        # CTranslate2's beam search stops once num_beams hypotheses are finished: generate()'s
        # early_stopping=True. The same model under that rule is the reference its tokens are also compared with.
        base = engines["torch"]
        engines["torch_es"] = GenerateEngine(
            model_dir, base.tokenizer, base.max_source_length, base.model, early_stopping=True
        )
        ct2 = export_ctranslate2(model_dir, work / "ct2")
        int8 = export_ctranslate2(model_dir, work / "ct2_int8", quantization="int8")
        engines["ct2"] = load_engine(ct2, "ctranslate2", threads, compute_type="float32")
        engines["ct2_int8"] = load_engine(int8, "ctranslate2", threads, compute_type="int8")
    engines["ort"] = load_engine(export_onnx(model_dir, work / "onnx"), "onnxruntime", threads)
    return engines


def run_cell(engines: dict, sources: list[list[int]], batch: int, args) -> dict:
    """Every engine translates ``sources`` (sorted, batched); turns of ``--chunk`` batches. → per-engine results."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]), reverse=True)
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    seconds = dict.fromkeys(engines, 0.0)
    outputs = {k: [None] * len(sources) for k in engines}
    for start in range(0, len(batches), args.chunk):
        for key, engine in engines.items():
            for idx in batches[start : start + args.chunk]:
                t0 = time.perf_counter()
                hyps = engine.generate_ids([sources[i] for i in idx], args.beams, 1, args.max_new_tokens)
                seconds[key] += time.perf_counter() - t0
                for i, h in zip(idx, hyps):
                    outputs[key][i] = h[0]
    return {"seconds": seconds, "outputs": outputs}


def score(engine, outputs: list[list[int]], references: list[str]) -> float:
    hyps = [engine.tokenizer.decode(h, skip_special_tokens=True).strip() for h in outputs]
    return corpus_scores(hyps, references, metrics=("bleu",))["bleu"]


def bench_model(name: str, model_dir: Path, src: list[str], ref: list[str], args) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        engines = load_engines(model_dir, Path(tmp), args.threads)
        torch_engine = engines["torch"]
        tok, limit = torch_engine.tokenizer, torch_engine.max_source_length
        sources = [tok(s, truncation=True, max_length=limit)["input_ids"] for s in src]
        for batch in args.batches:
            n = args.n if batch > 1 else min(args.n, args.n_batch1)
            load = load_average()[0]
            cell = run_cell(engines, sources[:n], batch, args)
            base = cell["outputs"]["torch"]
            row = {"model": name, "batch": batch, "beams": args.beams, "sentences": n, "load_start": load}
            for key, engine in engines.items():
                out, secs = cell["outputs"][key], cell["seconds"][key]
                row[key] = {
                    "seconds": secs,
                    "sent_s": n / secs,
                    "tok_s": sum(map(len, out)) / secs,
                    "same_as_torch": sum(a == b for a, b in zip(out, base)) / n,
                    "same_as_torch_es": (
                        sum(a == b for a, b in zip(out, cell["outputs"]["torch_es"])) / n
                        if "torch_es" in engines
                        else None
                    ),
                    "bleu": score(engine, out, ref[:n]),
                }
            for key in engines:
                row[key]["speedup"] = row[key]["sent_s"] / row["torch"]["sent_s"]
                if "torch_es" in engines:
                    row[key]["speedup_es"] = row[key]["sent_s"] / row["torch_es"]["sent_s"]
            row["load_end"] = load_average()[0]
            rows.append(row)
            print(
                f"{name} batch {batch} ({n} sentences): "
                + "  ".join(
                    f"{k} {v['sent_s']:.1f} sent/s ×{v['speedup']:.2f} same {v['same_as_torch']:.1%} "
                    f"BLEU {v['bleu']:.2f}"
                    for k, v in row.items()
                    if isinstance(v, dict)
                ),
                flush=True,
            )
    return rows


def render(report: dict) -> str:
    lines = ["# Serving engines: torch generate() vs CTranslate2 vs onnxruntime", ""]
    for i, meta in enumerate(report["runs"]):
        lines += [
            f"Run {i} ({', '.join(m.partition('=')[0] for m in meta['models'])}): {meta['src']} → references "
            f"{meta['ref']}, the first {meta['n']} sentences at batch > 1 and the first {meta['n_batch1']} at "
            f"batch 1, beam {meta['beams']}, at most {meta['max_new_tokens']} new tokens. "
            + env_line(meta)
            + f" ctranslate2 {meta['ctranslate2']}, onnxruntime {meta['onnxruntime']}; every engine with "
            f"{meta['threads']} thread(s). Load average (1 min, 2 cores shared with trainings) "
            f"{meta['load_average_start']:.1f} at the start, {meta['load_average_end']:.1f} at the end.",
            "",
        ]
    lines += [
        "Sentences are sorted by length and batched as `translate` does; the engines take turns every few "
        "batches. ×torch = sentences/s ratio to our `generate()` in the same run; same = share of sentences with "
        "exactly torch's tokens. CTranslate2's beam search stops once `num_beams` hypotheses are finished, which "
        "is `generate()`'s `early_stopping=True` (the saved models use the default, False): its tokens and speed "
        "are compared with both.",
        "",
    ]
    header = ["model", "batch", "sentences", "engine", "sentences/s", "tokens/s", "×torch"]
    header += [
        "×torch (early_stopping=True)",
        "same as torch",
        "same as torch (early_stopping=True)",
        "BLEU",
        "load",
    ]
    rows = []
    for r in report["results"]:
        for key, label in LABELS.items():
            if key not in r:
                continue
            v = r[key]
            es = "–" if v["same_as_torch_es"] is None else f"{v['same_as_torch_es']:.1%}"
            ratio_es = f"{v['speedup_es']:.2f}" if "speedup_es" in v else "–"
            rows.append(
                [r["model"], r["batch"], r["sentences"], label, f"{v['sent_s']:.1f}", f"{v['tok_s']:.0f}"]
                + [f"{v['speedup']:.2f}", ratio_es, f"{v['same_as_torch']:.1%}", es, f"{v['bleu']:.2f}"]
                + [f"{r['load_start']:.1f}→{r['load_end']:.1f}"]
            )
    return "\n".join(lines + markdown_table(header, rows, "lrrlrrrrrrrl")) + "\n"


def main(argv: list[str] | None = None) -> int:
    import ctranslate2
    import onnxruntime

    args = parse_args(argv)
    models = args.model or default_models()
    if not models:
        print("no models: pass --model NAME=MODEL_DIR", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    meta = environment("cpu", "bench_serving.py", argv, ctranslate2=ctranslate2.__version__)
    meta.update(
        onnxruntime=onnxruntime.__version__,
        load_average_start=load_average()[0],
        **{
            k: getattr(args, k) for k in ("src", "ref", "n", "n_batch1", "beams", "max_new_tokens", "threads")
        },
    )
    src = read_lines(Path(args.src), args.n)
    ref = read_lines(Path(args.ref), args.n)
    rows = []
    for spec in models:
        name, _, path = spec.partition("=")
        rows += bench_model(name, Path(path), src, ref, args)
    meta["load_average_end"] = load_average()[0]
    meta["models"] = models
    out = Path(args.out)
    runs = [meta]
    if args.merge and out.with_suffix(".json").is_file():
        names = {r["model"] for r in rows}
        old = json.loads(out.with_suffix(".json").read_text())
        kept = [r for r in old["results"] if r["model"] not in names]
        runs = [m for i, m in enumerate(old["runs"]) if any(r["run"] == i for r in kept)]
        renumber = {old["runs"].index(m): i for i, m in enumerate(runs)}
        rows = [dict(r, run=renumber[r["run"]]) for r in kept] + rows
        runs.append(meta)
    for r in rows:
        r.setdefault("run", len(runs) - 1)
    report = {"runs": runs, "results": rows}
    write_report(out, report, render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

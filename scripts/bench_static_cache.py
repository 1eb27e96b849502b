"""Benchmark: generate() of TransformerSeq2Seq with a dynamic cache vs a static cache vs a static cache plus a
compiled forward (``torch.compile``), on the ``bench_generate.py`` model and inputs.

HF ``generate()`` pays a fixed Python + small-op cost per step (about 60% of the time at batch 1, see
``docs/benchmarks.md``, CTranslate2 section). A static cache (``cache_implementation="static"``: preallocated K/V,
fixed shapes every step) lets ``torch.compile`` turn the decoder step into one graph. "compiled" here is
``model.forward = torch.compile(model.forward, dynamic=False)``: ``generate()``'s own ``compile_config`` path
compiles only greedy/sampling (``_sample``), not beam search, and only on accelerators unless forced.

Greedy and beam 5, batch 32 and 1, ``min_new_tokens = max_new_tokens``; compilation happens in the warm-up runs
(its time is reported apart); then ``--repeats`` runs per variant, alternating; the median is reported.

    python scripts/bench_static_cache.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import add_generation_args, timed_generate  # noqa: E402
from bench_generate import build_models, make_inputs  # noqa: E402

VARIANTS = ("dynamic", "static", "static+compiled")


def run(model, inputs, num_beams: int, variant: str, args) -> tuple[torch.Tensor, float]:
    extra = {} if variant == "dynamic" else {"cache_implementation": "static"}
    return timed_generate(model, inputs, num_beams, args.new_tokens, **extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    add_generation_args(parser, threads=1, repeats=5)
    parser.add_argument("--compile_mode", default="default", help="torch.compile mode")
    parser.add_argument(
        "--out", default=str(ROOT / "docs" / "benchmarks" / "bench_static_cache"), help="path without suffix"
    )
    args = parser.parse_args(argv)
    args.device, args.dtype = "cpu", torch.float32
    torch.set_num_threads(args.threads)
    # one compiled forward serves every (batch, beams) cell: 2 graphs (first step, later steps) per cell
    torch._dynamo.config.cache_size_limit = 64

    model, _ = build_models(args)
    eager_forward = model.forward
    compiled_forward = torch.compile(eager_forward, mode=args.compile_mode, dynamic=False)

    def use(variant: str) -> None:
        model.forward = compiled_forward if variant == "static+compiled" else eager_forward

    rows = []
    for batch in args.batches:
        inputs = make_inputs(batch, args)
        for beams in args.beams:
            outs, times, warm = {}, {v: [] for v in VARIANTS}, {}
            for variant in VARIANTS:
                use(variant)
                outs[variant], warm[variant] = run(model, inputs, beams, variant, args)  # compiles here
                run(model, inputs, beams, variant, args)
            for _ in range(args.repeats):
                for variant in VARIANTS:
                    use(variant)
                    times[variant].append(run(model, inputs, beams, variant, args)[1])
            tokens = batch * args.new_tokens
            row = {
                "mode": "greedy" if beams == 1 else f"beam {beams}",
                "batch": batch,
                "tok_s": {v: tokens / statistics.median(times[v]) for v in VARIANTS},
                "times_s": times,
                "first_call_s": warm,
                "identical_output": all(torch.equal(outs["dynamic"], outs[v]) for v in VARIANTS),
            }
            rows.append(row)
            print(
                f"{row['mode']:>7} batch {batch:>3}: "
                + "  ".join(f"{v} {row['tok_s'][v]:8.1f}" for v in VARIANTS)
                + f" tok/s  first compiled call {warm['static+compiled']:.1f} s  same: {row['identical_output']}",
                flush=True,
            )
    use("dynamic")

    command = "python scripts/bench_static_cache.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "attn_implementation": args.attn,
        "compile_mode": args.compile_mode,
        "parameters": sum(p.numel() for p in model.parameters()),
        "command": command.strip(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    lines = [
        "# generate(): dynamic cache vs static cache vs static cache + torch.compile (TransformerSeq2Seq)",
        "",
        f"Produced by `{meta['command']}` (torch {meta['torch']}, transformers {meta['transformers']}, "
        f"{meta['device']}, fp32, attention `{args.attn}`, compile mode `{args.compile_mode}`; "
        f"{meta['parameters'] / 1e6:.2f}M parameters, the `bench_generate.py` model). tokens/s = batch × "
        f"{args.new_tokens} new tokens / time of one `generate()` call, median of {args.repeats}.",
        "",
        "| mode | batch | dynamic tok/s | static tok/s | static + compiled tok/s | compiled / dynamic | "
        "first compiled call (s) | same tokens |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        t = r["tok_s"]
        lines.append(
            f"| {r['mode']} | {r['batch']} | {t['dynamic']:.0f} | {t['static']:.0f} | {t['static+compiled']:.0f} | "
            f"{t['static+compiled'] / t['dynamic']:.2f} | {r['first_call_s']['static+compiled']:.1f} | "
            f"{'yes' if r['identical_output'] else 'no'} |"
        )
    lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

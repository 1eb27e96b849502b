"""Benchmark: generate() of TransformerSeq2Seq with a dynamic cache vs a static cache vs a static cache plus a
compiled forward (``torch.compile``), on the ``bench_generate.py`` model and inputs.

HF ``generate()`` pays a fixed Python + small-op cost per step (about 60% of the time at batch 1, see
``docs/benchmarks.md``, CTranslate2 section). A static cache (``cache_implementation="static"``: preallocated K/V,
fixed shapes every step) lets ``torch.compile`` turn the decoder step into one graph. "compiled" here is
``model.forward = torch.compile(model.forward, dynamic=False)``: ``generate()``'s own ``compile_config`` path
compiles only greedy/sampling (``_sample``), not beam search, and only on accelerators unless forced.

Greedy and beam 5, batch 32 and 1, ``min_new_tokens = max_new_tokens``; compilation happens in the warm-up runs
(its time is reported apart); then ``--repeats`` runs per variant, alternating; the median is reported.

    python benchmarks/bench_static_cache.py --threads 1
"""

from __future__ import annotations

import statistics

import torch
from bench_generate import build_models, make_inputs
from harness import (
    add_generation_args,
    bench_parser,
    environment,
    markdown_table,
    timed_generate,
    write_report,
)

VARIANTS = ("dynamic", "static", "static+compiled")


def run(model, inputs, num_beams: int, variant: str, args) -> tuple[torch.Tensor, float]:
    extra = {} if variant == "dynamic" else {"cache_implementation": "static"}
    return timed_generate(model, inputs, num_beams, args.new_tokens, **extra)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "bench_static_cache", out_help="path without suffix")
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    add_generation_args(parser, threads=1, repeats=5)
    parser.add_argument("--compile_mode", default="default", help="torch.compile mode")
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

    meta = environment(
        "cpu",
        "bench_static_cache.py",
        argv,
        attn_implementation=args.attn,
        compile_mode=args.compile_mode,
        parameters=sum(p.numel() for p in model.parameters()),
    )
    write_report(args.out, {"meta": meta, "results": rows}, render(meta, rows, args))
    return 0


def render(meta: dict, rows: list[dict], args) -> list[str]:
    lines = [
        "# generate(): dynamic cache vs static cache vs static cache + torch.compile (TransformerSeq2Seq)",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} (torch {meta['torch']}, transformers "
        f"{meta['transformers']}, {meta['device']}, fp32, attention `{args.attn}`, compile mode "
        f"`{args.compile_mode}`; {meta['parameters'] / 1e6:.2f}M parameters, the `bench_generate.py` model). "
        f"tokens/s = batch × {args.new_tokens} new tokens / time of one `generate()` call, median of "
        f"{args.repeats}.",
        "",
    ]
    header = [
        "mode",
        "batch",
        "dynamic tok/s",
        "static tok/s",
        "static + compiled tok/s",
        "compiled / dynamic",
    ]
    header += ["first compiled call (s)", "same tokens"]
    cells = []
    for r in rows:
        t = r["tok_s"]
        cells.append(
            [
                r["mode"],
                r["batch"],
                f"{t['dynamic']:.0f}",
                f"{t['static']:.0f}",
                f"{t['static+compiled']:.0f}",
            ]
            + [f"{t['static+compiled'] / t['dynamic']:.2f}", f"{r['first_call_s']['static+compiled']:.1f}"]
            + ["yes" if r["identical_output"] else "no"]
        )
    return lines + markdown_table(header, cells, "lrrrrrrl")


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: generate() throughput of TransformerSeq2Seq vs transformers' MarianMTModel with identical dimensions.

Both models get the same vocabulary, dimensions, post-norm, sinusoidal positions, sqrt(d_model) embedding scaling
and tied embeddings. Marian's weights are copied into our model (Q/K/V concatenated into the fused projections,
Marian's [sin | cos] position table copied into our buffer), so both models compute the same function: the script
checks that they generate the same tokens, which makes the timing an apples-to-apples comparison.

Measured: generated tokens per second (batch × new tokens / wall time of one ``generate`` call, the encoder
included) for greedy search and beam search (5 beams), at batch 32 and batch 1, with ``min_new_tokens =
max_new_tokens`` so every run generates exactly the same number of tokens. Warm-up, then ``--repeats`` runs per
cell alternating ours / Marian; the median is reported.

    python scripts/bench_generate.py                       # CPU, 2 threads
    python scripts/bench_generate.py --device cuda --dtype bfloat16 --out docs/benchmarks/bench_generate_cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import (  # noqa: E402
    Dims,
    add_generation_args,
    build_twins,
    device_name,
    timed_generate,
)


def build_models(args) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(ours, Marian) with identical weights: the shared Marian twin of ``_bench_common``."""
    dims = Dims(
        vocab_size=args.vocab_size,
        d_model=args.d_model,
        layers=args.layers,
        heads=args.heads,
        ffn_dim=args.ffn_dim,
        max_positions=args.max_positions,
    )
    # Random weights give near-uniform logits; a larger init makes the decisions (and beams) well separated.
    ours, marian = build_twins(dims, attn=args.attn, init_std=0.2, seed=0)
    return ours.eval().to(args.device, args.dtype), marian.eval().to(args.device, args.dtype)


def make_inputs(batch: int, args) -> dict:
    g = torch.Generator().manual_seed(batch)
    lengths = torch.randint(args.src_len // 2, args.src_len + 1, (batch,), generator=g)
    lengths[0] = args.src_len
    ids = torch.randint(3, args.vocab_size, (batch, args.src_len), generator=g)
    mask = (torch.arange(args.src_len)[None] < lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, 0)
    ids[torch.arange(batch), lengths - 1] = 2  # </s>
    return {"input_ids": ids.to(args.device), "attention_mask": mask.to(args.device)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    add_generation_args(parser, threads=2, repeats=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--out",
        default=str(ROOT / "docs" / "benchmarks" / "bench_generate"),
        help="output path without suffix",
    )
    args = parser.parse_args(argv)
    args.dtype = getattr(torch, args.dtype)
    torch.set_num_threads(args.threads)

    start_device = device_name(args.device)  # on CPU: cores, threads and the load average at start
    ours, marian = build_models(args)
    n_params = sum(p.numel() for p in ours.parameters())
    rows = []
    for batch in args.batches:
        inputs = make_inputs(batch, args)
        for beams in args.beams:
            for _ in range(max(1, args.warmup)):  # at least one: its output is the same-tokens check
                out_ours, _ = timed_generate(ours, inputs, beams, args.new_tokens, args.device)
                out_marian, _ = timed_generate(marian, inputs, beams, args.new_tokens, args.device)
            same = out_ours.shape == out_marian.shape and bool((out_ours == out_marian).all())
            t_ours, t_marian = [], []
            for _ in range(args.repeats):
                t_ours.append(timed_generate(ours, inputs, beams, args.new_tokens, args.device)[1])
                t_marian.append(timed_generate(marian, inputs, beams, args.new_tokens, args.device)[1])
            tokens = batch * args.new_tokens
            row = {
                "mode": "greedy" if beams == 1 else f"beam {beams}",
                "batch": batch,
                "new_tokens": args.new_tokens,
                "ours_tok_s": tokens / statistics.median(t_ours),
                "marian_tok_s": tokens / statistics.median(t_marian),
                "ours_times_s": t_ours,
                "marian_times_s": t_marian,
                "identical_output": same,
            }
            row["ratio"] = row["ours_tok_s"] / row["marian_tok_s"]
            rows.append(row)
            print(
                f"{row['mode']:>7} batch {batch:>3}: ours {row['ours_tok_s']:9.1f} tok/s  marian "
                f"{row['marian_tok_s']:9.1f} tok/s  ratio {row['ratio']:.3f}  identical output: {same}",
                flush=True,
            )

    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    command = "python scripts/bench_generate.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": start_device,
        "load_average_end": None if args.device.startswith("cuda") else round(load_end, 2),
        "dtype": str(args.dtype).replace("torch.", ""),
        "attn_implementation": args.attn,
        "threads": torch.get_num_threads(),
        "parameters": n_params,
        "dims": {
            "vocab_size": args.vocab_size,
            "d_model": args.d_model,
            "layers": args.layers,
            "heads": args.heads,
            "ffn_dim": args.ffn_dim,
            "src_len": args.src_len,
        },
        "command": command.strip(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    lines = [
        "# generate() throughput: TransformerSeq2Seq vs MarianMTModel",
        "",
        f"Produced by `{meta['command']}` (torch {meta['torch']}, transformers {meta['transformers']}, "
        f"{meta['device']}, {meta['dtype']}, attention `{args.attn}`).",
        "",
        f"Both models: vocab {args.vocab_size}, d_model {args.d_model}, {args.layers}+{args.layers} layers, "
        f"{args.heads} heads, FFN {args.ffn_dim}, post-norm, sinusoidal positions, scaled and tied embeddings "
        f"({n_params / 1e6:.2f}M parameters); Marian's weights copied into ours, so both generate the same tokens "
        f"(checked per cell). Source length {args.src_len // 2}-{args.src_len} (right-padded), "
        f"`min_new_tokens = max_new_tokens = {args.new_tokens}`; tokens/s = batch × new tokens / time of one "
        f"`generate()` call (encoder included), median of {args.repeats} runs after {args.warmup} warm-up runs, "
        "ours and Marian alternating.",
        "",
        "| mode | batch | ours tok/s | Marian tok/s | ours / Marian | same output |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['batch']} | {r['ours_tok_s']:.1f} | {r['marian_tok_s']:.1f} | "
            f"{r['ratio']:.2f} | {'yes' if r['identical_output'] else 'no'} |"
        )
    if not args.device.startswith("cuda"):
        lines += [
            "",
            f"CPU run with {meta['threads']} torch threads; 1-minute load average {load_end:.1f} at the end "
            f"(start: in the device line above) on {os.cpu_count()} cores. On a shared machine other jobs may run "
            "at the same time: absolute numbers are then noisy, the ratio less so (ours and Marian alternate under "
            "the same load); the single-run times are in the JSON (`*_times_s`).",
        ]
    lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

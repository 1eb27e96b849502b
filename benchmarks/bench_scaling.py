"""Benchmark: how TransformerSeq2Seq's training cost grows with batch size and sentence length.

Generated batches without padding (every source and target sentence exactly L tokens), the training step of
``bench_train.py`` (forward + backward + AdamW, dropout on). Two sweeps: batch size at a fixed length, and length at
a fixed batch size. Per point: target tokens per second (median over ``--steps`` timed steps after ``--warmup``)
and peak memory of a training step:

- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` — "peak" is the total (weights,
  AdamW state, activations, gradients); "step" is the part above what is allocated between steps.
- CPU: resident set size sampled every 2 ms by a psutil thread — "peak" is the process's peak RSS, "step" the
  peak minus the RSS just before the point's first step (activations, gradients and temporaries; weights and
  AdamW state already exist). The script re-executes itself with ``MALLOC_MMAP_THRESHOLD_=65536`` so glibc
  serves every tensor-sized block by ``mmap`` and gives it back on free: RSS then follows the live tensors
  instead of keeping freed memory in its heap.

Writes a table (``--out``.md / .json) and a 2-panel plot (``--out``.png).

    python benchmarks/bench_scaling.py                                   # CPU, small model
    python benchmarks/bench_scaling.py --device cuda --dtype bf16 --preset base \\
        --batch_sizes 32 64 128 256 512 --lengths 16 32 64 128 256 --fixed_batch 128 --fixed_length 32 \\
        --out docs/benchmarks/bench_scaling_cuda
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from harness import (
    PRESETS,
    Dims,
    RSSPeak,
    bench_parser,
    dims_dict,
    env_line,
    environment,
    markdown_table,
    ours_config,
    random_batch,
    sync,
    to_device,
    train_step,
    write_report,
)

from hf_seq2seq.models.modeling_transformer_seq2seq import TransformerSeq2SeqForConditionalGeneration

MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"


def parse_args(argv):
    p = bench_parser(
        __doc__, "bench_scaling", threads=1, threads_help="torch CPU threads (1: a contended machine)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16 = autocast")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS))
    p.add_argument("--vocab_size", type=int, default=8000)
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    p.add_argument("--fixed_length", type=int, default=24, help="sentence length of the batch-size sweep")
    p.add_argument("--lengths", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    p.add_argument("--fixed_batch", type=int, default=16, help="batch size of the length sweep")
    p.add_argument("--steps", type=int, default=2, help="timed steps per point")
    p.add_argument("--warmup", type=int, default=1)
    return p.parse_args(argv)


def measure(model, opt, batch: dict, args) -> dict:
    """tokens/s and memory of one point (see the module docstring)."""
    cuda = args.device.startswith("cuda")
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss = RSSPeak() if not cuda else None
    times = []
    if rss:
        rss.__enter__()
    try:
        for i in range(args.warmup + args.steps):
            sync(args.device)
            start = time.perf_counter()
            train_step(model, opt, batch, args.device, args.dtype)
            sync(args.device)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
    finally:
        if rss:
            rss.__exit__(None, None, None)
    tokens = int((batch["labels"] != -100).sum())
    row = {"tok_s": tokens / statistics.median(times), "step_times_s": times}
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        row["peak_mib"], row["step_mib"] = peak / 2**20, (peak - base) / 2**20
    else:
        row["peak_mib"], row["step_mib"] = rss.peak / 2**20, (rss.peak - rss.before) / 2**20
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.device.startswith("cuda") and MMAP_ENV not in os.environ and argv is None:
        os.environ[MMAP_ENV] = "65536"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    dims = Dims(
        vocab_size=args.vocab_size,
        max_positions=max([*args.lengths, args.fixed_length]) + 1,
        **PRESETS[args.preset],
    )
    torch.manual_seed(0)
    model = TransformerSeq2SeqForConditionalGeneration(ours_config(dims, args.attn)).to(args.device).train()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=args.device.startswith("cuda"))
    # one tiny step first, so AdamW's state exists before any point is measured
    train_step(
        model, opt, to_device(random_batch(2, 4, 4, dims.vocab_size), args.device), args.device, args.dtype
    )

    points = [("batch", b, args.fixed_length) for b in args.batch_sizes]
    points += [("length", args.fixed_batch, n) for n in args.lengths]
    rows = []
    for sweep, batch_size, length in points:
        batch = to_device(
            random_batch(batch_size, length, length, dims.vocab_size, seed=batch_size), args.device
        )
        row = {"sweep": sweep, "batch": batch_size, "length": length, **measure(model, opt, batch, args)}
        rows.append(row)
        print(
            f"{sweep:>6} sweep: batch {batch_size:4d} × length {length:4d}: {row['tok_s']:9.0f} tok/s, "
            f"peak {row['peak_mib']:8.1f} MiB, step {row['step_mib']:8.1f} MiB",
            flush=True,
        )

    cuda = args.device.startswith("cuda")
    meta = environment(
        args.device,
        "bench_scaling.py",
        argv,
        dtype=args.dtype,
        attn_implementation=args.attn,
        parameters=n_params,
        transformer_dims=dims_dict(dims),
        memory=(
            "torch.cuda.max_memory_allocated"
            if cuda
            else f"process RSS sampled by psutil every 2 ms ({MMAP_ENV}={os.environ.get(MMAP_ENV)})"
        ),
        steps=args.steps,
        warmup=args.warmup,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(out.with_suffix(".png"), rows, args, meta)
    markdown = render(out, meta, rows, args, dims, n_params)
    write_report(out, {"meta": meta, "results": rows}, markdown, also=[out.with_suffix(".png")])
    return 0


def render(out: Path, meta: dict, rows: list[dict], args, dims: Dims, n_params: int) -> list[str]:
    cuda = args.device.startswith("cuda")
    mem = (
        "`torch.cuda.max_memory_allocated`: *peak* = total (weights, AdamW state, activations, gradients), "
        "*step* = peak minus what is allocated between steps"
        if cuda
        else "process RSS sampled every 2 ms (psutil, glibc `MALLOC_MMAP_THRESHOLD_=65536` so freed tensors leave "
        "RSS): *peak* = peak RSS of the process (Python, torch and the model included), *step* = peak minus the "
        "RSS before the point's first step (activations, gradients, temporaries)"
    )
    lines = [
        f"# Training cost against batch size and sentence length ({'CUDA' if cuda else 'CPU'}, {args.dtype})",
        "",
        env_line(meta),
        "",
        f"Our Transformer, d_model {dims.d_model}, {dims.layers}+{dims.layers} layers, {dims.heads} heads, FFN "
        f"{dims.ffn_dim}, vocab {dims.vocab_size} ({n_params / 1e6:.2f}M parameters), attention `{args.attn}`; "
        "generated batches without padding (source length = target length = L); one training step = forward + "
        f"backward + AdamW. tokens/s = target tokens / step time, median of {args.steps} steps after "
        f"{args.warmup} warm-up. Memory: {mem}.",
    ]
    if not cuda:
        lines += [
            "",
            "**CPU figures from a shared, contended 2-core machine** (other jobs running): absolute throughput is "
            "noisy; the shape of the curves is the point.",
        ]
    for sweep, title in (("batch", f"batch size (L = {args.fixed_length})"), ("length", "sentence length L")):
        lines += [
            "",
            f"## Against {title}" + (f" (batch {args.fixed_batch})" if sweep == "length" else ""),
            "",
        ]
        header = ["batch", "L", "target tokens / step", "tok/s", "peak MiB", "step MiB"]
        cells = [
            [r["batch"], r["length"], r["batch"] * r["length"], f"{r['tok_s']:.0f}"]
            + [f"{r['peak_mib']:.0f}", f"{r['step_mib']:.0f}"]
            for r in rows
            if r["sweep"] == sweep
        ]
        lines += markdown_table(header, cells, "rrrrrr")
    return [*lines, "", f"![tokens/s and memory]({out.with_suffix('.png').name})"]


def plot(path: Path, rows: list[dict], args, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    mem_label = "step memory (MiB)" + (
        " above steady state" if args.device.startswith("cuda") else ", RSS delta"
    )
    for ax, sweep, xlabel in (
        (axes[0], "batch", f"batch size (L = {args.fixed_length})"),
        (axes[1], "length", f"sentence length L (batch {args.fixed_batch})"),
    ):
        sel = [r for r in rows if r["sweep"] == sweep]
        x = [r["batch"] if sweep == "batch" else r["length"] for r in sel]
        ax.plot(x, [r["tok_s"] for r in sel], "o-", color="tab:blue")
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(v) for v in x])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("train target tokens / s", color="tab:blue")
        ax.set_ylim(bottom=0)
        twin = ax.twinx()
        twin.plot(x, [r["step_mib"] for r in sel], "s--", color="tab:red")
        twin.set_ylabel(mem_label, color="tab:red")
        twin.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    device = "CUDA" if args.device.startswith("cuda") else "CPU (contended)"
    fig.suptitle(
        f"TransformerSeq2Seq training cost, {device}, {args.dtype}, {meta['parameters'] / 1e6:.1f}M params"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())

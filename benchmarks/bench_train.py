"""Benchmark: training throughput of TransformerSeq2Seq vs its MarianMTModel twin, and of the RNN attention models.

1. Transformer: our model and ``transformers.MarianMTModel`` with identical dimensions (vocab, d_model, layers,
   heads, FFN, post-norm, sinusoidal positions, scaled and tied embeddings; Marian's weights copied into ours and
   the fp32 eval loss checked equal), each with its own AdamW, trained in the same loop on the same batches.
   Measured: target tokens (labels != -100) per second of forward + backward + optimizer step. Warm-up, then
   ``--repeats`` blocks of ``--steps`` steps per model, the order alternating between blocks; median reported.
   Model FLOPs utilisation (CUDA): model FLOPs per step / time / ``--peak_tflops``, with

       FLOPs/step = 6 · [(N_enc + N_xkv) · Σ s_i + (N_dec + D·V) · Σ t_i] + 12 · D · [L_e Σ s_i² + L_d Σ (t_i² + t_i s_i)]

   where s_i / t_i are the real (unpadded) source / target lengths of sentence i, N_enc = L_e (4D² + 2DF) the
   encoder weights every source token meets, N_xkv = L_d · 2D² the decoder's cross-attention K/V projections
   (applied to source tokens), N_dec = L_d (6D² + 2DF) the decoder weights every target token meets, D·V the
   (tied) output projection; the last term is QKᵀ and AV of every attention (2 matmuls × 2 FLOPs × 3 for
   forward + backward), causal masking not discounted (the PaLM convention). Biases, LayerNorm, softmax,
   embeddings lookups and the optimizer are not counted; padding is waste, not model FLOPs.
2. RNN attention models (bi-GRU + Bahdanau; LSTM + Luong general with input feeding; LSTM + Luong general without
   input feeding, which takes the teacher-forcing fast path): training tokens/s in the same loop and beam-search
   (``--beams``) generation tokens/s (batch × new tokens / time of one ``generate`` call, ``min_new_tokens =
   max_new_tokens``).
3. ``torch.profiler``: top ops by self time for a few training steps of every model and one beam search of every
   RNN model; "ops share" = Σ self time of all ops / wall time (the rest is Python and framework overhead).

    python benchmarks/bench_train.py                                     # CPU, small model, Multi30k batches
    python benchmarks/bench_train.py --device cuda --dtype bf16 --preset base --max_tokens 32768 \\
        --out docs/benchmarks/bench_train_cuda
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from harness import (
    PRESETS,
    Dims,
    autocast,
    bench_parser,
    build_twins,
    dims_dict,
    env_line,
    environment,
    markdown_table,
    multi30k_batches,
    random_batch,
    sync,
    target_tokens,
    to_device,
    train_step,
    write_report,
)

from hf_seq2seq.models.configuration_rnn_seq2seq import RNNSeq2SeqConfig
from hf_seq2seq.models.modeling_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration
from hf_seq2seq.training.master_weights import MasterWeightAdamW

RNN_VARIANTS = {
    "bigru+bahdanau": dict(cell="gru", bidirectional_encoder=True, attention="bahdanau"),
    "lstm+luong-general+feed": dict(cell="lstm", attention="general", input_feeding=True),
    "lstm+luong-general (fast path)": dict(cell="lstm", attention="general", input_feeding=False),
}


# ------------------------------------------------------------------------------------------------- FLOPs
def transformer_flops(batch: dict, d: Dims) -> float:
    """Model FLOPs of one training step on ``batch`` (see the module docstring)."""
    D, F, L, V = d.d_model, d.ffn_dim, d.layers, d.vocab_size
    s = batch["attention_mask"].sum(1).double()
    t = (batch["labels"] != -100).sum(1).double()
    n_enc, n_xkv, n_dec = L * (4 * D * D + 2 * D * F), L * 2 * D * D, L * (6 * D * D + 2 * D * F)
    dense = 6 * ((n_enc + n_xkv) * s.sum() + (n_dec + D * V) * t.sum())
    attention = 12 * D * (L * (s * s).sum() + L * (t * t + t * s).sum())
    return float(dense + attention)


# ----------------------------------------------------------------------------------------------- helpers
def make_optimizer(model, device: str, fused: bool | None = None, dtype: str = "fp32"):
    """AdamW; for ``--dtype bf16-master`` (bf16 weights) the training loop's ``--bf16_weights`` optimizer, AdamW
    over fp32 master copies."""
    fused = device.startswith("cuda") if fused is None else fused
    if dtype == "bf16-master" and next(model.parameters()).dtype == torch.bfloat16:
        return MasterWeightAdamW(model.parameters(), lr=1e-4, fused=fused)
    return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)


def fused_adamw_available(device: str) -> bool:
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    return torch.device(device).type in _get_fused_kernels_supported_devices()


def pad_batch(batch: dict, multiple: int) -> dict:
    """Pad a collated batch's lengths up to a multiple of ``multiple`` (what ``--torch_compile``'s collator
    does with ``pad_to_multiple_of``): a few static shapes instead of one per batch."""
    pads = {"input_ids": 0, "attention_mask": 0, "decoder_input_ids": 0, "labels": -100}
    out = dict(batch)
    for key, value in pads.items():
        t = batch[key]
        extra = -t.shape[1] % multiple
        if extra:
            out[key] = torch.nn.functional.pad(t, (0, extra), value=value)
    return out


def time_train(models: dict, batches: list[dict], args) -> dict:
    """{name: {"tok_s", "block_tok_s", "flops_s", "step_s"}}: ``repeats`` blocks of ``steps`` batches; within a
    block the models take turns on each batch, so slow phases of a shared machine hit both alike."""
    # compiled models get fused AdamW where torch has it (as --torch_compile does); eager ones the default
    fused = fused_adamw_available(args.device)
    opts = {
        name: make_optimizer(m, args.device, fused=fused if "compiled" in name else None, dtype=args.dtype)
        for name, m in models.items()
    }
    for m in models.values():
        m.train()
    step = 0
    for _ in range(args.warmup):
        for name, m in models.items():
            train_step(m, opts[name], _model_inputs(batches[step % len(batches)]), args.device, args.dtype)
        step += 1
    results = {name: {"block_tok_s": [], "block_flops_s": [], "step_s": []} for name in models}
    names = list(models)
    for _ in range(args.repeats):
        block = [batches[(step + i) % len(batches)] for i in range(args.steps)]
        step += args.steps
        tokens = sum(target_tokens(b) for b in block)
        flops = sum(b["_flops"] for b in block) if "_flops" in block[0] else 0.0
        elapsed = dict.fromkeys(names, 0.0)
        for i, b in enumerate(
            block
        ):  # the models take turns step by step (order alternating): paired timings
            for name in names if (step + i) % 2 == 0 else names[::-1]:
                sync(args.device)
                start = time.perf_counter()
                train_step(models[name], opts[name], _model_inputs(b), args.device, args.dtype)
                sync(args.device)
                dt = time.perf_counter() - start
                elapsed[name] += dt
                results[name]["step_s"].append(dt)
        for name in names:
            results[name]["block_tok_s"].append(tokens / elapsed[name])
            results[name]["block_flops_s"].append(flops / elapsed[name])
    for res in results.values():
        res["tok_s"] = statistics.median(res["block_tok_s"])
        res["flops_s"] = statistics.median(res["block_flops_s"])
    return results


def _model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def profile_train(model, batches: list[dict], args, steps: int) -> dict:
    """Top ops by self time over ``steps`` training steps (after the timing runs, so warm)."""
    opt = make_optimizer(model, args.device, dtype=args.dtype)
    model.train()

    def run():
        for i in range(steps):
            train_step(model, opt, _model_inputs(batches[i % len(batches)]), args.device, args.dtype)

    return _profile(run, args)


def _profile(fn, args) -> dict:
    from torch.profiler import ProfilerActivity, profile

    cuda = args.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync(args.device)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        fn()
        sync(args.device)
    wall = time.perf_counter() - start
    events = prof.key_averages()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    total = sum(getattr(e, key) for e in events)
    top = sorted(events, key=lambda e: getattr(e, key), reverse=True)[: args.profile_top]
    rows = [
        {
            "op": e.key,
            "self_ms": getattr(e, key) / 1e3,
            "share": getattr(e, key) / total if total else 0.0,
            "calls": e.count,
        }
        for e in top
    ]
    return {
        "clock": "device (CUDA kernels)" if cuda else "CPU",
        "wall_ms": wall * 1e3,
        "ops_ms": total / 1e3,
        "ops_share_of_wall": total / 1e3 / (wall * 1e3),
        "calls": sum(e.count for e in events),
        "top": rows,
    }


@torch.inference_mode()
def time_generate(model, inputs: dict, args) -> tuple[float, list[float]]:
    model.eval()
    kwargs = dict(
        num_beams=args.beams,
        do_sample=False,
        max_new_tokens=args.new_tokens,
        min_new_tokens=args.new_tokens,
        early_stopping=False,
    )
    times = []
    for i in range(args.gen_warmup + args.gen_repeats):
        sync(args.device)
        start = time.perf_counter()
        with _autocast_infer(args):
            model.generate(**inputs, **kwargs)
        sync(args.device)
        if i >= args.gen_warmup:
            times.append(time.perf_counter() - start)
    tokens = inputs["input_ids"].shape[0] * args.new_tokens
    return tokens / statistics.median(times), times


def _autocast_infer(args):
    return autocast(args.device, args.dtype)


def profile_generate(model, inputs: dict, args) -> dict:
    model.eval()

    def run():
        with torch.inference_mode(), _autocast_infer(args):
            model.generate(
                **inputs,
                num_beams=args.beams,
                do_sample=False,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                early_stopping=False,
            )

    return _profile(run, args)


# -------------------------------------------------------------------------------------------------- main
def parse_args(argv):
    p = bench_parser(
        __doc__, "bench_train", threads=1, threads_help="torch CPU threads (1: a contended machine)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--dtype",
        default="fp32",
        choices=["fp32", "bf16", "bf16-pure", "bf16-master"],
        help="bf16 = autocast (fp32 weights and AdamW state, bf16 matmuls); bf16-pure = bf16 weights, gradients "
        "and AdamW state, no autocast (no per-step weight casts; less exact updates); bf16-master = bf16 weights "
        "and gradients, AdamW on fp32 master copies (train.py --bf16_weights: MasterWeightAdamW); the bf16-* "
        "choices convert the Transformers only",
    )
    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="transformer size")
    p.add_argument("--d_model", type=int)
    p.add_argument("--layers", type=int, help="encoder = decoder layers")
    p.add_argument("--heads", type=int)
    p.add_argument("--ffn_dim", type=int)
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    p.add_argument("--vocab_size", type=int, default=8000, help="tokenizer vocabulary (random data: exact)")
    p.add_argument("--data", default="multi30k", choices=["multi30k", "random"])
    p.add_argument("--lines", type=int, default=4000, help="Multi30k train pairs read (tokenizer + batches)")
    p.add_argument("--max_tokens", type=int, default=1024, help="TokenBatchSampler budget (padded tokens)")
    p.add_argument("--src_len", type=int, default=16, help="random data: sentence length")
    p.add_argument("--steps", type=int, default=4, help="timed steps per block")
    p.add_argument("--repeats", type=int, default=3, help="timed blocks per model")
    p.add_argument("--warmup", type=int, default=2, help="warm-up steps per model")
    p.add_argument(
        "--compile",
        default="none",
        choices=["none", "ours", "both", "side_by_side"],
        help="torch.compile the Transformer(s): ours only, or ours and Marian (static shapes unless "
        "--compile_dynamic; with --data random every batch has one shape, so one compilation); side_by_side: "
        "eager and compiled copies of both, timed in one loop (compiled ones with fused AdamW where available)",
    )
    p.add_argument(
        "--pad_to_multiple_of",
        type=int,
        help="pad batch lengths to a multiple of this (default: 16 with --compile side_by_side, else none)",
    )
    p.add_argument("--compile_dynamic", action="store_true", help="torch.compile(dynamic=True)")
    p.add_argument("--peak_tflops", type=float, default=989.0, help="peak dense bf16 TFLOP/s (H100 SXM: 989)")
    p.add_argument("--rnn_embedding", type=int, default=256)
    p.add_argument("--rnn_hidden", type=int, default=512)
    p.add_argument("--rnn_layers", type=int, default=2)
    p.add_argument("--beams", type=int, default=5)
    p.add_argument("--gen_batch", type=int, default=16)
    p.add_argument("--new_tokens", type=int, default=24)
    p.add_argument("--gen_warmup", type=int, default=1)
    p.add_argument("--gen_repeats", type=int, default=3)
    p.add_argument("--profile_steps", type=int, default=3)
    p.add_argument("--profile_top", type=int, default=10)
    p.add_argument("--skip", nargs="*", default=[], choices=["transformer", "rnn", "profile"])
    return p.parse_args(argv)


def _load_data(args):
    """The timed batches (Multi30k or random), their vocabulary size and what the report says about them."""
    if args.data == "multi30k":
        batches, tokenizer = multi30k_batches(args.lines, args.vocab_size, args.max_tokens)
        vocab = len(tokenizer)
    else:
        vocab = args.vocab_size
        per = max(1, args.max_tokens // args.src_len)
        batches = [random_batch(per, args.src_len, args.src_len, vocab, seed=i) for i in range(8)]
    n_real = sum(int(b["attention_mask"].sum()) + target_tokens(b) for b in batches)
    n_padded = sum(b["input_ids"].numel() + b["labels"].numel() for b in batches)
    data_info = {
        "source": args.data,
        "batches": len(batches),
        "mean_sentences_per_batch": statistics.mean(b["input_ids"].shape[0] for b in batches),
        "mean_target_tokens_per_batch": statistics.mean(target_tokens(b) for b in batches),
        "padding_fraction": 1 - n_real / n_padded,
        "vocab_size": vocab,
    }
    return batches, vocab, data_info


def _bench_transformer(batches: list[dict], dims, args, report: dict) -> None:
    """Ours vs MarianMTModel with the same weights: eval-loss check, timed training steps, profiles."""
    ours, marian = build_twins(dims, args.attn)
    n_params = sum(p.numel() for p in ours.parameters())
    ours, marian = ours.to(args.device), marian.to(args.device)
    ours.eval(), marian.eval()
    with torch.no_grad():
        b0 = _model_inputs(batches[0])
        loss_ours, loss_marian = float(ours(**b0).loss), float(marian(**b0).loss)
    print(f"eval loss (fp32, same weights): ours {loss_ours:.6f}  marian {loss_marian:.6f}", flush=True)
    models = {"ours": ours, "marian": marian}
    if args.dtype in ("bf16-pure", "bf16-master"):
        ours, marian = ours.to(torch.bfloat16), marian.to(torch.bfloat16)
        models = {"ours": ours, "marian": marian}
    if (
        args.compile == "side_by_side"
    ):  # separate copies: the eager and compiled twins train their own weights
        models.update({f"{k} compiled": torch.compile(copy.deepcopy(m)) for k, m in list(models.items())})
    elif args.compile != "none":
        compiled = ("ours",) if args.compile == "ours" else ("ours", "marian")
        models = {
            k: torch.compile(m, dynamic=bool(args.compile_dynamic)) if k in compiled else m
            for k, m in models.items()
        }
    res = time_train(models, batches, args)
    peak = args.peak_tflops * 1e12
    tr = {
        "parameters": n_params,
        "non_embedding_parameters": n_params - dims.vocab_size * dims.d_model,
        "check_eval_loss": {"ours": loss_ours, "marian": loss_marian},
        "ours": res["ours"],
        "marian": res["marian"],
        "ratio": res["ours"]["tok_s"] / res["marian"]["tok_s"],
        # same batch, back to back: Marian's step time / ours, per step
        "paired_step_ratios": [m / o for o, m in zip(res["ours"]["step_s"], res["marian"]["step_s"])],
        "flops_per_target_token": sum(b["_flops"] for b in batches) / sum(target_tokens(b) for b in batches),
    }
    tr["paired_ratio_median"] = statistics.median(tr["paired_step_ratios"])
    if args.compile == "side_by_side":
        oc, mc = res["ours compiled"], res["marian compiled"]
        tr["compiled"] = {
            "ours": oc,
            "marian": mc,
            "ratio": oc["tok_s"] / mc["tok_s"],
            "ours_compiled_over_marian_eager": oc["tok_s"] / res["marian"]["tok_s"],
            "speedup_ours": oc["tok_s"] / res["ours"]["tok_s"],
            "speedup_marian": mc["tok_s"] / res["marian"]["tok_s"],
            "fused_adamw": fused_adamw_available(args.device),
        }
        print(
            f"compiled: ours {oc['tok_s']:.0f} tok/s  marian {mc['tok_s']:.0f} tok/s  ratio "
            f"{tr['compiled']['ratio']:.3f}; ours compiled / marian eager "
            f"{tr['compiled']['ours_compiled_over_marian_eager']:.3f}",
            flush=True,
        )
    if args.device.startswith("cuda"):
        tr["mfu"] = {k: res[k]["flops_s"] / peak for k in ("ours", "marian")}
        tr["peak_tflops"] = args.peak_tflops
    report["transformer"] = tr
    print(
        f"transformer train: ours {res['ours']['tok_s']:.0f} tok/s  marian {res['marian']['tok_s']:.0f} tok/s  "
        f"ratio {tr['ratio']:.3f} (median paired step ratio {tr['paired_ratio_median']:.3f})  (model TFLOP/s ours {res['ours']['flops_s'] / 1e12:.3f}, marian "
        f"{res['marian']['flops_s'] / 1e12:.3f})"
        + (f"  MFU ours {tr['mfu']['ours']:.1%} marian {tr['mfu']['marian']:.1%}" if "mfu" in tr else ""),
        flush=True,
    )
    if "profile" not in args.skip:
        report["profiles"] = {}
        for name in ("ours", "marian"):
            try:
                prof = profile_train(models[name], batches, args, args.profile_steps)
            except Exception as exc:  # noqa: BLE001 - the timings above are still worth writing
                print(f"profile transformer {name} FAILED: {type(exc).__name__}: {exc}", flush=True)
                continue
            report["profiles"][f"transformer {name}: train"] = prof
            _print_profile(f"transformer {name}: train", prof)
    del ours, marian, models


def _bench_rnns(batches: list[dict], vocab: int, args, report: dict) -> None:
    """Every RNN variant: training throughput and beam-search generation."""
    report["rnn"] = {}
    gen_src = _generation_batch(batches, args.gen_batch, args.device)
    for name, variant in RNN_VARIANTS.items():
        try:  # one failing variant (e.g. a kernel missing for a dtype) must not cost the other results
            report["rnn"][name] = bench_rnn(name, variant, vocab, batches, gen_src, report, args)
        except Exception as exc:  # noqa: BLE001 - recorded in the report and printed
            report["rnn"][name] = {"config": variant, "error": f"{type(exc).__name__}: {exc}"}
            print(f"rnn {name}: FAILED {report['rnn'][name]['error']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    preset = dict(PRESETS[args.preset])
    for k in preset:
        if getattr(args, k) is not None:
            preset[k] = getattr(args, k)

    batches, vocab, data_info = _load_data(args)
    if args.pad_to_multiple_of is None and args.compile == "side_by_side":
        args.pad_to_multiple_of = 16
    if args.pad_to_multiple_of:
        batches = [pad_batch(b, args.pad_to_multiple_of) for b in batches]
        data_info["pad_to_multiple_of"] = args.pad_to_multiple_of
        data_info["shapes"] = len({(tuple(b["input_ids"].shape), tuple(b["labels"].shape)) for b in batches})
    dims = Dims(vocab_size=vocab, max_positions=256, **preset)
    for b in batches:
        b["_flops"] = transformer_flops(b, dims)
    batches = [to_device(b, args.device) for b in batches]
    print(
        f"data: {args.data}, {len(batches)} batches, {data_info['mean_sentences_per_batch']:.1f} sentences / "
        f"{data_info['mean_target_tokens_per_batch']:.0f} target tokens per batch, padding "
        f"{data_info['padding_fraction']:.1%}, vocab {vocab}",
        flush=True,
    )
    meta = environment(
        args.device,
        "bench_train.py",
        argv,
        dtype=args.dtype,
        attn_implementation=args.attn,
        data=data_info,
        transformer_dims=dims_dict(dims),
        steps=args.steps,
        repeats=args.repeats,
        warmup=args.warmup,
        compile=args.compile,
    )
    report = {"meta": meta}

    if "transformer" not in args.skip:
        _bench_transformer(batches, dims, args, report)

    if "rnn" not in args.skip:
        _bench_rnns(batches, vocab, args, report)

    write_outputs(report, args)
    return 0


def bench_rnn(
    name: str, variant: dict, vocab: int, batches: list[dict], gen_src: dict, report: dict, args
) -> dict:
    torch.manual_seed(0)
    cfg = RNNSeq2SeqConfig(
        vocab_size=vocab,
        embedding_size=args.rnn_embedding,
        hidden_size=args.rnn_hidden,
        encoder_layers=args.rnn_layers,
        decoder_layers=args.rnn_layers,
        **variant,
    )
    model = RNNSeq2SeqForConditionalGeneration(cfg).to(args.device)
    res = time_train({name: model}, batches, args)[name]
    gen_tok_s, gen_times = time_generate(model, gen_src, args)
    row = {
        "config": variant,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_tok_s": res["tok_s"],
        "train_block_tok_s": res["block_tok_s"],
        "beam_gen_tok_s": gen_tok_s,
        "beam_gen_times_s": gen_times,
    }
    print(
        f"rnn {name}: train {row['train_tok_s']:.0f} tok/s, beam-{args.beams} generate "
        f"{gen_tok_s:.0f} tok/s ({row['parameters'] / 1e6:.2f}M params)",
        flush=True,
    )
    if "profile" not in args.skip:
        report.setdefault("profiles", {})
        prof = profile_train(model, batches, args, args.profile_steps)
        report["profiles"][f"rnn {name}: train"] = prof
        _print_profile(f"rnn {name}: train", prof)
        prof = profile_generate(model, gen_src, args)
        report["profiles"][f"rnn {name}: beam-{args.beams} generate"] = prof
        _print_profile(f"rnn {name}: beam-{args.beams} generate", prof)
    return row


def _generation_batch(batches: list[dict], n: int, device: str) -> dict:
    """The first ``n`` source sentences of the data, re-padded to the longest of them."""
    rows = []
    for b in batches:
        for ids, mask in zip(b["input_ids"], b["attention_mask"]):
            rows.append(ids[: int(mask.sum())])
            if len(rows) == n:
                break
        if len(rows) == n:
            break
    longest = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), longest, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    return {"input_ids": ids, "attention_mask": mask}


def _print_profile(title: str, prof: dict) -> None:
    print(
        f"  profile {title}: wall {prof['wall_ms']:.0f} ms, ops {prof['ops_ms']:.0f} ms "
        f"({prof['ops_share_of_wall']:.0%} of wall, {prof['calls']} op calls; {prof['clock']} self time)"
    )
    for r in prof["top"]:
        print(f"    {r['self_ms']:9.1f} ms {r['share']:6.1%} {r['calls']:7d}  {r['op']}")


def _compiled_lines(tr: dict, args) -> list[str]:
    c = tr["compiled"]
    return [
        "",
        "## Compiled (torch.compile, default inductor) and eager, side by side",
        "",
        f"Each model also trained as a compiled copy in the same loop on the same batches (lengths padded to a "
        f"multiple of {args.pad_to_multiple_of}; compiled copies use fused AdamW: {c['fused_adamw']}).",
        "",
        *markdown_table(
            ["model", "eager tok/s", "compiled tok/s", "compiled / eager"],
            [
                [label, f"{tr[k]['tok_s']:.0f}", f"{c[k]['tok_s']:.0f}", f"{c[f'speedup_{k}']:.2f}"]
                for k, label in (("ours", "ours"), ("marian", "MarianMTModel"))
            ],
            "lrrr",
        ),
        "",
        f"**ours / Marian: eager {tr['ratio']:.3f}, compiled {c['ratio']:.3f}; ours compiled / Marian eager "
        f"{c['ours_compiled_over_marian_eager']:.3f}** (issue 18 target: >= 1.2).",
    ]


def write_outputs(report: dict, args) -> None:
    write_report(args.out, report, render(report, args))


def render(report: dict, args) -> list[str]:
    meta = report["meta"]
    cuda = args.device.startswith("cuda")
    d, data = meta["transformer_dims"], meta["data"]
    lines = [
        f"# Training throughput ({'CUDA' if cuda else 'CPU'}, {args.dtype})",
        "",
        env_line(meta),
        "",
        f"Data: {data['source']} — {data['batches']} batches (TokenBatchSampler, budget {args.max_tokens} padded "
        f"tokens), {data['mean_sentences_per_batch']:.1f} sentences and {data['mean_target_tokens_per_batch']:.0f} "
        f"target tokens per batch on average, {data['padding_fraction']:.1%} padding, joint vocabulary "
        f"{data['vocab_size']}. tokens/s = target tokens (labels != -100) per second of forward + backward + "
        f"AdamW step; median of {args.repeats} blocks of {args.steps} steps after {args.warmup} warm-up steps"
        + (
            ", ours and Marian taking turns on each batch (order alternating)."
            if "transformer" in report
            else "."
        ),
    ]
    if not cuda:
        lines += [
            "",
            "**CPU figures from a shared, contended 2-core machine** (other jobs running; see the load average "
            "above): absolute numbers are noisy and low; the ours/Marian ratio compares the two models taking "
            "turns step by step on the same batches under the same load.",
        ]
    if "transformer" in report:
        tr = report["transformer"]
        shapes = "dynamic" if args.compile_dynamic else "static"
        compile_note = f", torch.compile ({args.compile}, {shapes} shapes)" if args.compile != "none" else ""
        lines += [
            "",
            "## Transformer: ours vs MarianMTModel (same dims, same weights, same loop, same batches)",
            "",
            f"d_model {d['d_model']}, {d['layers']}+{d['layers']} layers, {d['heads']} heads, FFN {d['ffn_dim']}, "
            f"vocab {d['vocab_size']}, post-norm, sinusoidal, scaled + tied embeddings, dropout {d['dropout']}, "
            f"attention `{args.attn}`{compile_note}: {tr['parameters'] / 1e6:.2f}M "
            f"parameters ({tr['non_embedding_parameters'] / 1e6:.2f}M non-embedding). Same-weights check, fp32 eval "
            f"loss on batch 0: ours {tr['check_eval_loss']['ours']:.6f}, Marian "
            f"{tr['check_eval_loss']['marian']:.6f}.",
            "",
        ]
        cells = [
            [label, f"{tr[k]['tok_s']:.0f}", f"{tr[k]['flops_s'] / 1e12:.3f}"]
            + ([f"{tr['mfu'][k]:.1%}"] if cuda else [])
            for k, label in (("ours", "ours (TransformerSeq2Seq)"), ("marian", "MarianMTModel"))
        ]
        header = ["model", "train tok/s", "model TFLOP/s"] + (["MFU"] if cuda else [])
        lines += markdown_table(header, cells, "lrrr" if cuda else "lrr")
        lines += [
            "",
            f"**ours / Marian = {tr['ratio']:.3f}** (target ≥ 1.0; ratio of the median block throughputs); median "
            f"of the per-step ratios (same batch, back to back) {tr['paired_ratio_median']:.3f}, quartiles "
            + (
                " / ".join(f"{q:.3f}" for q in statistics.quantiles(tr["paired_step_ratios"], n=4))
                if len(tr["paired_step_ratios"]) > 1
                else "n/a (one step)"
            )
            + ". Blocks (tok/s): ours "
            + ", ".join(f"{x:.0f}" for x in tr["ours"]["block_tok_s"])
            + "; Marian "
            + ", ".join(f"{x:.0f}" for x in tr["marian"]["block_tok_s"])
            + ".",
            "",
            f"Model FLOPs: {tr['flops_per_target_token'] / 1e6:.1f} MFLOP per target token on these batches, from "
            "FLOPs/step = 6·[(N_enc + N_xkv)·Σs_i + (N_dec + D·V)·Σt_i] + 12·D·[L_e·Σs_i² + L_d·Σ(t_i² + t_i·s_i)] "
            "over real (unpadded) lengths s_i, t_i, with N_enc = L_e(4D² + 2DF), N_xkv = L_d·2D², "
            "N_dec = L_d(6D² + 2DF); padding, biases, norms, softmax and the optimizer are not counted"
            + (f"; MFU = model FLOP/s / {args.peak_tflops:g} TFLOP/s peak dense bf16." if cuda else "."),
        ]
    if "compiled" in report.get("transformer", {}):
        lines += _compiled_lines(report["transformer"], args)
    if "rnn" in report:
        lines += [
            "",
            f"## RNN attention models (embedding {args.rnn_embedding}, hidden {args.rnn_hidden}, "
            f"{args.rnn_layers}+{args.rnn_layers} layers, tied embeddings)",
            "",
            f"Beam search: {args.beams} beams, batch {args.gen_batch} Multi30k sources, exactly {args.new_tokens} "
            f"new tokens (`min_new_tokens = max_new_tokens`); tokens/s = batch × new tokens / time of one "
            f"`generate()`, median of {args.gen_repeats} after {args.gen_warmup} warm-up.",
            "",
        ]
        cells = [
            [name, "—", f"failed: `{r['error'][:200]}`", "—"]
            if "error" in r
            else [
                name,
                f"{r['parameters'] / 1e6:.2f}M",
                f"{r['train_tok_s']:.0f}",
                f"{r['beam_gen_tok_s']:.0f}",
            ]
            for name, r in report["rnn"].items()
        ]
        header = ["model", "parameters", "train tok/s", f"beam-{args.beams} generate tok/s"]
        lines += markdown_table(header, cells, "lrrr")
    if report.get("profiles"):
        lines += [
            "",
            "## Where the time goes (torch.profiler)",
            "",
            f"Training: {args.profile_steps} steps; generation: one beam-{args.beams} `generate()` call. Self time "
            "per op; *ops share* = Σ op self time / wall time, the rest is Python, module dispatch and "
            "`generate()` bookkeeping.",
        ]
        for title, prof in report["profiles"].items():
            lines += [
                "",
                f"### {title}",
                "",
                f"wall {prof['wall_ms']:.0f} ms, ops {prof['ops_ms']:.0f} ms ({prof['ops_share_of_wall']:.0%} of wall), "
                f"{prof['calls']} op calls ({prof['clock']} self time).",
                "",
                *markdown_table(
                    ["op", "self ms", "share of op time", "calls"],
                    [
                        [f"`{r['op']}`", f"{r['self_ms']:.1f}", f"{r['share']:.1%}", r["calls"]]
                        for r in prof["top"]
                    ],
                    "lrrr",
                ),
            ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: generate() throughput of TransformerSeq2Seq vs transformers' MarianMTModel with identical dimensions.

Both models get the same vocabulary, dimensions, post-norm, sinusoidal positions, sqrt(d_model) embedding scaling
and tied embeddings. Marian's weights are copied into our model (Q/K/V concatenated into the fused projections,
Marian's [sin | cos] position table copied into our buffer), so both models compute the same function: the script
checks that they generate the same tokens, which makes the timing an apples-to-apples comparison.

Measured: generated tokens per second (batch × new tokens / wall time of one ``generate`` call, the encoder
included) for greedy search and beam search (5 beams), at batch 32 and batch 1, with ``min_new_tokens =
max_new_tokens`` so every run generates exactly the same number of tokens. Warm-up, then ``--repeats`` runs per
cell alternating ours / Marian; the median is reported.

    python benchmarks/bench_generate.py                       # CPU, 2 threads
    python benchmarks/bench_generate.py --device cuda --dtype bfloat16 --out docs/benchmarks/bench_generate_cuda

``--family rnn`` measures the RNN family instead, before/after a change: the same weights run under this tree's
code and under the code of another checkout (``--before DIR``, imported beside it under another package name),
batch by batch in alternating order, on Multi30k sentences (trained model folders) or random ids (``random``
presets, Multi30k-sized: embedding 256, hidden 512, vocabulary 8000). It reports sentences/s and tokens/s for
both, the ratio in wall time and in process CPU time (steadier on a shared machine), and how many sentences got
the same tokens; ``--overhead`` adds the per-step cost of ``generate()`` itself, from a tiny model with the same
code (arithmetic ~0), and ``--profile`` the top operators of one ``generate()`` call.

    python benchmarks/bench_generate.py --family rnn --before ../snap --models bigru_bahdanau=random \
        lstm_luong=random --out docs/benchmarks/bench_generate_rnn

``--family transformer --before DIR`` runs the same before/after comparison for the Transformer family (instead of
the Marian twin): a trained folder, or the ``transformer=random`` preset of the Marian twin's dims (``--d_model``,
``--layers``, ``--heads``, ``--ffn_dim``, ``--vocab_size``).

    python benchmarks/bench_generate.py --family transformer --before ../snap --models transformer=random \
        --out docs/benchmarks/bench_generate_transformer_before_after
"""

from __future__ import annotations

import os
import statistics
import time
from functools import partial
from pathlib import Path

import torch
from harness import (
    MULTI30K,
    OUT_DIR,
    ROOT,
    Dims,
    add_generation_args,
    bench_parser,
    build_twins,
    environment,
    import_modeling_from,
    load_average,
    markdown_table,
    read_lines,
    timed_generate,
    write_report,
)


def build_models(args) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(ours, Marian) with identical weights: the shared Marian twin of ``harness``."""
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


# ------------------------------------------------------------------------------------ RNN family, before/after
# Multi30k-sized presets for random weights (the two issue-15 models; dims as configs/multi30k_*.yaml)
RNN_PRESETS = {
    "bigru_bahdanau": dict(
        cell="gru", bidirectional_encoder=True, attention="bahdanau", encoder_layers=1, decoder_layers=1
    ),
    "lstm_luong": dict(
        cell="lstm",
        bidirectional_encoder=False,
        attention="general",
        input_feeding=True,
        encoder_layers=2,
        decoder_layers=2,
    ),
}


# the before/after classes and random presets per family (the Transformer preset takes the Marian twin's dims)
FAMILY_CLASSES = {
    "rnn": ("rnn_seq2seq", "RNNSeq2SeqForConditionalGeneration", "RNNSeq2SeqConfig"),
    "transformer": (
        "transformer_seq2seq",
        "TransformerSeq2SeqForConditionalGeneration",
        "TransformerSeq2SeqConfig",
    ),
}
DEFAULT_MODELS = {
    "rnn": ["bigru_bahdanau=random", "lstm_luong=random"],
    "transformer": ["transformer=random"],
}


def add_rnn_args(parser) -> None:
    group = parser.add_argument_group("before/after: --family rnn, or --family transformer with --before")
    group.add_argument(
        "--before",
        default=None,
        help="checkout whose hf_seq2seq is the 'before' code (--family rnn: default this tree; --family "
        "transformer: before/after instead of the Marian twin)",
    )
    group.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="NAME=FOLDER (a trained model folder, decoded on Multi30k) or NAME=random (NAME a preset: "
        f"{', '.join(RNN_PRESETS)}; transformer); default {DEFAULT_MODELS}",
    )
    group.add_argument(
        "--sentences", type=int, default=200, help="first N test_2016_flickr sentences / N random"
    )
    group.add_argument("--src_lang", default="de")
    group.add_argument("--embedding_size", type=int, default=256, help="random presets' E (and --vocab_size)")
    group.add_argument("--hidden_size", type=int, default=512, help="random presets' H")
    group.add_argument(
        "--fixed_length",
        default="no_eos",
        choices=["no_eos", "min_new_tokens"],
        help="how random presets decode exactly --new_tokens tokens: eos_token_id=None (no stop, no extra work) "
        "or min_new_tokens = max_new_tokens (generate() then masks </s> in the (rows, V) scores every step)",
    )
    group.add_argument(
        "--malloc_tuned",
        action="store_true",
        help="glibc mallopt before measuring: large tensors are neither mmap'ed nor trimmed per step (both sides)",
    )
    group.add_argument(
        "--joeynmt",
        action="store_true",
        help="also time an untrained JoeyNMT 2.3 bi-GRU + Bahdanau of the random preset's dims against the "
        "bigru_bahdanau preset (before and after), on the same random sources at --new_tokens tokens (needs joeynmt)",
    )
    group.add_argument("--overhead", action="store_true", help="per-step cost of generate() itself")
    group.add_argument("--profile", action="store_true", help="top operators of one generate() call")
    group.add_argument(
        "--after_cpu_kernels",
        choices=["on", "off"],
        default="on",
        help="apply hf_seq2seq.inference.cpu_kernels.optimize_for_cpu_inference to the 'after' model, as the "
        "package's loader does on CPU (default on; the 'before' model runs its checkout's code as it is)",
    )


def _rnn_models(name: str, spec: str, args, before_code, after_code, workdir: Path):
    """(before, after) on the same weights, and the source sentences as (ids, mask) batches' raw material:
    a list of token-id lists. A trained folder is loaded by both versions' classes; a random preset is built by
    this tree's code and saved first (the folder format is the same in both versions)."""
    (mod_b, _), (mod_a, conf_a) = before_code, after_code
    _, model_class, config_class = FAMILY_CLASSES[args.family]
    if spec == "random":
        presets = sorted(RNN_PRESETS) if args.family == "rnn" else ["transformer"]
        if name not in presets:
            raise SystemExit(f"--models {name}=random: unknown preset {name!r}; choices: {presets}")
        torch.manual_seed(0)
        if args.family == "rnn":
            dims = dict(
                embedding_size=args.embedding_size, hidden_size=args.hidden_size, vocab_size=args.vocab_size
            )
            config = conf_a.RNNSeq2SeqConfig(**RNN_PRESETS[name], **dims)
        else:
            config = conf_a.TransformerSeq2SeqConfig(
                vocab_size=args.vocab_size,
                d_model=args.d_model,
                encoder_layers=args.layers,
                decoder_layers=args.layers,
                num_attention_heads=args.heads,
                ffn_dim=args.ffn_dim,
                max_position_embeddings=args.max_positions,
                init_std=0.2,  # as the Marian twin: well-separated decisions, so "same tokens" is meaningful
            )
        model = getattr(mod_a, model_class)(config)
        folder = workdir / name
        model.save_pretrained(folder)
        g = torch.Generator().manual_seed(0)
        lengths = torch.randint(args.src_len // 2, args.src_len + 1, (args.sentences,), generator=g)
        sources = [
            torch.randint(3, config.vocab_size, (int(n) - 1,), generator=g).tolist() + [2] for n in lengths
        ]
    else:
        folder = Path(spec)
        if not (folder / "config.json").is_file():
            raise SystemExit(f"--models {name}={spec}: not a model folder (no config.json)")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        lines = read_lines(MULTI30K / f"test_2016_flickr.{args.src_lang}.gz", args.sentences)
        sources = tokenizer(lines)["input_ids"]
    before = getattr(mod_b, model_class).from_pretrained(folder).eval()
    after = _as_loaded(getattr(mod_a, model_class).from_pretrained(folder).eval(), args)
    return before, after, sources, spec == "random"


def _as_loaded(model, args):
    """The 'after' model as the package's inference loader hands it out: with the CPU kernels (issue 24)."""
    if args.after_cpu_kernels == "on":
        from hf_seq2seq.inference.cpu_kernels import optimize_for_cpu_inference

        return optimize_for_cpu_inference(model)
    return model


def _batches(sources: list[list[int]], size: int) -> list[dict]:
    out = []
    for start in range(0, len(sources), size):
        chunk = sources[start : start + size]
        width = max(len(s) for s in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        for row, s in enumerate(chunk):
            ids[row, : len(s)] = torch.tensor(s)
        out.append({"input_ids": ids, "attention_mask": (ids != 0).long()})
    return out


@torch.inference_mode()
def _timed(model, inputs: dict, extra: dict) -> tuple[torch.Tensor, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = model.generate(**inputs, do_sample=False, **extra)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _trim(row: torch.Tensor) -> list[int]:
    ids = row[1:].tolist()  # after decoder_start
    return ids[: ids.index(0)] if 0 in ids else ids


def _rnn_cell(before, after, batches, extra: dict, args) -> dict:
    """Every batch decoded by both versions, in alternating order, ``repeats`` passes; the median pass."""
    for inputs in batches[: max(1, args.warmup)]:
        _timed(before, inputs, extra), _timed(after, inputs, extra)
    passes, same, total, tokens = [], 0, 0, 0
    for rep in range(args.repeats):
        sums = {"before": [0.0, 0.0], "after": [0.0, 0.0]}
        for index, inputs in enumerate(batches):
            order = [("before", before), ("after", after)]
            for side, model in order if (index + rep) % 2 == 0 else order[::-1]:
                out, wall, cpu = _timed(model, inputs, extra)
                sums[side][0] += wall
                sums[side][1] += cpu
                if rep == 0:
                    rows = [_trim(r) for r in out]
                    if side == "before":
                        reference = rows
                    else:
                        after_rows = rows
            if rep == 0:
                same += sum(a == b for a, b in zip(reference, after_rows))
                total += len(after_rows)
                tokens += sum(len(r) for r in after_rows)
        passes.append(sums)
    median = {
        side: [statistics.median(p[side][k] for p in passes) for k in (0, 1)] for side in ("before", "after")
    }
    sentences = sum(len(b["input_ids"]) for b in batches)
    row = {"sentences": sentences, "new_tokens": tokens, "same_tokens": f"{same}/{total}"}
    for side in ("before", "after"):
        row[f"{side}_wall_s"], row[f"{side}_cpu_s"] = median[side]
        row[f"{side}_sent_s"] = sentences / median[side][0]
        row[f"{side}_tok_s"] = tokens / median[side][0]
    row["speedup_wall"] = median["before"][0] / median["after"][0]
    row["speedup_cpu"] = median["before"][1] / median["after"][1]
    row["passes"] = passes
    return row


@torch.inference_mode()
def _per_step(model, steps: int, repeats: int, forward_only: bool = False) -> float:
    """Milliseconds of process CPU time per greedy step at batch 1 (``steps`` tokens forced by min = max): the
    whole ``generate()``, or (``forward_only``) the model's cached one-token forward alone."""
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 2]])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if forward_only:
        encoder_outputs = model.get_encoder()(**inputs)
        token = torch.ones(1, 1, dtype=torch.long)
        out = model(
            encoder_outputs=encoder_outputs, attention_mask=inputs["attention_mask"], decoder_input_ids=token
        )
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        key = "cache" if hasattr(out, "cache") else "past_key_values"

        def run():
            for _ in range(steps):
                model(
                    encoder_outputs=encoder_outputs,
                    attention_mask=inputs["attention_mask"],
                    decoder_input_ids=token,
                    **{key: cache},
                )
    else:
        extra = dict(num_beams=1, max_new_tokens=steps, eos_token_id=None)

        def run():
            model.generate(**inputs, do_sample=False, **extra)

    run()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return 1000 * statistics.median(times) / steps


def _overhead(name: str, before, after, before_code, after_code, args) -> dict:
    """Per-step CPU ms at greedy batch 1: the full model, and a tiny model of the same preset and code
    (embedding and hidden 8, vocabulary 16: arithmetic ~0, what is left is Python and dispatch), whose forward
    alone is timed too; generate()'s own share is the tiny model's step minus its forward."""
    preset = {key: getattr(after.config, key) for key in RNN_PRESETS["lstm_luong"]}  # the model's own layout
    tiny = {}
    for side, (mod, conf) in (("before", before_code), ("after", after_code)):
        torch.manual_seed(0)
        config = conf.RNNSeq2SeqConfig(**preset, embedding_size=8, hidden_size=8, vocab_size=16)
        tiny[side] = mod.RNNSeq2SeqForConditionalGeneration(config).eval()
    tiny["after"] = _as_loaded(tiny["after"], args)
    steps, reps = 32, 5
    row = {}
    for _ in range(2):  # alternate twice; keep the second (warm) round
        row = {
            "full_before_ms": _per_step(before, steps, reps),
            "full_after_ms": _per_step(after, steps, reps),
            "tiny_before_ms": _per_step(tiny["before"], steps, reps),
            "tiny_after_ms": _per_step(tiny["after"], steps, reps),
            "tiny_before_forward_ms": _per_step(tiny["before"], steps, reps, forward_only=True),
            "tiny_after_forward_ms": _per_step(tiny["after"], steps, reps, forward_only=True),
        }
    row["generate_own_ms"] = row["tiny_after_ms"] - row["tiny_after_forward_ms"]
    return row


def _profile(model, inputs: dict, extra: dict, top: int = 10) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        model.generate(**inputs, do_sample=False, **extra)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [
        {
            "op": e.key,
            "calls": e.count,
            "self_ms": e.self_cpu_time_total / 1000,
            "share": e.self_cpu_time_total / total,
        }
        for e in events[:top]
    ]


def _fixed_length(args) -> dict:
    if args.fixed_length == "no_eos":
        return {"max_new_tokens": args.new_tokens, "eos_token_id": None}
    return {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens}


# glibc's mallopt parameters (malloc.h): M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_malloc() -> str:
    """Keep freed memory in glibc's heap: a decoding step allocates and frees tensors of megabytes (the (rows, V)
    logits, the additive score's (rows, S, A) sum); by default glibc mmaps each one or trims the heap after it,
    so every step faults its pages in again (about 5,000 minor faults per bi-GRU beam-5 batch-32 step here)."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    if not ok:
        raise SystemExit("--malloc_tuned: glibc's mallopt refused M_MMAP_THRESHOLD / M_TRIM_THRESHOLD")
    return "mallopt(M_MMAP_THRESHOLD=32 MiB, M_TRIM_THRESHOLD=1 GiB)"


def _joeynmt_model(args):
    """An untrained JoeyNMT bi-GRU + Bahdanau with the preset's dims (embedding E, encoder H/2 per direction,
    decoder H, bridge, input feeding as JoeyNMT's recurrent decoder has it), JoeyNMT's own initialisation; its
    special ids are 0-3 in its own order, which only matters for the (unused) special-token handling."""
    import logging
    import types

    try:
        from joeynmt.model import build_model
        from joeynmt.vocabulary import Vocabulary
    except ImportError as error:
        raise SystemExit(f"--joeynmt: JoeyNMT is not importable ({error}); pip install joeynmt") from error
    logging.getLogger("joeynmt").setLevel(logging.WARNING)
    special = types.SimpleNamespace(
        **dict(unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>", sep_token=None),
        **dict(unk_id=0, pad_id=1, bos_id=2, eos_id=3, sep_id=None, lang_tags=[]),
    )
    vocab = Vocabulary([f"t{i}" for i in range(args.vocab_size - 4)], special)
    rnn = dict(
        type="recurrent",
        rnn_type="gru",
        num_layers=1,
        dropout=0.0,
        embeddings={"embedding_dim": args.embedding_size},
    )
    cfg = {
        "encoder": dict(rnn, hidden_size=args.hidden_size // 2, bidirectional=True),
        "decoder": dict(
            rnn, hidden_size=args.hidden_size, attention="bahdanau", hidden_dropout=0.0, init_hidden="bridge"
        ),
    }
    torch.manual_seed(0)
    return build_model(cfg, vocab, vocab).eval()


@torch.no_grad()
def _joeynmt_decode(model, inputs: dict, beams: int, length: int) -> torch.Tensor:
    """JoeyNMT's own search (``beam_search`` / ``recurrent_greedy``) with ``min_output_length`` = ``length``: exactly
    ``length`` tokens, as ``eos_token_id=None`` gives ours. Its encoder packs sorted batches (its iterator sorts)."""
    from joeynmt.search import beam_search, recurrent_greedy

    mask = inputs["attention_mask"].bool()
    src, src_mask = inputs["input_ids"].masked_fill(~mask, 1), mask.unsqueeze(1)
    encoded, hidden, _, _ = model(
        return_type="encode", src=src, trg_input=None, src_mask=src_mask, src_length=mask.sum(1)
    )
    common = dict(min_output_length=length)
    if beams == 1:
        return recurrent_greedy(src_mask, length, model, encoded, hidden, **common)[0]
    return beam_search(model, beams, encoded, hidden, src_mask, length, alpha=1.0, n_best=1, **common)[0]


def _joeynmt_side_by_side(before, after, args) -> tuple[list[dict], int]:
    """Process CPU seconds for the same sorted random batches (ids >= 4, valid in both vocabularies) decoded by
    JoeyNMT, the 'before' code and this tree at exactly --new_tokens tokens, in rotating order, median of
    --repeats passes. The models do not share weights (JoeyNMT's layout differs), so tokens are not compared."""
    joey = _joeynmt_model(args)
    g = torch.Generator().manual_seed(1)
    rows = []
    for batch in args.batches:
        batches = []
        for _ in range(max(1, args.sentences // batch)):
            lengths = torch.randint(args.src_len // 2, args.src_len + 1, (batch,), generator=g).sort(
                descending=True
            )
            mask = (torch.arange(args.src_len)[None] < lengths.values[:, None]).long()
            ids = torch.randint(4, args.vocab_size, (batch, args.src_len), generator=g).masked_fill(
                mask == 0, 0
            )
            batches.append({"input_ids": ids, "attention_mask": mask})
        for beams in args.beams:
            extra = {"num_beams": beams, "max_new_tokens": args.new_tokens, "eos_token_id": None}
            sides = {
                "joeynmt": partial(_joeynmt_decode, joey, beams=beams, length=args.new_tokens),
                "before": partial(_timed, before, extra=extra),
                "after": partial(_timed, after, extra=extra),
            }
            for run in sides.values():
                run(batches[0])  # warm-up
            times: dict[str, list[float]] = {name: [] for name in sides}
            order = list(sides)
            for rep in range(args.repeats):
                for name in order[rep % 3 :] + order[: rep % 3]:
                    start = time.process_time()
                    for inputs in batches:
                        sides[name](inputs)
                    times[name].append(time.process_time() - start)
            cpu = {name: statistics.median(t) for name, t in times.items()}
            sentences = sum(len(b["input_ids"]) for b in batches)
            row = {
                "mode": "greedy" if beams == 1 else f"beam {beams}",
                "batch": batch,
                "sentences": sentences,
            }
            row.update({f"{name}_cpu_s": value for name, value in cpu.items()})
            row["after_over_joeynmt"] = cpu["joeynmt"] / cpu["after"]
            row["before_over_joeynmt"] = cpu["joeynmt"] / cpu["before"]
            rows.append(row)
            print(f"joeynmt side by side {row['mode']} batch {batch}: {row}", flush=True)
    return rows, sum(p.numel() for p in joey.parameters())


def before_after_main(args, argv: list[str] | None) -> int:
    import tempfile

    if args.family != "rnn" and args.overhead:
        raise SystemExit("--overhead: measured for --family rnn only (its tiny twin is an RNN preset)")
    args.before = args.before or str(ROOT)
    args.models = args.models or DEFAULT_MODELS[args.family]
    malloc = tune_malloc() if args.malloc_tuned else "glibc defaults"
    # the device line (with the load average at start) before anything runs
    meta = environment("cpu", "bench_generate.py", argv)
    family = FAMILY_CLASSES[args.family][0]
    before_code = import_modeling_from(args.before, "_bench_before_hf_seq2seq", family)
    after_code = import_modeling_from(ROOT, "_bench_after_hf_seq2seq", family)
    report = {"models": {}}
    with tempfile.TemporaryDirectory() as workdir:
        for item in args.models:
            name, _, spec = item.partition("=")
            if not spec:
                raise SystemExit(f"--models {item!r}: expected NAME=FOLDER or NAME=random")
            before, after, sources, is_random = _rnn_models(
                name, spec, args, before_code, after_code, Path(workdir)
            )
            entry = {"spec": spec, "parameters": sum(p.numel() for p in after.parameters()), "cells": []}
            for batch in args.batches:
                batches = _batches(sources, batch)
                for beams in args.beams:
                    extra = {"num_beams": beams}
                    if is_random:  # random weights rarely emit </s>: a fixed length instead
                        extra.update(_fixed_length(args))
                    row = {"mode": "greedy" if beams == 1 else f"beam {beams}", "batch": batch}
                    row.update(_rnn_cell(before, after, batches, extra, args))
                    entry["cells"].append(row)
                    print(
                        f"{name:>15} {row['mode']:>7} batch {batch:>3}: before {row['before_sent_s']:7.1f} sent/s "
                        f"after {row['after_sent_s']:7.1f} sent/s  speedup wall {row['speedup_wall']:.2f} "
                        f"cpu {row['speedup_cpu']:.2f}  same tokens {row['same_tokens']}",
                        flush=True,
                    )
                    if args.profile and beams == max(args.beams) and batch == max(args.batches):
                        entry["profile"] = {
                            "cell": f"{row['mode']} batch {batch}, first batch, after",
                            "ops": _profile(after, batches[0], extra),
                        }
            if args.overhead:
                entry["overhead"] = _overhead(name, before, after, before_code, after_code, args)
                print(f"{name:>15} per-step CPU ms (greedy batch 1): {entry['overhead']}", flush=True)
            report["models"][name] = entry
            if args.joeynmt and name == "bigru_bahdanau" and spec == "random":
                report["joeynmt"], report["joeynmt_parameters"] = _joeynmt_side_by_side(before, after, args)
    report["meta"] = meta | {
        "load_average_end": round(load_average()[0], 2),
        "before": str(args.before),
        "malloc": malloc,
        "after_cpu_kernels": args.after_cpu_kernels,
        "fixed_length": args.fixed_length,
    }
    default_out = "bench_generate_rnn" if args.family == "rnn" else "bench_generate_transformer_before_after"
    write_report(args.out or OUT_DIR / default_out, report, render_before_after(report, args))
    return 0


_FIXED_LENGTH = {
    "no_eos": "`eos_token_id=None`: no stop, nothing masked",
    "min_new_tokens": "`min_new_tokens = max_new_tokens`: generate() masks </s> in the scores every step",
}


def render_before_after(report: dict, args) -> list[str]:
    """The Markdown of a before/after report (``--family rnn``, or ``--family transformer --before``)."""
    meta = report["meta"]
    load_end = meta["load_average_end"]
    lines = [
        f"# generate() of the {'RNN' if args.family == 'rnn' else 'Transformer'} family: before / after",
        "",
        f"Produced by `{meta['command']}` (torch {meta['torch']}, transformers {meta['transformers']}, "
        f"{meta['device']}). 'Before' is the code of `{meta['before']}`, 'after' this tree's; both run the same "
        "weights, batch by batch in alternating order. Trained folders decode the first "
        f"{args.sentences} Multi30k test_2016_flickr sentences with their generation config (beam count from the "
        f"cell); random presets decode {args.sentences} random sources of {args.src_len // 2}-{args.src_len} "
        f"tokens, exactly {args.new_tokens} new tokens each ({_FIXED_LENGTH[meta['fixed_length']]}). Median of "
        f"{args.repeats} passes. Speedup = before time / after time, in wall time and in process CPU time (all "
        f"threads; less sensitive to other jobs). Memory allocator: {meta['malloc']}. The 'after' model "
        f"{'has' if meta.get('after_cpu_kernels', 'off') == 'on' else 'does not have'} the package's CPU kernels "
        "applied (`optimize_for_cpu_inference`, what the inference loader does on CPU).",
        "",
    ]
    header = ["model", "mode", "batch", "before sent/s", "after sent/s", "after tok/s", "speedup (wall)"]
    lines += markdown_table(
        [*header, "speedup (CPU)", "same tokens"],
        [
            [name, r["mode"], r["batch"], f"{r['before_sent_s']:.1f}", f"{r['after_sent_s']:.1f}"]
            + [
                f"{r['after_tok_s']:.0f}",
                f"{r['speedup_wall']:.2f}",
                f"{r['speedup_cpu']:.2f}",
                r["same_tokens"],
            ]
            for name, entry in report["models"].items()
            for r in entry["cells"]
        ],
        "llrrrrrrl",
    )
    overheads = {n: e["overhead"] for n, e in report["models"].items() if "overhead" in e}
    if overheads:
        lines += [
            "",
            "Per-step process CPU time at greedy batch 1 (ms): the full model, a tiny model with the same code "
            "(embedding/hidden 8, vocabulary 16: no arithmetic to speak of) and that tiny model's cached "
            "one-token forward alone. generate()'s own work per step = tiny generate − tiny forward.",
            "",
        ]
        keys = [
            "full_before_ms",
            "full_after_ms",
            "tiny_before_ms",
            "tiny_after_ms",
            "tiny_before_forward_ms",
        ]
        keys += ["tiny_after_forward_ms", "generate_own_ms"]
        header = ["model", "full before", "full after", "tiny before", "tiny after", "tiny forward before"]
        lines += markdown_table(
            [*header, "tiny forward after", "generate() own"],
            [[name, *(f"{o[k]:.2f}" for k in keys)] for name, o in overheads.items()],
            "lrrrrrrr",
        )
    for name, entry in report["models"].items():
        if "profile" in entry:
            lines += [
                "",
                f"Top operators, {name}, {entry['profile']['cell']} (torch.profiler, self CPU time):",
                "",
            ]
            lines += markdown_table(
                ["op", "calls", "self ms", "share"],
                [
                    [f"`{op['op']}`", op["calls"], f"{op['self_ms']:.1f}", f"{100 * op['share']:.0f}%"]
                    for op in entry["profile"]["ops"]
                ],
                "lrrr",
            )
    if "joeynmt" in report:
        lines += [
            "",
            "JoeyNMT 2.3 side by side (`--joeynmt`): an untrained JoeyNMT bi-GRU + Bahdanau with the bigru_bahdanau "
            "preset's dims, JoeyNMT's own search with `min_output_length` = max = the new tokens, against the "
            "'before' and this tree's `generate()` with `eos_token_id=None`, on the same sorted random batches; process "
            "CPU time, median of the passes. JoeyNMT's decoder has input feeding and an untied H → V output layer, "
            f"so it has more parameters ({report['joeynmt_parameters']:,} against "
            f"{report['models']['bigru_bahdanau']['parameters']:,}); speed ratio = JoeyNMT time / our time.",
            "",
        ]
        header = ["mode", "batch", "sentences", "JoeyNMT s", "before s", "after s", "after × JoeyNMT"]
        keys = ["joeynmt_cpu_s", "before_cpu_s", "after_cpu_s", "after_over_joeynmt", "before_over_joeynmt"]
        lines += markdown_table(
            [*header, "before × JoeyNMT"],
            [
                [r["mode"], r["batch"], r["sentences"], *(f"{r[k]:.2f}" for k in keys)]
                for r in report["joeynmt"]
            ],
            "lrrrrrrr",
        )
    lines += [
        "",
        f"{meta['threads']} torch threads; 1-minute load average {load_end:.1f} at the end (start: in the device "
        f"line) on {os.cpu_count()} cores. Single-pass times are in the JSON (`passes`).",
    ]
    return lines


def parse_args(argv: list[str] | None = None):
    parser = bench_parser(__doc__, None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    add_generation_args(parser, threads=2, repeats=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--out",
        default=None,
        help="output path without suffix (default docs/benchmarks/bench_generate, or bench_generate_rnn / "
        "bench_generate_transformer_before_after)",
    )
    parser.add_argument("--family", default="transformer", choices=["transformer", "rnn"])
    add_rnn_args(parser)
    args = parser.parse_args(argv)
    args.dtype = getattr(torch, args.dtype)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.family == "rnn" or args.before is not None:
        return before_after_main(args, argv)

    # on CPU the device line has the cores, threads and the load average at start: taken before anything runs
    meta = environment(args.device, "bench_generate.py", argv)
    ours, marian = build_models(args)
    n_params = sum(p.numel() for p in ours.parameters())
    rows = [_twin_cell(ours, marian, batch, beams, args) for batch in args.batches for beams in args.beams]
    meta |= {
        "load_average_end": None if args.device.startswith("cuda") else round(load_average()[0], 2),
        "dtype": str(args.dtype).replace("torch.", ""),
        "attn_implementation": args.attn,
        "parameters": n_params,
        "dims": {
            "vocab_size": args.vocab_size,
            "d_model": args.d_model,
            "layers": args.layers,
            "heads": args.heads,
            "ffn_dim": args.ffn_dim,
            "src_len": args.src_len,
        },
    }
    report = {"meta": meta, "results": rows}
    write_report(args.out or OUT_DIR / "bench_generate", report, render(report, args))
    return 0


def _twin_cell(ours, marian, batch: int, beams: int, args) -> dict:
    """One (batch, beams) cell: warm-up (whose last outputs are the same-tokens check), then ``--repeats`` timed
    ``generate()`` calls per model, ours and Marian alternating."""
    inputs = make_inputs(batch, args)
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
    print(
        f"{row['mode']:>7} batch {batch:>3}: ours {row['ours_tok_s']:9.1f} tok/s  marian "
        f"{row['marian_tok_s']:9.1f} tok/s  ratio {row['ratio']:.3f}  identical output: {same}",
        flush=True,
    )
    return row


def render(report: dict, args) -> list[str]:
    """The Markdown of a Marian-twin report (the default mode)."""
    meta, rows = report["meta"], report["results"]
    n_params = meta["parameters"]
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
        *markdown_table(
            ["mode", "batch", "ours tok/s", "Marian tok/s", "ours / Marian", "same output"],
            [
                [
                    r["mode"],
                    r["batch"],
                    f"{r['ours_tok_s']:.1f}",
                    f"{r['marian_tok_s']:.1f}",
                    f"{r['ratio']:.2f}",
                ]
                + ["yes" if r["identical_output"] else "no"]
                for r in rows
            ],
            "lrrrrl",
        ),
    ]
    if not args.device.startswith("cuda"):
        lines += [
            "",
            f"CPU run with {meta['threads']} torch threads; 1-minute load average {meta['load_average_end']:.1f} at "
            f"the end (start: in the device line above) on {os.cpu_count()} cores. On a shared machine other jobs "
            "may run at the same time: absolute numbers are then noisy, the ratio less so (ours and Marian "
            "alternate under the same load); the single-run times are in the JSON (`*_times_s`).",
        ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())

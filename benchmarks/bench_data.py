"""Benchmark: the data pipeline on corpora of millions of sentence pairs (issue 18, item 2).

For each corpus size (default 1M and 5M pairs) this script

1. builds a parallel corpus at run time in ``--workdir`` (never in the repository): Multi30k de-en training pairs
   recombined — each generated pair is one Multi30k pair, or two joined by a space (30%), drawn with a fixed seed
   — written as ``train.de`` / ``train.en`` line-aligned files;
2. runs the pipeline in a fresh process with an empty ``datasets`` cache (*cold*): read the files
   (:func:`hf_seq2seq.data.load_parallel_data`, written to the Arrow cache), train a BPE tokenizer on a random
   sample of ``--tokenizer_sample`` pairs (train.py's ``build_tokenizer`` with ``--tokenizer_train_samples``: a
   tokenizer needs a sample, not 4.5M pairs), tokenize (:func:`~hf_seq2seq.data.tokenize_parallel`,
   ``datasets.map`` with ``--num_proc`` workers) and produce the first batch as train.py's loop does
   (:func:`~hf_seq2seq.data.example_lengths`, ``training.task.epoch_batches``, ``DataCollatorForSeq2Seq``);
3. runs it again in a fresh process on the same cache (*warm*, the tokenizer loaded from its folder, as a second
   training run or another rank does): reading and tokenizing are cache hits;
4. once, on ``--ddp_size`` pairs: ``accelerate launch --multi_gpu --num_processes 2`` (CPU, gloo) of the same pipeline on an
   empty cache, each step inside ``accelerator.main_process_first()`` (what ``scripts/train.py`` does): rank 0
   reads and tokenizes while rank 1 waits, then rank 1 must find everything cached — the number of Arrow files
   rank 1 writes is recorded (0 = no duplicated work).

Times are wall seconds per step; memory is the peak resident set size of the main process sampled every 20 ms —
``rss`` includes the pages of the memory-mapped Arrow cache it touched, ``anon`` excludes them (what the corpus
costs beyond the cache) — and ``rss+workers`` / ``anon+workers`` add the ``datasets.map`` worker processes (forked:
pages they share copy-on-write with the main process count in each). Targets (issue 18): memory that does not grow
with the corpus beyond the Arrow cache, peak ``anon`` at 5M <= 1.5x at 1M; the warm run's first batch <= 30 s at 5M.

    python benchmarks/bench_data.py                                   # 1M and 5M, ~6 GB in /tmp/bench_data
    python benchmarks/bench_data.py --sizes 20000 --ddp_size 20000 --out /tmp/x   # a quick check
    python benchmarks/bench_data.py --stage report --result X.json --out docs/benchmarks/bench_data   # re-render
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

# the harness imports only the standard library: the workers below measure their own memory
from harness import (
    MULTI30K,
    ROOT,
    bench_parser,
    env_line,
    environment,
    load_average,
    markdown_table,
    write_report,
)

SOURCE, TARGET = "de", "en"
STEPS = ("read", "tokenizer", "tokenize", "first_batch")


# ----------------------------------------------------------------------------------------------------- corpus
def build_corpus(prefix: Path, size: int, data_dir: Path = MULTI30K, seed: int = 0) -> float:
    """Write ``size`` recombined Multi30k pairs to ``prefix.de`` / ``prefix.en``; return the seconds taken."""
    start = time.perf_counter()
    sides = []
    for lang in (SOURCE, TARGET):
        with gzip.open(Path(data_dir) / f"train.{lang}.gz", "rt", encoding="utf-8") as f:
            sides.append([line.rstrip("\n") for line in f])
    pairs = list(zip(*sides))
    rng = random.Random(seed)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{prefix}.{SOURCE}", "w", encoding="utf-8") as fs, open(f"{prefix}.{TARGET}", "w") as ft:
        for _ in range(size):
            first = rng.choice(pairs)
            if rng.random() < 0.3:
                second = rng.choice(pairs)
                first = (f"{first[0]} {second[0]}", f"{first[1]} {second[1]}")
            fs.write(first[0] + "\n")
            ft.write(first[1] + "\n")
    return time.perf_counter() - start


# ----------------------------------------------------------------------------------------------------- memory
class Memory:
    """Peaks of the main process's RSS and anonymous RSS, and of both summed with the worker processes' (20 ms
    samples). Anonymous = resident minus file-backed pages: what is not the memory-mapped Arrow cache."""

    def __init__(self):
        import psutil

        self.proc = psutil.Process()
        self.peak = {"rss": 0, "anon": 0, "rss+workers": 0, "anon+workers": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        rss = self.proc.memory_info().rss
        anon = _anon_rss()
        total, total_anon = rss, anon
        for child in self.proc.children(recursive=True):
            try:
                info = child.memory_info()
            except Exception:  # a worker that just exited
                continue
            total += info.rss
            total_anon += info.rss - info.shared  # psutil's "shared" = resident file-backed and shmem pages
        values = (("rss", rss), ("anon", anon), ("rss+workers", total), ("anon+workers", total_anon))
        for key, value in values:
            self.peak[key] = max(self.peak[key], value)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.02)

    def start(self):
        self._thread.start()
        return self

    def snapshot(self) -> dict:
        self.sample()
        return {k: round(v / 2**20) for k, v in self.peak.items()}

    def stop(self):
        self._stop.set()
        self._thread.join()


def _anon_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


# ----------------------------------------------------------------------------------------------------- pipeline
def _train_tokenizer(ds, args):
    """train.py's tokenizer step (``training.task.build_tokenizer``): BPE on ``--tokenizer_sample`` pairs drawn
    with seed 0 (``--tokenizer_train_samples``)."""
    from hf_seq2seq.training import DataArguments, ModelArguments, build_tokenizer

    data_args = DataArguments(
        train_prefix=args.corpus,
        validation_prefix=args.corpus,
        source_lang=SOURCE,
        target_lang=TARGET,
        vocab_size=args.vocab_size,
        tokenizer_train_samples=args.tokenizer_sample,
    )
    return build_tokenizer({"train": ds}, SOURCE, TARGET, data_args, ModelArguments(), seed=0)


def pipeline(args, accelerator=None) -> dict:
    """Read → tokenizer → tokenize → first batch; each step's seconds and the memory peaks after it."""
    import contextlib

    import torch
    from datasets import DatasetDict
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq

    from hf_seq2seq.data import example_lengths, load_parallel_data, tokenize_parallel
    from hf_seq2seq.training.loop import IndexLists
    from hf_seq2seq.training.task import epoch_batches

    first = accelerator.main_process_first if accelerator is not None else contextlib.nullcontext
    is_main = accelerator is None or accelerator.is_main_process
    mem, steps, start = Memory().start(), {}, time.perf_counter()

    def mark(name, t0):
        steps[name] = {"s": round(time.perf_counter() - t0, 2), "mem_mib": mem.snapshot()}
        return time.perf_counter()

    t = time.perf_counter()
    with first():
        ds = load_parallel_data(SOURCE, TARGET, train_prefix=args.corpus, cache_dir=args.cache)["train"]
    t = mark("read", t)
    with first():
        tok_dir = Path(args.tokenizer_dir)
        if args.train_tokenizer and is_main:
            tokenizer = _train_tokenizer(ds, args)
            tokenizer.save_pretrained(tok_dir)
        else:
            tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    t = mark("tokenizer", t)
    with first():  # the other ranks enter after rank 0 has left: what they write here is duplicated work
        before = _arrow_files(args.cache)
        tok = tokenize_parallel(DatasetDict({"train": ds}), tokenizer, SOURCE, TARGET, num_proc=args.num_proc)
        tok = tok["train"]
        written = len(_arrow_files(args.cache) - before)
    t = mark("tokenize", t)
    # what train.py's loop holds: two int32 length arrays and the epoch's batches as int32 index arrays
    lengths, label_lengths = example_lengths(tok)
    batches = epoch_batches(lengths, args.max_tokens, seed=0, epoch=0)
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
    loader = torch.utils.data.DataLoader(
        tok.remove_columns("length"), batch_sampler=IndexLists(batches), collate_fn=collator
    )
    batch = next(iter(loader))
    mark("first_batch", t)
    mem.stop()
    return {
        "pairs": len(ds),
        "kept": len(tok),
        "batches": len(batches),
        "first_batch_shape": list(batch["input_ids"].shape),
        "steps": steps,
        "to_first_batch_s": round(time.perf_counter() - start, 2),
        "peak_mib": mem.snapshot(),
        "arrow_files_written_by_this_rank": written,
        "load_average": load_average()[0],
    }


def _arrow_files(cache: str) -> set[str]:
    return {str(p) for p in Path(cache).rglob("*.arrow")}


# ----------------------------------------------------------------------------------------------------- driver
def _worker_argv(args, corpus: Path, cache: Path, tok_dir: Path, train_tok: bool) -> list[str]:
    argv = [
        "--corpus", str(corpus), "--cache", str(cache), "--tokenizer_dir", str(tok_dir),
        "--num_proc", str(args.num_proc), "--tokenizer_sample", str(args.tokenizer_sample),
        "--vocab_size", str(args.vocab_size), "--max_tokens", str(args.max_tokens),
    ]  # fmt: skip
    return argv + (["--train_tokenizer"] if train_tok else [])


def _run_worker(argv: list[str], result: Path, launcher: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    env["ACCELERATE_USE_CPU"] = "1"  # accelerate launch --multi_gpu on CPU: gloo processes, as the tests do
    start = time.perf_counter()
    cmd = [*launcher, str(Path(__file__).resolve()), "--stage", "worker", "--result", str(result), *argv]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    ranks = [json.loads(p.read_text()) for p in sorted(result.parent.glob(result.name + "*"))]
    return {"process_wall_s": round(time.perf_counter() - start, 2), "ranks": ranks}


def bench_size(args, size: int) -> dict:
    work = Path(args.workdir) / str(size)
    corpus = work / "train"
    out = {"pairs": size, "build_corpus_s": round(build_corpus(corpus, size, args.data_dir), 2)}
    out["corpus_mib"] = round(sum(Path(f"{corpus}.{x}").stat().st_size for x in (SOURCE, TARGET)) / 2**20)
    cache, tok_dir = work / "cache", work / "tokenizer"
    python = [sys.executable]
    for name, train_tok in (("cold", True), ("warm", False)):
        print(f"[{size}] {name} run ...", flush=True)
        out[name] = _run_worker(_worker_argv(args, corpus, cache, tok_dir, train_tok), work / name, python)
        print(json.dumps(out[name]), flush=True)
    out["cache_mib"] = round(sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2**20)
    if not args.keep:
        shutil.rmtree(work)
    return out


def bench_processes(args) -> dict:
    """``--processes`` ranks on an empty cache, each pipeline step inside ``main_process_first``."""
    import socket

    work = Path(args.workdir) / f"ddp_{args.ddp_size}"
    corpus = work / "train"
    build_corpus(corpus, args.ddp_size, args.data_dir)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
        str(args.processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(port),
    ]  # fmt: skip
    print(f"[{args.ddp_size}] {args.processes} processes, empty cache ...", flush=True)
    argv = _worker_argv(args, corpus, work / "cache", work / "tokenizer", True)
    out = {"pairs": args.ddp_size, **_run_worker(argv, work / "ddp", launcher)}
    print(json.dumps(out), flush=True)
    if not args.keep:
        shutil.rmtree(work)
    return out


def worker_main(args) -> None:
    accelerator = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import Accelerator

        accelerator = Accelerator()
    result = pipeline(args, accelerator)
    rank = accelerator.process_index if accelerator is not None else 0
    result["rank"] = rank
    Path(f"{args.result}.rank{rank}").write_text(json.dumps(result))
    if accelerator is not None:
        accelerator.wait_for_everyone()


# ----------------------------------------------------------------------------------------------------- report
def _row(size: int, name: str, r: dict) -> list:
    s, peak = r["steps"], r["peak_mib"]
    return [
        f"{size:,}",
        name,
        *(s[k]["s"] for k in STEPS),
        r["to_first_batch_s"],
        peak["rss"],
        peak["anon"],
    ] + [
        peak["rss+workers"],
        peak.get("anon+workers", ""),
        f"{r['load_average']:.1f}",
    ]


def _phase_rows(report: dict) -> list[str]:
    """The main process's anonymous-memory peak so far after each step: where the memory goes."""
    lines = [
        "Peak anonymous memory (MiB) of the main process after each step (the peak so far; the first row of a",
        "size is its cold run):",
        "",
    ]
    rows = [
        [f"{r['pairs']:,}", name, *(r[name]["ranks"][0]["steps"][k]["mem_mib"]["anon"] for k in STEPS)]
        for r in report["sizes"]
        for name in ("cold", "warm")
    ]
    return lines + markdown_table(
        ["pairs", "run", "read", "tokenizer", "tokenize", "first batch"], rows, "l" * 6
    )


def write_outputs(report: dict, path: Path) -> None:
    write_report(path, report, render(report))


def render(report: dict) -> list[str]:
    lines = [
        "# Data pipeline at scale (bench_data.py)",
        "",
        env_line(report["meta"]),
        "",
        "Seconds per step and peak memory (MiB) of the main process; `anon` excludes the memory-mapped Arrow "
        "cache (file-backed pages), `+workers` adds the `datasets.map` processes. Cold: empty cache; warm: a "
        "second run on it. The "
        "rows of rank 1 of the multi-process run include its wait for rank 0 (`main_process_first`). load: the "
        "1-minute load average of the machine when the run ended.",
        "",
    ]
    rows = [_row(r["pairs"], name, r[name]["ranks"][0]) for r in report["sizes"] for name in ("cold", "warm")]
    ddp = report.get("ddp", {"ranks": []})
    rows += [
        _row(ddp["pairs"], f"{len(ddp['ranks'])} proc, rank {rank['rank']}", rank) for rank in ddp["ranks"]
    ]
    header = [
        "pairs",
        "run",
        "read",
        "tokenizer",
        "tokenize",
        "first batch",
        "total",
        "peak RSS",
        "peak anon",
    ]
    header += ["RSS+workers", "anon+workers", "load"]
    lines += markdown_table(header, rows, "l" * 12)
    return [*lines, "", *_phase_rows(report), "", *_target_lines(report)]


def _target_lines(report: dict) -> list[str]:
    sizes = {r["pairs"]: r for r in report["sizes"]}
    out = ["## Targets", ""]
    for r in report["sizes"]:
        warm = r["warm"]
        out.append(
            f"- {r['pairs']:,} pairs: corpus {r['corpus_mib']} MiB, Arrow cache {r['cache_mib']} MiB; warm run "
            f"{warm['ranks'][0]['to_first_batch_s']} s to the first batch ({warm['process_wall_s']} s with the "
            "process start and imports)"
        )
    for rank in report.get("ddp", {}).get("ranks", []):
        if rank["rank"] != 0:
            out.append(
                f"- {len(report['ddp']['ranks'])} processes ({report['ddp']['pairs']:,} pairs, empty cache): rank "
                f"{rank['rank']} wrote {rank['arrow_files_written_by_this_rank']} Arrow files while reading and "
                "tokenizing (0 = it waited for rank 0 and read its cache: no duplicated work)"
            )
    if len(sizes) >= 2:
        small, large = min(sizes), max(sizes)
        for key in ("anon", "anon+workers", "rss", "rss+workers"):
            a = sizes[small]["cold"]["ranks"][0]["peak_mib"].get(key)
            b = sizes[large]["cold"]["ranks"][0]["peak_mib"].get(key)
            if not a or not b:
                continue
            what = (
                "target <= 1.5: memory beyond the Arrow cache"
                if key == "anon"
                else "includes the memory-mapped cache pages touched"
                if key.startswith("rss")
                else "with the map workers"
            )
            out.append(
                f"- peak {key} (cold) at {large:,} / at {small:,}: {b} / {a} MiB = {b / a:.2f} ({what})"
            )
    return out


def environment_meta(argv) -> dict:
    return environment("cpu", "bench_data.py", argv, load_average_start=load_average())


def parse_args(argv):
    p = bench_parser(__doc__, "bench_data")
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    p.add_argument("--workdir", default="/tmp/bench_data", help="corpus and cache (deleted afterwards)")
    p.add_argument("--keep", action="store_true", help="keep --workdir")
    p.add_argument("--data_dir", default=str(MULTI30K), help="Multi30k folder (train.de.gz, train.en.gz)")
    p.add_argument("--num_proc", type=int, default=2, help="datasets.map worker processes")
    p.add_argument("--tokenizer_sample", type=int, default=200_000, help="pairs the tokenizer is trained on")
    p.add_argument("--vocab_size", type=int, default=8000)
    p.add_argument("--max_tokens", type=int, default=4096)
    p.add_argument("--processes", type=int, default=2, help="the main_process_first check (1 = skip)")
    p.add_argument("--ddp_size", type=int, default=200_000, help="corpus size of the --processes check")
    # worker options (--stage worker)
    p.add_argument(
        "--stage",
        default="driver",
        choices=["driver", "worker", "report"],
        help="report: rewrite --out's Markdown from the JSON given as --result",
    )
    p.add_argument("--result")
    p.add_argument("--corpus")
    p.add_argument("--cache")
    p.add_argument("--tokenizer_dir")
    p.add_argument("--train_tokenizer", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stage == "worker":
        worker_main(args)
        return 0
    if args.stage == "report":
        write_outputs(json.loads(Path(args.result).read_text()), Path(args.out))
        return 0
    meta = environment_meta(argv)
    report = {"meta": meta, "sizes": []}
    if args.processes > 1:
        report["ddp"] = bench_processes(args)
    for size in args.sizes:
        report["sizes"].append(bench_size(args, size))
        write_outputs(report, Path(args.out))  # after each size: a long run leaves its partial table
    report["meta"]["load_average_end"] = load_average()
    write_outputs(report, Path(args.out))
    print(Path(args.out).with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

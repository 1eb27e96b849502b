#!/usr/bin/env python
"""Load check: ``hf-seq2seq translate`` over many lines with beam search, in a child process whose memory is
sampled while it runs.

    python benchmarks/bench_translate_load.py                      # 10,000 lines, beam 5 → docs/benchmarks/reliability_load.{json,md}
    python benchmarks/bench_translate_load.py --lines 500 --out /tmp/load

The model is a tiny Bahdanau GRU (untrained: every hypothesis runs to --max_new_tokens, the worst case for the
decoder) with a BPE tokenizer trained on the embedded ``numbers`` task, whose German sentences are the input;
every 50th input line is empty. Reported: wall time, peak RSS of the translate process (``ru_maxrss``) and RSS
samples at each tenth of the run (flat = bounded), output line count, whether empty lines stayed empty, and
whether the tqdm progress bar was drawn (the child's stderr is a pseudo-terminal, as a user's is: off a terminal
translate draws no bar). Numbers, not assertions (tests/training/test_reliability.py runs a 500-line
version and asserts).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from harness import (
    ROOT,
    bench_parser,
    env_line,
    environment,
    load_average,
    markdown_table,
    terminal_stderr,
    write_report,
)


def build_folder(path: Path) -> Path:
    import torch

    from hf_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration, train_tokenizer
    from hf_seq2seq.hub import save_model_folder
    from hf_seq2seq.tasks import make_task

    pairs = [row["translation"] for row in make_task("numbers", 2000, seed=0)]
    tokenizer = train_tokenizer([p["de"] for p in pairs] + [p["en"] for p in pairs], vocab_size=200)
    torch.manual_seed(0)
    config = RNNSeq2SeqConfig(
        vocab_size=len(tokenizer), embedding_size=32, hidden_size=32, attention="bahdanau", dropout=0.0
    )
    return save_model_folder(RNNSeq2SeqForConditionalGeneration(config), tokenizer, path)


def input_lines(n: int) -> list[str]:
    from hf_seq2seq.tasks import make_task

    rows = make_task("numbers", n, seed=1)
    return ["" if i % 50 == 49 else row["translation"]["de"] for i, row in enumerate(rows)]


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.split("\n\n")[0].replace("\n", " "), "reliability_load")
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--num_beams", type=int, default=5)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--workdir", default=None, help="where the model folder and files go (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    meta = environment("cpu", "bench_translate_load.py", argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_translate_load_"))
    folder = build_folder(work / "model")
    lines = input_lines(args.lines)
    src, out = work / "input.txt", work / "output.txt"
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    cmd = [
        sys.executable, "-m", "hf_seq2seq.cli", "translate", "--model", str(folder), "--input", str(src),
        "--output", str(out), "--num_beams", str(args.num_beams), "--max_new_tokens", str(args.max_new_tokens),
        "--batch_size", str(args.batch_size), "--device", "cpu",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    samples: list[tuple[float, float]] = []
    with terminal_stderr() as (terminal, written):
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=terminal, text=True)

        def sample() -> None:
            p = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:
                    rss = p.memory_info().rss / 2**20
                    if rss > 0:  # 0 once the process has exited (a zombie)
                        samples.append((time.perf_counter() - start, rss))
                except psutil.Error:
                    break
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        proc.communicate()
        wall = time.perf_counter() - start
        sampler.join()
    stderr = b"".join(written).decode("utf-8", errors="replace")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB, the largest child
    translations = out.read_text(encoding="utf-8").split("\n")[:-1] if out.exists() else []
    empty_in = [i for i, line in enumerate(lines) if not line.strip()]
    tenths = [samples[min(len(samples) - 1, round(k * (len(samples) - 1) / 10))][1] for k in range(11)]
    result = {
        "command": " ".join(cmd[1:]).replace(str(work), "WORKDIR"),
        "input_lines": len(lines),
        "empty_input_lines": len(empty_in),
        "num_beams": args.num_beams,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "lines_per_s": round(len(lines) / wall, 1),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "rss_mib_at_each_tenth": [round(x, 1) for x in tenths] if samples else [],
        "output_lines": len(translations),
        "empty_lines_kept": bool(translations)
        and all(translations[i] == "" for i in empty_in)
        and all(translations[i] for i in range(len(lines)) if i not in set(empty_in)),
        "progress_bar_seen": "line/s" in stderr or "it/s" in stderr or "100%" in stderr,
        "model": "untrained tiny Bahdanau GRU (embedding 32, hidden 32), BPE vocabulary 200",
        "load_after": round(load_average()[0], 2),
        "meta": meta,
    }
    if proc.returncode != 0:
        result["stderr_tail"] = stderr[-2000:]
    keys = ["input_lines", "wall_s", "lines_per_s", "peak_rss_mib", "output_lines", "empty_lines_kept",
            "progress_bar_seen", "exit_code"]  # fmt: skip
    markdown = [
        "# Load: `hf-seq2seq translate` over many lines",
        "",
        env_line(meta),
        "",
        f"{result['model']}; beam {args.num_beams}, at most {args.max_new_tokens} new tokens, batch size "
        f"{args.batch_size}; RSS (MiB) at each tenth of the run: {result['rss_mib_at_each_tenth']}; load after: "
        f"{result['load_after']}.",
        "",
        *markdown_table(keys, [[result[k] for k in keys]], "rrrrrlll"),
    ]
    write_report(args.out, result, markdown)
    print(json.dumps({k: result[k] for k in keys}, indent=2))
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark harness: what every ``benchmarks/bench_*.py`` shares, in one place.

- **Arguments**: :func:`bench_parser` (the description from the script's docstring, ``--out`` = a path without
  suffix under ``docs/benchmarks/``, ``--threads``), :func:`add_generation_args` (the Marian twin's dims and the
  generation workload).
- **Environment and load**: :func:`environment` (date, command, torch / transformers / Python versions, device with
  the load average at start, threads) and :func:`load_average`; :func:`env_line` says it in one Markdown line.
- **Child processes**: :func:`terminal_stderr` gives a child's stderr a pseudo-terminal, as a user's terminal is.
- **Outputs**: :func:`write_report` writes ``OUT.json`` (the report) and ``OUT.md`` (the Markdown) side by side;
  :func:`markdown_table` builds the tables.
- **Models, data, timing**: the Marian twin — ``transformers.MarianMTModel`` with the same vocabulary, d_model,
  layers, heads, FFN width, post-norm, sinusoidal positions, sqrt(d_model) embedding scaling and tied embeddings as
  our ``TransformerSeq2SeqForConditionalGeneration``; :func:`copy_marian_weights` copies Marian's weights into ours
  (Q/K/V concatenated into our fused projections, Marian's [sin | cos] position table into our buffer) so both
  compute the same function, which the benchmarks check before timing anything —, Multi30k / generated batches,
  timed ``generate()``, peak memory.

Importing this module is cheap (the standard library only: torch and transformers are imported by the functions
that use them), so a benchmark's worker processes that measure their own memory can use it. A benchmark is run as
``python benchmarks/bench_NAME.py`` and imports ``from harness import ...`` (this folder is the script's
``sys.path[0]``; the tests put it on ``sys.path``); the harness makes the package importable from a checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gzip
import json
import math
import os
import platform
import shlex
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import MarianConfig, MarianMTModel

    from hf_seq2seq.models.configuration_transformer_seq2seq import TransformerSeq2SeqConfig
    from hf_seq2seq.models.modeling_transformer_seq2seq import TransformerSeq2SeqForConditionalGeneration

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
OUT_DIR = ROOT / "docs" / "benchmarks"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"
SPECIAL_IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)

# d_model, layers (encoder = decoder), heads, ffn: "small" = our default Multi30k model, "base" = transformer-base
PRESETS = {
    "tiny": dict(d_model=128, layers=2, heads=4, ffn_dim=512),
    "small": dict(d_model=256, layers=3, heads=4, ffn_dim=1024),
    "base": dict(d_model=512, layers=6, heads=8, ffn_dim=2048),
}


@dataclass
class Dims:
    vocab_size: int = 8000
    d_model: int = 256
    layers: int = 3
    heads: int = 4
    ffn_dim: int = 1024
    max_positions: int = 256
    dropout: float = 0.1


# ------------------------------------------------------------------------------------------- the Marian twin
def marian_config(d: Dims, attn: str = "sdpa") -> MarianConfig:
    from transformers import MarianConfig

    return MarianConfig(
        vocab_size=d.vocab_size,
        d_model=d.d_model,
        encoder_layers=d.layers,
        decoder_layers=d.layers,
        encoder_attention_heads=d.heads,
        decoder_attention_heads=d.heads,
        encoder_ffn_dim=d.ffn_dim,
        decoder_ffn_dim=d.ffn_dim,
        activation_function="relu",
        dropout=d.dropout,
        attention_dropout=0.0,
        activation_dropout=0.0,
        scale_embedding=True,
        max_position_embeddings=d.max_positions,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        forced_eos_token_id=None,
        attn_implementation=attn,
        **SPECIAL_IDS,
    )


def ours_config(d: Dims, attn: str = "sdpa") -> TransformerSeq2SeqConfig:
    from hf_seq2seq.models.configuration_transformer_seq2seq import TransformerSeq2SeqConfig

    return TransformerSeq2SeqConfig(
        vocab_size=d.vocab_size,
        d_model=d.d_model,
        encoder_layers=d.layers,
        decoder_layers=d.layers,
        num_attention_heads=d.heads,
        ffn_dim=d.ffn_dim,
        dropout=d.dropout,
        attention_dropout=0.0,
        activation_dropout=0.0,
        activation_function="relu",
        norm_style="post",
        position_embedding="sinusoidal",
        scale_embedding=True,
        max_position_embeddings=d.max_positions,
        tie_word_embeddings=True,
        attn_implementation=attn,
        **SPECIAL_IDS,
    )


def copy_marian_weights(marian: MarianMTModel, ours: TransformerSeq2SeqForConditionalGeneration) -> None:
    """Make ``ours`` compute what ``marian`` computes (fused Q/K/V and K/V, the same position table)."""
    import torch

    with torch.no_grad():
        _copy_marian_weights(marian, ours)


def _copy_marian_weights(marian, ours) -> None:
    import torch

    src, dst = marian.model, ours.model
    dst.encoder.embed_tokens.weight.copy_(src.shared.weight)
    dst.encoder.embed_positions.table.copy_(src.encoder.embed_positions.weight)
    dst.decoder.embed_positions.table.copy_(src.decoder.embed_positions.weight)

    def fuse(linear, parts):
        linear.weight.copy_(torch.cat([p.weight for p in parts]))
        linear.bias.copy_(torch.cat([p.bias for p in parts]))

    def copy(d, s):
        d.load_state_dict(s.state_dict())

    for s, d in zip(src.encoder.layers, dst.encoder.layers):
        fuse(d.self_attn.qkv_proj, [s.self_attn.q_proj, s.self_attn.k_proj, s.self_attn.v_proj])
        copy(d.self_attn.out_proj, s.self_attn.out_proj)
        copy(d.self_attn_norm, s.self_attn_layer_norm)
        copy(d.ffn.fc1, s.fc1), copy(d.ffn.fc2, s.fc2), copy(d.ffn_norm, s.final_layer_norm)
    for s, d in zip(src.decoder.layers, dst.decoder.layers):
        fuse(d.self_attn.qkv_proj, [s.self_attn.q_proj, s.self_attn.k_proj, s.self_attn.v_proj])
        copy(d.self_attn.out_proj, s.self_attn.out_proj)
        copy(d.self_attn_norm, s.self_attn_layer_norm)
        copy(d.cross_attn.q_proj, s.encoder_attn.q_proj)
        fuse(d.cross_attn.kv_proj, [s.encoder_attn.k_proj, s.encoder_attn.v_proj])
        copy(d.cross_attn.out_proj, s.encoder_attn.out_proj)
        copy(d.cross_attn_norm, s.encoder_attn_layer_norm)
        copy(d.ffn.fc1, s.fc1), copy(d.ffn.fc2, s.fc2), copy(d.ffn_norm, s.final_layer_norm)


def build_twins(
    d: Dims, attn: str = "sdpa", init_std: float | None = None, seed: int = 0
) -> tuple[TransformerSeq2SeqForConditionalGeneration, MarianMTModel]:
    """(ours, marian) on CPU in float32 with identical weights. ``init_std`` re-draws Marian's matrices from
    N(0, init_std) first (a large value gives well-separated logits for generation benchmarks)."""
    import torch
    from transformers import MarianMTModel

    from hf_seq2seq.models.modeling_transformer_seq2seq import TransformerSeq2SeqForConditionalGeneration

    torch.manual_seed(seed)
    marian = MarianMTModel(marian_config(d, attn))
    if init_std is not None:
        with torch.no_grad():
            for name, p in marian.named_parameters():
                # The sinusoidal position tables stay as they are: re-drawn, they would no longer be sinusoidal,
                # and a reloaded copy (save_pretrained -> from_pretrained, e.g. the CTranslate2 converter)
                # would rebuild the sinusoids and compute a different function.
                if p.dim() > 1 and "embed_positions" not in name:
                    p.normal_(0.0, init_std)
    ours = TransformerSeq2SeqForConditionalGeneration(ours_config(d, attn))
    copy_marian_weights(marian, ours)
    return ours, marian


# ------------------------------------------------------------------------------------------------------ data
def read_lines(path: Path, n: int) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            out.append(line.rstrip("\n"))
            if len(out) >= n:
                break
    return out


def multi30k_batches(
    n_lines: int, vocab_size: int, max_tokens: int, src: str = "de", tgt: str = "en", seed: int = 0
) -> tuple[list[dict], object]:
    """Token-budget batches (``TokenBatchSampler``, ``DataCollatorForSeq2Seq``) of the first ``n_lines`` Multi30k
    train pairs, with a joint BPE tokenizer trained by ``train_tokenizer`` on the same slice.

    Returns (batches of CPU tensors: input_ids, attention_mask, labels, decoder_input_ids; tokenizer)."""
    from transformers import DataCollatorForSeq2Seq

    from hf_seq2seq.data import TokenBatchSampler
    from hf_seq2seq.models.modeling_transformer_seq2seq import shift_tokens_right
    from hf_seq2seq.tokenization import train_tokenizer

    src_lines = read_lines(MULTI30K / f"train.{src}.gz", n_lines)
    tgt_lines = read_lines(MULTI30K / f"train.{tgt}.gz", n_lines)
    tokenizer = train_tokenizer(src_lines + tgt_lines, vocab_size=vocab_size)
    src_ids = tokenizer(src_lines)["input_ids"]
    tgt_ids = tokenizer(tgt_lines)["input_ids"]
    features = [{"input_ids": s, "labels": t} for s, t in zip(src_ids, tgt_ids)]
    lengths = [max(len(s), len(t)) for s, t in zip(src_ids, tgt_ids)]
    sampler = TokenBatchSampler(lengths, max_tokens, shuffle=True, seed=seed)
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, return_tensors="pt")
    batches = []
    for idx in sampler:
        batch = dict(collator([features[i] for i in idx]))
        batch["decoder_input_ids"] = shift_tokens_right(batch["labels"], 0, 1)
        batches.append(batch)
    return batches, tokenizer


def random_batch(batch: int, src_len: int, tgt_len: int, vocab_size: int, seed: int = 0) -> dict:
    """A generated batch without padding: every sentence exactly ``src_len`` / ``tgt_len`` tokens ending in </s>."""
    import torch

    from hf_seq2seq.models.modeling_transformer_seq2seq import shift_tokens_right

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (batch, src_len), generator=g)
    labels = torch.randint(3, vocab_size, (batch, tgt_len), generator=g)
    ids[:, -1] = 2
    labels[:, -1] = 2
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": labels,
        "decoder_input_ids": shift_tokens_right(labels, 0, 1),
    }


def to_device(batch: dict, device: str) -> dict:
    import torch

    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def target_tokens(batch: dict) -> int:
    return int((batch["labels"] != -100).sum())


# ------------------------------------------------------------------------------- code from another checkout
def import_modeling_from(checkout: Path | str, alias: str, family: str = "rnn_seq2seq"):
    """``(modeling, configuration)`` modules of ``checkout``'s ``hf_seq2seq/models`` imported under the package name
    ``alias``, beside this tree's: a before/after benchmark runs both versions in one process, on the same
    weights and under the same load. The modeling files import only their flat siblings (they ship as Hub remote
    code), so an empty package object with the checkout's folder as its path is enough; the package's
    ``__init__`` (registrations with the Auto classes) is not run."""
    import importlib
    import types

    folder = Path(checkout) / "hf_seq2seq" / "models"  # before issue 24 the files sat in hf_seq2seq/ itself
    if not folder.is_dir():
        folder = folder.parent
    if not (folder / f"modeling_{family}.py").is_file():
        raise FileNotFoundError(f"--before {checkout}: no hf_seq2seq/models/modeling_{family}.py there")
    package = types.ModuleType(alias)
    package.__path__ = [str(folder)]
    sys.modules[alias] = package
    return (
        importlib.import_module(f"{alias}.modeling_{family}"),
        importlib.import_module(f"{alias}.configuration_{family}"),
    )


# ---------------------------------------------------------------------------------------- timing and memory
def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def autocast(device: str, dtype: str):
    """bf16 = autocast (fp32 master weights and optimizer state, bf16 matmuls); fp32 = a no-op context."""
    import torch

    if dtype == "bf16":
        return torch.autocast(
            device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16
        )
    return torch.autocast(device_type="cpu", enabled=False)


def train_step(model, optimizer, batch: dict, device: str, dtype: str) -> float:
    with autocast(device, dtype):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


class RSSPeak:
    """Peak resident set size (psutil, sampled every ``interval`` s in a thread) while the block runs — the CPU
    stand-in for ``torch.cuda.max_memory_allocated`` (glibc returns large freed blocks to the OS, so RSS tracks
    the tensors alive). ``peak`` and ``before`` in bytes."""

    def __init__(self, interval: float = 0.002):
        import psutil

        self.proc = psutil.Process(os.getpid())
        self.interval = interval
        self.peak = self.before = 0

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self.before = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


# ----------------------------------------------------------------------------------------------- environment
def load_average() -> tuple[float, float, float]:
    """The machine's 1, 5 and 15-minute load averages (NaN where the platform has none): recorded at a run's start
    and end, because the CPU figures come from a shared machine."""
    try:
        return os.getloadavg()
    except OSError:
        return (math.nan, math.nan, math.nan)


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name()})"
    return (
        f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, load average {load_average()[0]:.1f} at start)"
    )


def public_arg(arg: str) -> str:
    """A command-line argument as a report shows it: an absolute path (alone or as ``NAME=PATH``) relative to the
    project root, so the command runs from a clone and names no folder of the machine it ran on."""
    name, sep, value = ("", "", arg)
    if "=" in arg:  # --option=PATH or NAME=PATH
        name, sep, value = arg.partition("=") if arg.startswith("-") else arg.rpartition("=")
    if not os.path.isabs(value):
        return arg
    return f"{name}{sep}{os.path.relpath(value, ROOT)}"


def command_line(script: str, argv: list[str] | None) -> str:
    """How the benchmark was run, as a user would type it from the project root: ``python benchmarks/SCRIPT ARGS``
    (absolute paths shown relative to the root: `public_arg`)."""
    args = sys.argv[1:] if argv is None else argv
    return (
        f"python benchmarks/{script} {shlex.join(map(public_arg, args))}".strip()
    )  # quoted as a shell needs


def environment(device: str, script: str, argv: list[str] | None, **extra) -> dict:
    """The ``meta`` block every report carries: date, command, versions, device (with the load at start)."""
    import torch
    import transformers

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(script, argv),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        **extra,
    }


def env_line(meta: dict) -> str:
    return (
        f"Produced by `{meta['command']}` on {meta['date']} — torch {meta['torch']}, transformers "
        f"{meta['transformers']}, Python {meta['python']}, {meta['device']}."
    )


def dims_dict(d: Dims) -> dict:
    return asdict(d)


# --------------------------------------------------------------------------------------------------- outputs
def bench_parser(
    doc: str | None,
    name: str | None,
    *,
    threads: int | None = None,
    threads_help: str = "torch CPU threads",
    out_help: str = "output path without suffix",
) -> argparse.ArgumentParser:
    """A benchmark's parser: its description is the first line of ``doc`` (the script's docstring), ``--out``
    defaults to ``docs/benchmarks/NAME`` (none when ``name`` is None) and, with ``threads``, ``--threads``
    defaults to it."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    if threads is not None:
        parser.add_argument("--threads", type=int, default=threads, help=threads_help)
    if name is not None:
        parser.add_argument("--out", default=str(OUT_DIR / name), help=out_help)
    return parser


@contextlib.contextmanager
def terminal_stderr(columns: int = 100):
    """A pseudo-terminal to pass as a child's ``stderr`` (a file descriptor), so that the child behaves as under a
    user's terminal: progress bars drawn only on a terminal (tqdm's ``disable=None``) are drawn. Yields ``(fd,
    chunks)``; once the block ends, ``b"".join(chunks)`` is everything the child wrote there."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))  # 0 columns draw no bar
    chunks: list[bytes] = []

    def drain() -> None:  # read as it is written: a full terminal buffer would block the child
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield follower, chunks
    finally:
        os.close(follower)
        reader.join(timeout=10)
        os.close(leader)


def write_json(path: Path | str, data: dict) -> Path:
    """``data`` as indented JSON with a final newline, the folder created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def markdown_table(header: list[str], rows: list[list], align: str) -> list[str]:
    """A Markdown table as lines: ``align`` has one letter per column, ``l`` (``---``) or ``r`` (``---:``)."""
    if len(align) != len(header):
        raise ValueError(f"{len(header)} columns but alignment {align!r}")
    rule = "".join("---|" if a == "l" else "---:|" for a in align)
    return [f"| {' | '.join(header)} |", f"|{rule}"] + [
        f"| {' | '.join(str(c) for c in row)} |" for row in rows
    ]


def write_report(out: Path | str, report: dict, markdown: str | list[str], *, also: list[Path] = ()) -> Path:
    """Write ``OUT.json`` (``report``, indented) and ``OUT.md`` (``markdown``: text or lines, one final newline),
    creating the folder; print where they went (``also``: other files the benchmark wrote). Returns ``OUT``."""
    out = Path(out)
    write_json(out.with_suffix(".json"), report)
    text = markdown if isinstance(markdown, str) else "\n".join(markdown)
    out.with_suffix(".md").write_text(text.rstrip("\n") + "\n")
    files = [out.with_suffix(".md"), out.with_suffix(".json"), *also]
    print(f"wrote {', '.join(str(f) for f in files[:-1])} and {files[-1]}")
    return out


# --------------------------------------------------------------------------------- generation benchmarks
def add_generation_args(
    parser, *, threads: int, repeats: int, threads_help: str = "torch CPU threads"
) -> None:
    """The model-size and workload options shared by the generation benchmarks (the Marian twin's dims)."""
    parser.add_argument("--threads", type=int, default=threads, help=threads_help)
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--d_model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn_dim", type=int, default=1024)
    parser.add_argument("--max_positions", type=int, default=256)
    parser.add_argument("--src_len", type=int, default=24)
    parser.add_argument("--new_tokens", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 1])
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--repeats", type=int, default=repeats)


def timed_generate(model, inputs: dict, beams: int, new_tokens: int, device: str = "cpu", **extra):
    """``generate()`` exactly ``new_tokens`` tokens per sentence (min = max, no early stop), timed with a device
    sync on both sides; returns ``(ids, seconds)``."""
    import torch

    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            **inputs,
            num_beams=beams,
            do_sample=False,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            early_stopping=False,
            **extra,
        )
    sync(device)
    return out, time.perf_counter() - start

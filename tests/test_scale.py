"""Issue 18 (items 2 and 3): corpora read into the Arrow cache, streaming with the token-budget bucketing kept,
and ``--torch_compile`` runs whose checkpoints, resume and averaging see no ``_orig_mod.`` keys.

The compiled run uses ``--torch_compile_backend eager``: ``torch.compile`` still wraps the model in its
``OptimizedModule`` (the ``_orig_mod`` attribute whose keys must not leak) and dynamo still traces every step;
only inductor's code generation, minutes on this CPU, is left out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from datasets import DatasetDict
from safetensors import safe_open

from hf_seq2seq.data import (
    TokenBatchSampler,
    example_lengths,
    read_parallel_prefix,
    stream_token_batches,
    tokenize_parallel,
)
from hf_seq2seq.tokenization import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
N_PAIRS = 600


@pytest.fixture(scope="module")
def tokenizer(multi30k_dir):
    pairs = read_parallel_prefix(multi30k_dir / "train", "de", "en", max_examples=N_PAIRS)["translation"]
    return train_tokenizer([p["de"] for p in pairs] + [p["en"] for p in pairs], vocab_size=300)


def _tokenized(ds, tokenizer):
    # max_source_length 20 drops the longer pairs: the filtered (indices-mapped) path is exercised too
    return tokenize_parallel(DatasetDict({"train": ds}), tokenizer, "de", "en", max_source_length=20)["train"]


def test_example_lengths_follow_the_filter(multi30k_dir, tokenizer):
    tok, stats = tokenize_parallel(
        DatasetDict(
            {"train": read_parallel_prefix(multi30k_dir / "train", "de", "en", max_examples=N_PAIRS)}
        ),
        tokenizer,
        "de",
        "en",
        max_source_length=20,
        return_stats=True,
    )
    tok = tok["train"]
    assert stats["train"]["too_long"] > 0
    lengths, label_lengths = example_lengths(tok)
    assert lengths.tolist() == list(tok["length"])
    assert label_lengths.tolist() == [len(x) for x in tok["labels"]]


def test_streamed_epoch_has_every_example_once_within_budget(multi30k_dir, tokenizer):
    """--streaming's batches (bucketed within a buffer) cover the same examples as the map-style sampler's epoch,
    each exactly once, and no batch exceeds the token budget."""
    max_tokens = 160
    mapped = _tokenized(
        read_parallel_prefix(multi30k_dir / "train", "de", "en", max_examples=N_PAIRS), tokenizer
    )
    lengths, _ = example_lengths(mapped)
    sampler = TokenBatchSampler(lengths, max_tokens, seed=3)
    map_examples = Counter(tuple(mapped[i]["labels"]) for batch in sampler for i in batch)

    stream = read_parallel_prefix(multi30k_dir / "train", "de", "en", max_examples=N_PAIRS, streaming=True)
    stream = _tokenized(stream, tokenizer).shuffle(seed=3, buffer_size=50)
    batches = list(stream_token_batches(stream, max_tokens, buffer_size=128, seed=3))
    stream_examples = Counter(tuple(ex["labels"]) for batch in batches for ex in batch)

    assert stream_examples == map_examples
    assert sum(stream_examples.values()) == len(mapped)
    for batch in batches:
        assert len(batch) * max(ex["length"] for ex in batch) <= max_tokens
    # buckets: sentences of similar length together (far less padding than a random order would give)
    padded = sum(len(b) * max(ex["length"] for ex in b) for b in batches)
    assert padded < 1.3 * int(lengths.sum())


def test_reader_reuses_its_cache_until_the_file_changes(tmp_path):
    for lang, words in (("de", ["eins", "zwei"]), ("en", ["one", "two"])):
        (tmp_path / f"c.{lang}").write_text("\n".join(words) + "\n")
    first = read_parallel_prefix(tmp_path / "c", "de", "en", cache_dir=str(tmp_path / "cache"))
    again = read_parallel_prefix(tmp_path / "c", "de", "en", cache_dir=str(tmp_path / "cache"))
    assert first.cache_files and first.cache_files == again.cache_files  # memory-mapped, read from the cache
    (tmp_path / "c.de").write_text("drei\nvier\n")
    (tmp_path / "c.en").write_text("three\nfour\n")
    changed = read_parallel_prefix(tmp_path / "c", "de", "en", cache_dir=str(tmp_path / "cache"))
    assert [p["en"] for p in changed["translation"]] == ["three", "four"]


def test_streaming_a_saved_dataset(tmp_path):
    """--streaming with --dataset_name: the train split streamed (flat columns converted lazily), validation
    read whole, max_examples applied to both."""
    from datasets import Dataset

    from hf_seq2seq.data import load_parallel_data

    flat = {"de": ["a", "b", "c"], "en": ["x", "y", "z"]}
    DatasetDict({"train": Dataset.from_dict(flat), "valid": Dataset.from_dict(flat)}).save_to_disk(
        tmp_path / "d"
    )
    dd = load_parallel_data("de", "en", dataset_name=str(tmp_path / "d"), streaming=True, max_examples=2)
    assert not isinstance(dd["train"], Dataset) and isinstance(dd["validation"], Dataset)
    assert [r["translation"] for r in dd["train"]] == [{"de": "a", "en": "x"}, {"de": "b", "en": "y"}]
    assert len(dd["validation"]) == 2


# ------------------------------------------------------------------------------------- training (subprocesses)
def _train(out: Path, *extra: str, launcher: tuple = (sys.executable,), compile_: bool = True) -> None:
    config = {
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "num_attention_heads": 2,
        "ffn_dim": 64,
        "dropout": 0.0,  # dropout draws differ between 1 and 2 processes
    }
    args = [
        "--task", "numbers", "--task_num_train", "300", "--task_num_validation", "8", "--vocab_size", "200",
        "--max_tokens", "300", "--model_type", "transformer", "--model_config", json.dumps(config),
        "--warmup_steps", "2", "--max_steps", "4", "--eval_steps", "100", "--save_steps", "2",
        "--num_beams", "1", "--max_new_tokens", "8", "--log_with", "none", "--disable_progress_bar", "true",
        "--seed", "5", "--output_dir", str(out),
        "--streaming", "--streaming_buffer_size", "64", "--mixed_precision", "no",
    ]  # fmt: skip
    if compile_:
        args += ["--torch_compile", "--torch_compile_backend", "eager"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1")
    proc = subprocess.run(
        [*launcher, str(ROOT / "scripts" / "train.py"), *args, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _keys(folder: Path) -> list[str]:
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return list(f.keys())


def _losses(out: Path) -> list[float]:
    return [h["loss"] for h in json.loads((out / "training_history.json").read_text()) if "loss" in h]


def test_streaming_compiled_run_resumes_exactly_and_saves_plain_keys(tmp_path):
    from hf_seq2seq.averaging import write_averaged_model

    full, resumed = tmp_path / "full", tmp_path / "resumed"
    _train(full)
    _train(resumed, "--stop_after_step", "2")
    _train(resumed, "--resume")

    # resume mid-epoch of a stream: the consumed groups are skipped, RNG/optimizer restored
    assert len(_losses(full)) == 4
    assert _losses(resumed) == pytest.approx(_losses(full), rel=1e-6)

    folders = [full / "checkpoints" / "step-2", full / "checkpoints" / "step-4", full / "final_model"]
    for folder in folders:
        keys = _keys(folder)
        assert keys and not [k for k in keys if "_orig_mod" in k], folder
    assert set(_keys(folders[0])) <= set(_keys(full / "final_model"))

    averaged = write_averaged_model(folders[:2], tmp_path / "averaged", template=full / "final_model")
    assert not [k for k in _keys(averaged) if "_orig_mod" in k]


# ------------------------------------------------------------------------------------------- benchmark scripts
sys.path.insert(0, str(ROOT / "scripts"))


def test_bench_data_second_run_reads_the_cache(tmp_path):
    """bench_data.py's pipeline, in this process on a tiny corpus: the warm run writes no Arrow file (reading and
    tokenizing are cache hits, although its tokenizer is loaded from the folder rather than trained)."""
    import bench_data

    corpus = tmp_path / "work" / "train"
    bench_data.build_corpus(corpus, 300)
    argv = [
        "--corpus",
        str(corpus),
        "--cache",
        str(tmp_path / "cache"),
        "--tokenizer_dir",
        str(tmp_path / "tok"),
    ]
    args = bench_data.parse_args(
        [*argv, "--num_proc", "1", "--tokenizer_sample", "200", "--vocab_size", "200"]
    )
    args.train_tokenizer = True
    cold = bench_data.pipeline(args)
    args.train_tokenizer = False
    warm = bench_data.pipeline(args)
    assert cold["arrow_files_written_by_this_rank"] > 0
    assert warm["arrow_files_written_by_this_rank"] == 0
    assert warm["kept"] == cold["kept"] == 300 and warm["first_batch_shape"] == cold["first_batch_shape"]

    out = tmp_path / "report" / "bench_data"
    size = {"pairs": 300, "corpus_mib": 0, "cache_mib": 0}
    size.update({name: {"process_wall_s": 0.0, "ranks": [r]} for name, r in (("cold", cold), ("warm", warm))})
    bench_data.write_report({"meta": bench_data.environment_meta([]), "sizes": [size]}, out)
    assert "| 300 | warm |" in out.with_suffix(".md").read_text()


def test_bench_train_pads_to_static_shapes():
    import bench_train
    import torch

    args = bench_train.parse_args(["--compile", "side_by_side"])
    assert args.compile == "side_by_side"
    batch = {
        "input_ids": torch.ones(2, 5, dtype=torch.long),
        "attention_mask": torch.ones(2, 5, dtype=torch.long),
        "decoder_input_ids": torch.ones(2, 17, dtype=torch.long),
        "labels": torch.ones(2, 17, dtype=torch.long),
    }
    padded = bench_train.pad_batch(batch, 8)
    assert padded["input_ids"].shape == (2, 8) and padded["labels"].shape == (2, 24)
    assert (padded["labels"][:, 17:] == -100).all() and (padded["attention_mask"][:, 5:] == 0).all()
    assert int(padded["attention_mask"].sum()) == 10  # nothing real added or lost


def test_streaming_refuses_image_data():
    from hf_seq2seq.training.recipe import parse_args

    with pytest.raises(ValueError, match="--streaming reads text corpora"):
        parse_args(
            ["--task", "shapes", "--model_type", "captioning", "--streaming", "--output_dir", "/tmp/unused"]
        )


def test_streaming_two_processes_equal_one_with_accumulation(tmp_path):
    """The streamed step is the map-style one: 2 processes (each reading the stream, keeping its micro-batches)
    give the per-step losses and label counts of 1 process with 2 accumulation steps."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    two = (accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1")
    two += ("--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port))
    _train(tmp_path / "one", "--gradient_accumulation_steps", "2", compile_=False)
    _train(tmp_path / "two", launcher=two, compile_=False)

    def steps(out):
        history = json.loads((out / "training_history.json").read_text())
        return [(h["loss"], h["tokens"]) for h in history if "loss" in h]

    one, two_ = steps(tmp_path / "one"), steps(tmp_path / "two")
    assert len(one) == 4 and [t for _, t in one] == [t for _, t in two_]
    assert [x for x, _ in two_] == pytest.approx([x for x, _ in one], rel=1e-4)


def test_pad_to_multiple_of_defaults_under_compile_pads_batches_and_refuses_bad_values():
    """--pad_to_multiple_of does what its help says: 16 by default with --torch_compile, none without it, the
    training collator pads every batch length to that multiple, and 0 or a negative value is one clear error."""
    from hf_seq2seq.training import DataArguments, ModelArguments, TrainArguments
    from hf_seq2seq.training.tasks import TextTask

    assert TrainArguments(torch_compile=True).pad_to_multiple_of == 16
    assert TrainArguments().pad_to_multiple_of is None
    for bad in (0, -8):
        with pytest.raises(ValueError, match=f"--pad_to_multiple_of={bad} is invalid"):
            TrainArguments(pad_to_multiple_of=bad)

    tokenizer = train_tokenizer(["eins zwei drei vier", "one two three four"], vocab_size=60)
    task = TextTask.__new__(TextTask)  # only the collator is exercised: it reads nothing but train_args
    task.data_args, task.model_args = DataArguments(task="numbers"), ModelArguments()
    task.train_args = TrainArguments(pad_to_multiple_of=8)
    features = [
        {"input_ids": [5, 6, 7, 2], "labels": [8, 2]},
        {"input_ids": [5, 2], "labels": [9, 10, 11, 2]},
    ]
    batch = task.collator(tokenizer, None)(features)
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["labels"].shape[1] % 8 == 0

"""Issue 18 (items 2 and 3): corpora read into the Arrow cache, streaming with the token-budget bucketing kept,
and ``--torch_compile`` runs whose checkpoints, resume and averaging see no ``_orig_mod.`` keys.

The compiled run uses ``--torch_compile_backend eager``: ``torch.compile`` still wraps the model in its
``OptimizedModule`` (the ``_orig_mod`` attribute whose keys must not leak) and dynamo still traces every step;
only inductor's code generation, minutes on this CPU, is left out.
"""

from __future__ import annotations

import copy
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
    # 4 bytes an example, and the sampler keeps the array it is given (no int64 copy of millions of lengths)
    assert lengths.dtype == label_lengths.dtype == "int32"
    assert TokenBatchSampler(lengths, 300).lengths is lengths


def test_epoch_batches_are_the_samplers_batches_as_int32_arrays():
    """The loop's epoch (tasks.epoch_batches) holds the sampler's batches as int32 arrays, the same batches that
    iterating the sampler gives (what it returned as lists of lists before), and the DataLoader gets them as
    lists one at a time."""
    import numpy as np

    from hf_seq2seq.training.loop import IndexLists
    from hf_seq2seq.training.task import epoch_batches

    lengths = np.random.RandomState(0).randint(1, 60, size=5000)
    arrays = epoch_batches(lengths, 300, seed=3, epoch=2)
    sampler = TokenBatchSampler(lengths, 300, seed=3)
    sampler.set_epoch(2)
    assert [a.tolist() for a in arrays] == list(sampler)
    assert all(isinstance(a, np.ndarray) and a.dtype == np.int32 for a in arrays)
    assert sorted(np.concatenate(arrays).tolist()) == list(range(5000))
    assert list(IndexLists(arrays[:3])) == [a.tolist() for a in arrays[:3]] and len(
        IndexLists(arrays)
    ) == len(arrays)


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


def test_tests_read_corpora_into_a_session_cache_not_the_users(tmp_path):
    """tests/conftest.py points HF_DATASETS_CACHE at a temporary folder before datasets is imported: a corpus read
    with the default cache lands there, not in ~/.cache."""
    import datasets
    from conftest import DATASETS_CACHE

    cache = Path(DATASETS_CACHE)
    assert Path(datasets.config.HF_DATASETS_CACHE) == cache
    assert Path.home() / ".cache" not in cache.parents
    for lang, word in (("de", "eins"), ("en", "one")):
        (tmp_path / f"c.{lang}").write_text(word + "\n")
    ds = read_parallel_prefix(tmp_path / "c", "de", "en")
    assert ds.cache_files and all(cache in Path(f["filename"]).parents for f in ds.cache_files)


def test_tokenizer_is_trained_on_a_seeded_sample_of_a_large_split():
    """--tokenizer_train_samples: a split up to that size is used whole (today's behaviour for corpora up to 1M
    pairs, the default); a larger one gives that many distinct pairs of the split, in corpus order, the same for
    the same --seed; a stream gives its first min(N, --streaming_buffer_size) pairs; 0 is refused."""
    from datasets import Dataset

    from hf_seq2seq.training import DataArguments
    from hf_seq2seq.training.task import _tokenizer_pairs

    pairs = [{"de": f"satz {i}", "en": f"sentence {i}"} for i in range(50)]
    train = Dataset.from_dict({"translation": pairs})
    assert DataArguments(task="numbers").tokenizer_train_samples == 1_000_000
    assert _tokenizer_pairs(train, DataArguments(task="numbers", tokenizer_train_samples=50)) == pairs
    args = DataArguments(task="numbers", tokenizer_train_samples=20)
    sample = _tokenizer_pairs(train, args, seed=1)
    numbers = [int(p["en"].split()[1]) for p in sample]
    assert len(set(numbers)) == 20 and numbers == sorted(numbers) and sample == [pairs[i] for i in numbers]
    assert _tokenizer_pairs(train, args, seed=1) == sample and _tokenizer_pairs(train, args, seed=2) != sample
    stream = train.to_iterable_dataset()
    assert _tokenizer_pairs(stream, args) == pairs[:20]
    args = DataArguments(task="numbers", tokenizer_train_samples=20, streaming_buffer_size=8)
    assert _tokenizer_pairs(stream, args) == pairs[:8]
    with pytest.raises(ValueError, match="--tokenizer_train_samples=0 is invalid"):
        DataArguments(task="numbers", tokenizer_train_samples=0)


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
def _train(
    out: Path,
    *extra: str,
    launcher: tuple = (sys.executable,),
    compile_: bool = True,
    streaming: bool = True,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
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
    ]  # fmt: skip
    if streaming:
        args += ["--streaming", "--streaming_buffer_size", "64"]
    if "--bf16_weights" not in extra:
        args += ["--mixed_precision", "no"]
    if compile_:
        args += ["--torch_compile", "--torch_compile_backend", "eager"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1")
    proc = subprocess.run(
        [*launcher, str(ROOT / "scripts" / "train.py"), *args, *extra],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


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

    # an fp32 run's checkpoint has no master weights: --resume --bf16_weights says so, naming the checkpoint
    proc = _train(full, "--resume", "--bf16_weights", check=False)
    assert proc.returncode == 1
    assert (
        f"--resume from {full / 'checkpoints' / 'step-4'}: the optimizer state has no fp32 master"
        in proc.stderr
    )


# ------------------------------------------------------------------------------------------- benchmark scripts
sys.path.insert(0, str(ROOT / "benchmarks"))


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
    bench_data.write_outputs({"meta": bench_data.environment_meta([]), "sizes": [size]}, out)
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


def test_bench_train_bf16_master_uses_the_training_optimizer(tmp_path):
    """--dtype bf16-master trains both bf16 twins with train.py's --bf16_weights optimizer (imported, not copied)."""
    import bench_train
    import torch

    from hf_seq2seq.training.master_weights import MasterWeightAdamW

    bf16 = torch.nn.Linear(2, 2).bfloat16()
    assert isinstance(bench_train.make_optimizer(bf16, "cpu", dtype="bf16-master"), MasterWeightAdamW)
    assert type(bench_train.make_optimizer(bf16, "cpu", dtype="bf16-pure")) is torch.optim.AdamW
    out = tmp_path / "bench"
    tiny = [
        "--preset",
        "tiny",
        "--data",
        "random",
        "--src_len",
        "8",
        "--max_tokens",
        "64",
        "--vocab_size",
        "300",
    ]
    tiny += ["--threads", str(torch.get_num_threads()), "--steps", "2", "--repeats", "1", "--warmup", "1"]
    bench_train.main([*tiny, "--dtype", "bf16-master", "--skip", "rnn", "profile", "--out", str(out)])
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["meta"]["dtype"] == "bf16-master" and report["transformer"]["ours"]["tok_s"] > 0


def test_streaming_refuses_image_data():
    from hf_seq2seq.training.recipe import parse_args

    with pytest.raises(ValueError, match="--streaming reads text corpora"):
        parse_args(
            ["--task", "shapes", "--model_type", "captioning", "--streaming", "--output_dir", "/tmp/unused"]
        )


def _two_processes() -> tuple:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    two = (accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1")
    return two + ("--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port))


def _steps(out: Path) -> list[tuple[float, int]]:
    history = json.loads((out / "training_history.json").read_text())
    return [(h["loss"], h["tokens"]) for h in history if "loss" in h]


@pytest.mark.parametrize("precision", ["fp32", "bf16_weights"])
def test_two_processes_equal_one_with_accumulation(tmp_path, precision):
    """2 gloo processes give the per-step losses and label counts of 1 process with 2 accumulation steps: the
    streamed step (each rank reads the stream and keeps its micro-batches) and, map-style, --bf16_weights (bf16
    gradients all-reduced by DDP, then cast for the fp32 masters; measured: identical losses)."""
    extra = ("--bf16_weights",) if precision == "bf16_weights" else ()
    streaming = precision == "fp32"
    _train(
        tmp_path / "one", *extra, "--gradient_accumulation_steps", "2", compile_=False, streaming=streaming
    )
    _train(tmp_path / "two", *extra, launcher=_two_processes(), compile_=False, streaming=streaming)
    one, two_ = _steps(tmp_path / "one"), _steps(tmp_path / "two")
    assert len(one) == 4 and [t for _, t in one] == [t for _, t in two_]
    assert [x for x, _ in two_] == pytest.approx([x for x, _ in one], rel=1e-4)


def test_pad_to_multiple_of_defaults_under_compile_pads_batches_and_refuses_bad_values():
    """--pad_to_multiple_of does what its help says: 16 by default with --torch_compile, none without it, the
    training collator pads every batch length to that multiple, and 0 or a negative value is one clear error."""
    from hf_seq2seq.training import DataArguments, ModelArguments, TrainArguments
    from hf_seq2seq.training.task import TextTask

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


# ------------------------------------------------------------------------ bf16 weights with an fp32 master copy
def _drift_runs(steps: int = 40, lr: float = 1e-4):
    """Three copies of one tiny MLP (bf16-rounded start) trained on the same batches with AdamW: fp32 weights,
    bf16 weights stepped directly, bf16 weights with fp32 masters. Returns (start, fp32, bf16, master model,
    optimizer of the master run)."""
    import torch

    from hf_seq2seq.training.master_weights import MasterWeightAdamW

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    base = base.to(torch.bfloat16).float()  # every run starts from the same bf16-representable weights
    start = [p.detach().clone() for p in base.parameters()]
    x, y = torch.randn(64, 16), torch.randn(64, 4)
    models = {"fp32": base, "bf16": copy.deepcopy(base).bfloat16(), "master": copy.deepcopy(base).bfloat16()}
    opts = {
        "fp32": torch.optim.AdamW(models["fp32"].parameters(), lr=lr, weight_decay=0.0),
        "bf16": torch.optim.AdamW(models["bf16"].parameters(), lr=lr, weight_decay=0.0),
        "master": MasterWeightAdamW(models["master"].parameters(), lr=lr, weight_decay=0.0),
    }
    for i in range(steps):
        rows = slice(16 * (i % 4), 16 * (i % 4 + 1))
        for name, model in models.items():
            dtype = next(model.parameters()).dtype
            loss = torch.nn.functional.mse_loss(model(x[rows].to(dtype)).float(), y[rows])
            loss.backward()
            opts[name].step()
            opts[name].zero_grad()
    return start, models, opts["master"]


def test_master_weights_keep_the_updates_bf16_weights_round_away():
    """At a learning rate whose updates are mostly below bf16's resolution, bf16 weights stepped directly lose them
    and stay far from the fp32 run; the fp32 masters follow it (and the model computes with their rounding)."""
    import torch

    start, models, opt = _drift_runs()

    def distance(a, b):
        return float(sum(((x.detach().float() - y.detach().float()) ** 2).sum() for x, y in zip(a, b)) ** 0.5)

    fp32 = list(models["fp32"].parameters())
    moved = distance(fp32, start)
    # measured: bf16 0.95 of the fp32 run's movement away from it, masters 0.002, their bf16 rounding 0.1
    assert moved > 0
    assert distance(models["bf16"].parameters(), fp32) > 0.8 * moved  # most updates rounded away
    assert distance(opt.master_params, fp32) < 0.02 * moved
    assert distance(models["master"].parameters(), fp32) < 0.25 * moved
    for p, m in zip(models["master"].parameters(), opt.master_params):
        assert p.dtype == torch.bfloat16 and m.dtype == torch.float32
        assert torch.equal(p, m.to(torch.bfloat16))


def test_master_weights_state_dict_restores_masters_and_refuses_a_plain_adamw_state():
    import torch

    from hf_seq2seq.training.master_weights import MasterWeightAdamW

    _, models, opt = _drift_runs(steps=5)
    fresh_model = copy.deepcopy(models["master"])
    for p in fresh_model.parameters():
        p.data.zero_()
    fresh = MasterWeightAdamW(fresh_model.parameters(), lr=1e-4)
    fresh.load_state_dict(opt.state_dict())
    for a, b in zip(fresh.master_params, opt.master_params):
        assert torch.equal(a, b)
    for a, b in zip(fresh_model.parameters(), models["master"].parameters()):
        assert torch.equal(a, b)  # the model is rounded from the loaded masters
    plain = torch.optim.AdamW(models["fp32"].parameters(), lr=1e-4)
    with pytest.raises(ValueError, match="no fp32 master weights: it was saved without --bf16_weights"):
        fresh.load_state_dict(plain.state_dict())
    state = opt.state_dict()
    state["fp32_master_weights"] = state["fp32_master_weights"][:-1]
    with pytest.raises(ValueError, match="has 3 fp32 master weights for 4 parameters"):
        fresh.load_state_dict(state)


def test_master_weights_step_uses_the_clipped_fp32_gradients():
    """Clipping acts on the masters' fp32 gradients and ``step`` uses them as clipped (it does not cast the bf16
    gradients again): clipped to a norm of 1e-12, AdamW's first step (about lr * g / (|g| + eps)) moves nothing."""
    import torch

    from hf_seq2seq.training.master_weights import MasterWeightAdamW

    moved = {}
    for clip in (None, 1e-12):
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 4).bfloat16()
        start = [p.detach().clone() for p in model.parameters()]
        opt = MasterWeightAdamW(model.parameters(), lr=1e-2)
        model(torch.randn(16, 8, dtype=torch.bfloat16)).float().pow(2).sum().backward()
        masters = opt.grads_to_master()
        assert all(m.grad.dtype == torch.float32 for m in masters)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(masters, clip)
        opt.step()
        moved[clip] = any(not torch.equal(p, p0) for p, p0 in zip(model.parameters(), start))
    assert moved == {None: True, 1e-12: False}


def test_bf16_weights_refuses_autocast_precisions(monkeypatch):
    from hf_seq2seq.training import TrainArguments
    from hf_seq2seq.training.setup import _check_precision

    for value in ("fp16", "bf16"):
        with pytest.raises(ValueError, match=f"--bf16_weights with --mixed_precision={value}: "):
            TrainArguments(bf16_weights=True, mixed_precision=value)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    with pytest.raises(ValueError, match="--bf16_weights with mixed precision fp16 \\(from the Accelerate"):
        _check_precision(TrainArguments(bf16_weights=True))
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # a bf16 launch config: autocast off, no error
    args = TrainArguments(bf16_weights=True)
    assert "autocast is not used" in _check_precision(args) and args.mixed_precision == "no"


def _safetensors_dtypes(folder: Path) -> set:
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return {str(f.get_slice(k).get_dtype()) for k in f.keys()}


def test_bf16_weights_compiled_run_resumes_exactly_and_saves_fp32_masters(tmp_path):
    """--bf16_weights with --torch_compile, accumulation 2 and clipping: a resumed run gives the uninterrupted
    run's losses exactly (masters and AdamW state in the checkpoint); checkpoints, final model and an average hold
    float32 masters (finer than bf16) under the model's own keys."""
    from safetensors.torch import load_file

    from hf_seq2seq.averaging import write_averaged_model

    opts = ("--bf16_weights", "--gradient_accumulation_steps", "2", "--max_grad_norm", "0.5")
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    (tmp_path / "recipe.yaml").write_text("bf16_weights: true\n")  # the option from a recipe: the same run
    _train(full, "--config", "recipe.yaml", *opts[1:], streaming=False, cwd=tmp_path)
    _train(resumed, *opts, "--stop_after_step", "2", streaming=False)
    _train(resumed, *opts, "--resume", streaming=False)
    assert len(_losses(full)) == 4 and _losses(resumed) == _losses(full)
    history = json.loads((full / "training_history.json").read_text())
    assert all("grad_norm" in h for h in history if "loss" in h)

    folders = [full / "checkpoints" / "step-2", full / "checkpoints" / "step-4", full / "final_model"]
    for folder in folders:
        assert _safetensors_dtypes(folder) == {"F32"}, folder
        assert not [k for k in _keys(folder) if "_orig_mod" in k], folder
    final = load_file(str(full / "final_model" / "model.safetensors"))
    assert any(not torch_equal_bf16(w) for w in final.values())  # masters, not bf16 weights cast up
    averaged = write_averaged_model(folders[:2], tmp_path / "averaged", template=full / "final_model")
    assert _safetensors_dtypes(averaged) == {"F32"}
    run_config = json.loads((full / "run_config.json").read_text())
    assert run_config["bf16_weights"] is True and run_config["mixed_precision"] == "no"
    assert run_config["config"] == "recipe.yaml"  # the recipe path as given


def torch_equal_bf16(w) -> bool:
    import torch

    return not w.is_floating_point() or torch.equal(w, w.to(torch.bfloat16).float())

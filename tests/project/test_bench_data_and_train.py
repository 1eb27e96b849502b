"""benchmarks/bench_data.py (the warm run reads the cache) and benchmarks/bench_train.py (static shapes, the
training optimizer for bf16-master) on tiny inputs (issue 18)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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

"""The benchmarks (benchmarks/) and the results script in scripts/ run end to end on tiny inputs and write what
their docs say; the benchmark harness writes what it promises.

These are not speed measurements (those live in docs/, produced on real hardware): they check that every option the
scripts document works, so a GPU session does not discover a broken flag after its start-up cost.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(BENCHMARKS))

import bench_generate  # noqa: E402
import bench_train  # noqa: E402
import collect_results  # noqa: E402
import harness  # noqa: E402

TINY = ["--preset", "tiny", "--data", "random", "--src_len", "8", "--max_tokens", "64", "--vocab_size", "300"]
TINY += ["--threads", str(torch.get_num_threads())]  # the scripts set the process's thread count: keep it


@pytest.mark.parametrize("dtype", ["fp32", "bf16-pure"])
def test_bench_train_transformer_twins(tmp_path, dtype):
    out = tmp_path / "bench"
    bench_train.main(
        TINY
        + ["--dtype", dtype, "--steps", "2", "--repeats", "1", "--warmup", "1", "--skip", "rnn", "profile"]
        + ["--out", str(out)]
    )
    report = json.loads(out.with_suffix(".json").read_text())
    tr = report["transformer"]
    assert report["meta"]["dtype"] == dtype
    assert tr["check_eval_loss"]["ours"] == pytest.approx(tr["check_eval_loss"]["marian"], rel=1e-5)
    assert tr["ours"]["tok_s"] > 0 and tr["marian"]["tok_s"] > 0
    assert "ours / Marian" in out.with_suffix(".md").read_text()


def test_every_benchmark_imports_and_documents_its_options(capsys):
    """Each benchmarks/bench_*.py imports (the harness, its helpers, the package) and answers --help with its
    docstring's first line and the harness's --out."""
    import importlib

    names = sorted(p.stem for p in BENCHMARKS.glob("bench_*.py"))
    assert len(names) >= 7
    for name in names:
        module = importlib.import_module(name)
        with pytest.raises(SystemExit) as info:
            module.main(["--help"])
        text = capsys.readouterr().out
        assert info.value.code == 0, name
        assert " ".join(module.__doc__.split("\n")[0].split()[:4]) in " ".join(text.split()), name
        assert "--out" in text, name


def test_harness_writes_json_and_markdown_with_the_environment(tmp_path, capsys):
    meta = harness.environment("cpu", "bench_x.py", ["--steps", "2"], steps=2)
    assert meta["command"] == "python benchmarks/bench_x.py --steps 2" and meta["steps"] == 2
    assert {"date", "torch", "transformers", "python", "device", "threads"} <= set(meta)
    assert "load average" in meta["device"] and len(harness.load_average()) == 3
    table = harness.markdown_table(["model", "tok/s"], [["ours", "12"], ["Marian", 10]], "lr")
    assert table == ["| model | tok/s |", "|---|---:|", "| ours | 12 |", "| Marian | 10 |"]
    with pytest.raises(ValueError, match="2 columns but alignment 'l'"):
        harness.markdown_table(["a", "b"], [], "l")
    out = harness.write_report(
        tmp_path / "deep" / "bench_x", {"meta": meta}, ["# X", "", harness.env_line(meta)]
    )
    assert json.loads(out.with_suffix(".json").read_text())["meta"] == meta
    text = out.with_suffix(".md").read_text()
    assert text.startswith("# X\n\nProduced by `python benchmarks/bench_x.py --steps 2`") and text.endswith(
        ".\n"
    )
    assert f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}" in capsys.readouterr().out
    args = harness.bench_parser("Benchmark: x.\n\nMore.", "bench_x", threads=3).parse_args([])
    assert (args.threads, Path(args.out)) == (3, ROOT / "docs" / "benchmarks" / "bench_x")


@pytest.mark.slow  # times Transformer training steps with a memory-sampling thread (5 s on 2 shared cores)
def test_bench_scaling_tiny_sweeps(tmp_path):
    import bench_scaling

    out = tmp_path / "scaling"
    argv = [
        "--preset",
        "tiny",
        "--vocab_size",
        "300",
        "--batch_sizes",
        "2",
        "--lengths",
        "4",
        "--fixed_batch",
    ]
    argv += [
        "2",
        "--fixed_length",
        "4",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--threads",
        str(torch.get_num_threads()),
    ]
    assert bench_scaling.main([*argv, "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["results"]
    assert [(r["sweep"], r["batch"], r["length"]) for r in rows] == [("batch", 2, 4), ("length", 2, 4)]
    text = out.with_suffix(".md").read_text()
    assert (
        "| batch | L | target tokens / step | tok/s | peak MiB | step MiB |" in text
        and "| 2 | 4 | 8 |" in text
    )
    assert out.with_suffix(".png").is_file()


def test_bench_train_rejects_unknown_compile_mode():
    with pytest.raises(SystemExit):
        bench_train.parse_args(TINY + ["--compile", "everything"])


def test_bench_generate_same_tokens(tmp_path):
    out = tmp_path / "gen"
    argv = ["--d_model", "32", "--layers", "1", "--heads", "2", "--ffn_dim", "64", "--vocab_size", "300"]
    argv += ["--new_tokens", "4", "--batches", "2", "--beams", "1", "2", "--repeats", "1", "--warmup", "0"]
    bench_generate.main(argv + ["--threads", str(torch.get_num_threads()), "--out", str(out)])
    text = out.with_suffix(".md").read_text()
    assert text.count("| yes |") == 2  # greedy and beam 2: both models produced the same tokens


@pytest.mark.slow
def test_bench_generate_rnn_before_after_same_tokens(tmp_path):
    """--family rnn: the 'before' checkout (here this tree itself) and this tree decode the same tokens; the
    --overhead and --profile options run."""
    out = tmp_path / "rnn"
    argv = [
        "--family",
        "rnn",
        "--models",
        "bigru_bahdanau=random",
        "lstm_luong=random",
        "--embedding_size",
        "16",
    ]
    argv += [
        "--hidden_size",
        "32",
        "--vocab_size",
        "300",
        "--sentences",
        "4",
        "--batches",
        "2",
        "--beams",
        "1",
        "2",
    ]
    argv += ["--new_tokens", "3", "--repeats", "1", "--warmup", "0", "--overhead", "--profile"]
    bench_generate.main(argv + ["--threads", str(torch.get_num_threads()), "--out", str(out)])
    assert out.with_suffix(".json").is_file() and out.with_suffix(".md").is_file()


RNN_TINY = [
    "--family",
    "rnn",
    "--models",
    "bigru_bahdanau=random",
    "--embedding_size",
    "16",
    "--hidden_size",
    "32",
]
RNN_TINY += ["--vocab_size", "300", "--sentences", "2", "--batches", "2", "--beams", "2", "--new_tokens", "3"]
RNN_TINY += ["--repeats", "1", "--warmup", "0", "--threads", "1"]


@pytest.mark.slow
def test_bench_generate_rnn_fixed_length_by_min_new_tokens_and_tuned_malloc(tmp_path):
    """--fixed_length min_new_tokens and --malloc_tuned run (in a child process: mallopt changes the allocator of the
    whole process)."""
    import subprocess

    out = tmp_path / "rnn"
    cmd = [sys.executable, str(BENCHMARKS / "bench_generate.py"), *RNN_TINY, "--out", str(out)]
    done = subprocess.run(
        [*cmd, "--fixed_length", "min_new_tokens", "--malloc_tuned"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert "min_new_tokens" in json.dumps(result) and "--malloc_tuned" in out.with_suffix(".md").read_text()


def test_bench_generate_joeynmt_missing_is_one_clear_line(tmp_path):
    try:
        import joeynmt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("JoeyNMT is installed here: the side-by-side would run instead of refusing")
    with pytest.raises(SystemExit, match="--joeynmt: JoeyNMT is not importable .*pip install joeynmt"):
        bench_generate.main([*RNN_TINY, "--joeynmt", "--out", str(tmp_path / "j")])


def test_bench_generate_transformer_before_after_same_tokens(tmp_path):
    """--family transformer --before: the 'before' checkout (here this tree itself) and this tree, same tokens."""
    out = tmp_path / "transformer"
    argv = [
        "--family",
        "transformer",
        "--before",
        str(ROOT),
        "--models",
        "transformer=random",
        "--vocab_size",
        "300",
    ]
    argv += ["--sentences", "2", "--batches", "2", "--beams", "2", "--new_tokens", "3", "--repeats", "1"]
    bench_generate.main([*argv, "--warmup", "0", "--threads", "1", "--out", str(out)])
    cells = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))["models"]["transformer"]["cells"]
    assert [c["same_tokens"] for c in cells] == ["2/2"] and cells[0]["speedup_cpu"] > 0


def _fake_run(runs: Path, name: str, src: str, tgt: str, test_bleu: float, selection: dict | None) -> None:
    run = runs / name
    (run / "final_model").mkdir(parents=True)
    history = [
        {"step": 100, "epoch": 1, "eval_bleu": 30.0, "eval_loss": 2.5},
        {"step": 200, "epoch": 2, "eval_bleu": 31.0, "eval_loss": 2.4},
    ]
    (run / "training_history.json").write_text(json.dumps(history))
    config = {"source_lang": src, "target_lang": tgt, "max_tokens": 4096, "save_total_limit": 5}
    (run / "run_config.json").write_text(json.dumps(config))
    (run / "final_model" / "README.md").write_text("7,577,600 parameters\n- **training time**: 0:05:33\n")
    test = {"bleu": test_bleu, "chrf": 60.0, "bleu_signature": "sigB", "chrf_signature": "sigC"}
    (runs / f"{name}.test.json").write_text(json.dumps(test))
    if selection:
        (runs / f"{name}.selection.json").write_text(json.dumps(selection))


def test_collect_results_merges_sessions_and_states_each_target(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "docs" / "results.md"
    runs.mkdir()
    selection = {
        "selected": "averaged_model",
        "best_model": {"model": "b", "val_bleu": 31.0},
        "averaged_model": {"model": "a", "val_bleu": 32.0},
    }
    _fake_run(runs, "transformer_de_en_dropout03", "de", "en", 40.8, selection)
    _fake_run(runs, "transformer_en_de", "en", "de", 37.0, None)
    (out.parent / "results").mkdir(parents=True)
    earlier = {
        "name": "bigru_bahdanau_de_en",
        "pair": "de→en",
        "params": "6,381,568",
        "steps": 2097,
        "epochs": 17,
    }
    earlier |= {"time": "0:03:04", "max_tokens": 4096, "val_bleu": 39.2, "val_ppl": 18.3, "test_bleu": 39.0}
    earlier |= {"test_chrf": 58.1, "bleu_signature": "sigB", "chrf_signature": "sigC", "recipe": {}}
    stale = dict(earlier, name="transformer_en_de", test_bleu=1.0)  # replaced by this session's run
    (out.parent / "results" / "runs.json").write_text(json.dumps([earlier, stale]))
    hand_written = f"{collect_results.KEEP_MARKER}\n\n## Analysis written by hand\n"
    out.write_text("# an older page\n\n" + hand_written)

    collect_results.main([str(runs), "--setup", "tiny session", "--merge", "--out", str(out)])
    text = out.read_text()
    rows = json.loads((out.parent / "results" / "runs.json").read_text())
    assert sorted(r["name"] for r in rows) == [
        "bigru_bahdanau_de_en",
        "transformer_de_en_dropout03",
        "transformer_en_de",
    ]
    assert (
        "1. tiny session" in text and "2. `bash scripts/run_multi30k_gpu.sh" in text
    )  # the legacy row's setup
    assert "| average of last 5 | **40.8** |" in text and "| 32.0 |" in text  # val BLEU of the selected model
    assert "`transformer_de_en_dropout03`, test BLEU 40.8 (target ≥ 40) — met" in text
    assert "`transformer_en_de`, test BLEU 37.0 (target ≥ 38) — **not met**" in text
    assert "test BLEU 1.0" not in text
    assert text.endswith(hand_written) and "an older page" not in text  # sections after the marker are kept

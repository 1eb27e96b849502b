"""Reliability: a two-process training run killed with SIGKILL (while writing a checkpoint, in the middle of a step)
resumes to the same result as an uninterrupted run; the NaN guard; safe loading; translate under load.

The kill points are made deterministic with the test hook ``HF_SEQ2SEQ_DEBUG_PAUSE`` of
``hf_seq2seq/training.py`` ("save:N": the main process has written half of checkpoint N's weights into the
temporary folder and waits; "step:N": every process has done step N's forward/backward, not its update, and
waits). The test then SIGKILLs every process of the job (the launcher and the workers, which torch's launcher
starts in sessions of their own), as an out-of-memory killer or a cluster pre-emption would.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from conftest import run_without_package
from hub_server import tiny_model, tiny_tokenizer
from safetensors.torch import load_file

from hf_seq2seq.training import COMPLETE_MARKER, DEBUG_NAN_ENV, DEBUG_PAUSE_ENV, list_checkpoints

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train.py"
PACKAGE = ROOT / "hf_seq2seq"
MAX_STEPS = 8
SAVE_STEPS = 2
TINY_RNN = {"embedding_size": 16, "hidden_size": 16, "attention": "bahdanau", "dropout": 0.0}


def _env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.update(TOKENIZERS_PARALLELISM="false", ACCELERATE_USE_CPU="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop(DEBUG_PAUSE_ENV, None)
    env.pop(DEBUG_NAN_ENV, None)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(output_dir: Path, *extra: str) -> list[str]:
    return [
        "--task", "numbers",
        "--task_num_train", "200",
        "--task_num_validation", "8",
        "--task_num_test", "0",
        "--vocab_size", "100",
        "--max_tokens", "300",
        "--max_source_length", "40",
        "--max_target_length", "40",
        "--model_type", "rnn",
        "--model_config", json.dumps(TINY_RNN),
        "--learning_rate", "3e-3",
        "--lr_scheduler", "constant",
        "--warmup_steps", "0",
        "--max_steps", str(MAX_STEPS),
        "--eval_steps", "100",
        "--save_steps", str(SAVE_STEPS),
        "--save_total_limit", "10",
        "--num_beams", "1",
        "--max_new_tokens", "8",
        "--seed", "3",
        "--log_with", "none",
        "--disable_progress_bar",
        "--output_dir", str(output_dir),
        *extra,
    ]  # fmt: skip


def _launch_cmd(args: list[str]) -> list[str]:
    accelerate = Path(sys.executable).with_name("accelerate")
    return [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        str(SCRIPT), *args,
    ]  # fmt: skip


def _run(cmd: list[str], env: dict, expect_rc: int = 0, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != expect_rc:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}, expected {expect_rc}:\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-5000:]}"
        )
    return proc


def _kill_job(proc: subprocess.Popen) -> list[int]:
    """SIGKILL the launcher and every descendant, each in its own process group/session; returns the pids."""
    launcher = psutil.Process(proc.pid)
    victims = [launcher, *launcher.children(recursive=True)]
    groups = set()
    for p in victims:
        try:
            groups.add(os.getpgid(p.pid))
        except ProcessLookupError:
            pass
    for pgid in groups:
        if pgid != os.getpgrp():
            os.killpg(pgid, signal.SIGKILL)
    for p in victims:  # anything that shares our group (it should not)
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)
    psutil.wait_procs(victims, timeout=30)
    return [p.pid for p in victims]


def _run_until_paused_then_kill(args: list[str], pause: str, output_dir: Path, timeout: float = 300) -> None:
    flag = output_dir / "DEBUG_PAUSED"
    proc = subprocess.Popen(
        _launch_cmd(args),
        cwd=ROOT,
        env=_env(**{DEBUG_PAUSE_ENV: pause}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # the job's own process group: killing it never touches pytest
    )
    try:
        deadline = time.monotonic() + timeout
        while not flag.exists():
            if proc.poll() is not None:
                raise AssertionError(f"the run ended ({proc.returncode}) before pausing at {pause}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the run did not reach {pause} in {timeout}s")
            time.sleep(0.2)
        time.sleep(0.5)  # the other rank reaches its barrier / collective
    finally:
        pids = _kill_job(proc)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids)
    flag.unlink()


def _steps(output_dir: Path) -> list[dict]:
    history = json.loads((output_dir / "training_history.json").read_text())
    return [h for h in history if "loss" in h]


def _assert_same_result(a: Path, b: Path) -> None:
    sa, sb = _steps(a), _steps(b)
    assert [h["step"] for h in sb] == list(range(1, MAX_STEPS + 1))
    for x, y in zip(sa, sb):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-6, abs=1e-7), f"step {x['step']}"
        assert y["tokens"] == x["tokens"]
    wa = load_file(str(a / "final_model" / "model.safetensors"))
    wb = load_file(str(b / "final_model" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-6, atol=1e-7)


def _assert_checkpoints_sound(output_dir: Path) -> None:
    """Every checkpoint folder is complete and loads; no temporary folder is left behind."""
    root = output_dir / "checkpoints"
    assert not list(root.glob(".tmp-*")), "an interrupted temporary checkpoint was left behind"
    for path in root.iterdir():
        assert CHECKPOINT_NAME.match(path.name), path
        assert (path / COMPLETE_MARKER).is_file(), f"{path} has no {COMPLETE_MARKER} marker"
        weights = load_file(str(path / "model.safetensors"))  # raises on a truncated file
        assert all(torch.isfinite(t).all() for t in weights.values())


CHECKPOINT_NAME = re.compile(r"^step-\d+$")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    _run(_launch_cmd(_args(out)), _env())
    return out


@pytest.mark.slow
def test_sigkill_while_writing_a_checkpoint_then_resume_equals_uninterrupted(tmp_path, uninterrupted):
    out = tmp_path / "run"
    _run_until_paused_then_kill(_args(out), "save:4", out)
    # What the kill left: step-2 complete, step-4 half-written in its temporary folder (no marker).
    tmp = out / "checkpoints" / ".tmp-step-4"
    assert tmp.is_dir() and not (tmp / COMPLETE_MARKER).exists()
    with pytest.raises(Exception):  # noqa: B017  (safetensors' own error type)
        load_file(str(tmp / "model.safetensors"))
    assert [s for s, _ in list_checkpoints(out)] == [2]
    assert not (out / "final_model").exists()

    # Without --resume the folder is protected; with it the run continues from step 2.
    refused = _run(_launch_cmd(_args(out)), _env(), expect_rc=1)
    assert "already holds a run" in refused.stderr and "--overwrite_output_dir" in refused.stderr
    resumed = _run(_launch_cmd(_args(out, "--resume")), _env())
    assert "a checkpoint whose write was interrupted" in resumed.stderr
    assert re.search(r"resumed from .*step-2 \(step 2,", resumed.stderr)
    _assert_checkpoints_sound(out)
    _assert_same_result(uninterrupted, out)


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_step_then_resume_equals_uninterrupted(tmp_path, uninterrupted):
    out = tmp_path / "run"
    _run_until_paused_then_kill(_args(out), "step:7", out)
    assert [s for s, _ in list_checkpoints(out)] == [2, 4, 6]
    resumed = _run(_launch_cmd(_args(out, "--resume")), _env())
    assert re.search(r"resumed from .*step-6 \(step 6,", resumed.stderr)
    _assert_checkpoints_sound(out)
    _assert_same_result(uninterrupted, out)


# ---------------------------------------------------------------------------------------------------- NaN guard


def _all_weights_finite(folder: Path) -> bool:
    weights = load_file(str(folder / "model.safetensors"))
    return all(torch.isfinite(t).all() for t in weights.values())


@pytest.mark.slow
def test_nan_loss_stops_after_saving_the_last_good_state(tmp_path):
    """A real cause: a learning rate of 1e30 makes step 1's update blow the weights up to ~1e30, so step 2's
    attention scores overflow to inf and the loss is NaN."""
    out = tmp_path / "run"
    args = _args(out, "--learning_rate", "1e30", "--max_steps", "6", "--save_steps", "100")
    args[args.index("--model_type") + 1] = "transformer"
    tiny = {"d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "num_attention_heads": 2, "ffn_dim": 32}
    args[args.index("--model_config") + 1] = json.dumps({**tiny, "dropout": 0.0})
    proc = _run([sys.executable, str(SCRIPT), *args], _env(), expect_rc=1)
    assert re.search(
        r"train\.py: error: training loss is nan at step 2; the last good state \(step 1\) is saved in .*step-1",
        proc.stderr,
    )
    assert [s for s, _ in list_checkpoints(out)] == [1]
    _assert_checkpoints_sound(out)
    assert not (out / "final_model").exists()  # nothing NaN is written as a model
    assert [h["step"] for h in _steps(out)] == [1]  # the history holds the good step, and was written


@pytest.mark.slow
def test_nan_policy_skip_drops_the_update_and_goes_on(tmp_path):
    out = tmp_path / "run"
    args = _args(out, "--nan_policy", "skip", "--max_steps", "5", "--save_steps", "100")
    proc = _run([sys.executable, str(SCRIPT), *args], _env(**{DEBUG_NAN_ENV: "3"}))
    assert "step 3: training loss is nan; update skipped (--nan_policy skip, 1 in a row)" in proc.stderr
    history = json.loads((out / "training_history.json").read_text())
    skipped = [h for h in history if "skipped" in h]
    assert skipped == [{"step": 3, "epoch": 0, "skipped": "loss is nan"}]
    assert [h["step"] for h in _steps(out)] == [1, 2, 3, 4, 5]  # step 3 retried on the next batches
    assert all(math.isfinite(h["loss"]) for h in _steps(out))
    assert _all_weights_finite(out / "final_model")
    _assert_checkpoints_sound(out)


# ---------------------------------------------------------------------------------------------------- safe loading

_TORCH_LOAD = re.compile(r"\btorch\.load\(")
_PICKLE = re.compile(r"\b(pickle|cPickle|dill|joblib)\.loads?\(|\bimport (pickle|dill|joblib)\b")


def _python_sources() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))
    files += sorted((ROOT / "benchmarks").glob("*.py"))
    assert len(files) > 10
    return files


def test_no_unsafe_deserialization_in_the_package():
    offenders = []
    for path in _python_sources():
        text = path.read_text(encoding="utf-8")
        for match in _TORCH_LOAD.finditer(text):
            call = text[match.start() : text.find(")", match.end()) + 1]
            if "weights_only=True" not in call:
                offenders.append(f"{path.relative_to(ROOT)}: {call}")
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in _PICKLE.finditer(text)]
        # Remote code runs only when the user says so: code passes the user's choice through, and only
        # docstrings/comments (which tell users how to load a folder elsewhere) may say trust_remote_code=True.
        for lineno, line in enumerate(text.splitlines(), 1):
            if "trust_remote_code=True" in line.split("#")[0] and not _in_docstring(text, lineno):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "unsafe loading:\n" + "\n".join(offenders)


def _in_docstring(text: str, lineno: int) -> bool:
    """Whether line ``lineno`` is inside a triple-quoted string (good enough for our sources)."""
    before = "\n".join(text.splitlines()[: lineno - 1])
    return (before.count('"""') + before.count("'''")) % 2 == 1


def test_saved_folder_holds_only_safetensors_weights(tmp_path):
    from hf_seq2seq.hub import save_model_folder

    tokenizer = tiny_tokenizer()
    for family in ("rnn", "transformer"):
        folder = save_model_folder(tiny_model(family, len(tokenizer)), tokenizer, tmp_path / family)
        names = {p.name for p in folder.iterdir()}
        assert "model.safetensors" in names
        pickled = [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
        assert not pickled, f"{family}: pickled weights {pickled}"


@pytest.mark.slow
def test_remote_code_needs_explicit_trust(tmp_path):
    from hf_seq2seq.hub import save_model_folder

    tokenizer = tiny_tokenizer()
    folder = save_model_folder(tiny_model("rnn", len(tokenizer)), tokenizer, tmp_path / "m")
    proc = run_without_package(
        f"""
        from transformers import AutoModelForSeq2SeqLM
        try:
            AutoModelForSeq2SeqLM.from_pretrained({str(folder)!r})
        except ValueError as err:
            print("REFUSED:", err)
        else:
            raise SystemExit("loaded custom code without trust_remote_code=True")
        model = AutoModelForSeq2SeqLM.from_pretrained({str(folder)!r}, trust_remote_code=True)
        print("TRUSTED:", type(model).__name__)
        """
    )
    assert "REFUSED:" in proc.stdout and "trust_remote_code=True" in proc.stdout
    assert "TRUSTED: RNNSeq2SeqForConditionalGeneration" in proc.stdout


# ---------------------------------------------------------------------------------------------------- load


@pytest.mark.slow
def test_translate_500_lines_beam_5_with_bounded_memory(tmp_path):
    """A small version of benchmarks/bench_translate_load.py (10,000 lines there): completes, keeps line count and
    empty lines, shows a progress bar on a terminal (a pseudo-terminal), and reports its peak memory."""
    proc = _run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_translate_load.py"), "--lines", "500", "--num_beams", "5",
         "--workdir", str(tmp_path), "--out", str(tmp_path / "load")],
        _env(),
    )  # fmt: skip
    result = json.loads((tmp_path / "load.json").read_text())
    assert result["exit_code"] == 0
    assert result["output_lines"] == result["input_lines"] == 500
    assert result["empty_lines_kept"] is True
    assert result["progress_bar_seen"] is True
    assert result["peak_rss_mib"] < 2048, proc.stdout
    assert (tmp_path / "load.md").read_text().startswith("# Load")

"""Every Accelerate launch config in configs/accelerate/ runs scripts/train.py on CPU with gloo (issue 18, item 1).

The runs are those of tests/training/test_training.py (tiny Transformer, Multi30k slice, 6 steps) launched through the config
files, with only what a CPU needs overridden on the command line (process count, ``--mixed_precision no``,
``ACCELERATE_USE_CPU=1``). Each distributed run must give, step by step, the losses of one process with the same
global batch (1 process x 2 accumulation steps), save the same model (plain keys: no wrapper prefix), and resume
from its own checkpoint to exactly the uninterrupted run.

- ``single_gpu.yaml`` — the 1-process reference (on the CPU).
- ``multi_node.yaml`` — two ``accelerate launch`` invocations (``--num_machines 2 --machine_rank 0/1``) meeting at
  127.0.0.1, one process each.
- ``cpu_two_processes.yaml`` — 2 processes, gloo DDP: resumes the multi-node run on one machine (the DDP run from
  scratch is tests/training/test_training.py's).
- ``fsdp.yaml`` — Accelerate's FSDP plugin, version 2, 2 processes, sharded and full state-dict checkpoints.
  Accelerate enables FSDP only on GPU-like back-ends, so these runs go through tests/_fsdp_cpu_train.py, which hands
  Accelerate the CPU process group as if it were a GPU one (its docstring says exactly what it changes).
- ``multi_gpu_ddp.yaml`` — the DDP code path of ``cpu_two_processes.yaml`` with bf16 on GPUs: no GPU here, so
  Accelerate's launcher must accept it and, launched without ``ACCELERATE_USE_CPU``, train.py must refuse to let
  each process train alone.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training import (
    LOSS_RTOL,
    MAX_STEPS,
    ROOT,
    SCRIPT,
    _common_args,
    _env,
    _free_port,
    _history,
    _weights,
    assert_resumed_run_equals,
)

CONFIGS = ROOT / "configs" / "accelerate"
FSDP_LAUNCHER = ROOT / "tests" / "_fsdp_cpu_train.py"
RESUME_STEP = 3  # checkpoints at steps 3 and 6; the resumed copy restarts from step 3
# How each config file is covered here: the test that runs it, or why it cannot run on this machine.
COVERAGE = {
    "single_gpu.yaml": "run: the 1-process reference of every comparison",
    "cpu_two_processes.yaml": "run: resumes the multi-node run (test_multi_node_..._resumes_on_one_machine)",
    "multi_node.yaml": "run: test_multi_node_matches_one_process_and_resumes_on_one_machine",
    "fsdp.yaml": "run: test_fsdp2_matches_one_process_and_resumes (sharded and full state dicts)",
    "multi_gpu_ddp.yaml": "needs GPUs (its DDP path runs as cpu_two_processes.yaml); launched up to the no-GPU check",
}


def _accelerate(config: str, *overrides: str) -> list[str]:
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    return [accelerate, "launch", "--config_file", str(CONFIGS / config), *overrides]


def _cpu_env() -> dict:
    return dict(_env(), ACCELERATE_USE_CPU="1")


def _wait(procs: list[subprocess.Popen], timeout: int = 420) -> None:
    """Wait for every launch; on a failure or timeout kill the others (they would wait for their peer forever)."""
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        raise
    failed = [(p, out) for p, out in zip(procs, outputs) if p.returncode != 0]
    if failed:
        for p in procs:
            p.kill()
        p, (stdout, stderr) = failed[0]
        raise AssertionError(
            f"{' '.join(p.args)} failed ({p.returncode}):\n{stdout[-3000:]}\n{stderr[-5000:]}"
        )


def _launch(cmds: list[list[str]], env: dict) -> None:
    """Start every command at once (the launches of one job meet at the rendezvous) and wait for all."""
    kwargs = dict(cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait([subprocess.Popen(cmd, **kwargs) for cmd in cmds])


def _args(multi30k_dir: Path, out: Path, *extra: str) -> list[str]:
    return [*_common_args(multi30k_dir, out), "--save_steps", str(RESUME_STEP), *extra]


@pytest.fixture(scope="module")
def reference_run(multi30k_dir, tmp_path_factory) -> Path:
    """One process with 2 accumulation steps, launched through single_gpu.yaml (on the CPU)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    cmd = _accelerate("single_gpu.yaml", "--mixed_precision", "no")
    _launch(
        [[*cmd, str(SCRIPT), *_args(multi30k_dir, out, "--gradient_accumulation_steps", "2")]], _cpu_env()
    )
    return out


def _assert_matches_reference(out: Path, reference: Path, ranks: int) -> None:
    """Same global batches and losses as the 1-process run, all ranks ran, and the same plain-keyed model."""
    assert (out / "checkpoints" / f"step-{MAX_STEPS}" / f"random_states_{ranks - 1}.pkl").is_file()
    one, _ = _history(reference)
    many, _ = _history(out)
    assert [h["step"] for h in many] == list(range(1, MAX_STEPS + 1))
    assert [h["tokens"] for h in many] == [h["tokens"] for h in one]
    for a, b in zip(one, many):
        assert b["loss"] == pytest.approx(a["loss"], rel=LOSS_RTOL), f"step {a['step']}"
    a, b = _weights(reference), _weights(out)
    assert sorted(b) == sorted(a)  # no FSDP / DDP / torch.compile prefix, nothing missing
    assert sorted(load_file(str(out / "best_model" / "model.safetensors"))) == sorted(a)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-4)


def _resume_copy(out: Path, tmp_path: Path) -> Path:
    """A copy of a finished run cut back to its step-3 checkpoint, as if it had stopped there (``--resume`` then
    restores the history, model, optimizer, scheduler and RNG states of that checkpoint)."""
    copy = tmp_path / "resumed"
    shutil.copytree(
        out, copy, ignore=shutil.ignore_patterns("final_model", "best_model", f"step-{MAX_STEPS}")
    )
    (copy / "training_history.json").unlink()
    return copy


def _assert_resumed_equals(copy: Path, out: Path) -> None:
    """Same ranks, same checkpoint: the resumed steps and model equal the uninterrupted run's."""
    assert (copy / "checkpoints" / f"step-{MAX_STEPS}" / "random_states_1.pkl").is_file()  # 2 ranks resumed
    assert_resumed_run_equals(copy, out)


# --------------------------------------------------------------------------------------------------- tests


def test_every_config_is_accepted_by_accelerate():
    """Each file is covered here, parses, and Accelerate's launcher takes it (the distributed type it asks for)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(COVERAGE)
    expected = {"fsdp.yaml": "use_fsdp", "multi_node.yaml": "multi_gpu", "multi_gpu_ddp.yaml": "multi_gpu"}
    expected["cpu_two_processes.yaml"] = "multi_gpu"  # torchrun starts the processes (see the file)
    for name in COVERAGE:
        parsed = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), str(SCRIPT)])
        args, _, _ = _validate_launch_command(parsed)
        if name in expected:
            assert getattr(args, expected[name]), name
            assert args.num_processes >= 2, name
    fsdp, _, _ = _validate_launch_command(
        launch_command_parser().parse_args(["--config_file", str(CONFIGS / "fsdp.yaml"), str(SCRIPT)])
    )
    assert (fsdp.fsdp_version, fsdp.fsdp_auto_wrap_policy) == (2, "TRANSFORMER_BASED_WRAP")


@pytest.mark.slow
def test_multi_node_matches_one_process_and_resumes_on_one_machine(multi30k_dir, tmp_path, reference_run):
    """Two `accelerate launch` invocations, machine ranks 0 and 1, one process each, meeting at 127.0.0.1; the
    run is then resumed from its step-3 checkpoint by cpu_two_processes.yaml: the same 2 ranks on one machine."""

    def machines(out: Path, *extra: str) -> list[list[str]]:
        port = str(_free_port())
        overrides = ["--num_processes", "2", "--mixed_precision", "no", "--main_process_ip", "127.0.0.1"]
        return [
            [
                *_accelerate(
                    "multi_node.yaml", *overrides, "--main_process_port", port, "--machine_rank", rank
                ),
                *[str(SCRIPT), *_args(multi30k_dir, out, *extra)],
            ]
            for rank in ("0", "1")
        ]

    out = tmp_path / "multi_node"
    _launch(machines(out), _cpu_env())
    _assert_matches_reference(out, reference_run, ranks=2)
    copy = _resume_copy(out, tmp_path)
    one_machine = _accelerate("cpu_two_processes.yaml", "--main_process_port", str(_free_port()))
    _launch([[*one_machine, str(SCRIPT), *_args(multi30k_dir, copy, "--resume")]], _cpu_env())
    _assert_resumed_equals(copy, out)


@pytest.mark.slow
@pytest.mark.parametrize("state_dict_type", ["SHARDED_STATE_DICT", "FULL_STATE_DICT"])
def test_fsdp2_matches_one_process_and_resumes(multi30k_dir, tmp_path, reference_run, state_dict_type):
    def fsdp(out: Path, *extra: str) -> list[str]:
        overrides = [
            "--num_processes",
            "2",
            "--mixed_precision",
            "no",
            "--main_process_port",
            str(_free_port()),
        ]
        overrides += ["--fsdp_state_dict_type", state_dict_type]
        return [*_accelerate("fsdp.yaml", *overrides), str(FSDP_LAUNCHER), *_args(multi30k_dir, out, *extra)]

    out = tmp_path / "fsdp"
    _launch([fsdp(out)], _cpu_env())
    _assert_matches_reference(out, reference_run, ranks=2)
    checkpoint = out / "checkpoints" / f"step-{RESUME_STEP}"
    if state_dict_type == "SHARDED_STATE_DICT":  # torch.distributed.checkpoint: shards written by each rank
        assert list((checkpoint / "pytorch_model_fsdp_0").glob("*.distcp"))
    else:  # one full file gathered on rank 0
        assert (checkpoint / "pytorch_model_fsdp.bin").is_file()
    _assert_fsdp_checkpoints_hold_full_weights(out, reference_run)
    copy = _resume_copy(out, tmp_path)
    _launch([fsdp(copy, "--resume")], _cpu_env())
    _assert_resumed_equals(copy, out)


def _assert_fsdp_checkpoints_hold_full_weights(out: Path, reference: Path) -> None:
    """Every FSDP checkpoint also holds model.safetensors: the 1-process run's checkpoint at the same step, the same
    keys (tied weights once), and `average-checkpoints` reads them."""
    from hf_seq2seq.training.averaging import average_checkpoints

    steps = [RESUME_STEP, MAX_STEPS]
    for step in steps:
        ours = load_file(str(out / "checkpoints" / f"step-{step}" / "model.safetensors"))
        theirs = load_file(str(reference / "checkpoints" / f"step-{step}" / "model.safetensors"))
        assert sorted(ours) == sorted(theirs)
        for name in theirs:
            torch.testing.assert_close(ours[name], theirs[name], rtol=1e-3, atol=1e-4)
    averaged = average_checkpoints([out / "checkpoints" / f"step-{step}" for step in steps])
    assert averaged and all(torch.isfinite(t).all() for t in averaged.values())


@pytest.mark.slow
def test_fsdp2_refuses_bf16_weights(multi30k_dir, tmp_path):
    """--bf16_weights under FSDP2 stops before the first step, pointing at FSDP's own fp32-sharded bf16 policy."""
    overrides = ["--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(_free_port())]
    cmd = [*_accelerate("fsdp.yaml", *overrides), str(FSDP_LAUNCHER)]
    cmd += _args(multi30k_dir, tmp_path / "out", "--bf16_weights")
    proc = subprocess.run(cmd, cwd=ROOT, env=_cpu_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "error: --bf16_weights is not for FSDP: Accelerate's FSDP2 already keeps fp32" in proc.stderr
    assert not (tmp_path / "out" / "checkpoints").exists()


@pytest.mark.slow
def test_fsdp_asked_on_cpu_without_the_test_launcher_stops_with_a_clear_error(tmp_path):
    """Accelerate falls back to DDP when FSDP is asked on CPU; train.py refuses instead of training something else."""
    cmd = _accelerate("fsdp.yaml", "--num_processes", "2", "--mixed_precision", "no")
    cmd += [
        "--main_process_port",
        str(_free_port()),
        str(SCRIPT),
        "--config",
        str(ROOT / "configs" / "test_tiny.yaml"),
    ]
    proc = subprocess.run(
        [*cmd, "--output_dir", str(tmp_path / "out")],
        cwd=ROOT,
        env=_cpu_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "the launch config asks for FSDP but Accelerate set up MULTI_CPU" in proc.stderr
    assert not (tmp_path / "out" / "checkpoints").exists()


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the processes do train together")
def test_processes_without_gpu_or_accelerate_use_cpu_stop_with_a_clear_error(tmp_path):
    """multi_gpu_ddp.yaml on a machine without GPUs: torchrun starts the processes, each would train alone."""
    env = {k: v for k, v in _env().items() if k != "ACCELERATE_USE_CPU"}
    cmd = _accelerate("multi_gpu_ddp.yaml", "--num_processes", "2", "--mixed_precision", "no")
    cmd += ["--main_process_port", str(_free_port()), str(SCRIPT)]
    cmd += ["--config", str(ROOT / "configs" / "test_tiny.yaml"), "--output_dir", str(tmp_path / "out")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "2 processes were launched (WORLD_SIZE=2) but Accelerate runs each one alone" in proc.stderr

"""Training runs of scripts/train.py in subprocesses (issue 18, items 2 and 3): ``--torch_compile`` and
``--streaming`` runs whose checkpoints, resume and averaging see no ``_orig_mod.`` keys, 2 processes equal to 1
with accumulation, ``--bf16_weights`` runs that resume exactly and save fp32 masters.

The compiled run uses ``--torch_compile_backend eager``: ``torch.compile`` still wraps the model in its
``OptimizedModule`` (the ``_orig_mod`` attribute whose keys must not leak) and dynamo still traces every step;
only inductor's code generation, minutes on this CPU, is left out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # every test trains in subprocesses


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
    from hf_seq2seq.training.averaging import write_averaged_model

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


def _safetensors_dtypes(folder: Path) -> set:
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return {str(f.get_slice(k).get_dtype()) for k in f.keys()}


def test_bf16_weights_compiled_run_resumes_exactly_and_saves_fp32_masters(tmp_path):
    """--bf16_weights with --torch_compile, accumulation 2 and clipping: a resumed run gives the uninterrupted
    run's losses exactly (masters and AdamW state in the checkpoint); checkpoints, final model and an average hold
    float32 masters (finer than bf16) under the model's own keys."""
    from safetensors.torch import load_file

    from hf_seq2seq.training.averaging import write_averaged_model

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

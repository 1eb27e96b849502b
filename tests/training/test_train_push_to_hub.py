"""``train --push_to_hub --hub_model_id USER/NAME`` (issue 28, row 11; docs/hub.md): the repo is created before the
first step, and the chosen model folder — weights, code, tokenizer, card — is uploaded in one commit when training
ends, to the real loopback Hub server of tests/hub_server.py. A Hub that cannot be reached fails the run in one
line before any training; wrong hub options fail in one line at parsing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT
from hub_server import LoopbackHub

from hf_seq2seq.commands.train import train_main

pytestmark = pytest.mark.slow

TINY = ["--config", str(PROJECT_ROOT / "configs" / "test_tiny.yaml"), "--max_steps", "4", "--eval_steps", "2"]


def _train(args, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hf_seq2seq.cli", "train", *TINY, "--disable_progress_bar", *args],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _hub_env(url: str, tmp_path) -> dict:
    return dict(
        os.environ,
        HF_ENDPOINT=url,
        HF_HUB_OFFLINE="0",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_TOKEN="hf_loopback_test_token",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
    )


def test_train_pushes_the_chosen_model_with_its_card_in_one_commit(tmp_path):
    hub = LoopbackHub().start()
    try:
        run = tmp_path / "run"
        args = ["--output_dir", str(run), "--push_to_hub", "--hub_model_id", "user/tiny-numbers"]
        done = _train([*args, "--hub_private_repo"], _hub_env(hub.url, tmp_path))
        assert done.returncode == 0, done.stderr[-3000:] + "\nunhandled: " + str(hub.state.unhandled)
        repo = hub.state.repos["user/tiny-numbers"]
        assert repo.private and len(repo.commits) == 1
        folder = run / "best_model"
        uploaded = repo.commits[0].files
        assert set(uploaded) == {p.name for p in folder.iterdir() if p.is_file()}
        for name in (
            "model.safetensors",
            "config.json",
            "README.md",
            "tokenizer.json",
            "pipeline_text2text.py",
        ):
            assert uploaded[name] == (folder / name).read_bytes(), name
        card = uploaded["README.md"].decode("utf-8")
        assert "model-index" in card and str(tmp_path) not in card  # the card as written, no local path
        assert hub.state.unhandled == []
    finally:
        hub.stop()


def test_an_unreachable_hub_fails_before_training_in_one_line(tmp_path):
    hub = LoopbackHub().start()
    url = hub.url
    hub.stop()  # nothing listens there any more
    run = tmp_path / "run"
    done = _train(
        ["--output_dir", str(run), "--push_to_hub", "--hub_model_id", "user/x"], _hub_env(url, tmp_path)
    )
    assert done.returncode == 1
    # the log's INFO lines, then one error line
    err = [line for line in done.stderr.splitlines() if " INFO " not in line]
    assert len(err) == 1 and err[0].startswith("hf-seq2seq train: error: --push_to_hub: user/x: "), (
        done.stderr
    )
    assert "cannot reach the Hub" in err[0] and "Traceback" not in done.stderr
    assert not (run / "checkpoints").exists() and not (run / "final_model").exists()  # no step was taken


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--push_to_hub"], "--push_to_hub needs --hub_model_id"),
        (["--push_to_hub", "--hub_model_id", "no-namespace"], "--hub_model_id must look like USER/NAME"),
        (["--hub_model_id", "user/x"], "--hub_model_id without --push_to_hub uploads nothing"),
        (["--hub_private_repo"], "--hub_private_repo without --push_to_hub"),
    ],
)
def test_hub_options_are_checked_at_parsing(args, message, capsys, tmp_path):
    assert train_main([*TINY, "--output_dir", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "run").exists()

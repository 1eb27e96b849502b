"""Issue 28, rows 6, 7, 8, 9 and 16: a user's mistake ends in one line, at once. Empty evaluation files; outputs
in a read-only place (checked before any work, for every command that writes); a path-shaped ``--model`` that does
not exist (no Hub retries); a bad ``--task``, a negative ``--threads``, non-UTF-8 text in an argument, Ctrl-C during
the imports. Path and option mistakes are found before torch / transformers are imported (the console script's
pre-flight, ``hf_seq2seq_cli.preflight``)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hf_seq2seq.cli import main as cli_main

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# run a command in a fresh Python, then say whether torch was imported (the pre-flight must answer without it)
RUN = (
    "import sys\nfrom hf_seq2seq_cli import main\nstatus = main(sys.argv[1:])\n"
    "print('torch imported' if 'torch' in sys.modules else 'torch not imported')\nsys.exit(status)\n"
)


def _cli(args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUN, *args],
        cwd=cwd or PROJECT_ROOT,
        capture_output=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(PROJECT_ROOT)),
        timeout=300,
    )


def _one_line(proc: subprocess.CompletedProcess, status: int, *words: str) -> str:
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == status, (proc.returncode, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), lines[0]
    assert b"torch not imported" in proc.stdout, "the mistake should be found before torch is imported"
    return lines[0]


@pytest.fixture
def read_only(tmp_path) -> Path:
    """A folder nobody may write into: chmod 0555 for a normal user; for root (who ignores modes) /sys."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    folder = Path("/sys")
    try:
        tempfile.mkstemp(dir=folder)
    except OSError:
        yield folder
        return
    pytest.skip("no read-only folder on this machine")


# ------------------------------------------------------------------------------------------- row 6: evaluate
def test_evaluate_on_empty_files_is_one_line(tmp_path, capsys):
    empty, model = tmp_path / "empty.txt", tmp_path / "model"
    empty.write_text("", encoding="utf-8")
    model.mkdir()  # never loaded: the files are checked first
    status = cli_main(["evaluate", "--model", str(model), "--source", str(empty), "--reference", str(empty)])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "--source" in err and "no non-empty line" in err


# ------------------------------------------------------------------------------- row 7: read-only outputs
def test_outputs_in_a_read_only_place_fail_before_the_work(tmp_path, read_only):
    src = tmp_path / "src.txt"
    src.write_text("drei\n", encoding="utf-8")
    model = tmp_path / "model"
    model.mkdir()
    cases = [
        ["translate", "--model", str(model), "--input", str(src), "--output", str(read_only / "out.txt")],
        ["evaluate", "--model", str(model), "--source", str(src), "--reference", str(src),
         "--output", str(read_only / "scores.json")],
        ["evaluate", "--model", str(model), "--source", str(src), "--reference", str(src),
         "--hypotheses", str(read_only / "hyps.txt")],
        ["plot-attention", "--model", str(model), "--text", "drei", "--output", str(read_only / "a.png")],
        ["train", "--task", "numbers", "--output_dir", str(read_only / "run")],
        ["demo", "--output_dir", str(read_only / "demo_output")],
        ["analyze", str(model), "--source", str(src), "--reference", str(src),
         "--output_dir", str(read_only / "analysis")],
        ["average-checkpoints", "--run_dir", str(model), "--output", str(read_only / "avg")],
    ]  # fmt: skip
    for args in cases:
        option = next(a for a in args if a.startswith("--output") or a == "--hypotheses")
        _one_line(_cli(args), 1, "cannot write there", option)


def test_update_card_on_a_read_only_folder_fails_before_the_work(tmp_path, read_only):
    if read_only == Path("/sys"):
        pytest.skip("needs a read-only model folder with files (not possible as root here)")
    src = tmp_path / "src.txt"
    src.write_text("drei\n", encoding="utf-8")
    _one_line(
        _cli(
            [
                "evaluate",
                "--model",
                str(read_only),
                "--source",
                str(src),
                "--reference",
                str(src),
                "--update_card",
            ]
        ),
        1,
        "--update_card",
        "read-only",
    )


# ------------------------------------------------------------------------ row 9: a mistyped model folder
def test_a_path_shaped_model_that_does_not_exist_fails_at_once(tmp_path):
    (tmp_path / "runs").mkdir()  # the user's runs folder: runs/tr is a path, not a Hub repository
    src = tmp_path / "src.txt"
    src.write_text("drei\n", encoding="utf-8")
    for model in ("runs/tr", "./runs/tr", "../elsewhere/model", "runs/a/b", str(tmp_path / "nope")):
        proc = _cli(["translate", "--model", model, "--input", str(src)], cwd=tmp_path)
        _one_line(proc, 1, f"--model {model}: folder not found", str(tmp_path))
    _one_line(
        _cli(["export", "--format", "onnx", "--template", "runs/x", "a", "b"], cwd=tmp_path), 1, "runs/x"
    )


def test_a_hub_shaped_model_still_goes_to_the_loader():
    from hf_seq2seq_cli import preflight

    assert preflight(["--model", "Helsinki-NLP/opus-mt-de-en"]) is None
    assert preflight(["--model", "t5-small"]) is None
    assert preflight(["--model", "de-en=./runs/tr"]) is not None  # serve's NAME=PATH


# ---------------------------------------------------------------------------- row 16: inputs before imports
def test_missing_inputs_fail_before_the_imports(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    _one_line(
        _cli(["translate", "--model", str(model), "--input", "nope.txt"]),
        1,
        "--input nope.txt does not exist",
    )
    _one_line(
        _cli(["evaluate", "--model", str(model), "--source", str(model), "--reference", "x"]),
        1,
        "is a folder",
    )
    _one_line(
        _cli(["train", "--config", "no_such_recipe.yaml"]), 1, "--config no_such_recipe.yaml does not exist"
    )


# ------------------------------------------------------------------------------------------ row 8: the rest
def test_demo_task_is_a_choice_and_matches_the_tasks():
    from hf_seq2seq.commands.demo import DEMO_TASKS
    from hf_seq2seq.tasks import TASKS

    assert set(DEMO_TASKS) == set(TASKS)
    proc = _cli(["demo", "--task", "weather"])
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr, proc.stderr
    assert b"--task" in proc.stderr and b"'weather'" in proc.stderr


def test_negative_threads_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["translate", "--model", str(tmp_path), "--engine", "ctranslate2", "--threads", "-3"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--threads: must be >= 1, got -3" in err and "Traceback" not in err


def test_non_utf8_text_argument_is_one_line(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    proc = _cli(
        ["plot-attention", "--model", str(model), "--text", os.fsdecode(b"f\xfcnf"), "--output", "x.png"]
    )
    _one_line(proc, 1, "not valid UTF-8")


def test_ctrl_c_during_the_imports_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "interrupted_command.py").write_text("raise KeyboardInterrupt\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    import hf_seq2seq_cli

    monkeypatch.setitem(hf_seq2seq_cli.COMMANDS, "translate", ("interrupted_command", "main", ""))
    assert cli_main(["translate"]) == 130
    assert capsys.readouterr().err.strip() == "hf-seq2seq translate: interrupted"


def test_an_unreachable_hub_fails_at_once_for_a_name_that_is_no_folder(tmp_path):
    """``runs/tr`` typed from the wrong folder reads as a Hub repository id; with the Hub out of reach (a closed
    port here) one quick request says so, instead of a minute of retries before "couldn't connect"."""
    src = tmp_path / "src.txt"
    src.write_text("drei\n", encoding="utf-8")
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="0",
        HF_ENDPOINT="http://127.0.0.1:9",
        HF_HOME=str(tmp_path / "hf_home"),
        PYTHONPATH=str(PROJECT_ROOT),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "hf_seq2seq.cli", "translate", "--model", "runs/tr", "--input", str(src)],
        cwd=tmp_path,
        capture_output=True,
        env=env,
        timeout=120,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert "--model runs/tr: no such folder here" in err and "cannot be reached" in err


def test_positional_paths_are_checked_before_the_imports(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    _one_line(_cli(["export", "runs/a/b", str(tmp_path / "o"), "--format", "onnx"]), 1, "model_dir runs/a/b")
    _one_line(_cli(["export", str(model), "/sys/o", "--format", "onnx", "--force"]), 1, "out_dir /sys/o")
    _one_line(
        _cli(["caption", "--model", str(model), "--no_path", "nope.png"]), 1, "image nope.png does not exist"
    )

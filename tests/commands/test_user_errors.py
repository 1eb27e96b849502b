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


def _cli(args, cwd=None, prefix=()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, sys.executable, "-c", RUN, *args],
        cwd=cwd or PROJECT_ROOT,
        capture_output=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(PROJECT_ROOT)),
        timeout=300,
    )


def _one_line(proc: subprocess.CompletedProcess, status: int, *words: str, before_torch: bool = True) -> str:
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == status, (proc.returncode, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), lines[0]
    if before_torch:
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


def test_analyze_on_empty_files_is_one_line_before_loading(tmp_path, capsys):
    """analyze says what evaluate says, before loading a model (it said "--heatmap_line=1 is not a line of ...
    (1..0)" once the model was loaded)."""
    empty, model = tmp_path / "empty.txt", tmp_path / "model"
    empty.write_text("\n\n", encoding="utf-8")
    model.mkdir()  # never loaded: the files are checked first
    argv = ["analyze", str(model), "--source", str(empty), "--reference", str(empty)]
    status = cli_main([*argv, "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"--source {empty} has no non-empty line: there is nothing to score" in err, err


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


@pytest.fixture
def nothing_is_computed(monkeypatch):
    """Training, translating and loading a model fail the test: a refused output must stop the command first."""
    import hf_seq2seq.analysis
    import hf_seq2seq.inference
    import hf_seq2seq.training

    def computed(*args, **kwargs):
        raise AssertionError("the command did its work before refusing its output")

    for module, name in (
        (hf_seq2seq.training, "run_training"),
        (hf_seq2seq.analysis, "analyze_model"),
        (hf_seq2seq.inference, "load_model"),
        (hf_seq2seq.inference, "load_captioner"),
    ):
        monkeypatch.setattr(module, name, computed)


def test_default_and_recipe_outputs_in_a_read_only_place_fail_before_the_work(
    tmp_path, read_only, nothing_is_computed, monkeypatch, capsys
):
    """G1 of the issue 28 audit: the pre-flight sees only the outputs written on the command line; a default output
    (train's outputs/run, demo's demo_output, analyze's analysis, plot-attention's attention.png) or a recipe's
    output_dir is checked by the command once its options are parsed, before any work."""
    src, model, image = tmp_path / "src.txt", tmp_path / "model", tmp_path / "image.png"
    src.write_text("drei\n", encoding="utf-8")
    model.mkdir()  # never loaded
    image.write_bytes(b"")  # never read
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"task: numbers\nmax_steps: 1\noutput_dir: {read_only / 'recipe_run'}\n", encoding="utf-8"
    )
    in_read_only = [
        (["train", "--task", "numbers", "--max_steps", "1"], "--output_dir outputs/run"),
        (["demo", "--max_steps", "1", "--num_examples", "20"], "--output_dir demo_output"),
        (["analyze", str(model), "--source", str(src), "--reference", str(src)], "--output_dir analysis"),
        (["plot-attention", "--model", str(model), "--text", "drei"], "--output attention.png"),
        (["plot-attention", "--model", str(model), "--image", str(image)], "--output attention.png"),
    ]
    in_tmp = [(["train", "--config", str(recipe)], f"--output_dir {read_only / 'recipe_run'}")]
    for cwd, cases in ((read_only, in_read_only), (tmp_path, in_tmp)):
        monkeypatch.chdir(cwd)
        for argv, words in cases:
            status = cli_main(argv)
            err = capsys.readouterr().err
            lines = [line for line in err.splitlines() if line.strip()]
            assert status == 1 and "Traceback" not in err and len(lines) == 1, (argv, err)
            assert lines[0].startswith(f"hf-seq2seq {argv[0]}: error: {words}: cannot write there"), lines[0]


def test_an_output_dir_that_cannot_be_prepared_is_one_line(tmp_path, monkeypatch, capsys):
    """An output folder that passes the writability check but cannot be created all the same (here a file of that
    name: its folder is writable) ends train and demo in one line naming --output_dir, not an OSError traceback."""
    monkeypatch.chdir(tmp_path)
    taken = tmp_path / "a_file"
    taken.write_text("not a folder\n", encoding="utf-8")
    small = ["--max_steps", "1", "--num_examples", "20", "--num_test", "2", "--disable_progress_bar"]
    for argv in (
        [
            "train",
            "--task",
            "numbers",
            "--task_num_train",
            "20",
            "--output_dir",
            str(taken),
            "--log_with",
            "none",
        ],
        ["demo", "--models", "gru_bahdanau", "--output_dir", str(taken), *small],
    ):
        status = cli_main(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("hf-seq2seq")]
        assert status == 1 and "Traceback" not in err and len(lines) == 1, (argv, err)
        assert "--output_dir" in lines[0] and "cannot prepare it" in lines[0], lines[0]


@pytest.fixture
def read_only_model(tmp_path):
    """``(folder, prefix)``: a saved model folder that nobody may write into, and the command prefix to run a
    command that sees it so. A normal user: chmod 0555 (no file can be created in it). Root ignores modes, so for
    root a read-only bind mount of the folder in a private mount namespace (``unshare -m``); skipped where that is
    not allowed."""
    from hub_server import tiny_model, tiny_tokenizer

    from hf_seq2seq.hub import save_model_folder

    tok = tiny_tokenizer()
    folder = save_model_folder(tiny_model("transformer", len(tok)), tok, tmp_path / "model")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder, ()
        folder.chmod(0o755)
        return
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'
    prefix = ("unshare", "-m", "sh", "-c", script, str(folder))
    try:
        probe = subprocess.run([*prefix, "touch", str(folder / "probe")], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("no unshare here: no read-only folder for root")
    if probe.returncode == 0 or (folder / "probe").exists() or b"Read-only" not in probe.stderr:
        pytest.skip(f"a read-only bind mount is not possible here: {probe.stderr.decode(errors='replace')}")
    yield folder, prefix


@pytest.mark.slow  # subprocesses (a fresh Python each): make test-fast skips it
def test_update_card_on_a_read_only_folder_fails_before_the_work(tmp_path, read_only_model):
    """evaluate (its --model, by the pre-flight) and analyze (its positional models, once parsed) refuse to update
    the card of a folder they cannot write, before loading and translating (analyze translated, wrote its
    analysis, then failed on the card)."""
    folder, prefix = read_only_model
    src, out = tmp_path / "src.txt", tmp_path / "analysis"
    src.write_text("drei\n", encoding="utf-8")
    words = (f"--update_card: {folder} is read-only", "card cannot be updated")
    files = ["--source", str(src), "--reference", str(src)]
    _one_line(_cli(["evaluate", "--model", str(folder), *files, "--update_card"], prefix=prefix), 1, *words)
    analyze = ["analyze", str(folder), *files, "--output_dir", str(out), "--update_card", "--device", "cpu"]
    _one_line(_cli(analyze, prefix=prefix), 1, *words, before_torch=False)
    assert not out.exists(), "analyze worked before refusing the card"


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
@pytest.mark.slow  # subprocesses (a fresh Python each): make test-fast skips it
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


@pytest.mark.slow  # subprocesses (a fresh Python each): make test-fast skips it
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

"""Issue 28, "Done when": README.md's "every mistake ends in one line" holds for every ``hf-seq2seq`` command and
every kind of mistake — a file that is not there, an output that cannot be written, an option value out of range,
a folder that is not a model. Each ends with a nonzero exit status and one stderr line naming the problem, without
a traceback; path mistakes are found before torch is imported (the console script's pre-flight). argparse's own
refusals (exit status 2) are one line too: the console script prints no usage synopsis before them.

A command added to ``hf_seq2seq_cli.COMMANDS`` fails ``test_every_command_has_its_cases`` until its cases are here."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hub_server import tiny_model, tiny_tokenizer
from PIL import Image

from hf_seq2seq.cli import COMMANDS
from hf_seq2seq.cli import main as cli_main

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUN = (
    "import sys\nfrom hf_seq2seq_cli import main\nstatus = main(sys.argv[1:])\n"
    "print('torch imported' if 'torch' in sys.modules else 'torch not imported')\nsys.exit(status)\n"
)
MISSING, UNWRITABLE, BAD_VALUE, NOT_A_MODEL = (
    "missing file",
    "unwritable output",
    "bad option value",
    "not a model",
)
# what does not apply, and why (a command that reads no file, writes nothing, or takes no model folder)
NOT_APPLICABLE = {
    ("demo", MISSING): "reads no file: it generates its data",
    ("demo", NOT_A_MODEL): "takes no model: it trains its own",
    ("push", MISSING): "reads only the model folder",
    ("export", MISSING): "reads only the model folder",
    ("average-checkpoints", MISSING): "reads only checkpoint folders",
    ("convert", MISSING): "reads only the model folder",
    ("caption", UNWRITABLE): "writes to stdout only",
    ("push", UNWRITABLE): "writes to the Hub only",
}


def _cases(p: dict) -> dict[str, dict[str, list[str]]]:
    """``{command: {kind: argv}}`` with the paths of the ``places`` fixture (``p``)."""
    model, junk, src, image, ro, x = p["model"], p["junk"], p["src"], p["image"], p["ro"], p["missing"]
    return {
        "demo": {
            UNWRITABLE: ["--output_dir", f"{ro}/demo"],
            BAD_VALUE: ["--task", "weather"],
        },
        "train": {
            MISSING: ["--config", f"{x}.yaml"],
            UNWRITABLE: ["--task", "numbers", "--output_dir", f"{ro}/run"],
            BAD_VALUE: ["--task", "numbers", "--max_steps", "0", "--output_dir", f"{x}_run"],
            NOT_A_MODEL: ["--model_name_or_path", junk, "--task", "numbers", "--output_dir", f"{x}_run"],
        },
        "translate": {
            MISSING: ["--model", model, "--input", x],
            UNWRITABLE: ["--model", model, "--input", src, "--output", f"{ro}/out.txt"],
            BAD_VALUE: ["--model", model, "--input", src, "--num_beams", "0"],
            NOT_A_MODEL: ["--model", junk, "--input", src],
        },
        "align": {
            MISSING: ["--model", model, "--source", x, "--target", src],
            UNWRITABLE: ["--model", model, "--source", src, "--target", src, "--output", f"{ro}/a.txt"],
            BAD_VALUE: ["--model", model, "--source", src, "--target", src, "--alignments", "sharp"],
            NOT_A_MODEL: ["--model", junk, "--source", src, "--target", src],
        },
        "evaluate": {
            MISSING: ["--model", model, "--source", x, "--reference", src],
            UNWRITABLE: ["--model", model, "--source", src, "--reference", src, "--output", f"{ro}/s.json"],
            BAD_VALUE: ["--model", model, "--source", src, "--reference", src, "--num_beams", "0"],
            NOT_A_MODEL: ["--model", junk, "--source", src, "--reference", src],
        },
        "plot-attention": {
            MISSING: ["--model", model, "--image", f"{x}.png"],
            UNWRITABLE: ["--model", model, "--text", "drei", "--output", f"{ro}/a.png"],
            BAD_VALUE: ["--model", model, "--text", "drei", "--max_new_tokens", "0", "--output", f"{x}.png"],
            NOT_A_MODEL: ["--model", junk, "--text", "drei", "--output", f"{x}.png"],
        },
        "caption": {
            MISSING: ["--model", model, f"{x}.png"],
            BAD_VALUE: ["--model", model, image, "--num_beams", "0"],
            NOT_A_MODEL: ["--model", junk, image],
        },
        "push": {
            BAD_VALUE: ["--model", model, "--repo_id", "no-namespace"],
            NOT_A_MODEL: ["--model", junk, "--repo_id", "user/x"],
        },
        "analyze": {
            MISSING: [model, "--source", x, "--reference", src],
            UNWRITABLE: [model, "--source", src, "--reference", src, "--output_dir", f"{ro}/analysis"],
            BAD_VALUE: [model, "--source", src, "--reference", src, "--min_bucket_size", "0"],
            NOT_A_MODEL: [junk, "--source", src, "--reference", src, "--output_dir", f"{x}_analysis"],
        },
        "export": {
            UNWRITABLE: [model, f"{ro}/export", "--format", "onnx"],
            BAD_VALUE: [model, f"{x}_export", "--format", "tflite"],
            NOT_A_MODEL: [junk, f"{x}_export", "--format", "onnx"],
        },
        "serve": {
            MISSING: ["--models_file", f"{x}.json"],
            UNWRITABLE: ["--model", f"m={model}", "--write_openapi", f"{ro}/openapi.json"],
            BAD_VALUE: ["--model", f"m={model}", "--batch_wait", "sometimes"],
            NOT_A_MODEL: ["--model", f"m={junk}"],
        },
        "average-checkpoints": {
            UNWRITABLE: ["--run_dir", model, "--last", "2", "--output", f"{ro}/avg"],
            BAD_VALUE: ["--run_dir", model, "--last", "0", "--output", f"{x}_avg"],
            NOT_A_MODEL: ["--checkpoints", junk, junk, "--template", junk, "--output", f"{x}_avg"],
        },
        "convert": {
            UNWRITABLE: ["--from", "marian", "--to", "hf-seq2seq", "--model", model, "--output", f"{ro}/c"],
            BAD_VALUE: ["--from", "fairseq", "--to", "hf-seq2seq", "--model", model, "--output", f"{x}_c"],
            NOT_A_MODEL: ["--from", "marian", "--to", "hf-seq2seq", "--model", junk, "--output", f"{x}_c"],
        },
    }


def _read_only_folder(tmp: Path):
    """A folder nobody may write into: chmod 0555 for a normal user; for root (who ignores modes) /sys."""
    if os.geteuid() != 0:
        folder = tmp / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    try:
        tempfile.mkstemp(dir="/sys")
    except OSError:
        return Path("/sys")
    return None


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one_line")
    tok = tiny_tokenizer()
    junk = tmp / "junk"  # a folder, but not a model
    junk.mkdir()
    (junk / "notes.txt").write_text("not a model\n", encoding="utf-8")
    src = tmp / "src.txt"
    src.write_text("drei und zwanzig\n", encoding="utf-8")
    image = tmp / "image.png"
    Image.new("RGB", (8, 8), "white").save(image)
    ro = _read_only_folder(tmp)
    yield {
        "tmp": tmp,
        "model": str(save_model_folder_once(tok, tmp / "model")),
        "junk": str(junk),
        "src": str(src),
        "image": str(image),
        "ro": str(ro) if ro else None,
        "missing": str(tmp / "not_here"),
    }
    if ro is not None and ro != Path("/sys"):
        ro.chmod(0o755)


def save_model_folder_once(tok, folder: Path) -> Path:
    from hf_seq2seq.hub import save_model_folder

    return save_model_folder(tiny_model("transformer", len(tok)), tok, folder)


def _kinds():
    return [(name, kind) for name in COMMANDS for kind in (MISSING, UNWRITABLE, BAD_VALUE, NOT_A_MODEL)]


def test_every_command_has_its_cases():
    cases = _cases({k: "x" for k in ("model", "junk", "src", "image", "ro", "missing")})
    assert set(cases) == set(COMMANDS)
    for name, kind in _kinds():
        assert (kind in cases[name]) != ((name, kind) in NOT_APPLICABLE), (name, kind)


def _stderr_lines(err: str, status: int) -> list[str]:
    """The lines of ``err`` (argparse's refusals included: the CLI prints no usage synopsis before them)."""
    return [line for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize(("name", "kind"), [c for c in _kinds() if c[1] in (MISSING, UNWRITABLE)])
def test_path_mistakes_are_one_line_before_the_imports(places, name, kind):
    if (name, kind) in NOT_APPLICABLE:
        pytest.skip(NOT_APPLICABLE[name, kind])
    if kind == UNWRITABLE and places["ro"] is None:
        pytest.skip("no read-only folder on this machine")
    args = _cases(places)[name][kind]
    proc = subprocess.run(
        [sys.executable, "-c", RUN, name, *args],
        cwd=places["tmp"], capture_output=True, text=True, timeout=120,
        env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(PROJECT_ROOT)),
    )  # fmt: skip
    lines = _stderr_lines(proc.stderr, proc.returncode)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"hf-seq2seq {name}: error: "), proc.stderr
    assert "torch not imported" in proc.stdout, "a path mistake is found before torch is imported"


@pytest.mark.parametrize(("name", "kind"), [c for c in _kinds() if c[1] in (BAD_VALUE, NOT_A_MODEL)])
def test_value_and_model_mistakes_are_one_line(places, name, kind, capsys):
    if (name, kind) in NOT_APPLICABLE:
        pytest.skip(NOT_APPLICABLE[name, kind])
    args = _cases(places)[name][kind]
    try:
        status = cli_main([name, *args])
    except SystemExit as exit_:  # argparse's refusals
        status = exit_.code
    err = capsys.readouterr().err
    lines = _stderr_lines(err, status)
    assert status in (1, 2) and "Traceback" not in err, (status, err)
    assert len(lines) == 1 and lines[0].startswith(f"hf-seq2seq {name}: error: "), err
    if kind == NOT_A_MODEL:
        assert "junk" in lines[0], lines[0]  # names the folder
    for path in Path(places["tmp"]).glob("not_here*"):
        pytest.fail(f"{path} was written by a refused command")


# more bad values, refused by the commands themselves after argparse (not by an argparse type or choice): the one
# stderr line holds there too, and names the option (its last but one argument)
MORE_BAD_VALUES = [
    ("demo", ["--models", "lstm"]),
    ("demo", ["--num_examples", "0"]),
    ("translate", ["--model", "{model}", "--engine", "onnxruntime", "--compute_type", "int8"]),
]


@pytest.mark.parametrize(
    ("name", "args"), MORE_BAD_VALUES, ids=[" ".join(a[-2:]) for _, a in MORE_BAD_VALUES]
)
def test_a_command_own_refusal_is_one_line_on_stderr(places, name, args, capsys):
    try:
        status = cli_main([name, *(a.format(**places) for a in args)])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    assert status in (1, 2) and "Traceback" not in err, (status, err)
    assert err.count("\n") == 1 and err.startswith(f"hf-seq2seq {name}: error: "), (out, err)
    assert args[-2] in err and "error" not in out, (out, err)


def test_a_refused_option_is_one_line_and_argparse_is_left_as_it_was(capsys):
    import argparse

    before = argparse.ArgumentParser.error
    with pytest.raises(SystemExit) as exit_:
        cli_main(["train", "--max_steps", "many"])
    assert exit_.value.code == 2 and argparse.ArgumentParser.error is before
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "hf-seq2seq train: error: argument --max_steps/--max-steps: invalid int value: 'many'"
    ], err

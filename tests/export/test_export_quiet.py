"""Issue 28, row 15: ``hf-seq2seq export`` prints its result, not transformers' "Loading weights" bar."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hub_server import tiny_model, tiny_tokenizer

from hf_seq2seq.hub import save_model_folder

# each test runs a whole ONNX export in a fresh Python process (20-30 s on 2 shared cores): `make test` only
pytestmark = pytest.mark.slow


def test_onnx_export_draws_no_loading_bar(tmp_path):
    pytest.importorskip("onnxruntime")
    tok = tiny_tokenizer()
    folder = save_model_folder(tiny_model("transformer", len(tok)), tok, tmp_path / "model")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hf_seq2seq.cli",
            "export",
            str(folder),
            str(tmp_path / "onnx"),
            "--format",
            "onnx",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Loading weights" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_rnn_onnx_export_prints_only_its_result(tmp_path, cell):
    """Issue 28, row 15: the TorchScript exporter's C++ lines about prim::PackPadded / PadPacked shape inference
    (three per RNN export, written straight to file descriptor 2) are not shown; the export says what it wrote."""
    pytest.importorskip("onnxruntime")
    tok = tiny_tokenizer()
    folder = save_model_folder(tiny_model("rnn", len(tok), cell=cell), tok, tmp_path / "model")
    proc = subprocess.run(
        [sys.executable, "-m", "hf_seq2seq.cli", "export", str(folder), str(tmp_path / "onnx"), "--format", "onnx"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    assert proc.stdout.strip() == f"wrote onnx export to {tmp_path / 'onnx'}"

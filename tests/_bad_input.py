"""Helpers of the bad-input tests (tests/*/test_bad_*_input.py): corpus pairs, a translate call through the CLI,
a copy of a model folder, stdin bytes."""

from __future__ import annotations

import shutil

from hf_seq2seq.cli import main as cli_main


def _pair(tmp_path, de: bytes, en: bytes, name: str = "train"):
    (tmp_path / f"{name}.de").write_bytes(de)
    (tmp_path / f"{name}.en").write_bytes(en)
    return tmp_path / name


def _translate(folder, tmp_path, lines, *extra) -> int:
    src = tmp_path / "in.txt"
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return cli_main(["translate", "--model", str(folder), "--input", str(src), "--output", str(tmp_path / "out.txt"),
                     "--device", "cpu", *extra])  # fmt: skip


def _copy(folder, tmp_path, name="copy"):
    return shutil.copytree(folder, tmp_path / name)


def _stdin(monkeypatch, data: bytes) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))

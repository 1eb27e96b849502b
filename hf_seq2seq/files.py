"""Text files in and out: the one line reader and the one atomic writer of the package.

Everything that reads the user's lines (corpora, tokenizer training texts, ``translate --input``, ``evaluate
--source``, stdin) reads them with :func:`iter_text_lines` / :func:`read_text_lines` / :func:`decode_lines`, under one
set of rules:

- a path must exist and not be a folder; a named pipe (``<(zcat test.de.gz)``, ``/dev/stdin``) is a file to read;
- a ``.gz`` name is read as gzip;
- text is UTF-8: a line that is not is an error naming the file, the line and the byte, with the fix (``iconv``);
- a NUL byte is an error (a binary or UTF-16 file read as text would otherwise be trained on as garbage);
- a byte-order mark at the start of the first line is dropped (it is not text: left in, it changes the first
  sentence's tokens);
- the line ending (``\\n`` or ``\\r\\n``) is removed and nothing else: spaces and empty lines are kept, since line N
  of an output answers line N of the input.

Everything the package writes for the user (translations, scores, reports, model cards, figures) goes through
:func:`write_atomic` / :func:`atomic_path`: a temporary file beside the target, renamed over it when complete, so an
error or Ctrl-C leaves the old file (or none), never half of a new one. The file gets the permissions a plain
``open(path, "w")`` would give (an existing file's mode, else ``0o666`` less the umask), not ``mkstemp``'s ``0o600``.

Standard library only: the commands' option checks and ``--help`` import this module without torch.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["atomic_path", "decode_lines", "iter_text_lines", "read_text_lines", "write_atomic"]


# ------------------------------------------------------------------------------------------------------ reading
def decode_lines(raw_lines: Iterable[bytes], where: str) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` (1-based) of raw byte lines under the module's rules; ``where`` names the source in
    errors (a file name, ``<stdin>``)."""
    for lineno, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{where}, line {lineno}: text is not valid UTF-8 ({e.reason} at byte {e.start}); "
                "convert it, e.g. iconv -f latin1 -t utf-8"
            ) from None
        if "\x00" in line:
            raise ValueError(
                f"{where}, line {lineno}: contains a NUL byte (at character {line.index(chr(0)) + 1}); "
                "this looks like a binary or UTF-16 file, not UTF-8 text"
            )
        if lineno == 1:
            line = line.removeprefix("\ufeff")
        yield lineno, line.rstrip("\r\n")


def iter_text_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a UTF-8 text file (gzipped if ``.gz``), read lazily.

    Raises ``FileNotFoundError`` for a missing path and ``ValueError`` naming the file (and line) for a folder,
    text that is not UTF-8 or a NUL byte.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a text file")
    if not path.exists():  # not is_file(): a pipe such as <(zcat file.gz) or /dev/stdin is a fine input
        raise FileNotFoundError(f"{path} does not exist")
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        yield from decode_lines(f, str(path))


def read_text_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a UTF-8 text file (``.gz`` too), as :func:`iter_text_lines` reads them."""
    return [line for _, line in iter_text_lines(path)]


# ------------------------------------------------------------------------------------------------------ writing
def _mode_of_plain_open(path: Path) -> int:
    """The permission bits ``open(path, "w")`` would leave: an existing file keeps its own, a new one gets
    ``0o666`` less the process umask."""
    with contextlib.suppress(FileNotFoundError):
        return stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (``str`` as UTF-8) to ``path`` through a temporary file beside it and a rename: a failure or
    an interrupt leaves the old file (or none), never a partial one. Creates the parent folder."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers that look at it pick the same format: matplotlib)
    that is renamed to ``path`` when the block succeeds and removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _mode_of_plain_open(path))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)

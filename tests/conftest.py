"""Shared test fixtures. Tests build tiny models locally; nothing is downloaded."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

# datasets' Arrow caches (corpora the tests read, tokenized splits) go to a folder of this test session, deleted at
# its end, never into the user's ~/.cache. datasets reads the variable when it is imported: set it before anything
# imports it (subprocesses the tests start inherit it).
if "datasets" in sys.modules:
    raise RuntimeError("tests/conftest.py must set HF_DATASETS_CACHE before datasets is imported")
DATASETS_CACHE = tempfile.mkdtemp(prefix="hf_seq2seq_tests_datasets_")
os.environ["HF_DATASETS_CACHE"] = DATASETS_CACHE
atexit.register(shutil.rmtree, DATASETS_CACHE, ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402

# pytest-xdist runs 2 workers on 2 cores: one thread each avoids oversubscription.
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Commands run in-process with ``--threads N`` set torch's process-wide thread count: give every test the
    session's one thread back, so that a test (a card's "(1 thread)") does not depend on what ran before it."""
    yield
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


PROJECT_ROOT = Path(__file__).resolve().parents[1]
MULTI30K = PROJECT_ROOT.parent / "shared" / "data" / "multi30k"


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    if not (MULTI30K / "train.de.gz").exists():
        pytest.fail(f"Multi30k not found at {MULTI30K} (expected ../shared/data/multi30k beside the project)")
    return MULTI30K


# The bad-input tests' (tests/*/test_bad_*_input.py) model: a module that defines its own fixture of the same name
# uses that one instead.
@pytest.fixture(scope="module")
def tokenizer():
    """The tiny test tokenizer (tests/hub_server.py)."""
    from hub_server import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture(scope="module")
def other_tokenizer():
    """A tokenizer whose vocabulary is not ``tokenizer``'s (a folder whose tokenizer does not match its model)."""
    from hf_seq2seq import train_tokenizer

    return train_tokenizer(["ganz andere Wörter xyz qj"] * 5, vocab_size=60, min_frequency=1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tokenizer):
    """A saved tiny Transformer (max_position_embeddings=32) and ``tokenizer``."""
    from hub_server import tiny_model

    from hf_seq2seq.hub import save_model_folder

    return save_model_folder(
        tiny_model("transformer", len(tokenizer)), tokenizer, tmp_path_factory.mktemp("bad") / "model"
    )


def run_without_package(
    code: str, cwd: Path | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python process where ``import hf_seq2seq`` fails (remote-code tests)."""
    prelude = "import sys\nsys.modules['hf_seq2seq'] = None  # make the package unimportable\n"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH="")
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


# transformers' common tests (tests/models/test_hf_common_*.py) that compile the model or load it again in each
# dtype: seconds each, for what the rest of the suite covers in eager fp32. `make test` still runs them.
SLOW_COMMON_TESTS = ("compil", "test_bc_torch_dtype")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name.startswith("test_hf_common_") and any(s in item.name for s in SLOW_COMMON_TESTS):
            item.add_marker(pytest.mark.slow)

"""Import transformers' own common model tests (``../shared/transformers_tests``) for our model classes.

transformers tests every model inside the library with ``ModelTesterMixin``, ``GenerationTesterMixin`` and
``ConfigTester``; ``tests/models/test_hf_common_*.py`` wire them for our classes the way the library's
``tests/models/bart/test_modeling_bart.py`` does. Two things make that possible from outside the library:

- the shared folder is put first on ``sys.path`` so that its package is ``tests`` (its files import
  ``tests.exporters...`` absolutely). Our own ``tests/`` folder has no ``__init__.py`` (pytest imports its modules by
  basename), so nothing of ours is ever imported as ``tests`` and the two cannot clash;
- ``ModelTesterMixin`` decides what a class is (a base model, a seq2seq LM...) from the library's static
  model-name tables, which a custom model is never in: :func:`register_model_names` adds ours, as the library's
  auto files would list them. Nothing else about the tests is changed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import transformers
from conftest import PROJECT_ROOT

SHARED_TESTS = PROJECT_ROOT.parent / "shared" / "transformers_tests"
if not (SHARED_TESTS / "tests" / "test_modeling_common.py").exists():
    raise RuntimeError(f"transformers' common tests not found at {SHARED_TESTS} (see its README)")


def supported_transformers_versions(readme: Path = SHARED_TESTS / "README.md") -> list[str]:
    """The transformers versions the shared copy runs against: the bold versions of its README's
    ``**Versions.**`` paragraph ("These files run against transformers **5.24.0 and 5.25.0**")."""
    text = readme.read_text(encoding="utf-8")
    paragraph = text[text.index("**Versions.**") :].split("\n\n", 1)[0]
    bold = re.findall(r"\*\*([^*]+)\*\*", paragraph.replace("**Versions.**", "", 1))
    return [v for span in bold for v in re.findall(r"\b\d+\.\d+\.\d+\b", span)]


def check_transformers_version(installed: str, supported: list[str]) -> str | None:
    """The one-line reason the shared tests cannot run under ``installed``, or None when they can."""
    if installed in supported:
        return None
    return (
        f"transformers {installed} is installed, but ../shared/transformers_tests runs against transformers "
        f"{' and '.join(supported)} only (its README): install one of them (`make test` installs the lock's)"
    )


# A version the shared copy does not list fails collection here, in one line, instead of as an ImportError from deep
# inside the copied files (5.24's copy imported a helper that 5.25 removed).
_reason = check_transformers_version(transformers.__version__, supported_transformers_versions())
if _reason is not None:
    pytest.fail(_reason, pytrace=False)
if str(SHARED_TESTS) not in sys.path:
    sys.path.insert(0, str(SHARED_TESTS))

from tests.generation.test_utils import GenerationTesterMixin  # noqa: E402
from tests.test_configuration_common import ConfigTester  # noqa: E402
from tests.test_modeling_common import ModelTesterMixin, floats_tensor, ids_tensor  # noqa: E402
from transformers.models.auto import modeling_auto  # noqa: E402

if not Path(sys.modules["tests"].__file__).is_relative_to(SHARED_TESTS):
    raise RuntimeError(f"`tests` resolved to {sys.modules['tests'].__file__}, not the shared folder")

__all__ = [
    "ConfigTester",
    "GenerationTesterMixin",
    "ModelTesterMixin",
    "floats_tensor",
    "ids_tensor",
    "register_model_names",
]


def register_model_names(
    model_type: str,
    base: str | None = None,
    seq2seq_lm: str | None = None,
    image_text_to_text: str | None = None,
) -> None:
    """List ``model_type``'s class names in transformers' static tables (what the library's auto files do)."""
    tables = {
        "MODEL_MAPPING_NAMES": base,
        "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES": seq2seq_lm,
        "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES": image_text_to_text,
    }
    for table, class_name in tables.items():
        if class_name is not None:
            getattr(modeling_auto, table)[model_type] = class_name

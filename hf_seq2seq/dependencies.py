"""The import-time check that torch and transformers are inside the ranges the package declares.

`import hf_seq2seq` runs :func:`check_dependencies` before it imports transformers: an environment outside the
supported range then stops with one line naming the installed version and the range (`pip install` resolves the
ranges, but a user's existing environment, a `--no-deps` install or a source checkout on ``PYTHONPATH`` do not),
instead of failing later inside ``generate()`` or a cache method with an error about a missing attribute.

The ranges are read from the installed package's own metadata (pyproject.toml's ``dependencies``, one source of
truth); a source tree that was never installed has none, and is not checked. Only the standard library and
``packaging`` (which transformers, accelerate and huggingface_hub all require) are imported here.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, requires, version

__all__ = ["CHECKED", "IncompatibleDependencyError", "check_dependencies", "unsupported"]

# The dependencies whose APIs the models are built on: the cache/layer classes of transformers, torch's kernels.
CHECKED = ("torch", "transformers")


class IncompatibleDependencyError(ImportError):
    """An installed dependency is outside the range hf_seq2seq supports (the message is one line)."""


def unsupported(name: str, installed: str | None, specifier: str) -> str | None:
    """The one-line reason ``name`` at ``installed`` (None: not installed) is unsupported, or None when it is fine."""
    from packaging.specifiers import SpecifierSet

    if installed is None:
        return f"hf_seq2seq needs {name}{specifier}, which is not installed (pip install '{name}{specifier}')"
    if SpecifierSet(specifier).contains(installed, prereleases=True):
        return None
    return (
        f"hf_seq2seq supports {name}{specifier}, but this environment has {name} {installed}: "
        f"pip install '{name}{specifier}' (or reinstall hf_seq2seq with pip, which resolves it)"
    )


def check_dependencies(distribution: str = "hf_seq2seq") -> None:
    """Raise :class:`IncompatibleDependencyError` if a :data:`CHECKED` dependency is missing or out of range."""
    from packaging.requirements import Requirement

    try:
        declared = requires(distribution) or []
    except PackageNotFoundError:  # a source tree on PYTHONPATH, never installed: no declared ranges to check
        return
    for line in declared:
        requirement = Requirement(line)
        if requirement.name not in CHECKED or requirement.marker is not None:
            continue
        try:
            installed: str | None = version(requirement.name)
        except PackageNotFoundError:
            installed = None
        reason = unsupported(requirement.name, installed, str(requirement.specifier))
        if reason is not None:
            raise IncompatibleDependencyError(reason)

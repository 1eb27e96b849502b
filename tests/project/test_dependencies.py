"""The dependency ranges, the two lock files and the README's install, checked (CONTRIBUTING.md, "Dependencies").

- every direct dependency has a floor, and that floor is what ``requirements/oldest.txt`` installs (so `make
  test-oldest` tests the declared floors, not something above them); a cap needs its reason beside it;
- ``requirements/lock.txt`` satisfies the ranges and pins a transformers that ../shared/transformers_tests lists;
- `make install` reinstalls when the lock changes;
- `import hf_seq2seq` and the CLI refuse an out-of-range torch/transformers in one line (a real, older distribution's
  metadata placed first on the path: what importlib.metadata reports for it is what a user's environment reports);
- a new venv made the README's way (`make install`) is the lock, exactly, and `pip check` is clean (slow).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = PROJECT_ROOT / "pyproject.toml"
LOCK = PROJECT_ROOT / "requirements" / "lock.txt"
OLDEST = PROJECT_ROOT / "requirements" / "oldest.txt"
NOT_LOCKED = {"torch"}  # installed from the Makefile's TORCH_SPEC, for the user's platform


def declared() -> dict[str, Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {req.name.lower().replace("_", "-"): req for req in map(Requirement, lines)}


def locked(path: Path) -> dict[str, str]:
    """``name -> version`` of the pins that apply to this interpreter and platform."""
    pins = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith((" ", "#")):
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(default_environment()):
            (spec,) = req.specifier
            assert spec.operator == "==", f"{path.name}: {line!r} is not an exact pin"
            pins[req.name.lower()] = spec.version
    return pins


def floor(req: Requirement) -> Version:
    floors = [Version(spec.version) for spec in req.specifier if spec.operator in (">=", "==")]
    assert floors, f"pyproject.toml: {req} has no floor (>=)"
    return max(floors)


def makefile_default(variable: str) -> str:
    match = re.search(rf"^{variable} \?= (.+)$", (PROJECT_ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"Makefile has no `{variable} ?=` line"
    return match.group(1).strip()


def test_every_dependency_has_a_floor_and_each_cap_its_reason():
    for req in declared().values():
        floor(req)
    for line in PYPROJECT.read_text().splitlines():
        requirement = re.match(r'\s*"([^"]+)",?\s*(#.*)?$', line)
        # a cap is in the version part; an environment marker (after ";", e.g. sys_platform != 'win32') is not one
        if requirement and re.search(r"<|!=", requirement.group(1).split(";")[0]):
            assert requirement.group(2), (
                f"pyproject.toml: the cap in {line.strip()!r} needs its reason in a comment"
            )


def test_declared_floors_are_what_the_oldest_lock_installs():
    oldest = locked(OLDEST)
    for name, req in declared().items():
        if name in NOT_LOCKED:
            continue
        assert name in oldest, f"{name} is declared but not in {OLDEST.name}: run `make lock`"
        assert Version(oldest[name]) == floor(req), (
            f"{name}: pyproject.toml declares the floor {floor(req)} but {OLDEST.name} installs {oldest[name]} "
            "(raise the floor to what resolves, or run `make lock`)"
        )
    torch_oldest = Requirement(makefile_default("TORCH_OLDEST_SPEC"))
    assert floor(torch_oldest) == floor(declared()["torch"]), (
        "TORCH_OLDEST_SPEC must be torch's declared floor"
    )


def test_lock_satisfies_the_ranges_and_the_common_tests():
    from _hf_common import supported_transformers_versions

    lock, oldest, ranges = locked(LOCK), locked(OLDEST), declared()
    for name, req in ranges.items():
        if name not in NOT_LOCKED:
            assert req.specifier.contains(lock[name], prereleases=True), (
                f"{LOCK.name}: {name}=={lock[name]} not in {req}"
            )
    assert ranges["torch"].specifier.contains(floor(Requirement(makefile_default("TORCH_SPEC"))))
    supported = supported_transformers_versions()
    assert lock["transformers"] in supported and oldest["transformers"] in supported


def test_a_changed_lock_reinstalls():
    dry_run = subprocess.run(
        ["make", "-n", "-W", "requirements/lock.txt", "install"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert dry_run.returncode == 0, dry_run.stderr
    assert "-c requirements/lock.txt" in dry_run.stdout and "touch .venv/.installed" in dry_run.stdout


def test_version_messages():
    from hf_seq2seq.dependencies import unsupported

    assert unsupported("transformers", "5.25.0", ">=5.24") is None
    assert unsupported("torch", "2.13.0+cpu", ">=2.6") is None
    message = unsupported("transformers", "4.57.1", ">=5.24")
    assert "transformers>=5.24" in message and "transformers 4.57.1" in message and "\n" not in message
    assert "not installed" in unsupported("torch", None, ">=2.6")


def _fake_distribution(folder: Path, name: str, version: str) -> Path:
    """An installed distribution's metadata (what pip leaves in site-packages), for ``name`` at ``version``."""
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return folder


@pytest.mark.parametrize(("name", "version"), [("transformers", "4.57.1"), ("torch", "2.5.1")])
def test_import_and_cli_refuse_an_unsupported_version_in_one_line(tmp_path, name, version):
    range_ = str(declared()[name].specifier)
    env = {**os.environ, "PYTHONPATH": str(_fake_distribution(tmp_path, name, version))}
    imported = subprocess.run(
        [sys.executable, "-c", "import hf_seq2seq"], env=env, capture_output=True, text=True
    )
    assert imported.returncode != 0
    assert (
        f"IncompatibleDependencyError: hf_seq2seq supports {name}{range_}, but this environment has {name} {version}"
        in imported.stderr
    )
    cli = subprocess.run(
        [sys.executable, "-m", "hf_seq2seq_cli", "translate", "--model", "x"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 1
    assert cli.stderr.strip().splitlines() == [
        f"hf-seq2seq translate: hf_seq2seq supports {name}{range_}, but this environment has {name} {version}: "
        f"pip install '{name}{range_}' (or reinstall hf_seq2seq with pip, which resolves it)"
    ]


def test_common_tests_know_their_versions(tmp_path):
    import transformers
    from _hf_common import check_transformers_version, supported_transformers_versions

    readme = tmp_path / "README.md"
    readme.write_text(
        "intro 4.0.0\n\n**Versions.** These run against transformers **6.1.0 and 6.2.3** (checked).\n\nx 7.0.0"
    )
    assert supported_transformers_versions(readme) == ["6.1.0", "6.2.3"]
    assert check_transformers_version(transformers.__version__, supported_transformers_versions()) is None
    reason = check_transformers_version("5.26.0", ["5.24.0", "5.25.0"])
    assert "transformers 5.26.0 is installed" in reason and "5.24.0 and 5.25.0" in reason


def test_compat_table_keeps_the_other_rows(tmp_path):
    document = tmp_path / "CONTRIBUTING.md"
    document.write_text("# x\n<!-- compat-table: begin -->\n<!-- compat-table: end -->\nafter\n")
    junit = tmp_path / "junit.xml"
    junit.write_text('<testsuites><testsuite tests="10" failures="1" errors="0" skipped="2"/></testsuites>')
    script = [sys.executable, str(PROJECT_ROOT / "scripts" / "compat_table.py"), "--document", str(document)]
    subprocess.run([*script, "--env", "latest", "--exit_status", "1", "--junit", str(junit)], check=True)
    subprocess.run([*script, "--env", "oldest", "--exit_status", "0"], check=True)
    text = document.read_text()
    assert "**failed** (exit 1): 7 passed, 1 failed, 2 skipped" in text and "**passed** |" in text
    assert text.index("make test-oldest") < text.index("make test-latest") and text.endswith("after\n")


@pytest.mark.slow
def test_readme_install_is_the_lock_exactly(tmp_path):
    """`make install` into a new venv (what `make demo` / `make test` do on a fresh machine): the installed versions
    are the lock's, nothing more (but torch, from TORCH_SPEC), nothing less, and `pip check` is clean."""
    venv = tmp_path / "venv"
    made = subprocess.run(
        ["make", "install", f"VENV={venv}"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    python = str(venv / "bin" / "python")
    check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    )
    installed = {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(listed.stdout)}
    for name in ("pip", "hf-seq2seq", "torch"):
        installed.pop(name, None)
    expected = {name.replace("_", "-"): version for name, version in locked(LOCK).items()}
    assert installed == expected

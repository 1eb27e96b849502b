"""Write the two lock files from pyproject.toml's ranges (what `make lock` runs).

- ``requirements/lock.txt``: the newest versions the ranges admit, exact, for every package `.[dev]` installs. `make
  test`, `make demo` and CI install with it as pip constraints, so a fresh machine gets what CI passed with.
- ``requirements/oldest.txt``: every *direct* dependency at the floor pyproject.toml declares (uv's ``lowest-direct``
  resolution; what they pull in at its newest). `make test-oldest` installs it, so the floors are tested claims.

Both are universal (Python 3.10+, every platform; uv writes environment markers where versions fork). torch is in
neither: the Makefile installs it from ``TORCH_SPEC`` first, so a user picks the build for their platform. For the
lock, the resolution sees torch as the default ``TORCH_SPEC`` (``--override``), so that what torch itself pulls in
(sympy, networkx...) is locked at what CI installs; the CUDA libraries that only a CUDA build of torch pulls in
(``nvidia-*``, ``triton``, ``cuda-*``) are left out of both files, since the CPU build does not install them.

Usage: ``python scripts/lock.py --torch "torch==2.13.0" --uv .venv/bin/uv``
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = {"lock.txt": "highest", "oldest.txt": "lowest-direct"}
EXTRAS = ("dev",)
TORCH_ONLY = re.compile(r"^(nvidia-[\w-]+|triton|cuda-[\w-]+)==", re.MULTILINE)


def direct_dependencies() -> list[str]:
    """The names of pyproject.toml's direct dependencies and those of the extras the locks hold."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [
        r for extra in EXTRAS for r in project["optional-dependencies"][extra]
    ]
    return sorted({re.match(r"[A-Za-z0-9][\w.-]*", r).group(0).lower() for r in requirements})


def compile_lock(uv: str, resolution: str, torch_spec: str, output: Path, leave_out: list[str]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        override = Path(tmp) / "torch-override.txt"
        override.write_text(torch_spec + "\n" if resolution == "highest" else "")
        command = [
            uv,
            "pip",
            "compile",
            "pyproject.toml",
            "--universal",
            "--resolution",
            resolution,
            "--quiet",
        ]
        command += [arg for extra in EXTRAS for arg in ("--extra", extra)]
        command += ["--override", str(override), "--no-emit-package", "torch"]
        command += [arg for name in leave_out for arg in ("--no-emit-package", name)]
        if (
            resolution == "lowest-direct"
        ):  # uv prefers the pins it finds in the output file: a lowered floor would
            # stay at the old pin, so every direct dependency is resolved afresh (what they pull in stays as pinned)
            command += [
                arg
                for name in direct_dependencies()
                if name != "torch"
                for arg in ("--upgrade-package", name)
            ]
        command += ["--custom-compile-command", "make lock", "--output-file", str(output)]
        subprocess.run(command, cwd=ROOT, check=True)
    return output.read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", required=True, help="the torch requirement the lock's resolution assumes")
    parser.add_argument("--uv", default="uv", help="the uv executable")
    args = parser.parse_args(argv)
    folder = ROOT / "requirements"
    folder.mkdir(exist_ok=True)
    for name, resolution in OUTPUTS.items():
        output = folder / name
        # first pass: find the CUDA-only packages; second: the same resolution without them
        text = compile_lock(args.uv, resolution, args.torch, output, [])
        leave_out = sorted({m.group(1) for m in TORCH_ONLY.finditer(text)})
        text = compile_lock(args.uv, resolution, args.torch, output, leave_out)
        pinned = len(re.findall(r"^[A-Za-z0-9][\w.-]*==", text, re.MULTILINE))
        print(
            f"{output.relative_to(ROOT)}: {pinned} pins ({resolution}; left out: torch, {len(leave_out)} CUDA-only)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

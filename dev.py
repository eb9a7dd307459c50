#!/usr/bin/env python3
"""Set up and run chute from a fresh clone with nothing but Python 3.10+.

    python3 dev.py demo    # create/reuse .venv, install chute[demo], run `chute demo`
    python3 dev.py test    # the whole suite: ruff, mypy, the docs site (mkdocs --strict), the
                           # framework tests once per Keras backend (torch, jax, tensorflow) in
                           # .venv, and every other test in .venv-core, an environment with no
                           # framework installed at all

The virtual environments live inside the repository (ignored by git) and are reinstalled only
when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BACKENDS = ("torch", "jax", "tensorflow")
TORCH = "torch==2.13.0"  # as pinned in pyproject.toml's demo and dev extras


def bin_dir(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts" if os.name == "nt" else "bin")


def run(*cmd: object, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True, env=env)


def ensure(extra: str, venv_dir: Path) -> Path:
    """Create ``venv_dir`` if needed and install chute[extra] unless done for this pyproject; its python."""
    if sys.version_info < (3, 10):  # noqa: UP036 - this script may be run by any python3
        sys.exit(f"chute needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    python = bin_dir(venv_dir) / "python"
    if not python.exists():
        print(f"creating {venv_dir}", flush=True)
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    stamp = venv_dir / f".installed-{extra}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == digest):
        run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        if extra in ("dev", "demo"):
            # torch alone first: asked for beside many other packages, pip's resolver has been seen
            # to take PyPI's CUDA build of 2.13.0 (gigabytes, and triton crashing TensorFlow's
            # tests) over the CPU wheel on disk; once 2.13.0+cpu is installed it is kept.
            run(python, "-m", "pip", "install", "--quiet", TORCH)
        run(python, "-m", "pip", "install", "--quiet", "-e", f".[{extra}]")
        stamp.write_text(digest)
    return python


def main(argv: list[str]) -> None:
    command = argv[0] if argv else ""
    if command == "demo":
        ensure("demo", ROOT / ".venv")
        run(bin_dir(ROOT / ".venv") / "chute", "demo", *argv[1:])
    elif command == "test":
        python = ensure("dev", ROOT / ".venv")
        run(python, "-m", "ruff", "check", "src", "tests", "benchmarks", "dev.py")
        run(python, "-m", "mypy")
        with tempfile.TemporaryDirectory() as site:  # the docs site, any warning an error
            run(python, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", site)
        for backend in BACKENDS:
            env = {**os.environ, "KERAS_BACKEND": backend}
            run(python, "-m", "pytest", "-m", "frameworks", "-p", "no:cacheprovider", *argv[1:], env=env)
        core = ensure("test", ROOT / ".venv-core")
        run(core, "-m", "pytest", "-m", "not frameworks", "-p", "no:cacheprovider", *argv[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except subprocess.CalledProcessError as error:
        sys.exit(error.returncode)

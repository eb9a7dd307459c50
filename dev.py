#!/usr/bin/env python3
"""Set up and run chute from a fresh clone with nothing but Python 3.10+.

    python3 dev.py demo    # create/reuse .venv, install chute[demo], run `chute demo`
    python3 dev.py test    # create/reuse .venv, install chute[dev], run ruff, mypy and pytest

The virtual environment lives in .venv inside the repository (ignored by git) and is reinstalled
only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def run(*cmd: object) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True)


def ensure(extra: str) -> None:
    """Create .venv if needed and install chute[extra] unless already done for this pyproject."""
    if sys.version_info < (3, 10):  # noqa: UP036 - this script may be run by any python3
        sys.exit(f"chute needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extra}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PY, "-m", "pip", "install", "--quiet", "-e", f".[{extra}]")
    stamp.write_text(digest)


def main(argv: list[str]) -> None:
    command = argv[0] if argv else ""
    if command == "demo":
        ensure("demo")
        run(BIN / "chute", "demo", *argv[1:])
    elif command == "test":
        ensure("dev")
        run(PY, "-m", "ruff", "check", "src", "tests", "benchmarks", "dev.py")
        run(PY, "-m", "mypy")
        run(PY, "-m", "pytest", *argv[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except subprocess.CalledProcessError as error:
        sys.exit(error.returncode)

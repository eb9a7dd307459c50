"""Packaging promises: what importing chute costs, install hints, the public names, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

import chute

FRAMEWORKS = ("keras", "torch", "tensorflow", "jax", "sklearn", "pyarrow")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_chute_imports_no_framework() -> None:
    result = run_python(
        "import sys, numpy as np, chute\n"
        "chute.from_arrays(np.zeros(4), np.zeros(4)).loader(2, shuffle=True)[0]\n"
        f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_keras_missing_gives_an_install_hint() -> None:
    result = run_python(
        "import sys, numpy as np\n"
        "sys.modules['keras'] = None  # as if keras were not installed\n"
        "import chute\n"
        "try:\n"
        "    chute.from_arrays(np.zeros(4)).loader(2).keras()\n"
        "except chute.MissingDependencyError as error:\n"
        "    print(type(error).__mro__[2].__name__, error)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ImportError Expected the 'keras' package")
    assert "pip install 'chute[keras]'" in result.stdout


@pytest.mark.frameworks
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_a_missing_keras_backend_says_which_to_install(backend: str) -> None:
    """``chute[keras]`` alone installs Keras without the backend KERAS_BACKEND names."""
    extra = {"tensorflow": "tf", "jax": "jax", "torch": "torch"}[backend]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, numpy as np\n"
            f"sys.modules[{backend!r}] = None  # as if the backend were not installed\n"
            "import chute\n"
            "try:\n"
            "    chute.from_arrays(np.zeros(4)).loader(2).keras()\n"
            "except chute.MissingDependencyError as error:\n"
            "    print(error)\n",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KERAS_BACKEND": backend},
    )
    assert result.returncode == 0, result.stderr
    assert f"the {backend!r} package, the Keras backend in use (KERAS_BACKEND={backend})" in result.stdout
    assert f"pip install 'chute[keras,{extra}]'" in result.stdout


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(chute).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    lazy = {"convert", "from_table", "inspect", "open", "verify"}  # loaded on first use (pyarrow)
    modules = {"decode", "transforms"}  # namespaces of ready-made functions
    assert set(chute.__all__) - {"__version__"} == public | lazy | modules
    assert all(hasattr(chute, name) for name in chute.__all__)


@pytest.mark.frameworks
def test_chute_demo_trains_to_accuracy() -> None:
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    result = subprocess.run(
        [sys.executable, "-m", "chute.cli", "demo", "--epochs", "15"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert sum(line.startswith("Epoch ") for line in lines) == 15
    accuracy = float(next(line for line in lines if line.startswith("final validation accuracy")).split()[-1])
    assert accuracy > 0.9
    assert any(line.startswith("loader throughput") and "samples/s" in line for line in lines)


def test_cli_reports_chute_errors_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chute.cli", "demo", "--epochs", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("chute: Expected epochs >= 1")
    assert "Traceback" not in result.stderr

"""Packaging promises: what importing chute costs, install hints, the public names, the CLI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import types
import venv
from pathlib import Path

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
    assert f"pip install 'chute[keras-{extra}]'" in result.stdout


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
    assert result.returncode == 1  # (a chute error; 2 is argparse's usage error)
    assert result.stderr.startswith("chute: Expected epochs >= 1")
    assert "Traceback" not in result.stderr


ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_and_sdist_install_and_run_with_no_source_tree_beside_them(tmp_path: Path) -> None:
    """The README's install section, followed as written (its path placeholder filled in): the
    sdist and the wheel build from a copy of the source, the wheel installs into a fresh environment
    away from the source tree, and there ``chute --version``, ``python -m chute``, a conversion and
    ``chute demo`` run.  The framework packages the extras ask for are taken from the dev
    environment (linked, not downloaded: pip sees them installed)."""
    dev = (
        ROOT / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    )
    assert dev.is_dir(), f"{dev}: run the suite with `python3 dev.py test`, which makes the dev environment"
    source = tmp_path / "src-copy"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv*", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    out = tmp_path / "sdist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (sdist,) = out.glob("chute-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    assert any(n.endswith("src/chute/cli/main.py") for n in names) and any(
        n.endswith("README.md") for n in names
    )

    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(env_dir)  # (pip runs from here, with --python)
    python = env_dir / "bin" / "python"
    site = next((env_dir / "lib").glob("python*/site-packages"))
    (site / "dev-packages.pth").write_text(f"{dev}\n")  # the frameworks, found after the wheel's chute
    work = tmp_path / "work"  # no source tree here
    work.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # (pip's spelling of --no-build-isolation)
        "KERAS_BACKEND": "torch",
        "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Install into your project", 1)[1].split("\n## ", 1)[0]
    commands = [
        line.replace("path/to/chute", str(source))
        for language, block in re.findall(r"```(\w+)\n(.*?)```", section, re.S)
        if language == "bash"
        for line in block.splitlines()
        if line.strip()
    ]
    assert [c.split()[:2] for c in commands] == [["pip", "install"], ["pip", "wheel"], ["pip", "install"]]
    for command in commands[1:]:  # the wheel, built once and installed
        pip = f"{sys.executable} -m pip --python {python} " + command.split(" ", 1)[1]
        done = subprocess.run(pip, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, pip + "\n" + done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = (work / "dist").glob("chute-*.whl")

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    where = run(str(python), "-c", "import chute; print(chute.__file__)")
    assert where.startswith(str(site)), where  # the wheel's chute, not the source tree's
    assert run(str(env_dir / "bin" / "chute"), "--version").strip().endswith(chute.__version__)
    assert run(str(python), "-m", "chute", "--version").strip().endswith(chute.__version__)
    run(
        str(python),
        "-c",
        "import numpy as np, chute\n"
        "chute.convert(chute.from_arrays(np.arange(40.0), np.arange(40)), 'd.chute')",
    )
    assert "40" in run(str(env_dir / "bin" / "chute"), "inspect", "d.chute")
    demo = run(str(env_dir / "bin" / "chute"), "demo")  # (it checks its own accuracy)
    assert "final validation accuracy" in demo
    assert wheel.name == f"chute-{chute.__version__}-py3-none-any.whl"

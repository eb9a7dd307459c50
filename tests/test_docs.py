"""Every code block in docs/ runs: a page's ```python and ```bash blocks, in order, in one fresh
directory (python blocks share one namespace, bash blocks see the files they made).  Pages whose
code imports a framework run with the framework tests; the CLI reference names every option."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
FRAMEWORK = re.compile(r"^\s*(?:import|from) (?:keras|torch|tensorflow|jax)\b", re.M)
RUNNABLE = ("python", "bash")


def code_blocks(page: Path) -> list[tuple[str, str]]:
    """The page's fenced blocks as (language, code); a fence without a language is refused."""
    blocks = FENCE.findall(page.read_text(encoding="utf-8"))
    untyped = [code[:60] for language, code in blocks if not language]
    assert not untyped, f"{page.name}: give every code block a language (python, bash, text...): {untyped}"
    return [(language, code) for language, code in blocks if language in RUNNABLE]


def _pages() -> list[Any]:
    params = []
    for page in sorted(DOCS.rglob("*.md")):
        blocks = code_blocks(page)
        if not blocks:
            continue
        needs = any(FRAMEWORK.search(code) for language, code in blocks if language == "python")
        marks = [pytest.mark.frameworks] if needs else []
        params.append(pytest.param(page, marks=marks, id=str(page.relative_to(DOCS))))
    return params


@pytest.mark.parametrize("page", _pages())
def test_every_code_block_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHUTE_CACHE", str(tmp_path / ".cache"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for number, (language, code) in enumerate(code_blocks(page)):
        where = f"{page.relative_to(DOCS)}, block {number + 1}"
        if language == "python":
            exec(compile(code, where, "exec"), namespace)  # the docs' own examples
            continue
        done = subprocess.run(
            ["bash", "-e", "-c", code], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{where} failed:\n{code}\n{done.stdout}\n{done.stderr}"


def test_the_cli_reference_names_every_command_and_option() -> None:
    from chute.cli.main import _parser

    reference = (DOCS / "cli.md").read_text(encoding="utf-8")
    parser = _parser()
    commands = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    for name, command in commands.choices.items():
        assert f"## `chute {name}" in reference, f"cli.md has no section for `chute {name}`"
        for action in command._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert f"`{option}" in reference, f"cli.md does not mention {option} of `chute {name}`"


def test_every_page_is_in_the_site_navigation() -> None:
    config = (DOCS.parent / "mkdocs.yml").read_text(encoding="utf-8")
    for page in DOCS.rglob("*.md"):
        assert str(page.relative_to(DOCS)) in config, f"{page.name} is missing from mkdocs.yml's nav"


def test_every_test_the_guarantees_name_exists() -> None:
    """docs/guarantees.md proves each promise with named tests: each must be a test in that file."""
    text = (DOCS / "guarantees.md").read_text(encoding="utf-8")
    named = re.findall(r"`(tests/test_\w+\.py)::(test_\w+)`", text)
    assert len(named) >= 30
    for file, name in named:
        source = (DOCS.parent / file).read_text(encoding="utf-8")
        assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"guarantees.md names {file}::{name}"

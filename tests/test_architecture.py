"""The module graph keeps the architecture true (docs/architecture.md): read from the source with
``ast``, every import counted (inside functions and under ``TYPE_CHECKING`` too), it has

- no cycle: data flows one way, source -> order -> read -> transform -> batch -> workers -> adapter;
- no framework (keras, torch, tensorflow, jax) imported outside ``adapters/`` and the CLI;
- nothing of ``adapters/`` imported by the engine: only the loader's framework methods, the public
  ``chute.keras`` and the CLI reach them;
- no import of another module's underscore name.

Each rule is also shown to fail on a small package planted with the defect it names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
FRAMEWORKS = {"keras", "torch", "tensorflow", "jax", "jaxlib"}


@dataclass
class Graph:
    """Modules, the chute modules each imports, and what else the rules look at."""

    edges: dict[str, set[str]] = field(default_factory=dict)
    frameworks: dict[str, set[str]] = field(default_factory=dict)  # module -> frameworks it imports
    private: list[tuple[str, str]] = field(default_factory=list)  # (module, "other.module._name")


def read_graph(root: Path, package: str) -> Graph:
    modules: dict[str, tuple[Path, bool]] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph = Graph()
    for name, (path, is_package) in modules.items():
        here = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        frameworks: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for imported, names in _imports(node, here):
                top = imported.split(".")[0]
                if top in FRAMEWORKS:
                    frameworks.add(top)
                if top != package:
                    continue
                for alias in names:
                    full = f"{imported}.{alias}"
                    if full in modules:  # `from package import module`
                        targets.add(full)
                    elif imported in modules:
                        targets.add(imported)
                        if alias.startswith("_") and imported != name and not alias.startswith("__"):
                            graph.private.append((name, full))
                if not names and imported in modules:
                    targets.add(imported)
        # Importing a.b.c runs a/__init__ and a/b/__init__ first: an edge to each, but for the
        # packages this module is inside (already imported before it).
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for target in list(targets):
            for i in range(1, target.count(".") + 1):
                parent = ".".join(target.split(".")[:i])
                if parent in modules and parent not in ancestors:
                    targets.add(parent)
        targets.discard(name)
        graph.edges[name] = targets
        graph.frameworks[name] = frameworks
    return graph


def _imports(node: ast.AST, here: str) -> Iterator[tuple[str, list[str]]]:
    """(module imported, names taken from it) for an import statement; nothing for other nodes."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, []
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = here.split(".")
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        yield module, [alias.name for alias in node.names]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def frameworks_outside_adapters(graph: Graph, package: str) -> dict[str, set[str]]:
    allowed = (f"{package}.adapters", f"{package}.cli")
    return {
        module: used
        for module, used in graph.frameworks.items()
        if used and not module.startswith(allowed)
    }


def adapters_reached_from_the_engine(graph: Graph, package: str) -> dict[str, set[str]]:
    """Modules outside adapters/ importing from it, but for the loader's framework methods, the
    public ``chute.keras`` and the CLI."""
    adapters = f"{package}.adapters"
    entries = {f"{package}.loader", f"{package}.keras"}
    return {
        module: {t for t in targets if t.startswith(adapters)}
        for module, targets in graph.edges.items()
        if not module.startswith((adapters, f"{package}.cli"))
        and module not in entries
        and any(t.startswith(adapters) for t in targets)
    }


@pytest.fixture(scope="module")
def chute_graph() -> Graph:
    return read_graph(SRC, "chute")


def test_the_module_graph_has_no_cycle(chute_graph: Graph) -> None:
    assert len(chute_graph.edges) > 60  # (the source was found and read)
    assert cycles(chute_graph.edges) == []


def test_frameworks_are_imported_only_in_their_adapters_and_the_cli(chute_graph: Graph) -> None:
    assert chute_graph.frameworks["chute.adapters.torch"] == {"torch"}  # (imports are seen)
    assert frameworks_outside_adapters(chute_graph, "chute") == {}


def test_the_engine_imports_no_adapter(chute_graph: Graph) -> None:
    assert "chute.adapters.keras" in chute_graph.edges["chute.loader"]  # (the way in is seen)
    assert adapters_reached_from_the_engine(chute_graph, "chute") == {}


def test_no_module_imports_another_modules_underscore_names(chute_graph: Graph) -> None:
    assert chute_graph.private == []


def test_the_adapters_use_only_the_loader_contract(chute_graph: Graph) -> None:
    engine = {"chute.loader", "chute.dataset", "chute.datasets", "chute.pipeline", "chute.sources"}
    for module, targets in chute_graph.edges.items():
        if module.startswith("chute.adapters"):
            reached = {t for t in targets if t.startswith(tuple(engine))}
            assert reached == set(), f"{module} imports {reached}; adapters use chute.adapters.contract"


# -- the rules fail where they should: a package planted with each defect -----------------------
def _plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_a_planted_cycle_is_found_even_through_a_function_level_import(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import B\n",
            "pkg/b.py": "def make():\n    from pkg.c import C\n    return C\n",
            "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import A\n",
            "pkg/d.py": "from pkg import a\n",  # outside the cycle
        },
    )
    assert cycles(read_graph(tmp_path, "pkg").edges) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_a_cycle_through_a_package_init_is_found(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/sub/__init__.py": "from pkg.sub.x import X\n",
            "pkg/sub/x.py": "from pkg.top import T\n",
            "pkg/top.py": "from pkg.sub.y import Y\n",  # runs pkg/sub/__init__, which needs pkg.top
            "pkg/sub/y.py": "",
        },
    )
    assert cycles(read_graph(tmp_path, "pkg").edges) == [["pkg.sub", "pkg.sub.x", "pkg.top"]]


def test_planted_framework_adapter_and_private_imports_are_found(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/adapters/__init__.py": "",
            "pkg/adapters/torch.py": "import torch\n",
            "pkg/core.py": "def f():\n    import jax.numpy\n    from pkg.adapters.torch import T\n",
            "pkg/other.py": "from pkg.core import _helper, __version__\n",
        },
    )
    graph = read_graph(tmp_path, "pkg")
    assert frameworks_outside_adapters(graph, "pkg") == {"pkg.core": {"jax"}}
    assert adapters_reached_from_the_engine(graph, "pkg") == {
        "pkg.core": {"pkg.adapters", "pkg.adapters.torch"}
    }
    assert graph.private == [("pkg.other", "pkg.core._helper")]

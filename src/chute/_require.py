"""Optional imports: a missing package becomes a MissingDependencyError that says what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError, explain

__all__ = ["missing", "require", "require_adapter"]

# adapter module -> (top-level packages it imports, the chute extra that installs them)
_FRAMEWORKS = {
    "keras": (("keras",), "keras"),
    "torch": (("torch",), "torch"),
    "tf": (("tensorflow",), "tf"),
    "jax": (("jax", "jaxlib"), "jax"),
}


def missing(what: str, error: ImportError, install: str) -> MissingDependencyError:
    """The error for a failed optional import: what was needed, the import error, what to install."""
    return MissingDependencyError(explain(what, f"ImportError: {error}", f"Install it with: {install}"))


def require(module: str, purpose: str, install: str) -> ModuleType:
    """``import module``, or MissingDependencyError saying it is needed for ``purpose``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise missing(f"{module.split('.')[0]} {purpose}", error, install) from error


def require_adapter(name: str) -> ModuleType:
    """``chute.adapters.<name>``, or MissingDependencyError naming the extra to install."""
    packages, extra = _FRAMEWORKS[name]
    try:
        return importlib.import_module(f"chute.adapters.{name}")
    except ImportError as error:
        package = (error.name or "").split(".")[0]
        if package not in packages:
            raise
        raise missing(
            f"the {package!r} package for this call", error, f"pip install 'chute[{extra}]'"
        ) from error

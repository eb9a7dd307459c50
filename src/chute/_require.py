"""Optional imports: a missing package becomes a MissingDependencyError that says what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError, explain

__all__ = ["require", "require_adapter"]

# adapter module -> (top-level packages it imports, the chute extra that installs them)
_FRAMEWORKS = {
    "keras": (("keras",), "keras"),
    "torch": (("torch",), "torch"),
    "tf": (("tensorflow",), "tf"),
    "jax": (("jax", "jaxlib"), "jax"),
}


def require(module: str, purpose: str, install: str) -> ModuleType:
    """``import module``, or MissingDependencyError saying it is needed for ``purpose``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            explain(
                f"{module.split('.')[0]} {purpose}", f"ImportError: {error}", f"Install it with: {install}"
            )
        ) from error


def require_adapter(name: str) -> ModuleType:
    """``chute.adapters.<name>``, or MissingDependencyError naming the extra to install."""
    packages, extra = _FRAMEWORKS[name]
    try:
        return importlib.import_module(f"chute.adapters.{name}")
    except ImportError as error:
        missing = (error.name or "").split(".")[0]
        if missing not in packages:
            raise
        raise MissingDependencyError(
            explain(
                f"the {missing!r} package for this call",
                f"ImportError: {error}",
                f"Install it with: pip install 'chute[{extra}]'",
            )
        ) from error

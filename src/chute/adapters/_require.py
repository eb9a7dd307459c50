"""Import an adapter module, turning a missing framework into an install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import MissingDependencyError, explain

__all__ = ["require_adapter"]

# adapter module -> (top-level packages it imports, the chute extra that installs them)
_FRAMEWORKS = {"keras": (("keras",), "keras")}


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

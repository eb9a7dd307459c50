"""Starting worker processes from a script without running the script again.

Under ``spawn`` and ``forkserver`` (chute's start method once JAX or TensorFlow is loaded), a new
process imports the main script (as ``__mp_main__``) so that functions defined there can be
unpickled; the script's top level runs again in it.  Python's documentation asks scripts to keep
their work under ``if __name__ == "__main__":``; a script without that guard trains its models
again in each worker, then dies in multiprocessing's bootstrapping check.

:func:`starting_processes` wraps the start of worker processes.  When what the workers are sent
needs nothing from the script, the script is hidden from the children: they start without
importing it, guard or not (which is also faster).  When it does (a map function defined in the
script), and the call comes from the script's top level outside the guard, an
:class:`~chute.errors.OptionError` names the line and the fix before anything runs again.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import pickle
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any, Optional

from chute.errors import OptionError, explain

__all__ = ["starting_processes"]

_hiding = threading.Lock()


@contextlib.contextmanager
def starting_processes(payload: Any, start_method: str) -> Iterator[None]:
    """Around starting processes (``start_method``) that are sent ``payload``: hide the main
    script from them when ``payload`` does not need it, else refuse an unguarded script."""
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    if start_method == "fork" or main is None or not script:  # (fork imports nothing; no script)
        yield
        return
    if _needs_main(payload):
        line = _unguarded_line(main, script)
        if line is not None:
            raise OptionError(
                explain(
                    'the script\'s work under `if __name__ == "__main__":`, as process workers '
                    f"started with {start_method!r} import the script (for the functions defined in it)",
                    f"process workers started from line {line} of {script}, outside such a guard: each "
                    "worker would run the script again",
                    'Put the code that builds and iterates loaders under `if __name__ == "__main__":` '
                    "(or in a function called from there), or define the map functions in a module "
                    "of their own, or use worker_type='thread'.",
                )
            )
        yield
        return
    with _hiding:  # (hidden for this start only: other threads see it back at once)
        saved: dict[str, Any] = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
        try:
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
            yield
        finally:
            main.__dict__.update(saved)
            if "__spec__" not in saved:
                main.__dict__.pop("__spec__", None)


def _needs_main(payload: Any) -> bool:
    """Whether unpickling ``payload`` imports anything defined in the main script."""
    found = False

    class Scan(pickle.Pickler):
        def persistent_id(self, obj: Any) -> None:
            nonlocal found
            if isinstance(obj, (type, types.FunctionType)) and getattr(obj, "__module__", None) == "__main__":
                found = True
            return None

    try:
        Scan(_Discard(), protocol=pickle.HIGHEST_PROTOCOL).dump(payload)
    except Exception:  # (it does not pickle: starting the processes says so, with its fix)
        return False
    return found


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


def _unguarded_line(main: types.ModuleType, script: str) -> Optional[int]:
    """The line of the script's top level that the main thread is running, if it is outside an
    ``if __name__ == "__main__":`` block (None when inside one, or not at the top level)."""
    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    while frame is not None:
        if frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>":
            break
        frame = frame.f_back
    if frame is None:
        return None
    line = frame.f_lineno
    guards = _guards(script)
    return None if any(first <= line <= last for first, last in guards) else line


@functools.lru_cache(maxsize=4)
def _guards(script: str) -> tuple[tuple[int, int], ...]:
    """The line ranges of the script's top-level ``if __name__ == "__main__":`` blocks."""
    try:
        with open(script, encoding="utf-8") as f:
            tree = ast.parse(f.read(), script)
    except (OSError, SyntaxError, ValueError):
        return ((0, sys.maxsize),)  # (unreadable: assume guarded rather than refuse)
    ranges = []
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_test(node.test):
            ranges.append((node.lineno, node.end_lineno or node.lineno))
    return tuple(ranges)


def _is_main_test(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    constants = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and constants == ["__main__"]

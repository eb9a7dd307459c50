"""What a killed run left in /dev/shm and the temporary directory, found and removed by the next one.

A process that ends normally, or on Ctrl-C or SIGTERM, removes its shared-memory segments and
cache folders itself, and worker processes remove their loader's segments if it is killed.  Nothing
runs in a process killed with SIGKILL (the out-of-memory killer's signal) that used thread workers
or a ``ds.cache()``, so its files stay, holding RAM, until something removes them.

So every such name carries its owner: ``chute-<pid>-<space>-...`` and ``chute-cache-<pid>-<space>-...``,
where ``space`` is a hash of this boot and this pid namespace.  :func:`sweep` (run when a loader
starts worker processes or a cache is made) removes the entries of this user whose space is ours
and whose pid no longer runs.  Entries from another boot, host or container are never touched
(their pids mean nothing here), nor those of a live process.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
from collections.abc import Iterable

__all__ = ["owner_tag", "sweep"]

_OWNED = re.compile(r"chute-(?:cache-)?(\d+)-([0-9a-f]{8})-")


def owner_tag() -> str:
    """``<pid>-<space>``: what names this process's files in shared directories."""
    return f"{os.getpid()}-{_space()}"


@functools.cache
def _space() -> str:
    """8 hex digits naming this boot of this machine and this pid namespace."""
    parts = []
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as boot:
        parts.append(boot.read().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    if not parts:  # (not Linux) the host's name at least keeps other machines' files apart
        parts.append(os.uname().nodename if hasattr(os, "uname") else "")
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=4).hexdigest()


def sweep(directories: Iterable[str]) -> list[str]:
    """Remove from ``directories`` what chute processes of this user, boot and pid namespace that
    no longer run left there; the paths removed."""
    if not hasattr(os, "getuid"):  # (Windows: no owners to compare, and os.kill would kill)
        return []
    space, removed = _space(), []
    for directory in dict.fromkeys(directories):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            owner = _OWNED.match(name)
            if owner is None or owner.group(2) != space or _running(int(owner.group(1))):
                continue
            path = os.path.join(directory, name)
            if _remove_if_mine(path):
                removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # (PermissionError: another user's process)
        return True
    return True


def _remove_if_mine(path: str) -> bool:
    try:
        if os.lstat(path).st_uid != os.getuid():
            return False
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError:  # gone meanwhile (another sweep), or not ours to remove
        return False
    return True

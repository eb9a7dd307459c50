"""chute's messages as the terminal should show them: in flags, not keywords, and printable.

The library speaks Python (``convert with on_error='skip'``); the command line prints the same
advice in its own terms (``convert with --on-error skip``).  Only a bare ``keyword=value`` is
rewritten: one inside a call (``chute.image_folder(root, size=(h, w))``) is Python on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Flag", "as_flags", "printable"]

_LONGEST = 4000  # characters of a message shown: a reader's error may quote a whole file


@dataclass(frozen=True)
class Flag:
    """The command-line form of a library keyword: ``--on-error``, whether it takes no value
    (``--resume``), and what stands for a value that is not a literal (``HxW``)."""

    option: str
    switch: bool = False
    metavar: str = "VALUE"


def as_flags(text: str, flags: Mapping[str, Flag]) -> str:
    """``text`` with each bare ``keyword=value`` of ``flags`` written as the flag."""
    if not flags:
        return text
    names = "|".join(sorted(map(re.escape, flags), key=len, reverse=True))
    value = r"'[^']*'|\"[^\"]*\"|\([^()]*\)|[\w.+-]+"
    pattern = re.compile(rf"(?<![\w.(])(?<!, )({names})=({value})")
    text = pattern.sub(lambda m: _flag(flags[m.group(1)], m.group(2)), text)
    return re.sub(r"(--[\w-]+(?: [^\s()]+)?) \(\1\)", r"\1", text)  # "--resume (--resume)"


def _flag(flag: Flag, value: str) -> str:
    if flag.switch:
        return flag.option if value == "True" else f"no {flag.option}"
    if value[:1] in "'\"":
        return f"{flag.option} {value[1:-1]}"
    if value.startswith("("):
        parts = [part.strip() for part in value[1:-1].split(",") if part.strip()]
        if parts and all(part.isdigit() for part in parts):
            return f"{flag.option} {('x' if 'x' in flag.metavar else ',').join(parts)}"
        return f"{flag.option} {flag.metavar}"
    literal = any(c.isalnum() for c in value)  # 32, 1.5, 256MB; not an ellipsis
    return f"{flag.option} {value if literal else flag.metavar}"


_BINARY = re.compile(r"\x00(?:[^\x00\n]{0,8}\x00){2,}")  # 3+ unprintable characters close together


def printable(text: str) -> str:
    """``text`` safe for a terminal: a stretch of binary data (a file a reader quoted) is left
    out, saying so; any other control character is escaped; at most ``_LONGEST`` characters."""
    cut = text[:_LONGEST]
    marked = "".join(c if _shows(c) else "\x00" for c in cut)
    parts, at = [], 0
    for span in _BINARY.finditer(marked):
        parts.append(_escaped(cut[at : span.start()]))
        parts.append(f"<{span.end() - span.start():,} characters of binary data>")
        at = span.end()
    parts.append(_escaped(cut[at:]))
    shown = "".join(parts)
    return shown if len(text) <= _LONGEST else f"{shown}... ({len(text) - _LONGEST:,} more characters)"


def _shows(c: str) -> bool:
    return c in "\n\t" or (c.isprintable() and c != "\ufffd")  # U+FFFD: bytes that were not text


def _escaped(text: str) -> str:
    return "".join(c if _shows(c) else repr(c)[1:-1] for c in text)

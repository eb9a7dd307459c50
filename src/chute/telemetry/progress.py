"""A dependency-free progress bar for long commands: count, rate and time left, on stderr."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Optional, TextIO

__all__ = ["Progress"]


class Progress:
    """``with Progress("converting", total) as bar: bar.update(n)``; redraws at most 5 times a second.

    ``enabled=None`` shows the bar only when stderr is a terminal.
    """

    def __init__(
        self,
        label: str,
        total: Optional[int],
        unit: str = "items",
        enabled: Optional[bool] = None,
        stream: Optional[TextIO] = None,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = sys.stderr if stream is None else stream
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.done = 0
        self._start = self._drawn = time.perf_counter()
        self._first = 0

    def __enter__(self) -> Progress:
        return self

    def update(self, n: int) -> None:
        if self.done == 0 and n and time.perf_counter() - self._start < 1e-3:
            self._first = n  # work already done (a resumed run): not counted in the rate
        self.done += n
        now = time.perf_counter()
        if self.enabled and now - self._drawn >= 0.2:
            self._drawn = now
            self._draw(final=False)

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        rate = (self.done - self._first) / elapsed
        text = f"{self.label}: {self.done:,}"
        if self.total:
            text += f"/{self.total:,} {self.unit} ({100 * self.done / self.total:.0f}%)"
            if rate > 0:
                left = (self.total - self.done) / rate
                text += f", {rate:,.0f} {self.unit}/s, ETA {int(left // 60)}:{int(left % 60):02d}"
        else:
            text += f" {self.unit}, {rate:,.0f} {self.unit}/s"
        return text

    def _draw(self, final: bool) -> None:
        self.stream.write("\r" + self.line() + ("\n" if final else ""))
        self.stream.flush()

    def __exit__(
        self, kind: Optional[type[BaseException]], error: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        if self.enabled:
            self._draw(final=True)

"""A dependency-free progress bar for long commands: count, rate and time left, on stderr."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Optional, TextIO

__all__ = ["Progress", "format_size"]

_REDRAW_S = 0.2  # a terminal's bar: at most 5 redraws a second
_PLAIN_STEP = 10  # not a terminal: one line per 10 percent of the total...
_PLAIN_EVERY_S = 10.0  # ...or, the total unknown, one line every 10 seconds


def format_size(n: float) -> str:
    """Bytes in the unit that fits: ``512 B``, ``247.0 KB``, ``1.3 GB`` (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class Progress:
    """``with Progress("converting", total) as bar: bar.update(n)``, on stderr by default.

    ``enabled=None`` shows progress only when the stream is a terminal.  On a terminal one line is
    redrawn in place; elsewhere (a log file, a pipe) a plain line is written at each tenth of the
    total, as tqdm does, so the file holds a few readable lines rather than one of ``\\r`` updates.
    ``unit="bytes"`` counts bytes and shows them in KB, MB or GB.  A block that ends without an
    error has done all its work: its last line says 100%, whatever rounding the counts had.
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
        self.terminal = self.stream.isatty()
        self.enabled = self.terminal if enabled is None else enabled
        self.done = 0
        self._complete = False  # ended without an error: shown as the whole total
        self._start = self._drawn = time.perf_counter()
        self._first = 0
        self._width = 0  # of the line drawn last on a terminal, to blank what a shorter one leaves
        self._step = 0  # the last tenth of the total written as a plain line

    def __enter__(self) -> Progress:
        return self

    def update(self, n: int) -> None:
        if self.done == 0 and n and time.perf_counter() - self._start < 1e-3:
            self._first = n  # work already done (a resumed run): not counted in the rate
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.terminal:
            if now - self._drawn >= _REDRAW_S:
                self._drawn = now
                self._draw(final=False)
        elif self.total:
            step = min(_PLAIN_STEP - 1, _PLAIN_STEP * self.done // self.total)  # 100%: at the end
            if step > self._step:
                self._step = step
                self._plain()
        elif now - self._drawn >= _PLAIN_EVERY_S:
            self._drawn = now
            self._plain()

    def _amount(self, n: float) -> str:
        return format_size(n) if self.unit == "bytes" else f"{n:,.0f}"

    def _rate(self, rate: float) -> str:
        return f"{format_size(rate)}/s" if self.unit == "bytes" else f"{rate:,.0f} {self.unit}/s"

    def line(self, final: bool = False) -> str:
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        rate = (self.done - self._first) / elapsed
        unit = "" if self.unit == "bytes" else f" {self.unit}"
        done = self.total if self._complete and self.total else self.done
        text = f"{self.label}: {self._amount(done)}"
        if self.total:
            text += f"/{self._amount(self.total)}{unit} ({100 * done / self.total:.0f}%)"
        else:
            text += unit
        if rate > 0:
            text += f", {self._rate(rate)}"
        if final:
            text += f", {_clock(elapsed)}"
        elif self.total and rate > 0:
            text += f", ETA {_clock((self.total - self.done) / rate)}"
        return text

    def _draw(self, final: bool) -> None:
        text = self.line(final)
        self.stream.write("\r" + text.ljust(self._width) + ("\n" if final else ""))
        self._width = len(text)
        self.stream.flush()

    def _plain(self, final: bool = False) -> None:
        self.stream.write(self.line(final) + "\n")
        self.stream.flush()

    def __exit__(
        self, kind: Optional[type[BaseException]], error: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self._complete = kind is None
        if not self.enabled:
            return
        if self.terminal:
            self._draw(final=True)
        else:
            self._plain(final=True)


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"

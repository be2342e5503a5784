"""A one-line progress display on stderr for long input lists (no dependency: tqdm is not needed for
one counter, and the client stays installable with numpy + grpcio alone)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``rows 1,280/10,000 (13%) 412 rows/s, 21 s left``, rewritten in place on ``stream``.

    Args:
        total: rows to send.
        enabled: ``True`` shows it, ``False`` never; ``None`` (the default everywhere) shows it only
            when ``stream`` is a terminal and the input takes more than one request, so logs, pipes
            and notebooks' captured stderr stay clean.
        requests: how many requests the rows take.
        stream: where to write (default ``sys.stderr``).
        min_interval: seconds between redraws.

    Example:

    >>> import io
    >>> out = io.StringIO()
    >>> bar = Progress(10, enabled=True, stream=out, min_interval=0)
    >>> bar.update(4); bar.update(6); bar.close()
    >>> out.getvalue().split("\\r")[-1].split(" (")[0]
    'rows 10/10'
    """

    def __init__(
        self,
        total: int,
        enabled: bool | None = None,
        requests: int = 2,
        stream: TextIO | None = None,
        min_interval: float = 0.2,
    ):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = requests > 1 and bool(isatty and isatty())
        self.enabled = bool(enabled)
        self.total = total
        self.done = 0
        self.min_interval = min_interval
        self._start = time.monotonic()
        self._drawn = 0.0
        self._width = 0

    def update(self, rows: int) -> None:
        """Counts ``rows`` more as answered and redraws (at most every ``min_interval`` seconds)."""
        self.done += rows
        now = time.monotonic()
        if self.enabled and (now - self._drawn >= self.min_interval or self.done >= self.total):
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        percent = 100 * self.done // max(self.total, 1)
        line = f"rows {self.done:,}/{self.total:,} ({percent}%) {rate:,.0f} rows/s"
        if self.done < self.total and left != float("inf"):
            line += f", {left:,.0f} s left"
        self.stream.write("\r" + line.ljust(self._width))
        self._width = len(line)
        self.stream.flush()

    def close(self) -> None:
        """Ends the line (if anything was drawn)."""
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()

"""Progress of long work: a bar on a terminal, periodic events in JSON mode."""

from __future__ import annotations

import sys
import time

import structlog

from . import logs

log = structlog.get_logger()


class Progress:
    """Progress of long work: a bar on a terminal, ``progress`` events (every ``every_s`` seconds) otherwise."""

    def __init__(self, total: int, label: str, every_s: float = 5.0) -> None:
        self.total, self.label, self.every_s = total, label, every_s
        self.done = 0
        self.start = self._last = time.monotonic()
        self.bar = logs.CONSOLE and sys.stderr.isatty()

    def advance(self, n: int) -> None:
        """Count ``n`` more items done; redraw the bar or log an event when one is due."""
        self.done += n
        now = time.monotonic()
        if self.bar:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            rate = self.done / max(now - self.start, 1e-9)
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {rate:.1f}/s")
            sys.stderr.flush()
        if (not self.bar or logs.TO_FILE) and (now - self._last >= self.every_s or self.done >= self.total):
            self._last = now
            # under a bar the event goes to the log file only
            log.info("progress", what=self.label, done=self.done, total=self.total,
                     rate_per_s=round(self.done / max(now - self.start, 1e-9), 2), **({logs.FILE_ONLY: True} if self.bar else {}))

    def close(self) -> None:
        """End the bar's line on the terminal."""
        if self.bar:
            sys.stderr.write("\n")
            sys.stderr.flush()

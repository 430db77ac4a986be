"""structlog set-up, called once by the CLI; library code only calls ``get_logger``.

Events go to stderr (stdout is kept for the plan and the summary): console rendering on
a terminal, JSON lines otherwise or with ``--log-format json``. ``--log-file`` adds a
JSON-lines copy of every event; ``--quiet`` keeps only warnings and errors on stderr
(the file still gets every event).

Used as a library (Python API, a pipeline runner), nothing is configured for the caller:
until structlog is configured, :func:`library_default` sends warnings and errors to
stderr and drops the rest (as the stdlib does with no handler), never to stdout. Call
:func:`configure` (or ``structlog.configure``) to see more.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import MutableMapping
from typing import IO, Any

import structlog

#: an event key that keeps the event out of stderr (progress events while a bar is drawn)
FILE_ONLY = "_file_only"


class _Tee:
    """A processor that writes each event as a JSON line to a file, then passes it on."""

    def __init__(self, fh: IO[str]) -> None:
        self.fh = fh

    def __call__(self, logger: Any, name: str, event: dict) -> dict:
        self.fh.write(json.dumps({k: v for k, v in event.items() if k != FILE_ONLY}, default=str) + "\n")
        self.fh.flush()
        return event


class _StderrFilter:
    """Drops, from stderr only, file-only events and (with ``--quiet``) events below warning."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if event.pop(FILE_ONLY, False):
            raise structlog.DropEvent
        if self.quiet and event.get("level") in ("debug", "info"):
            raise structlog.DropEvent
        return event


def wants_console(log_format: str | None) -> bool:
    """Whether events are rendered for a person: ``auto`` means when stderr is a terminal."""
    if log_format is None or log_format == "auto":
        return sys.stderr.isatty()
    return log_format == "console"


def _stderr_logger(*args: Any) -> structlog.PrintLogger:
    # sys.stderr as it is now: tests and embedding applications may swap it
    return structlog.PrintLogger(sys.stderr)


class _StdlibBridge(logging.Handler):
    """Records of other libraries' loggers, as structlog events (JSON stays JSON)."""

    def emit(self, record: logging.LogRecord) -> None:
        log = structlog.get_logger()
        getattr(log, record.levelname.lower(), log.warning)(record.getMessage(), logger=record.name)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: IO[str] | None = None, line: str | None = None) -> None:
    structlog.get_logger().warning("python.warning", category=category.__name__, message=str(message),
                                   where=f"{filename}:{lineno}")


#: whether events are rendered for a person (set by :func:`configure`); progress bars follow it
CONSOLE = False


#: whether a log file receives every event (progress events are then logged under a bar too)
TO_FILE = False


def library_default() -> None:
    """Warnings and errors to stderr, nothing else, unless structlog is configured already."""
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True), _StderrFilter(quiet=False),
                    structlog.processors.JSONRenderer(default=str)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


def configure(log_format: str | None = None, log_file: str | None = None, level: str = "info",
              quiet: bool = False) -> None:
    """Configure structlog once, at the edge (the CLI): JSON lines or console on stderr, plus a JSON copy in ``log_file``."""
    global CONSOLE, TO_FILE
    console = CONSOLE = wants_console(log_format)
    TO_FILE = bool(log_file)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if log_file:
        try:
            fh = open(log_file, "a", encoding="utf-8")  # noqa: SIM115 - lives for the run
        except OSError as exc:
            from .errors import UserError

            raise UserError(f"cannot open --log-file {log_file}: {exc.strerror or exc}") from None
        processors.append(_Tee(fh))
    processors.append(_StderrFilter(quiet))
    processors.append(
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if console
        else structlog.processors.JSONRenderer(default=str)
    )
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(handlers=[_StdlibBridge()], level=logging.WARNING, force=True)
    warnings.showwarning = _show_warning

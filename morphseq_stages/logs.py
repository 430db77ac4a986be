"""structlog set-up, called once by the CLI; library code only calls ``get_logger``.

Events go to stderr (stdout is kept for the plan and the summary): console rendering on
a terminal, JSON lines otherwise or with ``--log-format json``. ``--log-file`` adds a
JSON-lines copy of every event.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from typing import IO, Any

import structlog


class _Tee:
    """A processor that writes each event as a JSON line to a file, then passes it on."""

    def __init__(self, fh: IO[str]):
        self.fh = fh

    def __call__(self, logger: Any, name: str, event: dict) -> dict:
        self.fh.write(json.dumps(event, default=str) + "\n")
        self.fh.flush()
        return event


def wants_console(log_format: str | None) -> bool:
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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    structlog.get_logger().warning("python.warning", category=category.__name__, message=str(message),
                                   where=f"{filename}:{lineno}")


#: whether events are rendered for a person (set by :func:`configure`); progress bars follow it
CONSOLE = False


def configure(log_format: str | None = None, log_file: str | None = None, level: str = "info") -> None:
    global CONSOLE
    console = CONSOLE = wants_console(log_format)
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

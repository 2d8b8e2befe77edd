"""Structured logging setup.

Log events carry a bound ``session``, ``peer`` and ``user``; at debug level the session
logs one ``command`` event per command with the verb and its outcome only, and at info a
session's lines are connect, login and disconnect (with its command and octet counts),
as Dovecot's.  Passwords, SASL payloads and message bodies never reach a log call, so no
redaction pass is needed.

The time stamp is formatted once per second (``_Stamper``) and the text renderer writes
``ConsoleRenderer(colors=False)``'s layout with one f-string (``_render_text``); both
together cost a fifth of the stock processors, which mattered when a line was written per
command and still does at debug level.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, TextIO

import structlog

if TYPE_CHECKING:
    from structlog.typing import EventDict, WrappedLogger

__all__ = ["make_logger"]


def make_logger(
    *, json: bool = False, level: int | str = logging.INFO, stream: TextIO | None = None
) -> structlog.typing.FilteringBoundLogger:
    """A logger writing one line per event to ``stream`` (stderr by default).

    Each line, newline included, is one ``write`` call: a supervisor and its workers
    share one stderr, and Python's is unbuffered, so ``PrintLogger`` (``print``, which
    writes the text and then the newline) let two processes' events interleave as
    ``{A}{B}`` and two newlines, and a reader of the JSON log lost both.

    ``level`` is a ``logging`` level or its name in any case ("debug", "INFO", ...).
    """
    if isinstance(level, str):
        level = logging.getLevelNamesMapping()[level.upper()]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else _render_text
    )
    logger: structlog.typing.FilteringBoundLogger = structlog.wrap_logger(
        structlog.WriteLogger(stream or sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        processors=[
            structlog.processors.add_log_level,
            _Stamper(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        cache_logger_on_first_use=False,
    )
    return logger


class _Stamper:
    """``TimeStamper(fmt="iso", utc=True)``'s output, with the date formatted once a second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event_dict["timestamp"] = f"{self._prefix}.{int((now - second) * 1e6):06d}Z"
        return event_dict


def _render_text(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> str:
    """``ConsoleRenderer(colors=False)``'s layout: stamp, [level], event, sorted key=value."""
    stamp = event_dict.pop("timestamp", "")
    level = event_dict.pop("level", "")
    event = event_dict.pop("event", "")
    exception = event_dict.pop("exception", None)
    pairs = " ".join(
        f"{key}={value if isinstance(value, str) else repr(value)}"
        for key, value in sorted(event_dict.items())
    )
    line = f"{stamp} [{level:<9}] {event!s:<30} {pairs}".rstrip()
    return f"{line}\n{exception}" if exception else line

"""Structured logging setup.

Log events carry a bound ``session``, ``peer`` and ``user``; the session logs one
``command`` event per command with the verb and its outcome only.  Passwords, SASL
payloads and message bodies never reach a log call, so no redaction pass is needed.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

__all__ = ["make_logger"]


def make_logger(
    *, json: bool = False, level: int = logging.INFO, stream: TextIO | None = None
) -> structlog.typing.FilteringBoundLogger:
    """A logger writing one line per event to ``stream`` (stderr by default)."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    logger: structlog.typing.FilteringBoundLogger = structlog.wrap_logger(
        structlog.PrintLogger(stream or sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        cache_logger_on_first_use=False,
    )
    return logger

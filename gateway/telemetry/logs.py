"""structlog set-up: JSON lines (or console) with the request's bound context.

Log ids, units, costs and timings only: never transcripts, audio, text or keys.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import orjson
import structlog

from gateway.settings import LogSettings


def _json(event: object, **_: object) -> str:
    # orjson: several lines are written per request, and the stdlib encoder was a visible share of the
    # request path. Anything it cannot encode natively (Decimal money, enums) is written as its str().
    return orjson.dumps(event, default=str).decode()


def configure(settings: LogSettings, stream: TextIO | None = None) -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=_json)
        if settings.format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(settings.level.upper())),
        # One write per line (print() makes two, the line and its newline): every request logs several.
        logger_factory=structlog.WriteLoggerFactory(stream or sys.stderr),
        # Not cached, so a re-configuration (tests, reloads) reaches loggers already handed out.
        cache_logger_on_first_use=False,
    )

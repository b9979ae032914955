"""Structured logging tagged with the worker's identity (rank, role) once it is known.

``json`` writes one JSON object per line for log collectors; ``text`` is for people at a terminal;
``auto`` picks text on a terminal and JSON otherwise. Extra fields go through ``extra=fields(...)``.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any

_context: dict[str, Any] = {}


def fields(**values: Any) -> dict[str, Any]:
    """``log.info("checkpoint saved", extra=fields(step=120))``."""
    return {"fields": values}


def bind(**values: Any) -> None:
    """Adds identity fields (``rank=1, role="worker"``) to every following log line."""
    _context.update(values)


def setup(log_format: str = "auto", level: str = "INFO") -> None:
    if log_format == "auto":
        log_format = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {**_context, **getattr(record, "fields", {})}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_record_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extras = " ".join(f"{k}={v}" for k, v in _record_fields(record).items())
        line = f"{when} {record.levelname:<7} {record.name}: {record.getMessage()}"
        line = f"{line}  {extras}" if extras else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line

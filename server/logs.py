"""Logging for every process role: text (the default) or one JSON object per line (`--log-format json`).

A JSON line has `time` (ISO 8601, UTC), `level`, `logger`, `message`, the `process` role, and `loop` and
`event_id` when the call passed them (`log.info(..., extra={"loop": name})`), plus `exception` with the
traceback when there is one.
"""

from __future__ import annotations

import datetime
import json
import logging
import os

FORMATS = ("text", "json")
_CONTEXT = ("loop", "event_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": self._process,
        }
        for name in _CONTEXT:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str, fmt: str = "text", process: str = "") -> None:
    """Set up the root logger of this process; `process` names its role (worker 1234, trainer…)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(process or f"main {os.getpid()}"))
    else:
        where = f" {process}" if process else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def current_format() -> str:
    """The format this process was configured with, for the processes it starts."""
    handlers = logging.getLogger().handlers
    return "json" if any(isinstance(h.formatter, JsonFormatter) for h in handlers) else "text"

"""Structured log lines for the commands: ``time LEVEL logger message key=value ...``.

The engine and the adapters log context as ``extra={...}`` (a stream id, a batch size, why a CUDA graph was not
captured); Python's default format drops it. ``KeyValueFormatter`` appends every extra field to the line as
``key=value`` (logfmt: values with spaces, quotes or ``=`` are JSON-quoted), so grep and log shippers see it.
"""
from __future__ import annotations

import json
import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    """The format above, then the record's extra fields in the order given (before any traceback)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extras = [(k, v) for k, v in vars(record).items() if k not in _RESERVED]
        return line + "".join(f" {k}={_value(v)}" for k, v in extras)


def _value(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


def configure(level: str = "INFO", *, quiet_root: bool = False) -> None:
    """Log to stderr in structured lines at ``level``. With ``quiet_root`` only this project's loggers
    (``parakeet_stream``, ``parakeet_services``) go down to ``level``; the rest (NeMo, torch) stay at warnings."""
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter(FORMAT))
    level = level.upper()
    logging.basicConfig(level="WARNING" if quiet_root else level, handlers=[handler], force=True)
    if quiet_root:
        for name in ("parakeet_stream", "parakeet_services"):
            logging.getLogger(name).setLevel(level)

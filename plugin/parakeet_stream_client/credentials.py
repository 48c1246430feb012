"""Keeping API keys out of logs: ``websockets`` logs every handshake header and the request path at DEBUG."""
from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
_SECRET_HEADERS = ("authorization", "x-api-key")
_QUERY_KEY = re.compile(r"(api_key=)[^&\s]*", re.IGNORECASE)


def redact_query(text: str) -> str:
    """``text`` with the value of every ``api_key=`` query parameter replaced."""
    return _QUERY_KEY.sub(rf"\g<1>{REDACTED}", text)


class RedactCredentials(logging.Filter):
    """Rewrites ``websockets``' handshake debug records (``"< %s: %s"`` header lines, request lines) so an
    ``Authorization``/``X-API-Key`` value or an ``api_key`` query parameter never reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            if len(args) == 2 and str(args[0]).lower() in _SECRET_HEADERS:
                record.args = (args[0], REDACTED)
            else:
                record.args = tuple(redact_query(a) if isinstance(a, str) else a for a in args)
        elif isinstance(record.msg, str):
            record.msg = redact_query(record.msg)
        return True


def redacting_logger(name: str) -> logging.Logger:
    """The logger ``name`` with :class:`RedactCredentials` attached once: give it to ``websockets`` as ``logger=``."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactCredentials) for f in logger.filters):
        logger.addFilter(RedactCredentials())
    return logger

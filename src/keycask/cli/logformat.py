"""``keycask server --log-format json|text``: how the server's log lines are
written to stderr.

``text`` (the default) is one human line per event, as before. ``json`` is
one JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``event``
(``request`` for each answered request, ``message`` for every other log
line, or a name the line gives), ``logger``, ``message`` (the text line's
words) and the event's own fields: a request's ``request_id``, ``door``,
``operation``, ``outcome``, ``error_code`` and ``duration_seconds``; a
key_near_expiry event's (an Azure Key Vault rotation policy's Notify)
``door``, ``operation``, ``vault``, ``key``, ``version``, ``exp``,
time_before_expiry, ``key_arn``, ``account`` and ``region``; an
exception member holds a traceback's text. Nothing a request carries
(bodies, plaintext, keys, signatures, tokens) is ever a field: log lines
are written from what the metrics count and from fixed messages, in
either format.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "message"),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class _Configured:
    format = "text"


def configured() -> str:
    """The format ``configure`` set (``text`` before any)."""
    return _Configured.format


def configure(log_format: str) -> None:
    """Write the process's log to stderr in ``log_format``; Python warnings
    go through the log too, so a JSON log has no line of another shape."""
    _Configured.format = log_format
    formatter: logging.Formatter = (
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    if log_format == "json":
        logging.captureWarnings(True)


def event(logger: logging.Logger, level: int, name: str, message: str) -> None:
    """A log event with its own name (``event``), e.g. a start-up banner's warning."""
    logger.log(level, "%s", message, extra={"event": name})

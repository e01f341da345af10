"""One log format for every line, Transom's and uvicorn's: ``[server] log_format = "text"``
(one readable line) or ``"json"`` (one JSON object per line). Every line carries a UTC
timestamp and the request id of the request it belongs to (``-`` outside a request).

:func:`logging_config` is a ``logging.config.dictConfig`` dict: ``serve`` hands it to
uvicorn (``log_config``), which applies it in every worker before the app starts.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
from datetime import UTC, datetime
from typing import Any

from transom.observe import current_request_id

#: query parameters whose values never reach a log line (authorization codes, SAML messages)
_SECRET_PARAMS = re.compile(
    r"(?i)([?&](?:code|state|id_token|access_token|token|samlresponse|samlrequest|relaystate|session_state)=)[^&#\s]*"
)


def redact_query(path: str) -> str:
    return _SECRET_PARAMS.sub(r"\1[redacted]", path)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id``; scrubs secrets from uvicorn's access-line path."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, version, status = record.args
            record.args = (client, method, redact_query(str(path)), version, status)
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = (f"{_timestamp(record)} {record.levelname} {record.name} "
                f"[{getattr(record, 'request_id', '-')}] {record.getMessage()}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _version, status = record.args
            entry.update(client=client, method=method, path=path, status=status)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)  # newlines escaped: still one line
        return json.dumps(entry, default=str)


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    formatter = "transom.logs.JsonFormatter" if fmt == "json" else "transom.logs.TextFormatter"
    handler = {"class": "logging.StreamHandler", "formatter": "main", "filters": ["request_id"],
               "stream": "ext://sys.stderr"}
    level = level.upper()
    if level == "TRACE":  # uvicorn's extra level; the stdlib knows it as 5
        level = "DEBUG"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "transom.logs.RequestIdFilter"}},
        "formatters": {"main": {"()": formatter}},
        "handlers": {"main": handler},
        "root": {"handlers": ["main"], "level": level},
        "loggers": {
            # uvicorn's own loggers keep their names but print through the same handler
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            # access lines are INFO records: log_level = "WARNING" leaves them out, as uvicorn's
            # own --log-level does
            "uvicorn.access": {"handlers": [], "level": level, "propagate": True},
        },
    }


def configure(level: str, fmt: str) -> None:
    logging.config.dictConfig(logging_config(level, fmt))
    logging.captureWarnings(True)  # a library's warning is a log line in the same format too

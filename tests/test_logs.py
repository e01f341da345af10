"""Log lines in both formats: timestamp, request id, uvicorn's access line scrubbed of codes."""

from __future__ import annotations

import json
import logging
import re

from starlette.testclient import TestClient

from transom.logs import JsonFormatter, RequestIdFilter, TextFormatter, logging_config, redact_query
from transom.observe import CURRENT, RequestInfo


def record(name: str, msg: str, args: tuple[object, ...] = ()) -> logging.LogRecord:
    rec = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    RequestIdFilter().filter(rec)
    return rec


def test_text_and_json_lines_carry_timestamp_and_request_id() -> None:
    token = CURRENT.set(RequestInfo(request_id="abc123"))
    try:
        access = record("uvicorn.access", '%s - "%s %s HTTP/%s" %d',
                        ("127.0.0.1:5", "GET", "/api/accounts/idp-callback?code=XYZ&state=S&x=1", "1.1", 400))
    finally:
        CURRENT.reset(token)
    text = TextFormatter().format(access)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO uvicorn.access \[abc123\] ", text)
    assert "XYZ" not in text and "code=[redacted]&state=[redacted]&x=1" in text
    entry = json.loads(JsonFormatter().format(access))
    assert entry["request_id"] == "abc123" and entry["status"] == 400 and entry["method"] == "GET"
    assert entry["path"] == "/api/accounts/idp-callback?code=[redacted]&state=[redacted]&x=1"
    outside = json.loads(JsonFormatter().format(record("transom.web", "started")))
    assert outside["request_id"] == "-"


def test_exceptions_stay_on_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = logging.LogRecord("transom.web", logging.ERROR, __file__, 1, "unexpected", (), sys.exc_info())
    line = JsonFormatter().format(rec)
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["exception"]


def test_redaction_covers_saml_and_tokens() -> None:
    assert redact_query("/x?SAMLResponse=PHN&RelayState=r&id_token=e.y.j") == (
        "/x?SAMLResponse=[redacted]&RelayState=[redacted]&id_token=[redacted]")


def test_trace_level_maps_to_debug_for_the_stdlib() -> None:
    assert logging_config("TRACE", "json")["root"]["level"] == "DEBUG"


def test_log_level_applies_to_access_lines() -> None:
    """Access lines are INFO records: WARNING leaves them out (docs/operations.md)."""
    assert logging_config("WARNING", "text")["loggers"]["uvicorn.access"]["level"] == "WARNING"
    assert logging_config("INFO", "json")["loggers"]["uvicorn.access"]["level"] == "INFO"


def test_request_id_header_is_taken_or_made(client: TestClient) -> None:
    given = client.get("/healthz", headers={"x-request-id": "edge-42"})
    assert given.headers["x-request-id"] == "edge-42"
    hostile = client.get("/healthz", headers={"x-request-id": "bad id\twith spaces"})
    assert re.fullmatch(r"[0-9a-f]{16}", hostile.headers["x-request-id"])
    page = client.get("/api/me", headers={"accept": "text/html", "x-request-id": "edge-43"})
    assert page.status_code == 401 and page.headers["x-request-id"] == "edge-43"

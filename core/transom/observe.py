"""What one HTTP request is, for logs and metrics: its request id, the connector it turned
out to concern, and why it was refused. The web layer's middleware opens a
:class:`RequestInfo` per request; deeper code (the plugin host, the error handlers, SCIM)
writes into it. It is a mutable object in a ContextVar so that code running in the thread
pool (which works on a copy of the context) still writes into the same object."""

from __future__ import annotations

import logging
import re
import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass, field

from transom.connector import Connector

log = logging.getLogger("transom.refusal")

#: accepted from a proxy's X-Request-ID; anything else is replaced by our own id
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass
class RequestInfo:
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    connector_id: str | None = None
    connector_type: str | None = None
    protocol: str | None = None
    refusal_code: str | None = None


CURRENT: ContextVar[RequestInfo | None] = ContextVar("transom_request", default=None)


def new_request_id(offered: str | None) -> str:
    if offered and _REQUEST_ID.match(offered):
        return offered
    return secrets.token_hex(8)


def current_request_id() -> str | None:
    info = CURRENT.get()
    return info.request_id if info else None


def note_connector(connector: Connector) -> None:
    """The request concerns ``connector`` (labels the login metric and the refusal line)."""
    info = CURRENT.get()
    if info is not None:
        info.connector_id, info.connector_type, info.protocol = connector.id, connector.type, connector.protocol


def refused(*, method: str, path: str, status: int, code: str, reason: str, detail: str | None = None) -> None:
    """The one log line of a refused request (login, password, SCIM, admin): the pipeline
    itself logs no refusals, it puts what it knows on the error (``TransomError.log_detail``:
    an exception class, attribute or hook names), which lands here as ``detail``. ``reason``
    is the error's message and admin hint: both are written to be shown, never token
    contents."""
    info = CURRENT.get()
    connector = None
    if info is not None:
        info.refusal_code = code
        connector = info.connector_id
    log.log(
        # a throttled request (429) is a WARNING too: guessing or a runaway client to look at
        logging.WARNING if status >= 500 or status == 429 else logging.INFO,
        "refused %s %s status=%s code=%s%s%s reason=%s", method, path, status, code,
        f" connector={connector}" if connector else "",
        f" detail={' '.join(detail.split())[:300]}" if detail else "",
        " ".join(reason.split())[:500],
    )

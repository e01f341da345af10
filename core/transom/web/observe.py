"""The outermost middleware: gives every request its id (taken from ``X-Request-ID`` when a
proxy sent a sane one, else made here, and returned in the response header), and turns what
the request did into metrics: SCIM request counts, and the login counter and duration for
the three login endpoints, which is why the login code itself holds no metrics calls."""

from __future__ import annotations

import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from transom import metrics
from transom.observe import CURRENT, RequestInfo, new_request_id
from transom.sessions import COOKIE_NAME

_SCIM = re.compile(r"^/api/scim(/|$)", re.IGNORECASE)
#: path -> protocol of the endpoints that end a login (the SAML ACS names its connector)
_PASSWORD = "/api/accounts/login"
_OIDC = "/api/accounts/idp-callback"
_SAML_ACS = re.compile(r"^/api/accounts/saml/([^/]+)/acs$")
_SESSION_COOKIE = f"{COOKIE_NAME}=".encode()


def login_protocol(method: str, path: str) -> str | None:
    if path == _PASSWORD and method == "POST":
        return "password"
    if path == _OIDC:
        return "oidc"
    if method == "POST" and _SAML_ACS.match(path):
        return "saml"
    return None


class RequestObserver:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                offered = value.decode("latin-1")
                break
        info = RequestInfo(request_id=new_request_id(offered))
        # Not reset afterwards: Starlette's outer error middleware logs and renders an
        # unexpected exception after this returns, and must still see the id. Each request
        # runs in its own task, so the value does not leak into the next one.
        CURRENT.set(info)
        status = 500
        session_started = False
        header = (b"x-request-id", info.request_id.encode("latin-1"))

        async def observed_send(message: Message) -> None:
            nonlocal status, session_started
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                session_started = any(k == b"set-cookie" and v.startswith(_SESSION_COOKIE) for k, v in headers)
                if not any(k == b"x-request-id" for k, _ in headers):
                    headers.append(header)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            self._record(scope, info, status, session_started)

    @staticmethod
    def _record(scope: Scope, info: RequestInfo, status: int, session_started: bool) -> None:
        path: str = scope.get("path", "")
        method: str = scope.get("method", "")
        if _SCIM.match(path):
            metrics.scim_request(method, status)
            return
        protocol = login_protocol(method, path)
        if protocol is None or status < 300:
            return
        if protocol == "password":
            connector = "password"
        else:
            acs = _SAML_ACS.match(path)
            connector = info.connector_id or (acs.group(1) if acs else "unknown")
        if status in (302, 303) and session_started:
            outcome, reason = metrics.SUCCESS, "ok"
        else:
            outcome, reason = metrics.REFUSED, info.refusal_code or f"http_{status}"
        metrics.login(connector=connector, protocol=protocol, outcome=outcome, reason=reason,
                      seconds=time.perf_counter() - info.started)

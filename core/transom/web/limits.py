"""A pure ASGI middleware that refuses bodies over the configured size before anything
parses them (SAML deflate bombs, huge SCIM bodies).

A ``Content-Length`` over the cap is refused at once. Otherwise (a chunked body, or a
``Content-Length`` that lies) the body is read here, up to the cap, before the app runs, and
replayed to it: a limit enforced inside the app's own ``receive`` surfaced as whatever error
the app's body parser made of it (a 500 on SCIM, a 400 on forms), never as a 413. Buffering
costs at most ``max_request_bytes`` per request in flight, which the cap bounds anyway.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from transom.scim.errors import error_body


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await _reject(send, self.max_bytes, path)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _reject(send, self.max_bytes, path)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)


async def _reject(send: Send, max_bytes: int, path: str) -> None:
    detail = f"request body over {max_bytes} bytes"
    body: dict[str, Any] = {"error": "too_large", "detail": detail, "reason": "body_too_large"}
    media_type = b"application/json"
    if path.startswith("/api/scim"):  # SCIM clients expect the SCIM Error schema (RFC 7644 §3.12)
        body = error_body(status=413, detail=detail, code=None, reason="body_too_large")
        media_type = b"application/scim+json"
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", media_type), (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})

"""A pure ASGI middleware that refuses bodies over the configured size before anything
parses them (SAML deflate bombs, huge SCIM bodies)."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await _reject(send, self.max_bytes, scope.get("path", ""))
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _reject(send, self.max_bytes, scope.get("path", ""))


async def _reject(send: Send, max_bytes: int, path: str) -> None:
    detail = f"request body over {max_bytes} bytes"
    body: dict[str, Any] = {"error": "too_large", "detail": detail}
    media_type = b"application/json"
    if path.startswith("/api/scim"):  # SCIM clients expect the SCIM Error schema (RFC 7644 §3.12)
        body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "413", "detail": detail}
        media_type = b"application/scim+json"
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", media_type), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})

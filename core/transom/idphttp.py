"""The HTTP client Transom uses towards identity providers, counted in
``transom_idp_requests_total{connector,kind,outcome}``.

A subclass of ``httpx.Client`` (not a custom transport) so that proxy settings from the
environment keep working. The connector comes from the request being served (the plugin host
notes it, :mod:`transom.observe`); the kind is read off the request, since plugin code (the
Graph lookup) makes its calls through this client too.
"""

from __future__ import annotations

from typing import Any

import httpx

from transom import metrics
from transom.observe import CURRENT


def request_kind(request: httpx.Request) -> str:
    """discovery, jwks, metadata, token, graph: from the URL, method and body of the request."""
    path = request.url.path
    if path.endswith("/.well-known/openid-configuration"):
        return "discovery"
    accept = request.headers.get("accept", "")
    if "samlmetadata" in accept or path.endswith((".xml", "/metadata")) or "federationmetadata" in path.lower():
        return "metadata"
    if request.method == "POST":
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = b""
        # an app token for Graph (client credentials) belongs to the Graph lookup
        return "graph" if b"grant_type=client_credentials" in body else "token"
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return "graph"
    return "jwks"


class MeteredClient(httpx.Client):
    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        info = CURRENT.get()
        connector = (info.connector_id if info else None) or "unknown"
        kind = request.extensions.get("transom_kind") or request_kind(request)
        try:
            response = super().send(request, **kwargs)
        except httpx.TimeoutException:
            metrics.idp_request(connector=connector, kind=kind, outcome="timeout")
            raise
        except httpx.HTTPError:
            metrics.idp_request(connector=connector, kind=kind, outcome="unreachable")
            raise
        outcome = "ok" if response.status_code < 400 else f"http_{response.status_code // 100}xx"
        metrics.idp_request(connector=connector, kind=kind, outcome=outcome)
        return response

"""A fake Microsoft Entra token endpoint and Microsoft Graph for tests: client-credentials
tokens, ``/users/{oid}/transitiveMemberOf`` with real paging (``@odata.nextLink``), call
counters and switchable failures. Serve it through ``httpx.MockTransport(fake.handler)``."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx

GROUP_TYPE = "#microsoft.graph.group"


@dataclass
class FakeGraph:
    authority: str = "https://login.entra.test"
    graph_url: str = "https://graph.entra.test"
    client_id: str = "graph-client"
    client_secret: str = "graph-secret"
    page_size: int = 100
    expires_in: int = 3599
    #: object id -> every group id the user is in (transitively)
    groups: dict[str, list[str]] = field(default_factory=dict)
    #: object id -> ids of directory roles / administrative units (Graph returns them too)
    other_objects: dict[str, list[str]] = field(default_factory=dict)
    #: when set, the token endpoint / Graph answer this status instead
    token_status: int | None = None
    graph_status: int | None = None
    #: answer 401 to this many Graph calls (a token revoked behind our back)
    graph_unauthorized: int = 0
    #: make nextLinks point at another host
    foreign_next_link: str | None = None
    #: handles requests for other hosts (a fake IdP's JWKS or token endpoint)
    fallback: Callable[[httpx.Request], httpx.Response] | None = None
    token_calls: int = 0
    graph_calls: int = 0
    tenants_asked: list[str] = field(default_factory=list)
    _issued: set[str] = field(default_factory=set)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def handler(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if (
            url.startswith(self.authority + "/")
            and url.endswith("/oauth2/v2.0/token")
            and b"grant_type=client_credentials" in request.content
        ):
            return self._token(request)  # an authorization-code exchange goes to ``fallback``
        if url.startswith(self.graph_url + "/"):
            return self._graph(request)
        if self.fallback is not None:
            return self.fallback(request)
        return httpx.Response(404, json={"error": "no such fake endpoint"})

    def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_calls += 1
        tenant = request.url.path.split("/")[1]
        self.tenants_asked.append(tenant)
        if self.token_status is not None:
            return httpx.Response(
                self.token_status, json={"error": "invalid_client", "error_description": "AADSTS7000215"}
            )
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
            or form.get("scope") != f"{self.graph_url}/.default"
        ):
            return httpx.Response(401, json={"error": "invalid_client"})
        token = "graph-" + secrets.token_hex(8)
        self._issued.add(token)
        return httpx.Response(200, json={"token_type": "Bearer", "expires_in": self.expires_in, "access_token": token})

    def _graph(self, request: httpx.Request) -> httpx.Response:
        self.graph_calls += 1
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.graph_unauthorized > 0:
            self.graph_unauthorized -= 1
            self._issued.discard(token)
            return httpx.Response(401, json={"error": {"code": "InvalidAuthenticationToken"}})
        if token not in self._issued:
            return httpx.Response(401, json={"error": {"code": "InvalidAuthenticationToken"}})
        if self.graph_status is not None:
            return httpx.Response(self.graph_status, json={"error": {"code": "Authorization_RequestDenied"}})
        parts = request.url.path.split("/")  # ['', 'v1.0', 'users', oid, 'transitiveMemberOf']
        if len(parts) != 5 or parts[1:3] != ["v1.0", "users"] or parts[4] != "transitiveMemberOf":
            return httpx.Response(400, json={"error": {"code": "Request_BadRequest"}})
        oid = parts[3]
        if oid not in self.groups and oid not in self.other_objects:
            return httpx.Response(404, json={"error": {"code": "Request_ResourceNotFound"}})
        top = min(int(request.url.params.get("$top", "100")), 999, self.page_size)
        skip = int(request.url.params.get("$skiptoken", "0"))
        objects = list(
            itertools.chain(
                ({"@odata.type": GROUP_TYPE, "id": g} for g in self.groups.get(oid, [])),
                ({"@odata.type": "#microsoft.graph.directoryRole", "id": r} for r in self.other_objects.get(oid, [])),
            )
        )
        page = objects[skip : skip + top]
        body: dict[str, object] = {"value": page}
        if skip + top < len(objects):
            base = self.foreign_next_link or self.graph_url
            body["@odata.nextLink"] = (
                f"{base}/v1.0/users/{oid}/transitiveMemberOf?$select=id&$top={top}&$skiptoken={skip + top}"
            )
        return httpx.Response(200, json=body)

"""Resolving Entra ID groups overage through Microsoft Graph (docs/group-sync.md).

When a user is in more groups than a token can carry (200 in a JWT, 150 in a SAML
assertion) Entra drops the ``groups`` claim and points at the retired Azure AD Graph
instead. We never call that URL: we take the user's object id and tenant from the verified
payload and ask Microsoft Graph ourselves, with an app-only token from the connector's
client credentials (there is no user token in SAML, and OIDC logins here do not request
Graph scopes):

1. ``POST {authority}/{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials``
   and ``scope={graph_url}/.default``; the token is cached per (authority, tenant, client,
   graph) until shortly before it expires.
2. ``GET {graph_url}/v1.0/users/{oid}/transitiveMemberOf?$select=id&$top=999``, following
   every ``@odata.nextLink``, keeping the objects whose ``@odata.type`` is a group.

Why ``transitiveMemberOf`` without the ``/microsoft.graph.group`` cast: the cast is an
"advanced query" that Graph serves from an eventually consistent index (it needs
``ConsistencyLevel: eventual``), so a membership granted minutes ago could be missing; the
plain relationship is read from the directory itself, and filtering the few directory roles
and administrative units out by ``@odata.type`` is cheap. Why not ``getMemberObjects``: it
also returns roles and units, and ``getMemberGroups`` caps at 11,000 ids with an error.
Application permission needed: ``GroupMember.Read.All`` (admin-consented).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from transom.errors import UpstreamError

log = logging.getLogger("transom_azure_ad.graph")

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
GROUP_TYPE = "#microsoft.graph.group"
PAGE_SIZE = 999
#: a runaway nextLink chain stops here (999 x 200 ids is far beyond any real user)
MAX_PAGES = 200
#: renew the app token this long before Entra says it expires
TOKEN_MARGIN_SECONDS = 120


@dataclass(frozen=True)
class GraphCredentials:
    authority: str
    graph_url: str
    tenant: str
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class _CachedToken:
    value: str
    renew_at: float


class AppTokenCache:
    """App-only Graph tokens per (authority, tenant, client id, graph url), in memory."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str, str], _CachedToken] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(creds: GraphCredentials) -> tuple[str, str, str, str]:
        return (creds.authority, creds.tenant, creds.client_id, creds.graph_url)

    def get(self, creds: GraphCredentials, http: httpx.Client) -> str:
        with self._lock:
            cached = self._tokens.get(self._key(creds))
        if cached is not None and cached.renew_at > time.monotonic():
            return cached.value
        token, lifetime = request_app_token(creds, http)
        renew_at = time.monotonic() + max(lifetime - TOKEN_MARGIN_SECONDS, 0)
        with self._lock:
            self._tokens[self._key(creds)] = _CachedToken(token, renew_at)
        return token

    def forget(self, creds: GraphCredentials) -> None:
        with self._lock:
            self._tokens.pop(self._key(creds), None)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


#: one cache per process; tokens are per tenant and client, never per user
TOKENS = AppTokenCache()


def _upstream(what: str, response: httpx.Response, *, advice: str | None = None) -> UpstreamError:
    """Name Graph's/Entra's error code (``Authorization_RequestDenied``, ``invalid_client``)
    but never echo the body: it may quote request values."""
    code = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                code = str(err.get("code", ""))[:80]
            elif isinstance(err, str):
                code = err[:80]
    except ValueError:
        pass
    message = f"{what} answered HTTP {response.status_code}" + (f" ({code})" if code else "")
    return UpstreamError(message + (f"; {advice}" if advice else ""))


def token_url(creds: GraphCredentials) -> str:
    return f"{creds.authority}/{quote(creds.tenant, safe='')}/oauth2/v2.0/token"


def request_app_token(creds: GraphCredentials, http: httpx.Client) -> tuple[str, float]:
    """Client-credentials grant at the tenant's v2.0 token endpoint: (token, lifetime s)."""
    url = token_url(creds)
    try:
        response = http.post(
            url,
            data={
                "grant_type": "client_credentials",
                "client_id": creds.client_id,
                "client_secret": creds.client_secret,
                "scope": f"{creds.graph_url}/.default",
            },
            headers={"accept": "application/json"},
        )
    except httpx.HTTPError as exc:
        raise UpstreamError(f"the Entra token endpoint could not be reached ({type(exc).__name__})") from exc
    if response.status_code != 200:
        raise _upstream("the Entra token endpoint", response)
    try:
        body = response.json()
        token = body["access_token"]
        lifetime = float(body.get("expires_in", 0))
    except (ValueError, KeyError, TypeError) as exc:
        raise UpstreamError("the Entra token endpoint sent no usable access_token") from exc
    if not isinstance(token, str) or not token:
        raise UpstreamError("the Entra token endpoint sent no usable access_token")
    return token, lifetime


def _page(url: str, token: str, http: httpx.Client) -> httpx.Response:
    try:
        return http.get(url, headers={"authorization": f"Bearer {token}", "accept": "application/json"})
    except httpx.HTTPError as exc:
        raise UpstreamError(f"Microsoft Graph could not be reached ({type(exc).__name__})") from exc


def transitive_group_ids(
    creds: GraphCredentials, *, object_id: str, http: httpx.Client, tokens: AppTokenCache = TOKENS
) -> list[str]:
    """Every group the user belongs to, directly or through nesting, as Graph ids."""
    if not _GUID.match(object_id):
        raise UpstreamError("the user's object id is not a GUID; cannot ask Microsoft Graph")
    url: str | None = f"{creds.graph_url}/v1.0/users/{object_id}/transitiveMemberOf?$select=id&$top={PAGE_SIZE}"
    token = tokens.get(creds, http)
    retried = False
    ids: list[str] = []
    seen_urls: set[str] = set()
    pages = 0
    while url is not None:
        response = _page(url, token, http)
        if response.status_code == 401 and not retried:
            # Revoked or rotated credentials: one fresh token, then give up.
            retried = True
            tokens.forget(creds)
            token = tokens.get(creds, http)
            continue
        if response.status_code == 403:
            raise _upstream(
                "Microsoft Graph",
                response,
                advice="grant the app the application permission GroupMember.Read.All (admin consent)",
            )
        if response.status_code != 200:
            raise _upstream("Microsoft Graph", response)
        try:
            body = response.json()
            items = body["value"]
            next_link = body.get("@odata.nextLink")
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError("Microsoft Graph sent an unreadable transitiveMemberOf page") from exc
        if not isinstance(items, list):
            raise UpstreamError("Microsoft Graph sent an unreadable transitiveMemberOf page")
        ids.extend(_group_ids(items))
        seen_urls.add(url)
        pages += 1
        url = _checked_next_link(next_link, creds, seen_urls, pages)
    return list(dict.fromkeys(ids))


def _group_ids(items: list[Any]) -> list[str]:
    found = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        if item.get("@odata.type", GROUP_TYPE) != GROUP_TYPE:
            continue  # directory roles and administrative units are not groups
        value = item.get("id")
        if isinstance(value, str) and value:
            found.append(value)
    return found


def _checked_next_link(next_link: Any, creds: GraphCredentials, seen: set[str], pages: int) -> str | None:
    """Follow a nextLink only to the configured Graph host (the bearer token goes with it),
    never twice to the same page and never past :data:`MAX_PAGES`."""
    if next_link is None:
        return None
    if not isinstance(next_link, str) or not next_link.startswith(f"{creds.graph_url}/"):
        raise UpstreamError("Microsoft Graph sent a nextLink outside the configured graph_url")
    if next_link in seen or pages >= MAX_PAGES:
        raise UpstreamError(f"Microsoft Graph paging did not end after {pages} pages")
    return next_link


# -- from a verified login payload -----------------------------------------------------------

OID_ATTRIBUTE = "http://schemas.microsoft.com/identity/claims/objectidentifier"
TID_ATTRIBUTE = "http://schemas.microsoft.com/identity/claims/tenantid"


def user_and_tenant(payload: Mapping[str, Any], *, default_tenant: str) -> tuple[str, str]:
    """The user's object id and tenant from verified id_token claims (``oid``, ``tid``) or
    SAML attributes (``objectidentifier``, ``tenantid``). The tenant falls back to the
    connector's own ``tenant_id`` when that names one tenant."""
    from transom.connector import saml_attribute_values

    if "attributes" in payload:
        oids = saml_attribute_values(payload, OID_ATTRIBUTE)
        tids = saml_attribute_values(payload, TID_ATTRIBUTE)
        oid, tid = (oids[0] if oids else None), (tids[0] if tids else None)
    else:
        oid, tid = payload.get("oid"), payload.get("tid")
    if not isinstance(oid, str) or not _GUID.match(oid):
        raise UpstreamError("the IdP sent no object id (oid / objectidentifier) to look the groups up with")
    if isinstance(tid, str) and _GUID.match(tid):
        return oid, tid
    if default_tenant in ("common", "organizations", "consumers"):
        raise UpstreamError("the IdP sent no tenant id (tid / tenantid) to look the groups up in")
    return oid, default_tenant

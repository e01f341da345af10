"""The OIDC UserInfo call (OpenID Connect Core §5.3): the profile claims an id_token left out.

Spec-conformant providers (panva's ``oidc-provider`` by default, Keycloak with some mappers,
Ping) put only ``sub`` and the protocol claims in the id_token and serve the profile from
UserInfo. After the id_token verified, the host fetches UserInfo with the access token when
the id_token lacks any of ``OidcProvider.profile_claims`` and a UserInfo endpoint is known
(discovery or the plugin), then adds the claims the id_token does not carry:

* UserInfo's ``sub`` must equal the id_token's (§5.3.2, OIDC-28); otherwise the login is refused;
* the id_token always wins: a UserInfo value never replaces one the id_token has;
* the protocol claims (``iss``, ``aud``, ``nonce``, ...), the subject claim and the tenant
  claim are only ever the verified id_token's;
* JSON answers only (a signed or encrypted UserInfo JWT is refused with a hint), at most
  64 KiB, no redirects; the call runs before the login's database transaction opens.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from transom.connector import OidcProvider
from transom.errors import LoginRefused, UpstreamError

log = logging.getLogger("transom.oidc")

MAX_USERINFO_BYTES = 64 * 1024
#: claims that only the verified id_token may supply (JWT/OIDC protocol claims, and the
#: aggregated/distributed claim pointers, which would fake an Entra-style overage)
PROTOCOL_CLAIMS = frozenset({
    "sub", "iss", "aud", "exp", "iat", "nbf", "jti", "nonce", "azp", "at_hash", "c_hash", "s_hash",
    "auth_time", "acr", "amr", "sid", "typ", "cnf", "_claim_names", "_claim_sources",
})


def _absent(claims: Mapping[str, Any], name: str) -> bool:
    value = claims.get(name)
    return value is None or value == "" or value == []


def missing_profile_claims(provider: OidcProvider, claims: Mapping[str, Any]) -> list[str]:
    return [name for name in provider.profile_claims if _absent(claims, name)]


def with_userinfo(
    http: httpx.Client, provider: OidcProvider, claims: dict[str, Any], access_token: str | None
) -> dict[str, Any]:
    """``claims`` (a verified id_token's) completed from UserInfo when they lack profile
    claims; unchanged when nothing is missing or there is no endpoint or access token."""
    missing = missing_profile_claims(provider, claims)
    if not missing or not provider.userinfo_endpoint:
        return claims
    if not access_token:
        # id_token-only form_post callback: no access token to ask with (docs/oidc.md)
        log.info("UserInfo skipped: no access token (missing claims: %s)", ", ".join(missing))
        return claims
    info = fetch_userinfo(http, provider, access_token)
    return merge_userinfo(provider, claims, info)


def merge_userinfo(provider: OidcProvider, claims: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    """The id_token's claims plus the UserInfo claims it lacks (see the module docstring)."""
    sub = info.get("sub")
    if not isinstance(sub, str) or sub != claims.get("sub"):
        raise LoginRefused(
            "the identity provider described a different user than the one who signed in",
            hint="the UserInfo response's sub is "
            f"{'missing' if sub is None else 'different from the id_token sub'}; OpenID Connect Core §5.3.2 "
            "requires them to be equal (check the IdP's subject/pairwise settings for this application)",
        )
    reserved = PROTOCOL_CLAIMS | {provider.subject_claim, provider.tenant_claim or "sub"}
    merged = dict(claims)
    added = []
    for name, value in info.items():
        if name in reserved or not _absent(claims, name) or value is None:
            continue
        merged[name] = value
        added.append(name)
    log.info("UserInfo added claims: %s", ", ".join(sorted(added)) or "none")
    return merged


def fetch_userinfo(http: httpx.Client, provider: OidcProvider, access_token: str) -> dict[str, Any]:
    endpoint = provider.userinfo_endpoint

    def fail(why: str) -> UpstreamError:
        return UpstreamError(
            "the identity provider's profile for your user could not be loaded; try again",
            hint=f"the UserInfo endpoint {endpoint} {why}",
        )

    try:
        with http.stream("GET", endpoint, headers={"Authorization": f"Bearer {access_token}",
                                                   "Accept": "application/json"},
                         follow_redirects=False) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > MAX_USERINFO_BYTES:
                    raise fail(f"answered more than {MAX_USERINFO_BYTES} bytes")
            status = response.status_code
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    except httpx.HTTPError as exc:
        raise fail(f"could not be reached ({type(exc).__name__})") from None
    if status in (401, 403):
        raise fail(f"refused the access token (HTTP {status}); the application needs the 'openid' scope "
                   "and UserInfo access")
    if status != 200:
        raise fail(f"answered HTTP {status}")
    if content_type == "application/jwt":
        raise fail("answered a signed or encrypted JWT; Transom reads plain JSON UserInfo: turn off "
                   "UserInfo signing/encryption for this application")
    try:
        document = json.loads(bytes(body))
    except (ValueError, RecursionError):
        raise fail("did not answer JSON") from None
    if not isinstance(document, dict):
        raise fail("did not answer a JSON object")
    return document

"""id_token verification: our own header parse, one key from the JWKS cache bound to the
token's ``alg`` (one of the provider's, inside the allow-list of
:mod:`transom.oidc.algorithms`), the signature with that ``alg`` pinned, then every claim
check of OIDC Core §3.1.3.7 plus Transom's."""

from __future__ import annotations

import hmac
import json
import math
import time
from collections.abc import Mapping
from typing import Any, TypeGuard

import httpx
from jose.exceptions import JOSEError

from transom.connector import OidcProvider
from transom.oidc.algorithms import ALLOWED_ALGORITHMS, DEFAULT_ALGORITHMS, decode_signed
from transom.oidc.common import KID_MAX, b64url_decode, printable, refused, token_refused
from transom.oidc.jwks import JwksCache

#: header members that would let the token choose its own key, or demand unknown semantics
FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
#: ``typ`` values accepted for an id_token (absent is fine too); ``at+jwt`` is an access token
ACCEPTED_TYPES = frozenset({"jwt", "application/jwt"})
#: an Entra token with 200 groups is ~11 KB; anything far bigger is not an id_token
MAX_ID_TOKEN_CHARS = 64 * 1024
#: an id_token is minted during this login; older than this it is a replay, not a login
MAX_ID_TOKEN_AGE_SECONDS = 3600


def parse_header(token: str) -> dict[str, Any]:
    """Decode segment 0 ourselves: ``get_unverified_header`` decodes the whole token, and we
    only need the routing fields. Never trusted beyond choosing the key."""
    if not isinstance(token, str) or not token:
        raise token_refused("the callback carried an empty id_token", "oidc.malformed")
    if len(token) > MAX_ID_TOKEN_CHARS:
        raise token_refused(f"the id_token is over {MAX_ID_TOKEN_CHARS} characters; reduce the claims it carries",
                            "oidc.too_large")
    parts = token.split(".")
    if len(parts) != 3:
        raise token_refused(
            "the id_token is not a signed JWT (expected three dot-separated parts); encrypted id_tokens are "
            "not supported: turn off id_token encryption for this application", "oidc.malformed"
        )
    try:
        header = json.loads(b64url_decode(parts[0]))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise token_refused("the id_token header is not base64url-encoded JSON", "oidc.malformed") from None
    if not isinstance(header, dict):
        raise token_refused("the id_token header is not a JSON object", "oidc.malformed")
    return header


def check_header(header: Mapping[str, Any], algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS) -> str | None:
    """Refuse what no id_token of ours may carry; return the ``kid`` (None when absent).
    ``algorithms`` are the provider's, already inside the allow-list."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms or alg not in ALLOWED_ALGORITHMS:
        raise token_refused(
            f"the id_token is signed with alg '{printable(alg, 20)}'; this connector accepts "
            f"{', '.join(algorithms)}: set the application's id_token signing algorithm to one of them", "oidc.alg"
        )
    forbidden = sorted(FORBIDDEN_HEADERS & set(header))
    if forbidden:
        raise token_refused(
            f"the id_token header carries {', '.join(forbidden)}; keys are only taken from the provider's "
            "JWKS and critical extensions are not supported", "oidc.header_keys"
        )
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES):
        raise token_refused(
            f"the token has typ '{printable(typ, 30)}', which is not an id_token (an access token was "
            "sent where the id_token belongs)", "oidc.typ"
        )
    kid = header.get("kid")
    if kid is None:
        return None
    if not isinstance(kid, str) or not kid or len(kid) > KID_MAX:
        raise token_refused("the id_token header has an invalid kid", "oidc.kid")
    return kid


def _is_number(value: Any) -> TypeGuard[int | float]:
    # RFC 7519 NumericDate is a JSON number; a string "exp" or a bool is not one
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def verify_id_token(
    id_token: str,
    *,
    provider: OidcProvider,
    jwks: JwksCache,
    http: httpx.Client,
    nonce: str | None,
    clock_skew_seconds: int,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify ``id_token`` for ``provider`` and return its claims. Raises ``LoginRefused``
    (with an administrator hint) for every bad token, ``UpstreamError`` when the keys cannot
    be loaded at all."""
    header = parse_header(id_token)
    kid = check_header(header, provider.signing_algorithms or DEFAULT_ALGORITHMS)
    key = jwks.key_for(http, provider.jwks_uri, kid, header["alg"])
    try:
        # Signature only, one pinned algorithm: every claim check below is ours.
        claims: Any = decode_signed(id_token, key)
    except JOSEError as exc:
        # JWKError is not a JWTError: catch the common base.
        if "payload" in str(exc).lower():
            raise token_refused("the id_token payload is not a JSON object", "oidc.malformed") from None
        raise token_refused(
            "the id_token signature does not verify with the provider's published key "
            f"{'(kid ' + printable(kid, 60) + ')' if kid else ''}; check that the connector points at "
            "the right tenant / authorization server", "oidc.signature"
        ) from None
    if not isinstance(claims, dict):
        raise token_refused("the id_token payload is not a JSON object", "oidc.malformed")
    check_claims(claims, provider=provider, nonce=nonce, clock_skew_seconds=clock_skew_seconds,
                 now=time.time() if now is None else now)
    return claims


def check_claims(
    claims: Mapping[str, Any], *, provider: OidcProvider, nonce: str | None, clock_skew_seconds: int, now: float
) -> None:
    """The claim checks of OIDC Core §3.1.3.7 plus Transom's (security-checklist §2.1)."""
    skew = clock_skew_seconds
    # Tenant before issuer: "tenant X is not allowed" is the more useful hint.
    if provider.tenant_claim is not None:
        tenant = claims.get(provider.tenant_claim)
        if not isinstance(tenant, str) or tenant not in provider.allowed_tenants:
            shown = printable(tenant, 60) if tenant is not None else "missing"
            raise refused(
                "your organisation is not allowed to sign in here",
                f"the token's {provider.tenant_claim} is {shown}; add it to the connector's allowed_tenants "
                "if this tenant's users may sign in", "oidc.tenant",
            )
    iss = claims.get("iss")
    if not isinstance(iss, str) or iss not in provider.issuers:
        raise token_refused(
            f"token issuer is '{printable(iss, 100) if iss is not None else 'missing'}', expected one of "
            f"{', '.join(provider.issuers)}; check the connector's tenant / issuer / authority settings", "oidc.iss"
        )
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if aud is None:
        raise token_refused("the id_token has no aud claim; it was not issued for this application", "oidc.aud_missing")
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences) \
            or provider.client_id not in audiences:
        raise token_refused(
            f"token audience is {printable(aud, 100)}; set the connector's client_id to the app's "
            "Application (client) ID", "oidc.aud"
        )
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != provider.client_id:
        shown_azp = printable(azp, 60) if azp is not None else "missing"
        raise token_refused(
            f"the id_token's azp (authorized party) is '{shown_azp}'; a token with several audiences, or "
            f"with any azp, must name this client ({provider.client_id}) as azp", "oidc.azp"
        )
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise token_refused("the id_token has no sub claim", "oidc.sub")
    exp = claims.get("exp")
    if not _is_number(exp):
        raise token_refused("the id_token has no numeric exp claim", "oidc.exp")
    if exp + skew <= now:
        raise token_refused(
            f"the id_token expired {int(now - exp)} s ago; check the server clock (allowed skew {skew} s)",
            "oidc.expired"
        )
    iat = claims.get("iat")
    if not _is_number(iat):
        raise token_refused("the id_token has no numeric iat claim", "oidc.iat")
    if iat > now + skew:
        raise token_refused(
            f"the id_token was issued {int(iat - now)} s in the future; the IdP's or this server's clock is "
            f"wrong (allowed skew {skew} s)", "oidc.iat_future"
        )
    if iat < now - MAX_ID_TOKEN_AGE_SECONDS:
        raise token_refused(
            f"the id_token was issued {int(now - iat)} s ago; Transom accepts only tokens minted for this "
            f"sign-in (at most {MAX_ID_TOKEN_AGE_SECONDS} s old)", "oidc.iat_too_old"
        )
    nbf = claims.get("nbf")
    if nbf is not None and (not _is_number(nbf) or nbf > now + skew):
        raise token_refused("the id_token is not valid yet (nbf); check the server clock", "oidc.nbf")
    _check_nonce(claims.get("nonce"), nonce)


def _check_nonce(received: Any, expected: str | None) -> None:
    if not expected:
        raise token_refused("no nonce was stored for this sign-in; start the sign-in again", "oidc.nonce_not_stored")
    if not isinstance(received, str) or not received:
        raise token_refused("the id_token carries no nonce; the IdP must echo the nonce of the request",
                            "oidc.nonce_missing")
    # Bytes, not str: compare_digest raises TypeError on non-ASCII str.
    if not hmac.compare_digest(received.encode("utf-8"), expected.encode("utf-8")):
        raise token_refused("the id_token nonce does not match this sign-in (replayed or foreign token)", "oidc.nonce")

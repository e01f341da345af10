"""OpenID Connect relying-party checks: id_token verification, the JWKS cache and the token
endpoint call. All OIDC cryptography of Transom lives here (plugins never verify tokens).

Verification follows docs/oidc.md (security-checklist §2, §2.1):

* the header is parsed from segment 0 by us (never trusted beyond routing), ``alg`` must be
  exactly ``RS256``, header-supplied keys (``jku``/``x5u``/``jwk``/``x5c``) and ``crit`` are
  refused, and so is an access token (``typ: at+jwt``);
* ONE key, chosen by ``kid`` from a per-process :class:`JwksCache`, is handed to
  ``jose.jwt.decode`` with ``algorithms=["RS256"]`` pinned;
* every claim check is ours (python-jose accepts a missing ``aud``, a string ``exp``, a
  future ``iat``, never checks ``nonce``/``azp``/``tid``), so that each refusal carries a
  hint an IdP administrator can act on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard
from urllib.parse import quote, urlencode

import httpx
from jose import jwk, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError

from transom.connector import OidcProvider
from transom.errors import LoginRefused, UpstreamError

log = logging.getLogger("transom.oidc")

#: the only signature algorithm accepted, on every decode (blocks none/HS*/key confusion)
ALLOWED_ALGORITHMS = ["RS256"]
#: header members that would let the token choose its own key, or demand unknown semantics
FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
#: ``typ`` values accepted for an id_token (absent is fine too); ``at+jwt`` is an access token
ACCEPTED_TYPES = frozenset({"jwt", "application/jwt"})
#: an Entra token with 200 groups is ~11 KB; anything far bigger is not an id_token
MAX_ID_TOKEN_CHARS = 64 * 1024
#: an id_token is minted during this login; older than this it is a replay, not a login
MAX_ID_TOKEN_AGE_SECONDS = 3600
#: cap on a token endpoint answer
MAX_TOKEN_RESPONSE_BYTES = 256 * 1024

_KID_MAX = 256
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


# -- small helpers ------------------------------------------------------------------------


def _refused(message: str, hint: str) -> LoginRefused:
    return LoginRefused(message, hint=hint)


def _token_refused(hint: str) -> LoginRefused:
    """The user sees one generic sentence; the administrator gets the precise reason."""
    return LoginRefused("the sign-in token from your identity provider was not accepted", hint=hint)


def b64url_decode(segment: str) -> bytes:
    if not _B64URL.match(segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(ASCII(verifier)))."""
    return b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest())


def new_pkce_verifier() -> str:
    # 64 random bytes -> 86 characters, inside RFC 7636's 43..128
    return secrets.token_urlsafe(64)


def _printable(value: Any, limit: int = 120) -> str:
    """A claim value fit for a hint: short and without control characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = "".join(ch for ch in text if ch.isprintable())
    return text if len(text) <= limit else text[:limit] + "..."


def parse_header(token: str) -> dict[str, Any]:
    """Decode segment 0 ourselves: ``get_unverified_header`` decodes the whole token, and we
    only need the routing fields. Never trusted beyond choosing the key."""
    if not isinstance(token, str) or not token:
        raise _token_refused("the callback carried an empty id_token")
    if len(token) > MAX_ID_TOKEN_CHARS:
        raise _token_refused(f"the id_token is over {MAX_ID_TOKEN_CHARS} characters; reduce the claims it carries")
    parts = token.split(".")
    if len(parts) != 3:
        raise _token_refused(
            "the id_token is not a signed JWT (expected three dot-separated parts); encrypted id_tokens are "
            "not supported: turn off id_token encryption for this application"
        )
    try:
        header = json.loads(b64url_decode(parts[0]))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _token_refused("the id_token header is not base64url-encoded JSON") from None
    if not isinstance(header, dict):
        raise _token_refused("the id_token header is not a JSON object")
    return header


def check_header(header: Mapping[str, Any]) -> str | None:
    """Refuse what no id_token of ours may carry; return the ``kid`` (None when absent)."""
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise _token_refused(
            f"the id_token is signed with alg '{_printable(alg, 20)}'; Transom accepts only RS256: set the "
            "application's id_token signing algorithm to RS256"
        )
    forbidden = sorted(FORBIDDEN_HEADERS & set(header))
    if forbidden:
        raise _token_refused(
            f"the id_token header carries {', '.join(forbidden)}; keys are only taken from the provider's "
            "JWKS and critical extensions are not supported"
        )
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES):
        raise _token_refused(
            f"the token has typ '{_printable(typ, 30)}', which is not an id_token (an access token was "
            "sent where the id_token belongs)"
        )
    kid = header.get("kid")
    if kid is None:
        return None
    if not isinstance(kid, str) or not kid or len(kid) > _KID_MAX:
        raise _token_refused("the id_token header has an invalid kid")
    return kid


# -- JWKS cache ---------------------------------------------------------------------------


@dataclass
class _KeySet:
    """Key objects of one JWKS document, built once per fetch and indexed by ``kid``."""

    by_kid: dict[str, Key] = field(default_factory=dict)
    #: usable keys without a ``kid`` (used only when the token has no kid either)
    unnamed: list[Key] = field(default_factory=list)

    @property
    def usable(self) -> int:
        return len(self.by_kid) + len(self.unnamed)


@dataclass
class _JwksEntry:
    keys: _KeySet | None = None
    expires_at: float = 0.0
    #: monotonic time of the last fetch attempt (success or failure): the cooldown anchor
    last_attempt: float = -math.inf
    #: kid -> monotonic time until which it is known to be absent (negative cache)
    missing: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fetches: int = 0


class JwksCache:
    """Per-process cache of IdP signing keys, keyed by ``jwks_uri``.

    * Keys are fetched on first use, kept for the document's ``Cache-Control: max-age``
      clamped to [``min_ttl``, ``max_ttl``] (``default_ttl`` when absent), and refetched
      early when a token names an unknown ``kid`` (key rotation).
    * Refetches of one URI are single-flight (a lock per URI) and happen at most once per
      ``cooldown`` seconds, whatever the number of random kids thrown at us; a kid that was
      not in the fresh document is negatively cached until the cooldown ends.
    * A failed refetch keeps the last good keys.
    * The body is capped at ``max_bytes`` and ``max_keys``; keys that are not RSA, that are
      marked ``use=enc``, that name another ``alg`` or that do not parse are skipped.
    """

    def __init__(
        self,
        *,
        cooldown: float = 30.0,
        default_ttl: float = 3600.0,
        min_ttl: float = 300.0,
        max_ttl: float = 86400.0,
        max_bytes: int = 256 * 1024,
        max_keys: int = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cooldown = cooldown
        self.default_ttl = default_ttl
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.max_bytes = max_bytes
        self.max_keys = max_keys
        self._clock = clock
        self._entries: dict[str, _JwksEntry] = {}
        self._entries_lock = threading.Lock()

    def fetch_count(self, jwks_uri: str) -> int:
        """How many times the URI was fetched (for tests and the login trace)."""
        entry = self._entries.get(jwks_uri)
        return entry.fetches if entry else 0

    def _entry(self, jwks_uri: str) -> _JwksEntry:
        with self._entries_lock:
            entry = self._entries.get(jwks_uri)
            if entry is None:
                entry = self._entries[jwks_uri] = _JwksEntry()
            return entry

    def key_for(self, http: httpx.Client, jwks_uri: str, kid: str | None) -> Key:
        """The one key that may have signed a token with this ``kid``."""
        entry = self._entry(jwks_uri)
        now = self._clock()
        if entry.keys is not None and now < entry.expires_at:
            found = self._lookup(entry.keys, kid)
            if found is not None:
                return found
        with entry.lock:
            # Another thread may have refreshed while we waited: look again first.
            now = self._clock()
            fresh = entry.keys is not None and now < entry.expires_at
            if fresh and entry.keys is not None:
                found = self._lookup(entry.keys, kid)
                if found is not None:
                    return found
            cooling = now - entry.last_attempt < self.cooldown
            negative = kid is not None and entry.missing.get(kid, -math.inf) > now
            if not cooling and not (fresh and negative):
                self._refresh(http, jwks_uri, entry, now)
            if entry.keys is not None:
                found = self._lookup(entry.keys, kid)
                if found is not None:
                    return found
                if kid is not None:
                    entry.missing[kid] = entry.last_attempt + self.cooldown
                    if len(entry.missing) > 1000:  # a kid flood must not grow memory
                        entry.missing = {k: t for k, t in entry.missing.items() if t > now}
        if entry.keys is None:
            raise UpstreamError(
                "the identity provider's signing keys could not be loaded; try again in a minute",
                hint=f"fetching the JWKS at {jwks_uri} failed; check the connector's JWKS URL and that the "
                "IdP is reachable from the server",
            )
        if kid is None:
            raise _token_refused(
                f"the id_token names no kid and the provider publishes {entry.keys.usable} usable signing keys; "
                "Transom picks a key without kid only when exactly one exists"
            )
        raise _token_refused(
            f"the id_token was signed with key id '{_printable(kid, 60)}', which the provider's JWKS "
            f"({jwks_uri}) does not publish; if keys were just rotated, retry in a minute"
        )

    @staticmethod
    def _lookup(keys: _KeySet, kid: str | None) -> Key | None:
        if kid is not None:
            return keys.by_kid.get(kid)
        if keys.usable == 1:
            return next(iter(keys.by_kid.values())) if keys.by_kid else keys.unnamed[0]
        return None

    def _refresh(self, http: httpx.Client, jwks_uri: str, entry: _JwksEntry, now: float) -> None:
        entry.last_attempt = now
        entry.fetches += 1
        try:
            keys, ttl = self._fetch(http, jwks_uri)
        except UpstreamError as exc:
            # Keep the last good keys: an IdP hiccup must not lock everyone out.
            log.warning("JWKS fetch failed uri=%s: %s", jwks_uri, exc.message)
            if entry.keys is not None:
                entry.expires_at = now + self.cooldown
            return
        entry.keys = keys
        entry.expires_at = now + ttl
        entry.missing = {}
        log.info("JWKS loaded uri=%s keys=%d", jwks_uri, keys.usable)

    def _fetch(self, http: httpx.Client, jwks_uri: str) -> tuple[_KeySet, float]:
        def fail(why: str) -> UpstreamError:
            return UpstreamError(f"the identity provider's signing keys could not be loaded: {why}")

        try:
            with http.stream("GET", jwks_uri, headers={"Accept": "application/json"},
                             follow_redirects=False) as response:
                if response.status_code != 200:
                    raise fail(f"HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) > self.max_bytes:
                        raise fail(f"document over {self.max_bytes} bytes")
                cache_control = response.headers.get("cache-control", "")
        except httpx.HTTPError as exc:
            raise fail(type(exc).__name__) from None
        try:
            document = json.loads(bytes(body))
        except (ValueError, RecursionError):
            raise fail("not JSON") from None
        raw_keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(raw_keys, list):
            raise fail("no 'keys' array")
        if len(raw_keys) > self.max_keys:
            raise fail(f"more than {self.max_keys} keys")
        return self._build(raw_keys, jwks_uri), self._ttl(cache_control)

    @staticmethod
    def _build(raw_keys: list[Any], jwks_uri: str) -> _KeySet:
        keys = _KeySet()
        skipped = 0
        for raw in raw_keys:
            if not isinstance(raw, dict) or raw.get("kty") != "RSA":
                skipped += 1
                continue
            if raw.get("use", "sig") != "sig" or raw.get("alg", "RS256") != "RS256":
                skipped += 1
                continue
            ops = raw.get("key_ops")
            if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
                skipped += 1
                continue
            try:
                key = jwk.construct({k: v for k, v in raw.items() if k in ("kty", "n", "e")}, "RS256")
            except (JOSEError, ValueError, TypeError):
                skipped += 1
                continue
            kid = raw.get("kid")
            if kid is None:
                keys.unnamed.append(key)
            elif isinstance(kid, str) and kid and len(kid) <= _KID_MAX and kid not in keys.by_kid:
                keys.by_kid[kid] = key
            else:
                skipped += 1
        if skipped:
            log.info("JWKS uri=%s: skipped %d unusable keys", jwks_uri, skipped)
        return keys

    def _ttl(self, cache_control: str) -> float:
        match = re.search(r"max-age\s*=\s*(\d+)", cache_control)
        ttl = float(match.group(1)) if match else self.default_ttl
        return min(max(ttl, self.min_ttl), self.max_ttl)


# -- id_token verification ------------------------------------------------------------------


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
    kid = check_header(header)
    key = jwks.key_for(http, provider.jwks_uri, kid)
    try:
        # Signature only: every claim check below is ours (precise hints, stricter rules).
        claims: Any = jwt.decode(
            id_token,
            key,
            algorithms=ALLOWED_ALGORITHMS,
            options={
                "verify_signature": True,
                "verify_aud": False, "verify_iss": False, "verify_sub": False, "verify_jti": False,
                "verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_at_hash": False,
            },
        )
    except JOSEError as exc:
        # JWKError is not a JWTError: catch the common base.
        if "payload" in str(exc).lower():
            raise _token_refused("the id_token payload is not a JSON object") from None
        raise _token_refused(
            "the id_token signature does not verify with the provider's published key "
            f"{'(kid ' + _printable(kid, 60) + ')' if kid else ''}; check that the connector points at "
            "the right tenant / authorization server"
        ) from None
    if not isinstance(claims, dict):
        raise _token_refused("the id_token payload is not a JSON object")
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
            shown = _printable(tenant, 60) if tenant is not None else "missing"
            raise _refused(
                "your organisation is not allowed to sign in here",
                f"the token's {provider.tenant_claim} is {shown}; add it to the connector's allowed_tenants "
                "if this tenant's users may sign in",
            )
    iss = claims.get("iss")
    if not isinstance(iss, str) or iss not in provider.issuers:
        raise _token_refused(
            f"token issuer is '{_printable(iss, 100) if iss is not None else 'missing'}', expected one of "
            f"{', '.join(provider.issuers)}; check the connector's tenant / issuer / authority settings"
        )
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if aud is None:
        raise _token_refused("the id_token has no aud claim; it was not issued for this application")
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences) \
            or provider.client_id not in audiences:
        raise _token_refused(
            f"token audience is {_printable(aud, 100)}; set the connector's client_id to the app's "
            "Application (client) ID"
        )
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != provider.client_id:
        raise _token_refused(
            f"the id_token has several audiences and its azp is '{_printable(azp, 60) if azp else 'missing'}'"
            f"; a multi-audience token must name this client ({provider.client_id}) as azp"
        )
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise _token_refused("the id_token has no sub claim")
    exp = claims.get("exp")
    if not _is_number(exp):
        raise _token_refused("the id_token has no numeric exp claim")
    if exp + skew <= now:
        raise _token_refused(
            f"the id_token expired {int(now - exp)} s ago; check the server clock (allowed skew {skew} s)"
        )
    iat = claims.get("iat")
    if not _is_number(iat):
        raise _token_refused("the id_token has no numeric iat claim")
    if iat > now + skew:
        raise _token_refused(
            f"the id_token was issued {int(iat - now)} s in the future; the IdP's or this server's clock is "
            f"wrong (allowed skew {skew} s)"
        )
    if iat < now - MAX_ID_TOKEN_AGE_SECONDS:
        raise _token_refused(
            f"the id_token was issued {int(now - iat)} s ago; Transom accepts only tokens minted for this "
            f"sign-in (at most {MAX_ID_TOKEN_AGE_SECONDS} s old)"
        )
    nbf = claims.get("nbf")
    if nbf is not None and (not _is_number(nbf) or nbf > now + skew):
        raise _token_refused("the id_token is not valid yet (nbf); check the server clock")
    _check_nonce(claims.get("nonce"), nonce)


def _check_nonce(received: Any, expected: str | None) -> None:
    if not expected:
        raise _token_refused("no nonce was stored for this sign-in; start the sign-in again")
    if not isinstance(received, str) or not received:
        raise _token_refused("the id_token carries no nonce; the IdP must echo the nonce of the request")
    # Bytes, not str: compare_digest raises TypeError on non-ASCII str.
    if not hmac.compare_digest(received.encode("utf-8"), expected.encode("utf-8")):
        raise _token_refused("the id_token nonce does not match this sign-in (replayed or foreign token)")


# -- authorization request and token endpoint ----------------------------------------------------


def authorization_url(
    provider: OidcProvider, *, redirect_uri: str, state: str, nonce: str, code_verifier: str
) -> str:
    params = {
        **dict(provider.extra_authorize_params),
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(provider.scopes),
        "state": state,
        "nonce": nonce,
        "code_challenge": pkce_challenge(code_verifier),
        "code_challenge_method": "S256",
    }
    separator = "&" if "?" in provider.authorization_endpoint else "?"
    return f"{provider.authorization_endpoint}{separator}{urlencode(params)}"


@dataclass(frozen=True)
class TokenResponse:
    id_token: str
    access_token: str | None


def exchange_code(
    http: httpx.Client, provider: OidcProvider, *, code: str, code_verifier: str, redirect_uri: str
) -> TokenResponse:
    """Authorization code + PKCE verifier for tokens at the token endpoint."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
        "client_id": provider.client_id,
    }
    headers = {"Accept": "application/json"}
    if provider.client_secret is not None:
        if provider.token_endpoint_auth_method == "client_secret_basic":
            # RFC 6749 §2.3.1: both parts form-urlencoded before base64
            pair = f"{quote(provider.client_id, safe='')}:{quote(provider.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        else:
            form["client_secret"] = provider.client_secret
    try:
        with http.stream("POST", provider.token_endpoint, data=form, headers=headers,
                         follow_redirects=False) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > MAX_TOKEN_RESPONSE_BYTES:
                    raise UpstreamError("the identity provider's token response is too large")
            status = response.status_code
    except httpx.HTTPError as exc:
        raise UpstreamError(
            "the identity provider could not be reached to finish the sign-in; try again",
            hint=f"calling the token endpoint {provider.token_endpoint} failed ({type(exc).__name__})",
        ) from None
    try:
        document = json.loads(bytes(body))
    except (ValueError, RecursionError):
        document = None
    if status != 200:
        _raise_token_error(provider, status, document)
    if not isinstance(document, dict):
        raise UpstreamError(
            "the identity provider answered the sign-in with something unexpected",
            hint=f"the token endpoint {provider.token_endpoint} did not return a JSON object",
        )
    id_token = document.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise LoginRefused(
            "the identity provider did not return an id_token",
            hint="the token response has no id_token: request the 'openid' scope and enable the "
            "authorization code grant for this application",
        )
    access_token = document.get("access_token")
    return TokenResponse(id_token=id_token, access_token=access_token if isinstance(access_token, str) else None)


def _raise_token_error(provider: OidcProvider, status: int, document: Any) -> None:
    error = document.get("error") if isinstance(document, dict) else None
    description = document.get("error_description") if isinstance(document, dict) else None
    detail = f"{_printable(error, 60)}" + (f": {_printable(description, 200)}" if description else "")
    if error == "invalid_client" or status == 401:
        raise UpstreamError(
            "this sign-in method is not set up correctly",
            hint=f"the token endpoint rejected the client credentials ({detail or status}); check the "
            "connector's client_id and client_secret (and that the secret has not expired)",
        )
    if error in ("invalid_grant", "invalid_request"):
        raise LoginRefused(
            "the sign-in could not be completed; start it again",
            hint=f"the token endpoint refused the authorization code ({detail}); codes are single use and "
            "short-lived, and the redirect URI must be registered exactly as "
            "{base_url}/api/accounts/idp-callback",
        )
    raise UpstreamError(
        "the identity provider could not finish the sign-in; try again",
        hint=f"the token endpoint {provider.token_endpoint} answered HTTP {status} {detail}".rstrip(),
    )

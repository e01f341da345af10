"""A fake OpenID Connect provider for Transom's tests and for plugin authors.

:class:`FakeOidcIdp` holds real RSA keys (the kernel's :class:`~transom.testing.keys.SigningKey`)
and signs id_tokens whose header and claims a test controls completely, so attacks
(``alg: none``, HS256 keyed with the public key, foreign keys, missing claims...) are built
from real bytes; keys of other algorithms (``transom.testing.jws_keys``: ES256, EdDSA, PS256...)
sign too. Its back channel (discovery document, JWKS, token endpoint, UserInfo) is one handler
served two ways:

* in process, through an ``httpx.MockTransport`` (:meth:`FakeOidcIdp.transport`)::

    fake = FakeOidcIdp(issuer="https://idp.test", client_id="app", client_secret="s3cret")
    runtime = make_runtime(connectors=[...], http=httpx.Client(transport=fake.transport()))

* over real HTTP on 127.0.0.1 (:func:`serve_oidc_idp`), for a host that uses its ordinary
  HTTP client::

    with serve_oidc_idp(client_id="app") as fake:   # fake.issuer == "http://127.0.0.1:<port>"
        ...

The browser leg (the authorization endpoint) is not served: :func:`oidc_login` reads the
authorization request from Transom's redirect and asks :meth:`FakeOidcIdp.authorize` for a
code, as a user picking an account at the IdP would.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from transom.testing.jws_keys import JwsKey
from transom.testing.jwt import OMIT, hs256_signer, sign_jwt, signed_token
from transom.testing.keys import SigningKey, b64url
from transom.testing.oauth import TokenError, client_credentials, pkce_matches, secret_matches
from transom.testing.server import free_port, serve_handler

# the kernel's names, importable from here as before
__all__ = ["OMIT", "FakeOidcIdp", "SigningKey", "b64url", "finish_login", "hs256_signer", "oidc_login",
           "serve_oidc_idp", "sign_jwt", "start_login"]


@dataclass
class PendingCode:
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    code_challenge_method: str | None
    id_token: str
    #: what the UserInfo endpoint answers for the access token this code redeems
    userinfo: Mapping[str, Any] | None = None


class FakeOidcIdp:
    """An OIDC provider in memory: keys, JWKS, authorization codes and the token endpoint."""

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: str | None = "fake-client-secret",  # noqa: S107 - a fake IdP's test credential
        authorization_endpoint: str | None = None,
        token_endpoint: str | None = None,
        jwks_uri: str | None = None,
        kid: str | None = "key-1",
        userinfo_endpoint: str | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.authorization_endpoint = authorization_endpoint or f"{self.issuer}/v1/authorize"
        self.token_endpoint = token_endpoint or f"{self.issuer}/v1/token"
        self.jwks_uri = jwks_uri or f"{self.issuer}/v1/keys"
        self.userinfo_endpoint = userinfo_endpoint or f"{self.issuer}/v1/userinfo"
        #: advertised in the discovery document's id_token_signing_alg_values_supported
        self.signing_algorithms: list[str] = ["RS256"]
        #: the discovery document served; None serves :meth:`discovery_document`
        self.discovery_override: dict[str, Any] | None = None
        self.discovery_fetches = 0
        #: access token -> UserInfo claims (filled when a code is redeemed)
        self.userinfo_by_token: dict[str, Mapping[str, Any]] = {}
        self.userinfo_requests = 0
        self.keys: list[SigningKey] = [SigningKey(kid)]
        #: the JWKS document served; None serves the public keys of ``keys``
        self.jwks_override: dict[str, Any] | None = None
        self.jwks_fetches = 0
        self.token_requests: list[dict[str, str]] = []
        self._codes: dict[str, PendingCode] = {}
        self._lock = threading.Lock()

    # -- keys and tokens ----------------------------------------------------------------

    @property
    def key(self) -> SigningKey:
        """The current signing key (the last one added)."""
        return self.keys[-1]

    def rotate(self, kid: str | None = None, *, keep_old: bool = False) -> SigningKey:
        new = SigningKey(kid or f"key-{secrets.token_hex(4)}")
        self.keys = [*self.keys, new] if keep_old else [new]
        return new

    def jwks(self) -> dict[str, Any]:
        if self.jwks_override is not None:
            return self.jwks_override
        return {"keys": [k.public_jwk() for k in self.keys]}

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def discovery_document(self) -> dict[str, Any]:
        """What ``{issuer}/.well-known/openid-configuration`` answers (OpenID Connect
        Discovery 1.0), pointing at this fake's endpoints."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "jwks_uri": self.jwks_uri,
            "userinfo_endpoint": self.userinfo_endpoint,
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(self.signing_algorithms),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
        }

    def default_claims(self, *, nonce: str | None = None, now: float | None = None) -> dict[str, Any]:
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.client_id, "iat": issued,
                                  "exp": issued + 3600}
        if nonce is not None:
            claims["nonce"] = nonce
        return claims

    def id_token(
        self,
        claims: Mapping[str, Any] | None = None,
        *,
        nonce: str | None = None,
        header: Mapping[str, Any] | None = None,
        key: SigningKey | JwsKey | None = None,
        signer: Callable[[bytes], bytes] | None = None,
    ) -> str:
        """A signed id_token: default claims (iss, aud, iat, exp, nonce) updated with
        ``claims`` (``OMIT`` removes one); header ``{"alg": "RS256", "typ": "JWT", "kid"}``
        updated with ``header`` (``OMIT`` removes one). ``key``/``signer`` choose the
        signature (default: the current key)."""
        body = self.default_claims(nonce=nonce)
        body.update(claims or {})
        return signed_token(body, key or self.key, header=header, signer=signer)

    # -- the browser leg ------------------------------------------------------------------

    def authorize(
        self,
        authorization_url: str,
        claims: Mapping[str, Any] | None = None,
        *,
        id_token: str | Callable[[Mapping[str, str]], str] | None = None,
        userinfo: Mapping[str, Any] | None = None,
    ) -> dict[str, str]:
        """Act on an authorization request URL as the IdP would after the user signed in:
        remember a code for an id_token carrying ``claims`` (and the request's nonce) and
        return the parameters of the authorization response (``code``, ``state``).

        ``id_token`` replaces the token the code will redeem (a string, or a function of the
        request parameters) for attacks that need a hand-made token. ``userinfo`` is what the
        UserInfo endpoint answers for the access token the code redeems (404 when None)."""
        request = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
        if request.get("client_id") != self.client_id:
            raise AssertionError(f"authorization request for client {request.get('client_id')!r}")
        if request.get("response_type") != "code":
            raise AssertionError("only the authorization code flow is faked")
        if callable(id_token):
            token = id_token(request)
        elif id_token is not None:
            token = id_token
        else:
            token = self.id_token(claims, nonce=request.get("nonce"))
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = PendingCode(
                client_id=request["client_id"], redirect_uri=request.get("redirect_uri", ""),
                code_challenge=request.get("code_challenge"),
                code_challenge_method=request.get("code_challenge_method"), id_token=token, userinfo=userinfo)
        return {"code": code, "state": request.get("state", ""), "redirect_uri": request.get("redirect_uri", "")}

    # -- the back channel -------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        """Serves the discovery document, ``jwks_uri``, ``token_endpoint`` and
        ``userinfo_endpoint``; any other URL answers 404."""
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url.copy_with(query=None))
        if request.method == "GET" and url == self.discovery_url:
            with self._lock:
                self.discovery_fetches += 1
            return httpx.Response(200, json=self.discovery_override or self.discovery_document())
        if request.method == "GET" and url == self.userinfo_endpoint:
            return self._userinfo(request)
        if request.method == "GET" and url == self.jwks_uri:
            with self._lock:
                self.jwks_fetches += 1
            return httpx.Response(200, json=self.jwks(), headers={"Cache-Control": "max-age=3600"})
        if request.method == "POST" and url == self.token_endpoint:
            return self._token(request)
        return httpx.Response(404, json={"error": "not_found"})

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.token_requests.append(form)
        try:
            pending = self._redeem(request.headers.get("authorization"), form)
        except TokenError as exc:
            return httpx.Response(exc.status, json={"error": exc.error, "error_description": f"fake IdP: {exc.error}"})
        access_token = secrets.token_urlsafe(16)
        if pending.userinfo is not None:
            with self._lock:
                self.userinfo_by_token[access_token] = pending.userinfo
        return httpx.Response(200, json={"access_token": access_token, "token_type": "Bearer",
                                         "expires_in": 3600, "id_token": pending.id_token})

    def _redeem(self, authorization: str | None, form: Mapping[str, str]) -> PendingCode:
        """The token endpoint's checks (the kernel's, as the development IdP's): client
        authentication, grant type, a single-use code bound to client and redirect URI, PKCE."""
        creds = client_credentials(authorization, form)
        if creds.client_id != self.client_id or (
                self.client_secret is not None and not secret_matches(self.client_secret, creds.client_secret)):
            raise TokenError("invalid_client", "client authentication failed", status=401)
        if form.get("grant_type") != "authorization_code":
            raise TokenError("unsupported_grant_type", "only authorization_code")
        with self._lock:
            pending = self._codes.pop(form.get("code", ""), None)  # single use
        if pending is None or pending.client_id != creds.client_id or form.get("redirect_uri") != pending.redirect_uri:
            raise TokenError("invalid_grant", "unknown code")
        if pending.code_challenge is not None and (
                pending.code_challenge_method != "S256"
                or not pkce_matches(form.get("code_verifier", ""), pending.code_challenge)):
            raise TokenError("invalid_grant", "PKCE verification failed")
        return pending

    def _userinfo(self, request: httpx.Request) -> httpx.Response:
        """OpenID Connect Core §5.3: the Bearer access token's claims, or 401."""
        with self._lock:
            self.userinfo_requests += 1
            auth = request.headers.get("authorization", "")
            claims = self.userinfo_by_token.get(auth[7:]) if auth.startswith("Bearer ") else None
        if claims is None:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return httpx.Response(200, json=dict(claims))


def start_login(client: Any, connector_id: str, *, next_path: str | None = None) -> str:
    """``GET /api/accounts/login/{connector_id}``; returns the IdP authorization URL."""
    query = f"?{urlencode({'next': next_path})}" if next_path else ""
    response = client.get(f"/api/accounts/login/{connector_id}{query}")
    if response.status_code not in (302, 303):
        raise AssertionError(f"login start answered {response.status_code}: {response.text[:300]}")
    location: str = response.headers["location"]
    return location


def finish_login(client: Any, params: Mapping[str, str], *, form_post: bool = False,
                 headers: Mapping[str, str] | None = None) -> Any:
    """Send the authorization response to Transom's callback (query, or form_post)."""
    data = {k: v for k, v in params.items() if k != "redirect_uri"}
    if form_post:
        return client.post("/api/accounts/idp-callback", data=data, headers=dict(headers or {}))
    return client.get(f"/api/accounts/idp-callback?{urlencode(data)}", headers=dict(headers or {}))


def oidc_login(
    client: Any,
    fake: FakeOidcIdp,
    connector_id: str,
    *,
    claims: Mapping[str, Any] | None = None,
    id_token: str | Callable[[Mapping[str, str]], str] | None = None,
    next_path: str | None = None,
    form_post: bool = False,
    headers: Mapping[str, str] | None = None,
    userinfo: Mapping[str, Any] | None = None,
) -> Any:
    """Drive a whole login through a ``TestClient``: start, let the fake IdP issue a code for
    ``claims`` (or for a hand-made ``id_token``), then call the callback. Returns the
    callback response (303 + session cookie on success)."""
    location = start_login(client, connector_id, next_path=next_path)
    params = fake.authorize(location, claims, id_token=id_token, userinfo=userinfo)
    return finish_login(client, params, form_post=form_post, headers=headers)


@contextmanager
def serve_oidc_idp(*, client_id: str, client_secret: str | None = "fake-client-secret",  # noqa: S107
                   host: str = "127.0.0.1", path: str = "") -> Iterator[FakeOidcIdp]:
    """A :class:`FakeOidcIdp` whose discovery document, JWKS and token endpoint answer over
    real HTTP at ``http://{host}:{port}{path}`` until the block ends (the same handler as
    :meth:`FakeOidcIdp.transport`, behind a stdlib HTTP server in a thread)."""
    port = free_port(host)
    fake = FakeOidcIdp(issuer=f"http://{host}:{port}{path}", client_id=client_id, client_secret=client_secret)
    with serve_handler(fake.handle, host=host, port=port):
        yield fake

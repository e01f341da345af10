"""OpenID Connect Discovery 1.0 done by the host: a plugin names only the issuer
(``OidcProvider.discover`` / ``OidcSettings``) and the host fetches
``{issuer}/.well-known/openid-configuration`` for the endpoints, the JWKS URL, the UserInfo
endpoint and the signing algorithms (docs/oidc.md, Discovery).

* One :class:`DiscoveryCache` per process (``Runtime.discovery``), keyed by document URL, with
  the JWKS cache's rules: TTL from ``Cache-Control: max-age`` clamped to [5 min, 24 h],
  refetches single-flight and at most once per cooldown (30 s), a failed refetch keeps the
  last good document, a failed first fetch is retried on the next login after the cooldown.
* Refetched early when a token names a ``kid`` the JWKS does not publish, or the JWKS cannot
  be loaded (:func:`verify_with_discovery`): the provider may have moved its ``jwks_uri``.
  A document that fails the checks below is fetched again after the cooldown, not kept.
* The document's ``issuer`` must equal the configured issuer exactly (OIDC-27), every endpoint
  must be an absolute URL, and an ``https`` issuer cannot hand out ``http`` endpoints.
* Body capped at 64 KiB, no redirects followed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from transom.connector import OidcProvider
from transom.errors import ConfigError, UpstreamError
from transom.oidc.algorithms import ALLOWED_ALGORITHMS, DEFAULT_ALGORITHMS, allowed
from transom.oidc.common import UnknownSigningKey
from transom.oidc.idtoken import verify_id_token
from transom.oidc.jwks import JwksCache
from transom.oidc.urlcache import UrlCache, UrlEntry

log = logging.getLogger("transom.oidc")

WELL_KNOWN = "/.well-known/openid-configuration"
#: Google's document is ~2 KB, Keycloak's ~7 KB; anything near this cap is not a discovery document
MAX_DISCOVERY_BYTES = 64 * 1024
_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")


def discovery_url(provider: OidcProvider) -> str:
    """OIDC Discovery §4: the issuer without its terminating slash, then the well-known path."""
    if provider.discovery_url:
        return provider.discovery_url
    return provider.issuers[0].rstrip("/") + WELL_KNOWN


@dataclass(frozen=True)
class ProviderMetadata:
    """What Transom uses of a discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    #: ``id_token_signing_alg_values_supported`` as advertised (RS256 when absent: Discovery §3)
    signing_algorithms: tuple[str, ...]


@dataclass
class _Entry(UrlEntry):
    document: ProviderMetadata | None = None
    last_error: UpstreamError | None = None


class DiscoveryCache(UrlCache[_Entry]):
    """Per-process cache of discovery documents (see the module docstring for the rules)."""

    def __init__(
        self,
        *,
        cooldown: float = 30.0,
        default_ttl: float = 3600.0,
        min_ttl: float = 300.0,
        max_ttl: float = 86400.0,
        max_bytes: int = MAX_DISCOVERY_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(_Entry, cooldown=cooldown, default_ttl=default_ttl, min_ttl=min_ttl, max_ttl=max_ttl,
                         max_bytes=max_bytes, clock=clock)

    def metadata(self, http: httpx.Client, url: str, issuer: str, *, refresh: bool = False) -> ProviderMetadata:
        """The document for ``issuer`` at ``url``; ``refresh`` asks for a refetch (unknown
        ``kid``), which still happens at most once per cooldown."""
        entry = self._entry(url)
        document = entry.document
        if not refresh and document is not None and self._clock() < entry.expires_at:
            return self._checked(entry, document, issuer, url)
        with entry.lock:
            now = self._clock()
            fresh = entry.document is not None and now < entry.expires_at
            if (refresh or not fresh) and now - entry.last_attempt >= self.cooldown:
                self._refresh(http, url, entry, now)
            if entry.document is not None:
                return self._checked(entry, entry.document, issuer, url)
            raise entry.last_error or UpstreamError("the identity provider's configuration could not be loaded")

    def _checked(self, entry: _Entry, document: ProviderMetadata, issuer: str, url: str) -> ProviderMetadata:
        try:
            return _checked(document, issuer, url)
        except UpstreamError:
            # A refused document counts as a failure: it is fetched again once the cooldown
            # has passed (the provider may fix it), not kept for its whole TTL.
            entry.expires_at = min(entry.expires_at, entry.last_attempt + self.cooldown)
            raise

    def _refresh(self, http: httpx.Client, url: str, entry: _Entry, now: float) -> None:
        entry.last_attempt = now
        entry.fetches += 1
        try:
            entry.document, ttl = self._fetch(http, url)
        except UpstreamError as exc:
            # Keep the last good document: an IdP hiccup must not lock everyone out.
            log.warning("OIDC discovery failed url=%s: %s", url, exc.hint or exc.message)
            entry.last_error = exc
            if entry.document is not None:
                entry.expires_at = now + self.cooldown
            return
        entry.expires_at = now + ttl
        entry.last_error = None
        log.info("OIDC discovery document loaded url=%s", url)

    def _fetch(self, http: httpx.Client, url: str) -> tuple[ProviderMetadata, float]:
        def fail(why: str) -> UpstreamError:
            return UpstreamError(
                "the identity provider's configuration could not be loaded; try again in a minute",
                hint=f"fetching the OIDC discovery document {url} failed: {why}; check the connector's issuer "
                "and that the IdP is reachable from the server",
            )

        document, cache_control = self._get_json(http, url, fail)
        if not isinstance(document, dict):
            raise fail("not a JSON object")
        return _parse(document, fail), self._ttl(cache_control)


def _url(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 2048:
        return None
    parts = urlsplit(value)
    return value if parts.scheme in ("https", "http") and parts.hostname else None


def _parse(document: Mapping[str, Any], fail: Callable[[str], UpstreamError]) -> ProviderMetadata:
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise fail("the document has no issuer")
    urls: dict[str, str] = {}
    for name in _ENDPOINTS:
        found = _url(document.get(name))
        if found is None:
            raise fail(f"{name} is missing or not an http(s) URL")
        urls[name] = found
    userinfo = document.get("userinfo_endpoint")
    if userinfo is not None and _url(userinfo) is None:
        raise fail("userinfo_endpoint is not an http(s) URL")
    advertised = document.get("id_token_signing_alg_values_supported")
    if advertised is None:
        algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    elif isinstance(advertised, list) and all(isinstance(a, str) for a in advertised):
        algorithms = tuple(advertised[:50])
    else:
        raise fail("id_token_signing_alg_values_supported is not a list of strings")
    return ProviderMetadata(
        issuer=issuer, authorization_endpoint=urls["authorization_endpoint"], token_endpoint=urls["token_endpoint"],
        jwks_uri=urls["jwks_uri"], userinfo_endpoint=userinfo if isinstance(userinfo, str) else None,
        signing_algorithms=algorithms,
    )


def _checked(document: ProviderMetadata, issuer: str, url: str) -> ProviderMetadata:
    """OIDC Discovery §4.3 / OIDC-27: the document speaks for exactly the configured issuer,
    and an https issuer never hands out plain-http endpoints."""
    if document.issuer != issuer:
        shown = document.issuer[:200]
        raise UpstreamError(
            "this sign-in method is not set up correctly",
            hint=f"the discovery document at {url} names issuer '{shown}', but the connector is configured "
            f"with issuer '{issuer}'; they must be equal character for character (a trailing slash counts): "
            f"set the connector's issuer to '{shown}' if that provider is the one you meant",
        )
    if urlsplit(issuer).scheme == "https":
        plain = [name for name in (*_ENDPOINTS, "userinfo_endpoint")
                 if (getattr(document, name) or "https:").startswith("http:")]
        if plain:
            raise UpstreamError(
                "this sign-in method is not set up correctly",
                hint=f"the discovery document at {url} names plain-http endpoints ({', '.join(plain)}) for an "
                "https issuer; Transom sends the client secret and tokens only over https",
            )
    return document


def resolve(http: httpx.Client, cache: DiscoveryCache, provider: OidcProvider, *,
            refresh: bool = False) -> OidcProvider:
    """``provider`` with every endpoint it left empty filled from discovery and its signing
    algorithms settled (inside the allow-list). A provider without discovery only gets its
    algorithms settled (``RS256`` unless the plugin named others)."""
    if not provider.issuers:
        raise ConfigError("the connector's OIDC provider names no issuer")
    if not provider.client_id:
        raise ConfigError("the connector's OIDC provider names no client_id")
    if not (provider.discovery or provider.discovery_url):
        missing = [name for name in _ENDPOINTS if not getattr(provider, name)]
        if missing:
            raise ConfigError(f"the connector's OIDC provider has no {', '.join(missing)} and does not use discovery")
        return dataclasses.replace(provider, signing_algorithms=_own_algorithms(provider) or DEFAULT_ALGORITHMS)
    url = discovery_url(provider)
    metadata = cache.metadata(http, url, provider.issuers[0], refresh=refresh)
    algorithms = _own_algorithms(provider) or allowed(list(metadata.signing_algorithms))
    if not algorithms:
        raise UpstreamError(
            "this sign-in method is not set up correctly",
            hint=f"the provider ({url}) advertises id_token signing algorithms "
            f"{', '.join(metadata.signing_algorithms)[:200]}; Transom accepts only {', '.join(ALLOWED_ALGORITHMS)} "
            "(never none or HMAC): configure the application to sign id_tokens with one of them",
        )
    return dataclasses.replace(
        provider,
        authorization_endpoint=provider.authorization_endpoint or metadata.authorization_endpoint,
        token_endpoint=provider.token_endpoint or metadata.token_endpoint,
        jwks_uri=provider.jwks_uri or metadata.jwks_uri,
        userinfo_endpoint=provider.userinfo_endpoint or metadata.userinfo_endpoint or "",
        signing_algorithms=algorithms,
    )


def _own_algorithms(provider: OidcProvider) -> tuple[str, ...]:
    """The algorithms the plugin named, refused outright when one is off the allow-list."""
    refused = [a for a in provider.signing_algorithms if a not in ALLOWED_ALGORITHMS]
    if refused:
        raise ConfigError(f"the connector's OIDC provider names signing algorithms {', '.join(refused)}; "
                          f"Transom accepts only {', '.join(ALLOWED_ALGORITHMS)}")
    return provider.signing_algorithms


def verify_with_discovery(
    id_token: str,
    *,
    provider: OidcProvider,
    http: httpx.Client,
    jwks: JwksCache,
    discovery: DiscoveryCache,
    nonce: str | None,
    clock_skew_seconds: int,
    now: float | None = None,
) -> dict[str, Any]:
    """``verify_id_token`` for the plugin's ``provider`` (resolved here); with discovery, a
    token naming a key the JWKS does not publish makes the host look the document up again
    (at most once per cooldown) and, when the provider moved its ``jwks_uri``, verify
    against the new one."""
    resolved = resolve(http, discovery, provider)
    try:
        return verify_id_token(id_token, provider=resolved, jwks=jwks, http=http, nonce=nonce,
                               clock_skew_seconds=clock_skew_seconds, now=now)
    except (UnknownSigningKey, UpstreamError):
        # an unknown kid, or a JWKS that cannot be loaded: the provider may have moved it
        if not (provider.discovery or provider.discovery_url):
            raise
        again = resolve(http, discovery, provider, refresh=True)
        if again.jwks_uri == resolved.jwks_uri:
            raise
        log.info("OIDC discovery: jwks_uri changed for issuer=%s", provider.issuers[0])
        return verify_id_token(id_token, provider=again, jwks=jwks, http=http, nonce=nonce,
                               clock_skew_seconds=clock_skew_seconds, now=now)

"""The per-process cache of IdP signing keys (JWKS), keyed by ``jwks_uri``."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from transom.errors import UpstreamError
from transom.oidc.algorithms import PublicJwk, Verifier, parse_jwk
from transom.oidc.common import KID_MAX, TOKEN_REFUSED, UnknownSigningKey, printable, token_refused
from transom.oidc.urlcache import UrlCache, UrlEntry

log = logging.getLogger("transom.oidc")


@dataclass
class _KeySet:
    """Key objects of one JWKS document, built once per fetch and indexed by ``kid``."""

    by_kid: dict[str, PublicJwk] = field(default_factory=dict)
    #: usable keys without a ``kid`` (used only when the token has no kid either)
    unnamed: list[PublicJwk] = field(default_factory=list)

    def usable(self, alg: str) -> int:
        return sum(1 for key in (*self.by_kid.values(), *self.unnamed) if key.usable_for(alg))


@dataclass
class _JwksEntry(UrlEntry):
    keys: _KeySet | None = None
    #: kid -> monotonic time until which it is known to be absent (negative cache)
    missing: dict[str, float] = field(default_factory=dict)


class JwksCache(UrlCache[_JwksEntry]):
    """Per-process cache of IdP signing keys, keyed by ``jwks_uri``.

    * Keys are fetched on first use, kept for the document's ``Cache-Control: max-age``
      clamped to [``min_ttl``, ``max_ttl``] (``default_ttl`` when absent), and refetched
      early when a token names an unknown ``kid`` (key rotation).
    * Refetches of one URI are single-flight (a lock per URI) and happen at most once per
      ``cooldown`` seconds, whatever the number of random kids thrown at us; a kid that was
      not in the fresh document is negatively cached until the cooldown ends.
    * A failed refetch keeps the last good keys.
    * The body is capped at ``max_bytes`` and ``max_keys``; keys that are marked ``use=enc``,
      that name an ``alg`` off the allow-list, of an unknown type or curve, or that do not
      parse are skipped (:func:`transom.oidc.algorithms.parse_jwk`). A key is used only for
      the algorithms its type (and its own ``alg``, when given) allows.
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
        super().__init__(_JwksEntry, cooldown=cooldown, default_ttl=default_ttl, min_ttl=min_ttl, max_ttl=max_ttl,
                         max_bytes=max_bytes, clock=clock)
        self.max_keys = max_keys

    def key_for(self, http: httpx.Client, jwks_uri: str, kid: str | None, alg: str = "RS256") -> Verifier:
        """The one key that may have signed a token with this ``kid`` and ``alg``."""
        entry = self._entry(jwks_uri)
        now = self._clock()
        if entry.keys is not None and now < entry.expires_at:
            found = self._lookup(entry.keys, kid, alg)
            if found is not None:
                return found
        with entry.lock:
            # Another thread may have refreshed while we waited: look again first.
            now = self._clock()
            fresh = entry.keys is not None and now < entry.expires_at
            if fresh and entry.keys is not None:
                found = self._lookup(entry.keys, kid, alg)
                if found is not None:
                    return found
            cooling = now - entry.last_attempt < self.cooldown
            negative = kid is not None and entry.missing.get(kid, -math.inf) > now
            refreshed = not cooling and not (fresh and negative)
            if refreshed:
                self._refresh(http, jwks_uri, entry, now)
            if entry.keys is not None:
                found = self._lookup(entry.keys, kid, alg)
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
            raise token_refused(
                f"the id_token names no kid and the provider publishes {entry.keys.usable(alg)} usable {alg} "
                "signing keys; Transom picks a key without kid only when exactly one exists", "oidc.kid_ambiguous"
            )
        if not refreshed:
            # The keys were loaded less than a cooldown ago and the IdP may have rotated since:
            # say so, rather than that the IdP does not publish the key (issue 12, case 10).
            wait = max(1, math.ceil(entry.last_attempt + self.cooldown - now))
            raise UnknownSigningKey(
                TOKEN_REFUSED,
                hint=f"the id_token was signed ({printable(alg, 20)}) with key id '{printable(kid, 60)}', which is "
                f"not among the provider's signing keys loaded {int(now - entry.last_attempt)} s ago; the keys "
                f"are being refreshed (at most once every {int(self.cooldown)} s): retry in {wait} s",
                reason="oidc.kid_refreshing",
            )
        raise UnknownSigningKey(
            TOKEN_REFUSED,
            hint=f"the id_token was signed ({printable(alg, 20)}) with key id '{printable(kid, 60)}', which the "
            f"provider's JWKS ({jwks_uri}) does not publish as a {printable(alg, 20)} key (fetched just now); "
            "check the connector's tenant / issuer",
            reason="oidc.kid_unknown",
        )

    @staticmethod
    def _lookup(keys: _KeySet, kid: str | None, alg: str) -> Verifier | None:
        if kid is not None:
            named = keys.by_kid.get(kid)
            # the key type is bound to the algorithm: an EC kid cannot verify RS256, etc.
            return named.verifier(alg) if named is not None and named.usable_for(alg) else None
        matching = [key for key in (*keys.by_kid.values(), *keys.unnamed) if key.usable_for(alg)]
        return matching[0].verifier(alg) if len(matching) == 1 else None

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
        log.info("JWKS loaded uri=%s keys=%d", jwks_uri, len(keys.by_kid) + len(keys.unnamed))

    def _fetch(self, http: httpx.Client, jwks_uri: str) -> tuple[_KeySet, float]:
        def fail(why: str) -> UpstreamError:
            return UpstreamError(f"the identity provider's signing keys could not be loaded: {why}")

        document, cache_control = self._get_json(http, jwks_uri, fail)
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
            key = parse_jwk(raw)
            if key is None:
                skipped += 1
                continue
            kid = raw.get("kid")
            if kid is None:
                keys.unnamed.append(key)
            elif isinstance(kid, str) and kid and len(kid) <= KID_MAX and kid not in keys.by_kid:
                keys.by_kid[kid] = key
            else:
                skipped += 1
        if skipped:
            log.info("JWKS uri=%s: skipped %d unusable keys", jwks_uri, skipped)
        return keys

"""Unit tests of the per-process JWKS cache (security-checklist OIDC-10..14, 32)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from transom.errors import LoginRefused, UpstreamError
from transom.oidc import JwksCache
from transom.testing.oidc import SigningKey

URI = "https://idp.test/keys"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Server:
    """A JWKS endpoint whose answer a test changes at will; counts requests."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = keys
        self.status = 200
        self.body: bytes | None = None
        self.headers: dict[str, str] = {}
        self.requests = 0
        self.delay = 0.0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.delay:
            time.sleep(self.delay)
        body = self.body if self.body is not None else json.dumps(
            {"keys": [k.public_jwk() for k in self.keys]}).encode()
        return httpx.Response(self.status, content=body, headers=self.headers)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_keys_are_built_once_per_fetch_and_indexed_by_kid(clock: Clock) -> None:
    a, b = SigningKey("a"), SigningKey("b")
    server = Server([a, b])
    cache = JwksCache(clock=clock)
    with server.client() as http:
        key_a = cache.key_for(http, URI, "a")
        assert cache.key_for(http, URI, "a") is key_a  # the same object: no re-construction
        key_b = cache.key_for(http, URI, "b")
        assert key_b is not key_a
        assert key_a.verify(b"data", a.sign(b"data")) and not key_a.verify(b"data", b.sign(b"data"))
    assert server.requests == 1


def test_unknown_kid_refetches_once_per_cooldown_and_is_negatively_cached(clock: Clock) -> None:
    server = Server([SigningKey("a")])
    cache = JwksCache(cooldown=30, clock=clock)
    with server.client() as http:
        cache.key_for(http, URI, "a")
        for _ in range(50):
            with pytest.raises(LoginRefused):
                cache.key_for(http, URI, "random")
        assert server.requests == 1  # inside the cooldown of the first fetch
        clock.now += 31
        with pytest.raises(LoginRefused):
            cache.key_for(http, URI, "random")
        assert server.requests == 2
        with pytest.raises(LoginRefused):
            cache.key_for(http, URI, "random")  # negative cache
        assert server.requests == 2


def test_rotation_found_after_cooldown(clock: Clock) -> None:
    server = Server([SigningKey("old")])
    cache = JwksCache(cooldown=30, clock=clock)
    with server.client() as http:
        cache.key_for(http, URI, "old")
        server.keys = [SigningKey("new")]
        clock.now += 30
        assert cache.key_for(http, URI, "new") is not None
        assert server.requests == 2
        with pytest.raises(LoginRefused):  # the old key is gone with the new document
            cache.key_for(http, URI, "old")


def test_failed_refetch_keeps_last_good_keys(clock: Clock) -> None:
    server = Server([SigningKey("a")])
    cache = JwksCache(cooldown=30, default_ttl=600, min_ttl=300, clock=clock)
    with server.client() as http:
        good = cache.key_for(http, URI, "a")
        server.status = 500
        clock.now += 10_000  # far past the TTL
        assert cache.key_for(http, URI, "a") is good
        assert server.requests == 2
        assert cache.key_for(http, URI, "a") is good  # no hammering inside the cooldown
        assert server.requests == 2


def test_first_fetch_failure_is_an_upstream_error(clock: Clock) -> None:
    for status, body in ((500, b"{}"), (302, b""), (200, b"not json"), (200, b'{"keys": "x"}'), (200, b"[]")):
        server = Server([])
        server.status, server.body = status, body
        with server.client() as http, pytest.raises(UpstreamError):
            JwksCache(clock=clock).key_for(http, URI, "a")


def test_size_and_key_count_caps(clock: Clock) -> None:
    server = Server([SigningKey(f"k{i}") for i in range(3)])
    with server.client() as http, pytest.raises(UpstreamError):
        JwksCache(max_keys=2, clock=clock).key_for(http, URI, "k0")
    server = Server([SigningKey("a")])
    server.body = b'{"keys": [], "pad": "' + b"x" * 300_000 + b'"}'
    with server.client() as http, pytest.raises(UpstreamError):
        JwksCache(max_bytes=256 * 1024, clock=clock).key_for(http, URI, "a")


def test_unusable_keys_are_skipped(clock: Clock) -> None:
    good = SigningKey("good")
    server = Server([])
    jwk = good.public_jwk()
    document: dict[str, Any] = {"keys": [
        {"kty": "AKP", "kid": "good", "alg": "ML-DSA-44", "pub": "AAAA"},  # same kid, foreign type: skipped
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
        {**jwk, "kid": "enc", "use": "enc"},
        {**jwk, "kid": "ps", "alg": "PS256"},
        {**jwk, "kid": "ops", "key_ops": ["encrypt"]},
        {"kty": "RSA", "kid": "broken", "n": "@@", "e": "AQAB"},
        {**jwk, "kid": 7},
        17,
        jwk,
    ]}
    server.body = json.dumps(document).encode()
    cache = JwksCache(clock=clock)
    with server.client() as http:
        assert cache.key_for(http, URI, "good").verify(b"x", good.sign(b"x"))
        for kid in ("ec", "enc", "ps", "ops", "broken"):
            with pytest.raises(LoginRefused):
                cache.key_for(http, URI, kid)


def test_kid_absent_needs_exactly_one_usable_key(clock: Clock) -> None:
    only = SigningKey(None)
    server = Server([only])
    with server.client() as http:
        assert JwksCache(clock=clock).key_for(http, URI, None).verify(b"x", only.sign(b"x"))
    named = SigningKey("named")
    server = Server([named])
    with server.client() as http:  # one usable key with a kid: a kid-less token may use it
        assert JwksCache(clock=clock).key_for(http, URI, None).verify(b"x", named.sign(b"x"))
    server = Server([SigningKey(None), SigningKey("b")])
    with server.client() as http, pytest.raises(LoginRefused) as refused:
        JwksCache(clock=clock).key_for(http, URI, None)
    assert "exactly one" in (refused.value.hint or "")


def test_ttl_follows_cache_control_within_bounds(clock: Clock) -> None:
    server = Server([SigningKey("a")])
    server.headers = {"Cache-Control": "public, max-age=5"}  # clamped up to min_ttl
    cache = JwksCache(min_ttl=300, max_ttl=86400, clock=clock)
    with server.client() as http:
        cache.key_for(http, URI, "a")
        clock.now += 299
        cache.key_for(http, URI, "a")
        assert server.requests == 1
        clock.now += 2
        cache.key_for(http, URI, "a")
        assert server.requests == 2


def test_refetch_is_single_flight() -> None:
    server = Server([SigningKey("a")])
    server.delay = 0.05
    cache = JwksCache(cooldown=30)
    errors: list[BaseException] = []
    with server.client() as http:

        def worker() -> None:
            try:
                cache.key_for(http, URI, "a")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == [] and server.requests == 1


def test_caches_are_per_uri(clock: Clock) -> None:
    server = Server([SigningKey("a")])
    cache = JwksCache(clock=clock)
    with server.client() as http:
        cache.key_for(http, URI, "a")
        cache.key_for(http, URI + "?tenant=2", "a")
    assert server.requests == 2 and cache.fetch_count(URI) == 1

"""Benchmark of id_token verification (``transom.oidc.verify_id_token``): header parse, kid
lookup in a warm JWKS cache, RS256 signature with a pre-built key, and the claim checks.

Tokens: a small one (profile claims) and an Entra-like one with 200 group GUIDs (~11 KB).
Prints median and p95 per verification and the resulting verifications per second on one
core. Also prints the cost of a cold JWKS load (fetch over an in-memory transport + key
construction) for comparison.

    python bench/oidc_verify_bench.py
    python bench/oidc_verify_bench.py --runs 20000
"""

from __future__ import annotations

import argparse
import statistics
import uuid
from typing import Any

import httpx
from timing import measure, p95

from transom.connector import OidcProvider
from transom.oidc import JwksCache, verify_id_token
from transom.testing.jws_keys import EcSigningKey, Ed25519SigningKey, RsaAlgSigningKey
from transom.testing.oidc import FakeOidcIdp


def report(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    median = statistics.median(ordered)
    print(f"{name:<34} median {median * 1e6:8.1f} us   p95 {p95(ordered) * 1e6:8.1f} us   ~{1 / median:8.0f}/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5000)
    args = parser.parse_args()

    fake = FakeOidcIdp(issuer="https://idp.bench", client_id="bench-client")
    provider = OidcProvider(issuers=(fake.issuer,), authorization_endpoint=fake.authorization_endpoint,
                            token_endpoint=fake.token_endpoint, jwks_uri=fake.jwks_uri,
                            client_id=fake.client_id, client_secret=None)
    http = httpx.Client(transport=fake.transport())
    cache = JwksCache()
    base = {"sub": "00u-bench", "name": "Ada Lovelace", "email": "ada@acme.example",
            "preferred_username": "ada@acme.example"}
    small = fake.id_token(base, nonce="n-bench")
    groups = [str(uuid.uuid4()) for _ in range(200)]
    large = fake.id_token({**base, "groups": groups}, nonce="n-bench")
    print(f"token sizes: small {len(small)} chars, 200 groups {len(large)} chars; runs {args.runs}")

    def verify(token: str) -> None:
        verify_id_token(token, provider=provider, jwks=cache, http=http, nonce="n-bench", clock_skew_seconds=120)

    verify(small)  # warm the cache
    report("verify small (warm cache)", measure(lambda: verify(small), args.runs))
    report("verify 200 groups (warm cache)", measure(lambda: verify(large), args.runs))

    def cold() -> None:
        JwksCache().key_for(http, fake.jwks_uri, fake.key.kid)

    report("cold JWKS load (1 key)", measure(cold, max(50, args.runs // 50)))
    per_algorithm(args.runs, base)


def per_algorithm(runs: int, base: dict[str, str]) -> None:
    """The small token per signature algorithm (PS256 and EdDSA verify on cryptography
    directly, the others through python-jose)."""
    keys: list[Any] = [RsaAlgSigningKey("rs384", "RS384"), RsaAlgSigningKey("ps256", "PS256"),
                       EcSigningKey("es256", "ES256"), EcSigningKey("es384", "ES384"), Ed25519SigningKey("ed")]
    for key in keys:
        fake = FakeOidcIdp(issuer=f"https://idp-{key.alg.lower()}.bench", client_id="bench-client")
        fake.jwks_override = {"keys": [key.public_jwk()]}
        provider = OidcProvider(issuers=(fake.issuer,), authorization_endpoint=fake.authorization_endpoint,
                                token_endpoint=fake.token_endpoint, jwks_uri=fake.jwks_uri,
                                client_id=fake.client_id, client_secret=None, signing_algorithms=(key.alg,))
        http = httpx.Client(transport=fake.transport())
        cache = JwksCache()
        token = fake.id_token(base, nonce="n-bench", key=key)

        def verify(token: str = token, provider: OidcProvider = provider, http: httpx.Client = http,
                   cache: JwksCache = cache) -> None:
            verify_id_token(token, provider=provider, jwks=cache, http=http, nonce="n-bench", clock_skew_seconds=120)

        verify()
        report(f"verify small {key.alg} (warm cache)", measure(verify, runs))


if __name__ == "__main__":
    main()

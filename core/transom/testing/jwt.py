"""The one JWT signer of the fake identity providers (``transom.testing`` and the demo's
development IdP): compact JWS built byte by byte, so a test controls every header field and
claim and can build hostile tokens (``alg: none``, HS256 keyed with the public key, a body
that is not a JSON object) as easily as good ones."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any

from transom.testing.jws_keys import JwsKey
from transom.testing.keys import SigningKey, b64url

#: put this as a claim or header value to leave it out of the token
OMIT: Any = object()


def sign_jwt(header: Mapping[str, Any], claims: Mapping[str, Any] | bytes,
             signer: Callable[[bytes], bytes]) -> str:
    """``b64(header).b64(claims).b64(signer(signing_input))`` with nothing checked."""
    payload = claims if isinstance(claims, bytes) else json.dumps(dict(claims)).encode()
    signing_input = f"{b64url(json.dumps(dict(header)).encode())}.{b64url(payload)}"
    return f"{signing_input}.{b64url(signer(signing_input.encode('ascii')))}"


def signed_token(claims: Mapping[str, Any], key: SigningKey | JwsKey, *, header: Mapping[str, Any] | None = None,
                 signer: Callable[[bytes], bytes] | None = None) -> str:
    """A token signed with ``key``: header ``{"alg": <the key's alg>, "typ": "JWT", "kid"}``
    updated with ``header``; ``OMIT`` removes a claim or header field. ``signer`` replaces the
    signature (a foreign key, HMAC...) while keeping the header. The kernel's
    :class:`SigningKey` signs RS256; the keys of ``transom.testing.jws_keys`` name their own
    algorithm (ES256, EdDSA, PS256...)."""
    head: dict[str, Any] = {"alg": getattr(key, "alg", "RS256"), "typ": "JWT"}
    if key.kid is not None:
        head["kid"] = key.kid
    head.update(header or {})
    return sign_jwt(_without_omitted(head), _without_omitted(claims), signer or key.sign)


def hs256_signer(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def _without_omitted(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not OMIT}

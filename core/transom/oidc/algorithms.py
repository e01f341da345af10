"""id_token signature algorithms: the allow-list, which JWK may verify which algorithm, and
the signature check itself. Used by the JWKS cache (``jwks``) and ``verify_id_token``
(``idtoken``).

* Only asymmetric algorithms are ever accepted (``ALLOWED_ALGORITHMS``): never ``none`` and
  never HMAC, whatever a discovery document advertises or a token header says.
* The key type is bound to the algorithm: RSA for ``RS*``/``PS256``, EC on the matching curve
  for ``ES256`` (P-256) and ``ES384`` (P-384), OKP Ed25519 for ``EdDSA``. A JWK whose own
  ``alg`` names another algorithm is not used for this one. RSA keys under 2048 bits are
  skipped (NIST SP 800-131A).
* python-jose 3.5 verifies ``RS256/384/512`` and ``ES256/384``; it has no ``PS256`` and no
  ``EdDSA``, so those two are verified here directly on ``cryptography`` (the library
  python-jose itself runs on). Every ``jwt.decode`` pins exactly one algorithm through
  :func:`pinned`.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from jose import jwk, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError, JWSError, JWTError

#: every algorithm Transom can verify, in order of preference (RFC 7518 / RFC 8037 names)
ALLOWED_ALGORITHMS: tuple[str, ...] = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
#: what a provider that says nothing (no discovery, no explicit list) is held to
DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256",)
#: the ones python-jose 3.5 implements; the others go through :func:`_verify_direct`
_JOSE_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384"})
_KEY_TYPE = {"RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "PS256": "RSA",
             "ES256": "EC", "ES384": "EC", "EdDSA": "OKP"}
_CURVE = {"ES256": "P-256", "ES384": "P-384", "EdDSA": "Ed25519"}
_EC_CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}
MIN_RSA_BITS = 2048
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

#: jose's claim checks are all off: transom.oidc does every claim check itself
_SIGNATURE_ONLY = {
    "verify_signature": True,
    "verify_aud": False, "verify_iss": False, "verify_sub": False, "verify_jti": False,
    "verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_at_hash": False,
}


def pinned(alg: str) -> list[str]:
    """The ``algorithms=`` list of one ``jwt.decode``: exactly ``alg``, which must be on the
    allow-list (a test fails the suite for any decode without it)."""
    if alg not in ALLOWED_ALGORITHMS:
        raise ValueError(f"algorithm {alg!r} is not allowed")
    return [alg]


def allowed(algorithms: object) -> tuple[str, ...]:
    """The members of ``algorithms`` (e.g. a discovery document's
    ``id_token_signing_alg_values_supported``) that are on the allow-list, in its order."""
    if not isinstance(algorithms, list | tuple):
        return ()
    offered = {a for a in algorithms if isinstance(a, str)}
    return tuple(a for a in ALLOWED_ALGORITHMS if a in offered)


def _b64url_decode(segment: str) -> bytes:
    if not isinstance(segment, str) or not _B64URL.match(segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _uint(segment: Any) -> int:
    return int.from_bytes(_b64url_decode(segment), "big")


@dataclass(frozen=True)
class Verifier:
    """One public key bound to one algorithm."""

    alg: str
    public_key: PublicKey
    #: the python-jose key for the algorithms jose implements; None for PS256 / EdDSA
    jose_key: Key | None

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        if self.jose_key is not None:
            return bool(self.jose_key.verify(signing_input, signature))
        return _verify_direct(self.alg, self.public_key, signing_input, signature)


def _verify_direct(alg: str, key: PublicKey, signing_input: bytes, signature: bytes) -> bool:
    try:
        if alg == "PS256" and isinstance(key, rsa.RSAPublicKey):
            # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash output
            key.verify(signature, signing_input,
                       padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
            return True
        if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signing_input)
            return True
    except InvalidSignature:
        return False
    return False


@dataclass
class PublicJwk:
    """A usable public signing key from a JWKS, parsed once per fetch."""

    kty: str
    crv: str | None
    #: the JWK's own ``alg`` member, when it names one
    alg: str | None
    public_key: PublicKey
    _verifiers: dict[str, Verifier] = field(default_factory=dict)

    def usable_for(self, alg: str) -> bool:
        if _KEY_TYPE.get(alg) != self.kty or (self.alg is not None and self.alg != alg):
            return False
        return alg not in _CURVE or _CURVE[alg] == self.crv

    def verifier(self, alg: str) -> Verifier:
        """The same object for every call with ``alg`` (built on first use)."""
        found = self._verifiers.get(alg)
        if found is None:
            if not self.usable_for(alg):
                raise ValueError(f"key of type {self.kty} cannot verify {alg}")
            jose_key = jwk.construct(self.public_key, alg) if alg in _JOSE_ALGORITHMS else None
            found = self._verifiers[alg] = Verifier(alg=alg, public_key=self.public_key, jose_key=jose_key)
        return found


def parse_jwk(raw: object) -> PublicJwk | None:
    """A usable signing key, or None: not a verification key (``use`` other than ``sig``,
    ``key_ops`` without ``verify``), an ``alg`` off the allow-list, an unknown key type or
    curve, parameters that do not parse or a point not on the curve, RSA under 2048 bits."""
    if not isinstance(raw, Mapping):
        return None
    if raw.get("use", "sig") != "sig":
        return None
    ops = raw.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    alg = raw.get("alg")
    if alg is not None and alg not in ALLOWED_ALGORITHMS:
        return None
    kty = raw.get("kty")
    crv = raw.get("crv")
    try:
        key: PublicKey
        if kty == "RSA":
            key = rsa.RSAPublicNumbers(_uint(raw.get("e")), _uint(raw.get("n"))).public_key()
            if key.key_size < MIN_RSA_BITS:
                return None
            crv = None
        elif kty == "EC" and isinstance(crv, str) and crv in _EC_CURVES:
            # public_key() checks that the point lies on the curve
            key = ec.EllipticCurvePublicNumbers(_uint(raw.get("x")), _uint(raw.get("y")),
                                                _EC_CURVES[crv]).public_key()
        elif kty == "OKP" and crv == "Ed25519":
            key = ed25519.Ed25519PublicKey.from_public_bytes(_b64url_decode(raw.get("x")))  # type: ignore[arg-type]
        else:
            return None
    except (ValueError, TypeError):
        return None
    parsed = PublicJwk(kty=kty, crv=crv if isinstance(crv, str) else None, alg=alg, public_key=key)
    return parsed if alg is None or parsed.usable_for(alg) else None


def decode_signed(token: str, verifier: Verifier) -> Any:
    """The payload of a compact JWS after its signature verified with ``verifier`` (jose for
    the algorithms it has, ``cryptography`` directly for PS256 and EdDSA). Raises a
    ``JOSEError`` (``JWSError`` for the signature, ``JWTError`` for the payload)."""
    if verifier.jose_key is not None:
        return jwt.decode(token, verifier.jose_key, algorithms=pinned(verifier.alg), options=_SIGNATURE_ONLY)
    try:
        head, body, signature = token.split(".")
        signature_bytes = _b64url_decode(signature)
    except ValueError:
        raise JWSError("Error decoding token headers.") from None
    if not verifier.verify(f"{head}.{body}".encode("ascii"), signature_bytes):
        raise JWSError("Signature verification failed.")
    try:
        payload = json.loads(_b64url_decode(body))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise JWTError("Invalid payload string: not a JSON object") from None
    if not isinstance(payload, dict):
        raise JWTError("Invalid payload string: must be a json object")
    return payload


__all__ = ["ALLOWED_ALGORITHMS", "DEFAULT_ALGORITHMS", "JOSEError", "PublicJwk", "Verifier", "allowed",
           "decode_signed", "parse_jwk", "pinned"]

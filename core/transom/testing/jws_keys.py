"""Signing keys for the algorithms besides RS256 that Transom accepts (ES256, ES384, EdDSA,
RS384, RS512, PS256), for fake IdPs: the same shape as :class:`transom.testing.oidc.SigningKey`
(``kid``, ``public_jwk()``, ``sign(data)``) plus the ``alg`` they sign with, so a test can
publish them in a fake's JWKS and sign real tokens with them::

    key = EcSigningKey("ec-1")                     # P-256, ES256
    fake.jwks_override = {"keys": [key.public_jwk()]}
    token = fake.id_token(claims, nonce=nonce, key=key)   # header alg ES256, kid ec-1
"""

from __future__ import annotations

import base64
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int, length: int | None = None) -> str:
    return _b64url(value.to_bytes(length or (value.bit_length() + 7) // 8, "big"))


class JwsKey(Protocol):
    """What a fake IdP needs of a key: its ``kid``, its JWK and a signer."""

    kid: str | None

    def public_jwk(self) -> dict[str, Any]: ...

    def sign(self, data: bytes) -> bytes: ...


_CURVES: dict[str, tuple[ec.EllipticCurve, str, hashes.HashAlgorithm, int]] = {
    "ES256": (ec.SECP256R1(), "P-256", hashes.SHA256(), 32),
    "ES384": (ec.SECP384R1(), "P-384", hashes.SHA384(), 48),
    # not accepted by Transom: lets a test show that it is refused
    "ES512": (ec.SECP521R1(), "P-521", hashes.SHA512(), 66),
}


class EcSigningKey:
    """An ECDSA key: ``ES256`` on P-256 (default) or ``ES384`` on P-384. Signatures are the
    JWS form (r || s, fixed width), not DER."""

    def __init__(self, kid: str | None = "ec-1", alg: str = "ES256") -> None:
        self.kid = kid
        self.alg = alg
        curve, self.crv, self._hash, self._size = _CURVES[alg]
        self.private_key = ec.generate_private_key(curve)

    def public_jwk(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        jwk: dict[str, Any] = {"kty": "EC", "crv": self.crv, "use": "sig", "alg": self.alg,
                               "x": _uint(numbers.x, self._size), "y": _uint(numbers.y, self._size)}
        if self.kid is not None:
            jwk["kid"] = self.kid
        return jwk

    def sign(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self.private_key.sign(data, ec.ECDSA(self._hash)))
        return r.to_bytes(self._size, "big") + s.to_bytes(self._size, "big")


class Ed25519SigningKey:
    """An Ed25519 key (``EdDSA``, RFC 8037)."""

    alg = "EdDSA"

    def __init__(self, kid: str | None = "ed-1") -> None:
        self.kid = kid
        self.private_key = ed25519.Ed25519PrivateKey.generate()

    def public_jwk(self) -> dict[str, Any]:
        raw = self.private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk: dict[str, Any] = {"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "x": _b64url(raw)}
        if self.kid is not None:
            jwk["kid"] = self.kid
        return jwk

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


_RSA_HASHES: dict[str, hashes.HashAlgorithm] = {
    "RS256": hashes.SHA256(), "RS384": hashes.SHA384(), "RS512": hashes.SHA512(), "PS256": hashes.SHA256(),
}


class RsaAlgSigningKey:
    """An RSA key signing with ``RS384``, ``RS512`` or ``PS256`` (RSASSA-PSS, MGF1-SHA256,
    32-byte salt). ``publish_alg=False`` leaves ``alg`` out of the JWK."""

    def __init__(self, kid: str | None = "rsa-alg-1", alg: str = "PS256", *, key_size: int = 2048,
                 publish_alg: bool = True, private_key: rsa.RSAPrivateKey | None = None) -> None:
        self.kid = kid
        self.alg = alg
        self.publish_alg = publish_alg
        #: ``private_key`` reuses an existing key (to sign with another algorithm than its JWK names)
        self.private_key = private_key or rsa.generate_private_key(public_exponent=65537, key_size=key_size)

    def public_jwk(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        jwk: dict[str, Any] = {"kty": "RSA", "use": "sig", "n": _uint(numbers.n), "e": _uint(numbers.e)}
        if self.publish_alg:
            jwk["alg"] = self.alg
        if self.kid is not None:
            jwk["kid"] = self.kid
        return jwk

    def sign(self, data: bytes) -> bytes:
        digest = _RSA_HASHES[self.alg]
        if self.alg == "PS256":
            return self.private_key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                                         digest)
        return self.private_key.sign(data, padding.PKCS1v15(), digest)

"""The development IdP's signing key: RSA-2048, generated in memory when the demo starts and
never written to disk, with a self-signed certificate (what a SAML SP pins) and the JWK
(what an OIDC RP fetches from the JWKS endpoint)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    private_key_pem: str
    certificate_pem: str
    #: RFC 7638 thumbprint of the public key: stable for the key, so a ``kid`` that names it
    kid: str
    public_jwk: dict[str, str]

    @classmethod
    def generate(cls, *, common_name: str = "Transom development IdP") -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .sign(key, hashes.SHA256())
        )
        numbers = key.public_key().public_numbers()
        members = {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("ascii")
        kid = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode("ascii")
        private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")
        return cls(
            private_key_pem=private_pem,
            certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            kid=kid,
            public_jwk={**members, "kid": kid, "use": "sig", "alg": "RS256"},
        )

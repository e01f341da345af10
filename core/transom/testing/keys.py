"""The one signing key of every fake identity provider Transom ships: the fake OIDC and SAML
IdPs of ``transom.testing`` and the demo's development IdP (``transom.devidp``).

An RSA key pair generated in memory and never written to disk, with a self-signed
certificate (what a SAML SP pins) and a public JWK (what an OIDC RP fetches from a JWKS
endpoint). RSA only: it is what every IdP Transom supports signs with by default.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

DEFAULT_COMMON_NAME: Final = "Transom Fake IdP"


class _Thumbprint:
    """Marker default for ``kid``: name the key by its RFC 7638 thumbprint."""

    def __repr__(self) -> str:
        return "THUMBPRINT"


#: ``kid`` default: the key's RFC 7638 thumbprint (stable for the key, unique in practice)
THUMBPRINT: Final = _Thumbprint()


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class SigningKey:
    """An RSA key pair, its self-signed certificate and its ``kid``.

    ``kid=None`` makes a key without a ``kid`` (JWKS with one anonymous key, a token header
    without ``kid``); the default names the key by its thumbprint. The certificate's
    validity window can be moved to build expired or not-yet-valid certificates.
    """

    #: the JWS algorithm its signatures are (``transom.testing.jws_keys`` has the others)
    alg = "RS256"

    def __init__(
        self,
        kid: str | _Thumbprint | None = THUMBPRINT,
        *,
        common_name: str = DEFAULT_COMMON_NAME,
        key_size: int = 2048,
        not_valid_before: datetime | None = None,
        not_valid_after: datetime | None = None,
    ) -> None:
        self.private_key: rsa.RSAPrivateKey = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        numbers = self.private_key.public_key().public_numbers()
        self._jwk_members = {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}
        self.kid: str | None = self.thumbprint() if isinstance(kid, _Thumbprint) else kid
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.now(UTC)
        self.certificate: x509.Certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_valid_before or now - timedelta(days=1))
            .not_valid_after(not_valid_after or now + timedelta(days=365))
            .sign(self.private_key, hashes.SHA256())
        )

    @classmethod
    def generate(
        cls,
        common_name: str = DEFAULT_COMMON_NAME,
        *,
        kid: str | _Thumbprint | None = THUMBPRINT,
        key_size: int = 2048,
        not_valid_before: datetime | None = None,
        not_valid_after: datetime | None = None,
    ) -> SigningKey:
        """A new key whose certificate names ``common_name`` (the SAML side's spelling)."""
        return cls(kid, common_name=common_name, key_size=key_size,
                   not_valid_before=not_valid_before, not_valid_after=not_valid_after)

    # -- what relying parties see ----------------------------------------------------------

    def thumbprint(self) -> str:
        """RFC 7638 JWK thumbprint (SHA-256) of the public key."""
        canonical = json.dumps(self._jwk_members, separators=(",", ":"), sort_keys=True).encode("ascii")
        return b64url(hashlib.sha256(canonical).digest())

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = {**self._jwk_members, "use": "sig", "alg": "RS256"}
        if self.kid is not None:
            jwk["kid"] = self.kid
        return jwk

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def public_der(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def certificate_base64(self) -> str:
        """The DER certificate in base64 without PEM armour (what metadata and KeyInfo hold)."""
        return base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")

    # -- signing ------------------------------------------------------------------------------

    @property
    def private_key_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted (python-xmlsec loads it from memory)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def sign(self, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256: the signature of ``RS256``."""
        return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())

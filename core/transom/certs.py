"""Reading IdP certificates and SAML metadata for the operator checks (``check-config`` and
``--probe``). The login path has its own, cached readers in ``transom.saml``; these report
*why* something is unusable instead of refusing a login."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509

#: a certificate that expires within this many days is a warning
EXPIRY_WARNING_DAYS = 30


class CertificateProblem(ValueError):
    """The text is not one usable X.509 certificate; the message says why in a few words."""


def load_certificate(text: str) -> x509.Certificate:
    """A PEM certificate, or the bare base64 body people paste from metadata."""
    stripped = text.strip()
    if not stripped:
        raise CertificateProblem("empty certificate")
    try:
        if "-----BEGIN" in stripped:
            if "-----BEGIN CERTIFICATE-----" not in stripped:
                raise CertificateProblem("PEM block is not a CERTIFICATE (a key or a request?)")
            return x509.load_pem_x509_certificate(stripped.encode("ascii"))
        der = base64.b64decode("".join(stripped.split()), validate=True)
        return x509.load_der_x509_certificate(der)
    except CertificateProblem:
        raise
    except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
        raise CertificateProblem("not a PEM certificate") from exc


@dataclass(frozen=True)
class Expiry:
    not_after: datetime
    subject: str

    def days_left(self, now: datetime | None = None) -> float:
        return (self.not_after - (now or datetime.now(UTC))) / timedelta(days=1)

    def level(self, now: datetime | None = None) -> str | None:
        """"error" when expired, "warning" inside the warning window, else None."""
        days = self.days_left(now)
        if days < 0:
            return "error"
        if days < EXPIRY_WARNING_DAYS:
            return "warning"
        return None

    def describe(self, now: datetime | None = None) -> str:
        days = self.days_left(now)
        when = self.not_after.date().isoformat()
        if days < 0:
            return f"certificate '{self.subject}' expired on {when}"
        return f"certificate '{self.subject}' expires on {when} (in {int(days)} days)"


def expiry(cert: x509.Certificate) -> Expiry:
    return Expiry(not_after=cert.not_valid_after_utc, subject=cert.subject.rfc4514_string()[:120])


@dataclass(frozen=True)
class MetadataSummary:
    entity_id: str | None
    sso_url: str | None
    certificates: tuple[str, ...]


def parse_metadata(xml: bytes) -> MetadataSummary:
    """Entity ID, SSO URL and signing certificates of IdP metadata (python3-saml's parser,
    which refuses DTDs and entities). Raises ``ValueError`` when it is not SAML metadata."""
    from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser

    try:
        parsed: dict[str, Any] = OneLogin_Saml2_IdPMetadataParser.parse(xml)
    except Exception as exc:
        raise ValueError(f"not valid SAML metadata ({type(exc).__name__})") from exc
    idp: dict[str, Any] = parsed.get("idp", {})
    certs: list[str] = []
    if idp.get("x509cert"):
        certs.append(idp["x509cert"])
    certs.extend(idp.get("x509certMulti", {}).get("signing", []))
    if not idp.get("entityId"):
        raise ValueError("not valid SAML metadata (no IdP entity descriptor)")
    return MetadataSummary(
        entity_id=idp.get("entityId"),
        sso_url=idp.get("singleSignOnService", {}).get("url"),
        certificates=tuple(dict.fromkeys(certs)),
    )

"""IdP signing certificates: PEM normalisation and the once-per-process expiry warning."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from transom.connector import Connector

log = logging.getLogger("transom.saml")
_warned_expired: set[tuple[str, str]] = set()


@functools.lru_cache(maxsize=256)
def _not_valid_after(certificate: str) -> datetime | None:
    try:
        return x509.load_pem_x509_certificate(certificate.encode("ascii")).not_valid_after_utc
    except Exception:
        return None


def warn_expired_certificates(connector: Connector, certificates: Sequence[str]) -> None:
    """An expired IdP certificate still verifies (the key is pinned, not the validity): say
    so loudly, once per process, so the operator rolls it over (docs/saml.md)."""
    now = datetime.now(UTC)
    for certificate in certificates:
        expires = _not_valid_after(certificate)
        if expires is None or expires > now:
            continue
        key = (connector.id, certificate[-80:])
        if key not in _warned_expired:
            _warned_expired.add(key)
            log.warning("connector=%s: an IdP signing certificate expired on %s; add the IdP's new "
                        "certificate (idp_certificates or metadata)", connector.id, expires.date().isoformat())


@functools.lru_cache(maxsize=256)
def format_cert(certificate: str) -> str:
    """PEM normalisation is textwrap-heavy (~0.5 ms); certificates rarely change."""
    formatted: str = OneLogin_Saml2_Utils.format_cert(certificate)
    return formatted

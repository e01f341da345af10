"""The token endpoint's checks, shared by every fake IdP (``transom.testing.oidc`` and the
demo's development IdP): client authentication (RFC 6749 §2.3.1) and PKCE S256 (RFC 7636)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

_PKCE_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


class TokenError(Exception):
    """An RFC 6749 §5.2 error answer of the token endpoint."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str


def client_credentials(authorization: str | None, form: Mapping[str, str]) -> ClientCredentials:
    """client_secret_basic (form-urlencoded id and secret, RFC 6749 §2.3.1) or
    client_secret_post; never both."""
    if authorization and authorization.lower().startswith("basic "):
        if "client_secret" in form:
            raise TokenError("invalid_request", "use one client authentication method")
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise TokenError("invalid_client", "malformed Basic credentials", status=401) from None
        raw_id, sep, raw_secret = decoded.partition(":")
        if not sep:
            raise TokenError("invalid_client", "malformed Basic credentials", status=401)
        return ClientCredentials(unquote_plus(raw_id), unquote_plus(raw_secret))
    return ClientCredentials(form.get("client_id", ""), form.get("client_secret", ""))


def secret_matches(expected: str, given: str) -> bool:
    """Constant-time comparison of client secrets."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def pkce_matches(verifier: str, challenge: str) -> bool:
    """The S256 transform of a well-formed ``code_verifier`` equals the challenge."""
    if not _PKCE_VERIFIER.match(verifier):
        return False
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return hmac.compare_digest(computed, challenge)

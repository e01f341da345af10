"""Helpers shared by the OIDC modules: refusal wording, printable claim values, base64url."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from transom.errors import LoginRefused

#: the longest ``kid`` accepted, in a token header or a JWKS
KID_MAX = 256
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def refused(message: str, hint: str, reason: str) -> LoginRefused:
    return LoginRefused(message, hint=hint, reason=reason)


TOKEN_REFUSED = "the sign-in token from your identity provider was not accepted"


def token_refused(hint: str, reason: str) -> LoginRefused:
    """The user sees one generic sentence; the administrator gets the precise hint, and
    ``reason`` names the rule that refused (docs/security.md, "Login refusals")."""
    return LoginRefused(TOKEN_REFUSED, hint=hint, reason=reason)


class UnknownSigningKey(LoginRefused):
    """The token names a key the JWKS does not publish (even after a refetch): the caller may
    look the JWKS URL up again (discovery) before giving up."""


def b64url_decode(segment: str) -> bytes:
    if not _B64URL.match(segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def printable(value: Any, limit: int = 120) -> str:
    """A claim value fit for a hint: short and without control characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = "".join(ch for ch in text if ch.isprintable())
    return text if len(text) <= limit else text[:limit] + "..."


def cache_ttl(cache_control: str, *, default: float, low: float, high: float) -> float:
    """How long to keep an IdP document: its ``Cache-Control: max-age``, else ``default``,
    clamped to ``[low, high]`` (shared by the JWKS and discovery caches)."""
    match = re.search(r"max-age\s*=\s*(\d+)", cache_control)
    ttl = float(match.group(1)) if match else default
    return min(max(ttl, low), high)

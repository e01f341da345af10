"""The authorization request: PKCE (RFC 7636 S256) and the authorization URL."""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import urlencode

from transom.connector import OidcProvider
from transom.oidc.common import b64url_encode


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(ASCII(verifier)))."""
    return b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest())


def new_pkce_verifier() -> str:
    # 64 random bytes -> 86 characters, inside RFC 7636's 43..128
    return secrets.token_urlsafe(64)


def authorization_url(
    provider: OidcProvider, *, redirect_uri: str, state: str, nonce: str, code_verifier: str
) -> str:
    params = {
        **dict(provider.extra_authorize_params),
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(provider.scopes),
        "state": state,
        "nonce": nonce,
        "code_challenge": pkce_challenge(code_verifier),
        "code_challenge_method": "S256",
    }
    separator = "&" if "?" in provider.authorization_endpoint else "?"
    return f"{provider.authorization_endpoint}{separator}{urlencode(params)}"

"""The token endpoint call: authorization code + PKCE verifier for tokens, size-capped,
errors mapped to hints."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from transom.connector import OidcProvider
from transom.errors import LoginRefused, UpstreamError
from transom.oidc.common import printable

#: cap on a token endpoint answer
MAX_TOKEN_RESPONSE_BYTES = 256 * 1024


@dataclass(frozen=True)
class TokenResponse:
    id_token: str
    access_token: str | None


def exchange_code(
    http: httpx.Client, provider: OidcProvider, *, code: str, code_verifier: str, redirect_uri: str
) -> TokenResponse:
    """Authorization code + PKCE verifier for tokens at the token endpoint."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
        "client_id": provider.client_id,
    }
    headers = {"Accept": "application/json"}
    if provider.client_secret is not None:
        if provider.token_endpoint_auth_method == "client_secret_basic":
            # RFC 6749 §2.3.1: both parts form-urlencoded before base64
            pair = f"{quote(provider.client_id, safe='')}:{quote(provider.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        else:
            form["client_secret"] = provider.client_secret
    try:
        with http.stream("POST", provider.token_endpoint, data=form, headers=headers,
                         follow_redirects=False) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > MAX_TOKEN_RESPONSE_BYTES:
                    raise UpstreamError("the identity provider's token response is too large")
            status = response.status_code
    except httpx.HTTPError as exc:
        raise UpstreamError(
            "the identity provider could not be reached to finish the sign-in; try again",
            hint=f"calling the token endpoint {provider.token_endpoint} failed ({type(exc).__name__})",
        ) from None
    try:
        document = json.loads(bytes(body))
    except (ValueError, RecursionError):
        document = None
    if status != 200:
        _raise_token_error(provider, status, document)
    if not isinstance(document, dict):
        raise UpstreamError(
            "the identity provider answered the sign-in with something unexpected",
            hint=f"the token endpoint {provider.token_endpoint} did not return a JSON object",
        )
    id_token = document.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise LoginRefused(
            "the identity provider did not return an id_token",
            hint="the token response has no id_token: request the 'openid' scope and enable the "
            "authorization code grant for this application", reason="oidc.no_id_token",
        )
    access_token = document.get("access_token")
    return TokenResponse(id_token=id_token, access_token=access_token if isinstance(access_token, str) else None)


def _raise_token_error(provider: OidcProvider, status: int, document: Any) -> None:
    error = document.get("error") if isinstance(document, dict) else None
    description = document.get("error_description") if isinstance(document, dict) else None
    detail = f"{printable(error, 60)}" + (f": {printable(description, 200)}" if description else "")
    if error == "invalid_client" or status == 401:
        raise UpstreamError(
            "this sign-in method is not set up correctly",
            hint=f"the token endpoint rejected the client credentials ({detail or status}); check the "
            "connector's client_id and client_secret (and that the secret has not expired)",
        )
    if error in ("invalid_grant", "invalid_request"):
        raise LoginRefused(
            "the sign-in could not be completed; start it again",
            hint=f"the token endpoint refused the authorization code ({detail}); codes are single use and "
            "short-lived, and the redirect URI must be registered exactly as "
            "{base_url}/api/accounts/idp-callback", reason="oidc.code_refused",
        )
    raise UpstreamError(
        "the identity provider could not finish the sign-in; try again",
        hint=f"the token endpoint {provider.token_endpoint} answered HTTP {status} {detail}".rstrip(),
    )

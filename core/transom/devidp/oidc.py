"""OIDC side of the development IdP: the authorization request, the code exchange (with PKCE
S256 and client authentication) and the signed id_token, laid out like an Okta custom
authorization server (``{issuer}/v1/authorize``, ``/v1/token``, ``/v1/keys``)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from transom.devidp.idp import ID_TOKEN_TTL_SECONDS, DevIdp, IssuedCode, OidcClient, OidcFlavor, PendingOidc
from transom.devidp.people import DEMO_PEOPLE, DemoPerson, as_entra_person
from transom.testing.jwt import signed_token
from transom.testing.oauth import ClientCredentials, TokenError, client_credentials, pkce_matches, secret_matches

_MAX_PARAM_CHARS = 2000


class AuthorizeError(Exception):
    """A bad authorization request. ``redirectable`` is False when client_id or redirect_uri
    cannot be trusted, so the error is shown here instead of sent back (RFC 6749 §4.1.2.1)."""

    def __init__(self, error: str, description: str, *, redirectable: bool) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.redirectable = redirectable


def endpoints(idp: DevIdp, flavor: OidcFlavor) -> dict[str, str]:
    """Okta custom authorization server: ``{issuer}/v1/...``. Entra:
    ``{authority}/{tid}/oauth2/v2.0/...`` and ``{authority}/{tid}/discovery/v2.0/keys``."""
    if flavor == "entra":
        tenant_base = f"{idp.entra_authority}/{idp.entra_tenant_id}"
        return {
            "authorization_endpoint": f"{tenant_base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{tenant_base}/oauth2/v2.0/token",
            "jwks_uri": f"{tenant_base}/discovery/v2.0/keys",
        }
    return {
        "authorization_endpoint": f"{idp.issuer}/v1/authorize",
        "token_endpoint": f"{idp.issuer}/v1/token",
        "jwks_uri": f"{idp.issuer}/v1/keys",
    }


def discovery_document(idp: DevIdp, flavor: OidcFlavor = "okta") -> dict[str, Any]:
    return {
        "issuer": idp.issuer_for(flavor),
        **endpoints(idp, flavor),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["pairwise" if flavor == "entra" else "public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "groups"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "iss", "sub", "aud", "iat", "exp", "auth_time", "nonce", "email", "email_verified",
            "name", "given_name", "family_name", "preferred_username", "zoneinfo", "groups",
            "space_name", "space_role", "timezone", "tid", "oid", "ver",
        ],
    }


def jwks(idp: DevIdp) -> dict[str, Any]:
    return {"keys": [idp.key.public_jwk()]}


def parse_authorize_request(
    idp: DevIdp, params: Mapping[str, str], *, flavor: OidcFlavor = "okta"
) -> PendingOidc:
    """Validate an authorization request; client and redirect URI first, because until they
    are known good an error must not be sent anywhere."""
    if any(len(v) > _MAX_PARAM_CHARS for v in params.values()):
        raise AuthorizeError("invalid_request", "a parameter is too long", redirectable=False)
    client = idp.oidc_clients.get(params.get("client_id", ""))
    if client is None or client.flavor != flavor:
        raise AuthorizeError("unauthorized_client", "unknown client_id", redirectable=False)
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uris:
        raise AuthorizeError(
            "invalid_request", f"redirect_uri is not registered for client {client.client_id}",
            redirectable=False,
        )
    if params.get("response_type") != "code":
        raise AuthorizeError("unsupported_response_type", "only response_type=code", redirectable=True)
    scopes = params.get("scope", "").split()
    if "openid" not in scopes:
        raise AuthorizeError("invalid_scope", "the openid scope is required", redirectable=True)
    challenge = params.get("code_challenge", "")
    if params.get("code_challenge_method") != "S256" or not re.fullmatch(r"[A-Za-z0-9\-_]{43}", challenge):
        raise AuthorizeError(
            "invalid_request", "PKCE with code_challenge_method=S256 is required", redirectable=True
        )
    response_mode = params.get("response_mode", "query")
    if response_mode not in ("query", "form_post"):
        raise AuthorizeError("invalid_request", "response_mode must be query or form_post", redirectable=True)
    return PendingOidc(
        client=client,
        redirect_uri=redirect_uri,
        state=params.get("state"),
        nonce=params.get("nonce"),
        code_challenge=challenge,
        scope=" ".join(scopes),
        response_mode=response_mode,
        people=(
            tuple(as_entra_person(p, email_domain=idp.entra_email_domain) for p in DEMO_PEOPLE)
            if flavor == "entra" else DEMO_PEOPLE
        ),
    )


def id_token_claims(idp: DevIdp, pending: PendingOidc, person: DemoPerson) -> dict[str, object]:
    """What the real IdP puts in an id_token, plus the custom claims the product reads
    (space_name, space_role, timezone). Times are set when the token is signed.

    Okta (custom authorization server, profile + email + a groups claim): ``sub`` is the
    user id. Entra (v2): ``tid`` + ``oid`` name the user, ``sub`` is pairwise per app,
    ``preferred_username`` is the UPN, ``groups`` holds object-id GUIDs."""
    flavor = pending.client.flavor
    claims: dict[str, object] = {
        "iss": idp.issuer_for(flavor),
        "aud": pending.client.client_id,
        "email": person.email,
        "name": person.display_name,
        "given_name": person.given_name,
        "family_name": person.family_name,
        "preferred_username": person.email,
        "groups": list(person.groups),
        "space_name": person.space_name,
        "space_role": person.space_role,
        "timezone": person.timezone,
    }
    if flavor == "entra":
        pairwise = hashlib.sha256(f"{person.subject}:{pending.client.client_id}".encode()).digest()
        claims.update({
            "ver": "2.0",
            "tid": idp.entra_tenant_id,
            "oid": person.subject,
            "sub": base64.urlsafe_b64encode(pairwise).rstrip(b"=").decode("ascii"),
        })
    else:
        claims.update({"sub": person.subject, "email_verified": True, "zoneinfo": person.timezone})
    if pending.nonce is not None:
        claims["nonce"] = pending.nonce
    return claims


def issue_code(idp: DevIdp, pending: PendingOidc, person: DemoPerson) -> str:
    return idp.codes.put(
        IssuedCode(
            client_id=pending.client.client_id,
            redirect_uri=pending.redirect_uri,
            code_challenge=pending.code_challenge,
            claims=id_token_claims(idp, pending, person),
            scope=pending.scope,
        )
    )


def _authenticate(idp: DevIdp, creds: ClientCredentials) -> OidcClient:
    client = idp.oidc_clients.get(creds.client_id)
    expected = client.client_secret if client else secrets.token_urlsafe(32)
    ok = secret_matches(expected, creds.client_secret)
    if client is None or not ok:
        raise TokenError("invalid_client", "client authentication failed", status=401)
    return client


def exchange_code(
    idp: DevIdp, *, authorization: str | None, form: Mapping[str, str], flavor: OidcFlavor = "okta"
) -> dict[str, Any]:
    """The token endpoint: authenticate the client, then spend the code exactly once."""
    client = _authenticate(idp, client_credentials(authorization, form))
    if client.flavor != flavor:
        raise TokenError("invalid_client", "this client is not registered at this endpoint", status=401)
    if form.get("grant_type") != "authorization_code":
        raise TokenError("unsupported_grant_type", "only authorization_code")
    issued = idp.codes.take(form.get("code", ""))
    invalid = TokenError("invalid_grant", "the code is unknown, expired, used or not for this request")
    if issued is None or issued.client_id != client.client_id:
        raise invalid
    if form.get("redirect_uri") != issued.redirect_uri:
        raise invalid
    if not pkce_matches(form.get("code_verifier", ""), issued.code_challenge):
        raise TokenError("invalid_grant", "PKCE verification failed")
    now = int(time.time())
    claims = {**issued.claims, "iat": now, "auth_time": now, "exp": now + ID_TOKEN_TTL_SECONDS}
    id_token = signed_token(claims, idp.key)
    return {
        "token_type": "Bearer",
        "expires_in": ID_TOKEN_TTL_SECONDS,
        # opaque: nothing in the demo calls an API with it
        "access_token": secrets.token_urlsafe(32),
        "scope": issued.scope,
        "id_token": id_token,
    }

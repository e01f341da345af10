"""What every protocol's verify step returns: :class:`VerifiedLogin`, the one shape a login
has between the protocol checks and :func:`transom.login.complete_login`.

The last step of a verify is :func:`map_claims`: the connector's plugin maps the verified
payload (OIDC claims or SAML NameID/attributes) to :class:`~transom.connector.Claims`, and
the host adds the provisioning attributes. For SAML it runs before the single-use marks
(replay cache, request id) are even checked, so a plugin's refusal (transient NameID,
foreign tenant, no subject) writes nothing; an OIDC callback has checked its login state
before the code exchange, so a refusal there spends the state (transom.singleuse).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from transom.attributes import with_provisioning_values
from transom.connector import Claims, Connector
from transom.errors import ConnectorError, LoginRefused
from transom.runtime import Runtime
from transom.singleuse import SingleUse

Protocol = Literal["oidc", "saml"]


@dataclass(frozen=True)
class ProtocolFacts:
    """Protocol-level facts of a verified login, for the audit trail, the trace and later
    single logout. Never logged as a whole: ``subject`` and ``session_index`` identify a
    person's session."""

    protocol: Protocol
    #: the token's ``iss`` / the assertion's Issuer
    issuer: str | None
    #: the id_token's ``sub`` / the NameID, as the IdP sent it (the plugin may key on another value)
    subject: str | None
    #: SAML: the AuthnStatement's SessionIndex
    session_index: str | None = None
    #: SAML: the NameID Format
    name_id_format: str | None = None
    #: SAML: the assertion ID entered in the replay cache
    assertion_id: str | None = None
    #: OIDC: the ``kid`` of the key that verified the id_token
    key_id: str | None = None


@dataclass(frozen=True)
class VerifiedLogin:
    """A login whose protocol checks all passed (OIDC: state and browser binding, ``iss``,
    code exchange, id_token; SAML: signature, conditions, InResponseTo signed and agreeing).
    The single-use marks are not spent: :func:`transom.login.complete_login` spends
    ``single_use``; OIDC's were checked already, SAML's (replay cache, the login state named
    by InResponseTo) are checked by the transaction that spends them."""

    connector: Connector
    #: the verified payload the plugin saw: id_token claims, or the SAML payload mapping
    payload: Mapping[str, Any]
    #: the plugin's mapping of ``payload``, provisioning attributes added by the host
    claims: Claims
    #: where to send the browser afterwards (already checked to be a local path); SAML:
    #: ``None``, the check its marks make when spent finds it (``single_use.next_path``)
    next_path: str | None
    facts: ProtocolFacts
    #: the callback's single-use marks (login state, SAML replay row), not yet spent:
    #: complete_login spends them first in its transaction (transom.singleuse);
    #: ``None`` for a payload that came through no callback (``transom explain``, tests)
    single_use: SingleUse | None = None


def standard_oidc_claims(payload: Mapping[str, Any]) -> Claims:
    """The core fallback when no plugin maps the payload: standard OIDC claims."""
    sub = payload.get("sub")
    if not isinstance(sub, str) or not sub:
        raise LoginRefused("the IdP sent no subject", hint="the id_token must carry a 'sub' claim",
                           reason="login.no_subject")
    email = payload.get("email") if isinstance(payload.get("email"), str) else None
    return Claims(
        subject=sub,
        email=email,
        email_verified=payload.get("email_verified") is True,
        # an unverified email is no user name: user names link accounts (nOAuth)
        user_name=payload.get("preferred_username") or (email if payload.get("email_verified") is True else None),
        display_name=payload.get("name"),
        given_name=payload.get("given_name"),
        family_name=payload.get("family_name"),
    )


def map_claims(runtime: Runtime, connector: Connector, payload: Mapping[str, Any]) -> Claims:
    """The plugin's ``Claims`` for a payload, with the host-owned provisioning values."""
    claims = runtime.plugins.extract_claims(connector, payload)
    if claims is None:
        if connector.protocol != "oidc":
            raise ConnectorError(f"connector '{connector.id}' extracted no claims from the SAML response")
        claims = standard_oidc_claims(payload)
    if not claims.subject:
        raise LoginRefused("the IdP sent no stable user identifier",
                           hint=f"check the subject/NameID settings of connector '{connector.id}'",
                           reason="login.no_subject")
    return with_provisioning_values(connector, payload, claims)


def verified_login(
    runtime: Runtime, connector: Connector, payload: Mapping[str, Any], *, facts: ProtocolFacts,
    next_path: str | None = None, single_use: SingleUse | None = None,
) -> VerifiedLogin:
    """Build the value a verify step returns, mapping the claims once."""
    return VerifiedLogin(connector=connector, payload=payload, claims=map_claims(runtime, connector, payload),
                         next_path=next_path, facts=facts, single_use=single_use)

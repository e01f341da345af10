"""Okta over SAML 2.0: the IdP settings and how a verified assertion becomes
:class:`~transom.connector.Claims`. No I/O, no crypto: the host verifies the response.

Okta sends no attributes unless the admin adds attribute statements, so every name is a
setting. The subject is the NameID (Okta's "Application username"); Okta matches user names
case-insensitively, so unspecified/e-mail NameIDs are compared in lower case.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from transom.connector import (
    Claims,
    Connector,
    GroupsClaim,
    SamlIdp,
    saml_attribute_values,
    saml_first_value,
    saml_has_attribute,
)
from transom.errors import LoginRefused

if TYPE_CHECKING:
    from transom_okta import OktaSettings

TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


def saml_idp(settings: OktaSettings) -> SamlIdp:
    # No NameIDPolicy format: the Okta app's own "Name ID format" setting decides.
    return settings.saml_idp(name_id_format=None)


def subject(connector: Connector, payload: Mapping[str, Any]) -> str:
    name_id = payload.get("name_id")
    name_id_format = payload.get("name_id_format")
    if not isinstance(name_id, str) or not name_id.strip():
        raise LoginRefused("your identity provider did not say who you are",
                           hint=f"connector '{connector.id}': the Okta assertion carries no NameID",
                           reason="saml.name_id_missing")
    if name_id_format == TRANSIENT:
        raise LoginRefused(
            "your identity provider sent a one-time identifier",
            hint="set the Okta app's Name ID format to Persistent, Unspecified or EmailAddress "
            "(a transient NameID changes on every login)",
            reason="saml.name_id_transient",
        )
    value = name_id.strip()
    return value if name_id_format == PERSISTENT else value.lower()


def claims(connector: Connector, settings: OktaSettings, payload: Mapping[str, Any]) -> Claims:
    user_key = subject(connector, payload)
    name_id = str(payload.get("name_id", "")).strip()
    email = saml_first_value(payload, settings.email_attribute)
    if email is None and payload.get("name_id_format") == "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress":
        email = name_id
    groups = (
        GroupsClaim.present(saml_attribute_values(payload, settings.groups_attribute))
        if saml_has_attribute(payload, settings.groups_attribute) else GroupsClaim.absent()
    )
    return Claims(
        subject=user_key,
        email=email,
        email_verified=False,
        user_name=saml_first_value(payload, settings.user_name_attribute) or name_id,
        display_name=saml_first_value(payload, settings.display_name_attribute),
        given_name=saml_first_value(payload, settings.given_name_attribute),
        family_name=saml_first_value(payload, settings.family_name_attribute),
        groups=groups,
    )

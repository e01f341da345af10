"""How a verified assertion from any SAML 2.0 IdP becomes :class:`~transom.connector.Claims`:
attribute names come from the connector's ``attributes`` map; every value of a multi-valued
attribute is kept. No I/O, no crypto: the host verifies the response."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from transom.connector import (
    Claims,
    Connector,
    GroupsClaim,
    saml_attribute_values,
    saml_first_value,
    saml_has_attribute,
)
from transom.errors import LoginRefused

if TYPE_CHECKING:
    from transom_generic_saml import GenericSamlSettings

TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def subject(connector: Connector, settings: GenericSamlSettings, payload: Mapping[str, Any]) -> str:
    """The configured subject attribute, else the NameID (never a transient one)."""
    if settings.attributes.subject:
        value = saml_first_value(payload, settings.attributes.subject)
        if value is None:
            raise LoginRefused(
                "your identity provider did not say who you are",
                hint=f"connector '{connector.id}': the assertion has no '{settings.attributes.subject}' "
                "attribute (attributes.subject)",
                reason="saml.subject_attribute_missing",
            )
        return value
    name_id = payload.get("name_id")
    if not isinstance(name_id, str) or not name_id.strip():
        raise LoginRefused("your identity provider did not say who you are",
                           hint=f"connector '{connector.id}': the assertion carries no NameID",
                           reason="saml.name_id_missing")
    if payload.get("name_id_format") == TRANSIENT:
        raise LoginRefused(
            "your identity provider sent a one-time identifier",
            hint=f"connector '{connector.id}': configure a persistent NameID in the IdP, or name a "
            "stable attribute in attributes.subject (a transient NameID changes on every login)",
            reason="saml.name_id_transient",
        )
    return name_id.strip()


def claims(connector: Connector, settings: GenericSamlSettings, payload: Mapping[str, Any]) -> Claims:
    names = settings.attributes
    name_id = payload.get("name_id") if isinstance(payload.get("name_id"), str) else None
    email = saml_first_value(payload, names.email)
    if email is None and name_id and payload.get("name_id_format") == EMAIL_FORMAT:
        email = name_id.strip()
    groups = GroupsClaim.absent()
    if settings.groups_attribute and saml_has_attribute(payload, settings.groups_attribute):
        groups = GroupsClaim.present(saml_attribute_values(payload, settings.groups_attribute))
    return Claims(
        subject=subject(connector, settings, payload),
        email=email,
        email_verified=False,
        user_name=saml_first_value(payload, names.user_name) or email,
        display_name=saml_first_value(payload, names.display_name),
        given_name=saml_first_value(payload, names.given_name),
        family_name=saml_first_value(payload, names.family_name),
        groups=groups,
    )

"""How a verified assertion from any SAML 2.0 IdP becomes :class:`~transom.connector.Claims`:
attribute names come from the connector's ``attributes`` map; every value of a multi-valued
attribute is kept. No I/O, no crypto: the host verifies the response."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from transom.connector import Claims, Connector, GroupsClaim, saml_attribute_values
from transom.errors import LoginRefused

if TYPE_CHECKING:
    from transom_generic_saml import GenericSamlSettings

TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def _first(payload: Mapping[str, Any], name: str | None) -> str | None:
    if not name:
        return None
    values = [v for v in saml_attribute_values(payload, name) if v.strip()]
    return values[0].strip() if values else None


def _has(payload: Mapping[str, Any], name: str) -> bool:
    attributes: Mapping[str, Any] = payload.get("attributes", {})
    wanted = name.strip().lower()
    return any(key.strip().lower() == wanted for key in attributes)


def subject(connector: Connector, settings: GenericSamlSettings, payload: Mapping[str, Any]) -> str:
    """The configured subject attribute, else the NameID (never a transient one)."""
    if settings.attributes.subject:
        value = _first(payload, settings.attributes.subject)
        if value is None:
            raise LoginRefused(
                "your identity provider did not say who you are",
                hint=f"connector '{connector.id}': the assertion has no '{settings.attributes.subject}' "
                "attribute (attributes.subject)",
            )
        return value
    name_id = payload.get("name_id")
    if not isinstance(name_id, str) or not name_id.strip():
        raise LoginRefused("your identity provider did not say who you are",
                           hint=f"connector '{connector.id}': the assertion carries no NameID")
    if payload.get("name_id_format") == TRANSIENT:
        raise LoginRefused(
            "your identity provider sent a one-time identifier",
            hint=f"connector '{connector.id}': configure a persistent NameID in the IdP, or name a "
            "stable attribute in attributes.subject (a transient NameID changes on every login)",
        )
    return name_id.strip()


def claims(connector: Connector, settings: GenericSamlSettings, payload: Mapping[str, Any]) -> Claims:
    names = settings.attributes
    provisioning = connector.provisioning
    name_id = payload.get("name_id") if isinstance(payload.get("name_id"), str) else None
    email = _first(payload, names.email)
    if email is None and name_id and payload.get("name_id_format") == EMAIL_FORMAT:
        email = name_id.strip()
    groups = GroupsClaim.absent()
    if settings.groups_attribute and _has(payload, settings.groups_attribute):
        groups = GroupsClaim.present(saml_attribute_values(payload, settings.groups_attribute))
    return Claims(
        subject=subject(connector, settings, payload),
        email=email,
        email_verified=False,
        user_name=_first(payload, names.user_name) or email,
        display_name=_first(payload, names.display_name),
        given_name=_first(payload, names.given_name),
        family_name=_first(payload, names.family_name),
        timezone=_first(payload, provisioning.timezone_attribute),
        space_names=tuple(saml_attribute_values(payload, provisioning.space_attribute)),
        space_roles=tuple(saml_attribute_values(payload, provisioning.role_attribute)),
        account_roles=tuple(saml_attribute_values(payload, provisioning.account_role_attribute))
        if provisioning.account_role_attribute else (),
        groups=groups,
    )

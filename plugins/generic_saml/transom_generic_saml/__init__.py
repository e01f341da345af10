"""Any SAML 2.0 IdP: attribute-name mapping only. No group sync (groups, if configured, are
informational), per the product rules for IdPs other than Okta and Entra."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from transom.connector import Claims, Connector, ConnectorType, SamlIdp, SamlSettings
from transom.hookspecs import hookimpl

TYPE = "generic_saml"


class AttributeMap(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: None: the subject is the NameID (use a persistent NameID)
    subject: str | None = None
    email: str = "email"
    user_name: str | None = None
    display_name: str = "displayName"
    given_name: str = "givenName"
    family_name: str = "sn"


class GenericSamlSettings(SamlSettings):
    attributes: AttributeMap = AttributeMap()
    groups_attribute: str | None = None
    name_id_format: str | None = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"

    @model_validator(mode="after")
    def _sources(self) -> GenericSamlSettings:
        self.check_saml_sources()
        return self


@hookimpl
def transom_connector_type() -> ConnectorType:
    return ConnectorType(
        name=TYPE,
        protocols=("saml",),
        settings_model=GenericSamlSettings,
        capabilities=frozenset(),
        default_button_label="Sign in with SAML",
        version="0.1.0",
    )


@hookimpl
def transom_saml_idp(connector: Connector[GenericSamlSettings]) -> SamlIdp:
    return connector.settings.saml_idp(name_id_format=connector.settings.name_id_format)


@hookimpl
def transom_extract_claims(connector: Connector[GenericSamlSettings], payload: Mapping[str, Any]) -> Claims:
    from transom_generic_saml import claims

    return claims.claims(connector, connector.settings, payload)

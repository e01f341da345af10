"""Okta connector: OIDC (org or custom authorization server) or SAML; users keyed on ``sub``
(OIDC) or the NameID (SAML); group sync from the groups claim/attribute."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, model_validator

from transom.connector import GROUP_SYNC, ConnectorType, SamlSettings
from transom.hookspecs import hookimpl

TYPE = "okta"


class OktaSettings(SamlSettings):
    protocol: Literal["oidc", "saml"] = "oidc"
    #: org domain, e.g. "acme.okta.com" or "https://acme.okta.com" (org authorization server)
    domain: str | None = None
    #: full issuer of a custom authorization server, e.g. "https://acme.okta.com/oauth2/default"
    issuer: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    groups_claim: str = "groups"
    groups_attribute: str = "groups"
    #: SAML attribute names (Okta sends none unless the admin adds attribute statements)
    email_attribute: str = "email"
    given_name_attribute: str = "firstName"
    family_name_attribute: str = "lastName"
    display_name_attribute: str = "displayName"
    user_name_attribute: str = "login"

    @model_validator(mode="after")
    def _protocol_keys(self) -> OktaSettings:
        if self.protocol == "oidc":
            if not (self.domain or self.issuer):
                raise ValueError("domain or issuer is required with protocol = \"oidc\"")
            if not self.client_id:
                raise ValueError("client_id is required with protocol = \"oidc\"")
        else:
            self.check_saml_sources()
        return self


@hookimpl
def transom_connector_type() -> ConnectorType:
    return ConnectorType(
        name=TYPE,
        protocols=("oidc", "saml"),
        settings_model=OktaSettings,
        capabilities=frozenset({GROUP_SYNC}),
        default_button_label="Sign in with Okta",
        version="0.1.0",
    )

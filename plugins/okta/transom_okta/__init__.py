"""Okta connector: OIDC (org or custom authorization server) or SAML; users keyed on ``sub``
(OIDC) or the NameID (SAML); group sync from the groups claim/attribute."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import SecretStr, model_validator

from transom.connector import (
    GROUP_SYNC,
    Claims,
    Connector,
    ConnectorType,
    OidcProvider,
    SamlIdp,
    SamlSettings,
)
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
    # -- OIDC overrides (docs/idp-okta.md); endpoints derive from domain / issuer unless set
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    jwks_uri: str | None = None
    #: default: openid profile email (+ groups when group sync is on)
    scopes: list[str] = []
    #: Okta web apps default to client_secret_basic
    token_endpoint_auth_method: Literal["client_secret_post", "client_secret_basic"] = "client_secret_basic"

    @model_validator(mode="after")
    def _protocol_keys(self) -> OktaSettings:
        if self.protocol == "oidc":
            if not (self.domain or self.issuer):
                raise ValueError("domain or issuer is required with protocol = \"oidc\"")
            if not self.client_id:
                raise ValueError("client_id is required with protocol = \"oidc\"")
            for name in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
                value = getattr(self, name)
                if value is not None and not re.match(r"^https?://[^/\s]+", value):
                    raise ValueError(f"{name} must be an http(s) URL")
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


@hookimpl
def transom_oidc_provider(connector: Connector[OktaSettings]) -> OidcProvider | None:
    if connector.protocol != "oidc":
        return None
    from transom_okta import oidc

    return oidc.oidc_provider(connector, connector.settings)


@hookimpl
def transom_extract_claims(connector: Connector[OktaSettings], payload: Mapping[str, Any]) -> Claims:
    if connector.protocol == "oidc":
        from transom_okta import oidc

        return oidc.claims(connector, connector.settings, payload)
    from transom_okta import saml  # SAML attribute mapping (docs/idp-okta.md)

    return saml.claims(connector, connector.settings, payload)


@hookimpl
def transom_saml_idp(connector: Connector[OktaSettings]) -> SamlIdp | None:
    if connector.protocol != "saml":
        return None
    from transom_okta import saml

    return saml.saml_idp(connector.settings)


@hookimpl
def transom_scim_normalize(resource_type: str, operation: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
    """Okta's SCIM dialect -> RFC 7644 (transom_okta.scim)."""
    from transom_okta import scim

    return scim.normalize(resource_type=resource_type, operation=operation, body=body)

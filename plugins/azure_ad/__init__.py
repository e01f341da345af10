"""Microsoft Entra ID (Azure AD) connector: OIDC (v1 and v2 issuers) or SAML; users keyed on
``tid`` + ``oid``; groups overage resolved through Microsoft Graph."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import httpx
from pydantic import SecretStr, model_validator

from transom.connector import GROUP_SYNC, Connector, ConnectorType, SamlSettings
from transom.hookspecs import hookimpl

TYPE = "azure_ad"


class AzureAdSettings(SamlSettings):
    protocol: Literal["oidc", "saml"] = "oidc"
    tenant_id: str
    client_id: str | None = None
    client_secret: SecretStr | None = None
    authority: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com"
    #: multi-tenant apps only: the tenant ids (GUIDs) whose users may sign in
    allowed_tenants: list[str] = []

    @model_validator(mode="after")
    def _protocol_keys(self) -> AzureAdSettings:
        if self.protocol == "oidc" and not self.client_id:
            raise ValueError("client_id is required with protocol = \"oidc\"")
        if self.protocol == "saml":
            self.check_saml_sources()
        if self.tenant_id in ("common", "organizations", "consumers") and not self.allowed_tenants:
            raise ValueError(
                f"tenant_id = \"{self.tenant_id}\" accepts any tenant; list allowed_tenants explicitly"
            )
        self.authority = self.authority.rstrip("/")
        self.graph_url = self.graph_url.rstrip("/")
        return self


@hookimpl
def transom_connector_type() -> ConnectorType:
    return ConnectorType(
        name=TYPE,
        protocols=("oidc", "saml"),
        settings_model=AzureAdSettings,
        capabilities=frozenset({GROUP_SYNC}),
        default_button_label="Sign in with Azure",
        version="0.1.0",
    )


@hookimpl
def transom_lookup_group_ids(
    connector: Connector, payload: Mapping[str, Any], http: httpx.Client
) -> list[str] | None:
    """Groups overage: the complete list from Microsoft Graph (``graph.py``)."""
    if connector.type != TYPE:
        return None
    from transom.errors import UpstreamError
    from transom_azure_ad import graph

    settings = connector.settings
    assert isinstance(settings, AzureAdSettings)
    if not settings.client_id or settings.client_secret is None:
        raise UpstreamError(
            f"connector '{connector.id}' has no client_id/client_secret, which Microsoft Graph "
            "needs to look up the groups of a user in too many groups for the token"
        )
    oid, tenant = graph.user_and_tenant(payload, default_tenant=settings.tenant_id)
    creds = graph.GraphCredentials(
        authority=settings.authority, graph_url=settings.graph_url, tenant=tenant,
        client_id=settings.client_id, client_secret=settings.client_secret.get_secret_value(),
    )
    return graph.transitive_group_ids(creds, object_id=oid, http=http)


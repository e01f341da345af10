"""Microsoft Entra ID (Azure AD) connector: OIDC (v1 and v2 issuers) or SAML; users keyed on
``tid`` + ``oid``; groups overage resolved through Microsoft Graph."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import httpx
from pydantic import SecretStr, model_validator

from transom.connector import (
    GROUP_SYNC,
    Claims,
    Connector,
    ConnectorType,
    OidcProvider,
    ProbeCheck,
    SamlIdp,
    SamlSettings,
)
from transom.hookspecs import hookimpl

TYPE = "azure_ad"
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class AzureAdSettings(SamlSettings):
    protocol: Literal["oidc", "saml"] = "oidc"
    tenant_id: str
    client_id: str | None = None
    client_secret: SecretStr | None = None
    authority: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com"
    #: multi-tenant apps only: the tenant ids (GUIDs) whose users may sign in
    allowed_tenants: list[str] = []
    # -- OIDC overrides (docs/idp-entra.md): every URL derives from ``authority`` unless set.
    #: base of the v1 issuer ``{v1_issuer_base}/{tid}/``; default https://sts.windows.net for
    #: the public cloud only (other authorities: v1 tokens refused unless this is set)
    v1_issuer_base: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    jwks_uri: str | None = None
    scopes: list[str] = []
    token_endpoint_auth_method: Literal["client_secret_post", "client_secret_basic"] = "client_secret_post"

    @model_validator(mode="after")
    def _protocol_keys(self) -> AzureAdSettings:
        if self.protocol == "oidc" and not self.client_id:
            raise ValueError("client_id is required with protocol = \"oidc\"")
        self.tenant_id = self.tenant_id.strip().lower()
        self.allowed_tenants = [t.strip().lower() for t in self.allowed_tenants]
        for tenant in self.allowed_tenants:
            if not _GUID.match(tenant):
                raise ValueError(f"allowed_tenants: '{tenant}' is not a tenant id (GUID)")
        multi = self.tenant_id in ("common", "organizations", "consumers")
        if self.protocol == "oidc" and not multi and not self.allowed_tenants and not _GUID.match(self.tenant_id):
            raise ValueError(
                f"tenant_id '{self.tenant_id}' is not a tenant GUID; id_tokens name the tenant by GUID, "
                "so list it in allowed_tenants"
            )
        for name in ("authority", "graph_url", "v1_issuer_base", "authorization_endpoint", "token_endpoint",
                     "jwks_uri"):
            value = getattr(self, name)
            if value is not None and not re.match(r"^https?://[^/\s]+", value):
                raise ValueError(f"{name} must be an http(s) URL")
        if self.v1_issuer_base:
            self.v1_issuer_base = self.v1_issuer_base.rstrip("/")
        if self.protocol == "saml":
            from transom_azure_ad.saml import fill_saml_defaults

            fill_saml_defaults(self)
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
def transom_oidc_provider(connector: Connector[AzureAdSettings]) -> OidcProvider | None:
    if connector.protocol != "oidc":
        return None
    from transom_azure_ad import oidc

    return oidc.oidc_provider(connector.settings)


@hookimpl
def transom_extract_claims(connector: Connector[AzureAdSettings], payload: Mapping[str, Any]) -> Claims:
    if connector.protocol == "oidc":
        from transom_azure_ad import oidc

        return oidc.claims(connector, payload)
    from transom_azure_ad import saml  # SAML claims mapping (docs/idp-entra.md)

    return saml.claims(connector, connector.settings, payload)


@hookimpl
def transom_saml_idp(connector: Connector[AzureAdSettings]) -> SamlIdp | None:
    if connector.protocol != "saml":
        return None
    from transom_azure_ad import saml

    return saml.saml_idp(connector.settings)


@hookimpl
def transom_lookup_group_ids(
    connector: Connector[AzureAdSettings], payload: Mapping[str, Any], http: httpx.Client
) -> list[str]:
    """Groups overage: the complete list from Microsoft Graph (``graph.py``)."""
    from transom.errors import UpstreamError
    from transom_azure_ad import graph

    settings = connector.settings
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


@hookimpl
def transom_probe(connector: Connector[AzureAdSettings], http: httpx.Client) -> list[ProbeCheck] | None:
    """The groups-overage lookup needs an app-only token for Microsoft Graph: ask for one, as
    the lookup does, and drop it unread (not cached: the probe says what Entra answers now)."""
    from transom.errors import UpstreamError
    from transom_azure_ad import graph

    settings = connector.settings
    if not connector.syncs_groups:
        return None
    if not settings.client_id or settings.client_secret is None:
        return [ProbeCheck("graph", "warn", "no client_id/client_secret: users in too many groups keep their "
                           "memberships unchanged (overage cannot be looked up)")]
    # the home tenant; a multi-tenant app ("organizations") asks in its first allowed tenant
    tenant = settings.allowed_tenants[0] if settings.allowed_tenants else settings.tenant_id
    creds = graph.GraphCredentials(
        authority=settings.authority, graph_url=settings.graph_url, tenant=tenant,
        client_id=settings.client_id, client_secret=settings.client_secret.get_secret_value(),
    )
    try:
        graph.request_app_token(creds, http)
    except UpstreamError as exc:
        return [ProbeCheck("graph", "fail", f"no app token for Graph: {exc.message}", graph.token_url(creds))]
    return [ProbeCheck("graph", "ok", "app token for Microsoft Graph issued", graph.token_url(creds))]



@hookimpl
def transom_scim_normalize(resource_type: str, operation: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
    """Entra ID's SCIM dialect -> RFC 7644 (transom_azure_ad.scim)."""
    from transom_azure_ad import scim

    return scim.normalize(resource_type=resource_type, operation=operation, body=body)

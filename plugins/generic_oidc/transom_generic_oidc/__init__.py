"""Any OpenID Connect provider (Keycloak, Auth0, Google Workspace, Ping, JumpCloud, ...):
the operator names the issuer and the claims; the host does discovery, verification and
UserInfo (docs/idp-generic-oidc.md). Group sync only when ``groups_claim`` is set; otherwise
memberships are managed manually, as for every IdP without group support."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import model_validator

from transom.connector import (
    GROUP_SYNC,
    Claims,
    Connector,
    ConnectorType,
    GroupsClaim,
    OidcProvider,
    OidcSettings,
    as_str_list,
)
from transom.errors import LoginRefused
from transom.hookspecs import hookimpl

TYPE = "generic_oidc"


class GenericOidcSettings(OidcSettings):
    """``issuer``, ``client_id``, ``client_secret``, ``scopes`` (from :class:`OidcSettings`)
    and the claim names this IdP uses."""

    #: the immutable user key; never taken from UserInfo
    subject_claim: str = "sub"
    email_claim: str | None = "email"
    user_name_claim: str | None = "preferred_username"
    display_name_claim: str | None = "name"
    #: set to sync group memberships from this claim (a string or a list of strings)
    groups_claim: str | None = None
    #: a claim that must hold one of ``allowed_tenants`` (Google Workspace: ``hd``, the
    #: user's domain), checked by the host on the verified id_token; None: no such check
    tenant_claim: str | None = None
    allowed_tenants: list[str] = []

    @model_validator(mode="after")
    def _names(self) -> GenericOidcSettings:
        for name in ("subject_claim", "email_claim", "user_name_claim", "display_name_claim", "groups_claim"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise ValueError(f"{name} must not be empty")
        if bool(self.tenant_claim) != bool(self.allowed_tenants):
            raise ValueError("tenant_claim and allowed_tenants go together: set both or neither")
        return self


def _capabilities(settings: GenericOidcSettings) -> frozenset[str]:
    return frozenset({GROUP_SYNC}) if settings.groups_claim else frozenset()


@hookimpl
def transom_connector_type() -> ConnectorType:
    return ConnectorType(
        name=TYPE,
        protocols=("oidc",),
        settings_model=GenericOidcSettings,
        capabilities=frozenset({GROUP_SYNC}),
        default_button_label="Sign in with OpenID Connect",
        version="0.1.0",
        settings_capabilities=_capabilities,
    )


@hookimpl
def transom_oidc_provider(connector: Connector[GenericOidcSettings]) -> OidcProvider:
    settings = connector.settings
    # what the connector maps: when the id_token lacks any of these the host asks UserInfo
    needed = (settings.email_claim, settings.user_name_claim, settings.display_name_claim,
              settings.groups_claim if connector.syncs_groups else None)
    return settings.oidc_provider(profile_claims=tuple(n for n in needed if n), subject_claim=settings.subject_claim,
                                  tenant_claim=settings.tenant_claim, allowed_tenants=tuple(settings.allowed_tenants))


def _text(payload: Mapping[str, Any], name: str | None) -> str | None:
    value = payload.get(name) if name else None
    return (value.strip() or None) if isinstance(value, str) else None


@hookimpl
def transom_extract_claims(connector: Connector[GenericOidcSettings], payload: Mapping[str, Any]) -> Claims:
    settings = connector.settings
    subject = payload.get(settings.subject_claim)
    if isinstance(subject, int) and not isinstance(subject, bool):
        subject = str(subject)  # some IdPs key users on a numeric id
    if not isinstance(subject, str) or not subject:
        raise LoginRefused("your identity provider did not say who you are",
                           hint=f"connector '{connector.id}': the id_token has no '{settings.subject_claim}' claim "
                           "(subject_claim)", reason="oidc.subject_claim_missing")
    groups = GroupsClaim.absent()
    if settings.groups_claim and payload.get(settings.groups_claim) is not None:
        groups = GroupsClaim.present(as_str_list(payload.get(settings.groups_claim)))
    return Claims(
        subject=subject,
        email=_text(payload, settings.email_claim),
        email_verified=payload.get("email_verified") is True,
        user_name=_text(payload, settings.user_name_claim),
        display_name=_text(payload, settings.display_name_claim),
        given_name=_text(payload, "given_name"),
        family_name=_text(payload, "family_name"),
        groups=groups,
    )

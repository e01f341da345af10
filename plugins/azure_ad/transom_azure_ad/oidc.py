"""Entra ID over OpenID Connect: where the endpoints live and how a verified id_token
becomes :class:`~transom.connector.Claims`. No I/O, no crypto: the host verifies tokens.

Issuers (docs/oidc.md, "Entra issuers"): for every allowed tenant GUID ``tid`` the host
accepts the v2 issuer ``{authority}/{tid}/v2.0`` and, when a v1 issuer base is known, the
v1 issuer ``{v1_issuer_base}/{tid}/``. The public cloud's v1 base is
``https://sts.windows.net``; for any other ``authority`` (sovereign clouds, tests) v1 tokens
are accepted only when ``v1_issuer_base`` is set explicitly, because the v1 host of a
sovereign cloud cannot be derived from its login host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from transom.connector import Claims, Connector, GroupsClaim, OidcProvider, as_str_list
from transom.errors import LoginRefused

if TYPE_CHECKING:
    from transom_azure_ad import AzureAdSettings

PUBLIC_AUTHORITY = "https://login.microsoftonline.com"
PUBLIC_V1_ISSUER_BASE = "https://sts.windows.net"
DEFAULT_SCOPES = ("openid", "profile", "email")


def allowed_tenant_ids(settings: AzureAdSettings) -> tuple[str, ...]:
    """The tenant GUIDs whose users may sign in: ``allowed_tenants`` when set (multi-tenant
    apps), else the connector's own ``tenant_id``."""
    if settings.allowed_tenants:
        return tuple(settings.allowed_tenants)
    return (settings.tenant_id,)


def v1_issuer_base(settings: AzureAdSettings) -> str | None:
    if settings.v1_issuer_base:
        return settings.v1_issuer_base
    if settings.authority == PUBLIC_AUTHORITY:
        return PUBLIC_V1_ISSUER_BASE
    return None


def issuers(settings: AzureAdSettings) -> tuple[str, ...]:
    v1_base = v1_issuer_base(settings)
    found: list[str] = []
    for tid in allowed_tenant_ids(settings):
        found.append(f"{settings.authority}/{tid}/v2.0")
        if v1_base:
            found.append(f"{v1_base}/{tid}/")
    return tuple(found)


def oidc_provider(settings: AzureAdSettings) -> OidcProvider:
    tenant_base = f"{settings.authority}/{settings.tenant_id}"
    assert settings.client_id is not None  # the settings validator requires it for OIDC
    return OidcProvider(
        issuers=issuers(settings),
        authorization_endpoint=settings.authorization_endpoint or f"{tenant_base}/oauth2/v2.0/authorize",
        token_endpoint=settings.token_endpoint or f"{tenant_base}/oauth2/v2.0/token",
        jwks_uri=settings.jwks_uri or f"{tenant_base}/discovery/v2.0/keys",
        client_id=settings.client_id,
        client_secret=settings.client_secret.get_secret_value() if settings.client_secret else None,
        scopes=tuple(settings.scopes) if settings.scopes else DEFAULT_SCOPES,
        tenant_claim="tid",
        allowed_tenants=allowed_tenant_ids(settings),
        token_endpoint_auth_method=settings.token_endpoint_auth_method,
    )


def _text(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    return value if isinstance(value, str) and value else None


def groups_claim(payload: Mapping[str, Any]) -> GroupsClaim:
    """``groups`` present (a list, possibly empty), overage (``_claim_names.groups`` with its
    ``_claim_sources`` entry, or the implicit flow's ``hasgroups``), or absent."""
    groups = payload.get("groups")
    if groups is not None:
        return GroupsClaim.present(as_str_list(groups))
    claim_names = payload.get("_claim_names")
    if isinstance(claim_names, Mapping) and "groups" in claim_names:
        source_name = claim_names.get("groups")
        sources = payload.get("_claim_sources")
        endpoint = None
        if isinstance(sources, Mapping) and isinstance(source_name, str):
            source = sources.get(source_name)
            if isinstance(source, Mapping) and isinstance(source.get("endpoint"), str):
                endpoint = source["endpoint"]
        return GroupsClaim.overage(endpoint)
    if payload.get("hasgroups") is True or payload.get("hasgroups") == "true":
        return GroupsClaim.overage(None)
    return GroupsClaim.absent()


def claims(connector: Connector, payload: Mapping[str, Any]) -> Claims:
    tid, oid = _text(payload, "tid"), _text(payload, "oid")
    if tid is None or oid is None:
        missing = " and ".join(n for n, v in (("tid", tid), ("oid", oid)) if v is None)
        raise LoginRefused(
            "your identity provider did not say who you are",
            hint=f"the Entra id_token has no {missing} claim; request the 'profile' scope (Transom keys "
            "users on tid + oid, never on e-mail or UPN)",
            reason="oidc.entra_ids_missing",
        )
    return Claims(
        subject=f"{tid}:{oid}",
        email=_text(payload, "email"),
        # Entra does not verify the e-mail claim (nOAuth): never let it link accounts.
        email_verified=False,
        user_name=_text(payload, "preferred_username") or _text(payload, "upn"),
        display_name=_text(payload, "name"),
        given_name=_text(payload, "given_name"),
        family_name=_text(payload, "family_name"),
        groups=groups_claim(payload),
    )

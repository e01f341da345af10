"""Entra ID over SAML 2.0: where the IdP lives and how a verified assertion becomes
:class:`~transom.connector.Claims`. No I/O, no crypto: the host verifies the response.

Users are keyed on the ``tenantid`` + ``objectidentifier`` attributes (the same ``tid:oid``
subject as OIDC), never on the NameID: Entra's default NameID is the UPN, which changes,
and asking for a persistent NameID format makes Entra invent an opaque pairwise value
(idp-claims.md §1.2). So no NameIDPolicy format is requested.
"""

from __future__ import annotations

import re
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
    from transom_azure_ad import AzureAdSettings

CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims"
OBJECT_ID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
TENANT_ID = "http://schemas.microsoft.com/identity/claims/tenantid"
DISPLAY_NAME = "http://schemas.microsoft.com/identity/claims/displayname"
UPN = f"{CLAIMS}/name"
EMAIL = f"{CLAIMS}/emailaddress"
GIVEN_NAME = f"{CLAIMS}/givenname"
SURNAME = f"{CLAIMS}/surname"
GROUPS = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"
GROUPS_LINK = "http://schemas.microsoft.com/claims/groups.link"
PUBLIC_AUTHORITY = "https://login.microsoftonline.com"
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def fill_saml_defaults(settings: AzureAdSettings) -> None:
    """Without metadata, the IdP entity ID and SSO URL follow from the tenant:
    ``https://sts.windows.net/{tid}/`` (public cloud only) and ``{authority}/{tid}/saml2``.
    Called by the settings validator; the signing certificate must still be configured."""
    if settings.idp_metadata_file or settings.idp_metadata_url or not _GUID.match(settings.tenant_id):
        return
    authority = settings.authority.rstrip("/")
    if settings.idp_entity_id is None and authority == PUBLIC_AUTHORITY:
        settings.idp_entity_id = f"https://sts.windows.net/{settings.tenant_id}/"
    if settings.idp_sso_url is None:
        settings.idp_sso_url = f"{authority}/{settings.tenant_id}/saml2"


def saml_idp(settings: AzureAdSettings) -> SamlIdp:
    # No NameIDPolicy format: Entra would answer with an opaque pairwise NameID.
    return settings.saml_idp(name_id_format=None)


def groups_claim(payload: Mapping[str, Any]) -> GroupsClaim:
    """``groups`` present (one value per group object id), ``groups.link`` = overage (Entra
    omits ``groups`` entirely when the user is in more than 150), else absent."""
    if saml_has_attribute(payload, GROUPS):
        return GroupsClaim.present(saml_attribute_values(payload, GROUPS))
    if saml_has_attribute(payload, GROUPS_LINK):
        return GroupsClaim.overage(saml_first_value(payload, GROUPS_LINK))
    return GroupsClaim.absent()


def allowed_tenants(settings: AzureAdSettings) -> tuple[str, ...]:
    if settings.allowed_tenants:
        return tuple(settings.allowed_tenants)
    return (settings.tenant_id,)


def claims(connector: Connector, settings: AzureAdSettings, payload: Mapping[str, Any]) -> Claims:
    oid, tid = saml_first_value(payload, OBJECT_ID), saml_first_value(payload, TENANT_ID)
    if oid is None or tid is None:
        missing = " and ".join(n for n, v in (("objectidentifier", oid), ("tenantid", tid)) if v is None)
        raise LoginRefused(
            "your identity provider did not say who you are",
            hint=f"the Entra SAML assertion has no {missing} attribute; keep the default claims of the "
            "enterprise application (Transom keys users on tenantid + objectidentifier)",
            reason="saml.entra_ids_missing",
        )
    tid, oid = tid.lower(), oid.lower()
    if tid not in allowed_tenants(settings):
        raise LoginRefused(
            "your organisation is not allowed to sign in here",
            hint=f"connector '{connector.id}' accepts tenant(s) {', '.join(allowed_tenants(settings))}; "
            "the assertion came from another tenant (use the tenant GUID in tenant_id / allowed_tenants)",
            reason="saml.tenant",
        )
    return Claims(
        subject=f"{tid}:{oid}",
        email=saml_first_value(payload, EMAIL),
        # Entra does not verify e-mail addresses (nOAuth): never let them link accounts.
        email_verified=False,
        user_name=saml_first_value(payload, UPN),
        display_name=saml_first_value(payload, DISPLAY_NAME),
        given_name=saml_first_value(payload, GIVEN_NAME),
        family_name=saml_first_value(payload, SURNAME),
        groups=groups_claim(payload),
    )

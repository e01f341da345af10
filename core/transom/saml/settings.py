"""python3-saml settings of one connector (strict, the checklist's safe ``security`` block)
and the SP metadata document."""

from __future__ import annotations

import functools
from typing import Any

from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from transom.connector import Connector
from transom.errors import ConfigError
from transom.runtime import Runtime
from transom.saml.endpoints import SpEndpoints, sp_endpoints
from transom.saml.metadata import ResolvedIdp


def settings_dict(sp: SpEndpoints, idp: ResolvedIdp | None, *, name_id_format: str | None) -> dict[str, Any]:
    """The python3-saml settings of one connector: strict, the safe ``security`` block of the
    checklist §1.2, keys pinned from config (never ``certFingerprint``)."""
    settings: dict[str, Any] = {
        "strict": True,
        "debug": False,
        "sp": {
            "entityId": sp.entity_id,
            "assertionConsumerService": {"url": sp.acs_url, "binding": OneLogin_Saml2_Constants.BINDING_HTTP_POST},
            "NameIDFormat": name_id_format or OneLogin_Saml2_Constants.NAMEID_UNSPECIFIED,
        },
        "idp": {},
        "security": {
            "wantAssertionsSigned": True,
            "wantMessagesSigned": bool(idp and idp.want_messages_signed),
            "rejectDeprecatedAlgorithm": True,
            "signatureAlgorithm": OneLogin_Saml2_Constants.RSA_SHA256,
            "digestAlgorithm": OneLogin_Saml2_Constants.SHA256,
            "wantNameId": True,
            "wantAssertionsEncrypted": False,
            "wantNameIdEncrypted": False,
            "allowRepeatAttributeName": False,
            # Okta sends no attributes unless the admin adds statements; plugins refuse
            # when something they need is missing.
            "wantAttributeStatement": False,
            # No SP key pair: requests are unsigned (docs/saml.md).
            "authnRequestsSigned": False,
            "logoutRequestSigned": False,
            "logoutResponseSigned": False,
            # Ask for no particular authentication method: MFA or passwordless must not fail.
            "requestedAuthnContext": False,
            "failOnAuthnContextMismatch": False,
            # Only affects the check of our own configured URLs (e.g. http://transom:8000).
            "allowSingleLabelDomains": True,
            "wantXMLValidation": True,
        },
    }
    if idp is not None:
        settings["idp"] = {
            "entityId": idp.entity_id,
            "singleSignOnService": {"url": idp.sso_url, "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT},
            "x509certMulti": {"signing": list(idp.certificates)},
        }
    return settings


def library_settings(runtime: Runtime, connector: Connector, idp: ResolvedIdp) -> OneLogin_Saml2_Settings:
    sp = sp_endpoints(runtime, connector.id)
    try:
        return _built_settings(sp, idp)
    except Exception as exc:
        raise ConfigError(f"connector '{connector.id}': invalid SAML settings: {exc}") from exc


@functools.lru_cache(maxsize=256)
def _built_settings(sp: SpEndpoints, idp: ResolvedIdp) -> OneLogin_Saml2_Settings:
    """Settings objects are only read while validating, so one per (SP, IdP) pair is shared;
    a certificate or metadata change yields a new ``ResolvedIdp`` and so a new entry."""
    return OneLogin_Saml2_Settings(settings_dict(sp, idp, name_id_format=idp.name_id_format))


def sp_metadata_xml(runtime: Runtime, connector: Connector) -> str:
    """The SP metadata of one connector. Needs no IdP data, so it works before the IdP side
    is configured (admins paste this URL into the IdP first)."""
    idp = runtime.plugins.saml_idp(connector)
    sp = sp_endpoints(runtime, connector.id)
    settings = OneLogin_Saml2_Settings(
        settings_dict(sp, None, name_id_format=idp.name_id_format), sp_validation_only=True
    )
    metadata = settings.get_sp_metadata()
    return _without_validity(metadata.encode("utf-8") if isinstance(metadata, str) else bytes(metadata))


def _without_validity(metadata: bytes) -> str:
    """Drop python3-saml's ``validUntil`` (now + 2 days) and ``cacheDuration`` (7 days): the
    two disagree, and an IdP that keeps a static copy and honours ``validUntil`` would stop
    trusting Transom after two days. The metadata holds no key, only URLs derived from
    ``base_url``, so it has no natural expiry (docs/saml.md, "SP metadata validity")."""
    root = etree.fromstring(metadata, etree.XMLParser(resolve_entities=False, no_network=True))
    for element in root.iter():
        for name in ("validUntil", "cacheDuration"):
            element.attrib.pop(name, None)
    text: str = etree.tostring(root, encoding="unicode")
    return text

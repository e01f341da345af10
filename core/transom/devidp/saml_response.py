"""SAML side of the development IdP: the signed Response to an AuthnRequest and the IdP
metadata. Building and signing are the fake-IdP kernel's (``transom.testing.saml``: lxml +
python-xmlsec, RSA-SHA256, exclusive c14n), the same code the SP's own tests trust."""

from __future__ import annotations

from transom.devidp.idp import DevIdp, PendingSaml
from transom.devidp.people import DemoPerson
from transom.testing import saml as saml_signing


def _fake_idp(idp: DevIdp) -> saml_signing.FakeSamlIdp:
    return saml_signing.FakeSamlIdp(entity_id=idp.saml_entity_id, sso_url=idp.saml_sso_url, key=idp.key)


def attributes(person: DemoPerson) -> dict[str, list[str]]:
    """What a generic SAML IdP would send with attribute statements configured for Transom:
    the generic_saml connector's default attribute names plus the product's custom ones."""
    return {
        "email": [person.email],
        "givenName": [person.given_name],
        "sn": [person.family_name],
        "displayName": [person.display_name],
        "space_name": [person.space_name],
        "space_role": [person.space_role],
        "timezone": [person.timezone],
        # multi-valued, one AttributeValue per group, like Okta and Entra send them
        "groups": list(person.groups),
    }


def signed_response(idp: DevIdp, pending: PendingSaml, person: DemoPerson) -> str:
    """The base64 ``SAMLResponse`` for the HTTP-POST binding: InResponseTo is the request's
    ID, Destination and Recipient the SP's registered ACS URL, Audience its entity ID; the
    assertion and the response are both signed (RSA-SHA256)."""
    root = _fake_idp(idp).signed_response(
        acs_url=pending.sp.acs_url,
        audience=pending.sp.entity_id,
        name_id=person.subject,
        in_response_to=pending.request_id,
        attributes=attributes(person),
        sign_assertion=True,
        sign_response=True,
    )
    return saml_signing.encode(root)


def idp_metadata(idp: DevIdp) -> str:
    return _fake_idp(idp).metadata_xml()

"""Reading an SP's AuthnRequest from the HTTP-Redirect binding: base64, raw DEFLATE with a
cap on the inflated size, then XML with no DTD, no entities and no network.

Only registered service providers are served, and only at their registered ACS URL, so the
dev IdP never POSTs a signed assertion anywhere a request names.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass

from lxml import etree

from transom.devidp.idp import DevIdp, PendingSaml

MAX_ENCODED_CHARS = 16 * 1024
MAX_INFLATED_BYTES = 64 * 1024
MAX_RELAY_STATE_CHARS = 1024
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"


class SamlRequestError(Exception):
    """The AuthnRequest cannot be served; the message says why in words an SP admin can use."""


@dataclass(frozen=True)
class AuthnRequest:
    id: str
    issuer: str
    acs_url: str | None
    destination: str | None


def inflate(encoded: str) -> bytes:
    if len(encoded) > MAX_ENCODED_CHARS:
        raise SamlRequestError("SAMLRequest is too large")
    try:
        deflated = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SamlRequestError("SAMLRequest is not valid base64") from None
    inflater = zlib.decompressobj(wbits=-15)
    try:
        xml = inflater.decompress(deflated, MAX_INFLATED_BYTES)
    except zlib.error:
        raise SamlRequestError("SAMLRequest is not raw DEFLATE data (HTTP-Redirect binding)") from None
    if inflater.unconsumed_tail:
        raise SamlRequestError(f"SAMLRequest inflates to more than {MAX_INFLATED_BYTES} bytes")
    return xml


def parse_authn_request(xml: bytes) -> AuthnRequest:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )
    try:
        root = etree.fromstring(xml, parser=parser)
    except etree.XMLSyntaxError:
        raise SamlRequestError("SAMLRequest is not well-formed XML") from None
    if root.getroottree().docinfo.doctype:
        raise SamlRequestError("SAMLRequest must not carry a DTD")
    if root.tag != f"{{{SAMLP}}}AuthnRequest":
        raise SamlRequestError("SAMLRequest is not a samlp:AuthnRequest")
    request_id = root.get("ID")
    issuer = root.findtext(f"{{{SAML}}}Issuer")
    if not request_id or not issuer:
        raise SamlRequestError("the AuthnRequest needs an ID and an Issuer")
    return AuthnRequest(
        id=request_id,
        issuer=issuer.strip(),
        acs_url=root.get("AssertionConsumerServiceURL"),
        destination=root.get("Destination"),
    )


def pending_from_redirect(idp: DevIdp, *, saml_request: str, relay_state: str | None) -> PendingSaml:
    request = parse_authn_request(inflate(saml_request))
    sp = idp.saml_service_providers.get(request.issuer)
    if sp is None:
        raise SamlRequestError(
            f"unknown service provider '{request.issuer}'; the dev IdP serves only the demo's connectors"
        )
    if request.acs_url is not None and request.acs_url != sp.acs_url:
        raise SamlRequestError(f"AssertionConsumerServiceURL is not the one registered for '{sp.entity_id}'")
    if request.destination is not None and request.destination != idp.saml_sso_url:
        raise SamlRequestError(f"Destination must be {idp.saml_sso_url}")
    if relay_state is not None and len(relay_state) > MAX_RELAY_STATE_CHARS:
        raise SamlRequestError("RelayState is too long")
    return PendingSaml(sp=sp, request_id=request.id, relay_state=relay_state)

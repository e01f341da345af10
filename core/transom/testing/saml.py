"""A fake SAML 2.0 identity provider for tests, plugin authors and the development IdP: the
fake-IdP kernel's one SAML response builder.

Everything is real: the kernel's RSA-2048 key with its self-signed certificate
(:class:`~transom.testing.keys.SigningKey`),
responses built with lxml and signed with python-xmlsec (exclusive canonicalization,
RSA-SHA256, enveloped + exc-c14n transforms, ``Reference URI="#ID"``, the Signature right
after ``saml:Issuer``). Knobs exist for every attack the SP must refuse: which element is
signed, the algorithms and transforms, times, ids, extra elements.

Typical use::

    idp = FakeSamlIdp()
    settings = idp.connector_settings()          # idp_entity_id, idp_sso_url, idp_certificates
    ...
    response = saml_login(client, idp, connector_id="acme-saml", name_id="ada", attributes={...})

Building blocks, importable on their own:

* :class:`SigningKey` — the kernel's key pair with a self-signed certificate (re-exported);
* :func:`build_response` — an unsigned ``samlp:Response`` element with one assertion;
* :func:`sign` — sign one element (Response or Assertion) in place;
* :func:`reparse` — a fresh tree to tamper with after signing;
* :func:`encode` — base64 of the serialised document, as the HTTP-POST binding wants;
* :func:`parse_authn_request` — read the AuthnRequest out of an HTTP-Redirect URL.
"""

from __future__ import annotations

import base64
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import xmlsec
from lxml import etree

from transom.testing.keys import SigningKey

if TYPE_CHECKING:
    import httpx
    from starlette.testclient import TestClient

SAMLP_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XS_NS = "http://www.w3.org/2001/XMLSchema"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
MD_NS = "urn:oasis:names:tc:SAML:2.0:metadata"

SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
EMAIL_ADDRESS = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
PASSWORD_PROTECTED = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
BINDING_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"

NSMAP = {"samlp": SAMLP_NS, "saml": SAML_NS}


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def saml_time(moment: datetime) -> str:
    """SAML's xs:dateTime form, UTC, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    """An XML ID (must not start with a digit)."""
    return f"_{uuid.uuid4().hex}"


# -- building a response ---------------------------------------------------------------------


def build_response(
    *,
    issuer: str,
    acs_url: str,
    audience: str | None,
    name_id: str,
    in_response_to: str | None,
    name_id_format: str | None = PERSISTENT,
    attributes: Mapping[str, Sequence[str]] | None = None,
    destination: str | None = "",
    recipient: str | None = "",
    response_in_response_to: str | None = "",
    assertion_issuer: str | None = "",
    now: datetime | None = None,
    not_before: datetime | None = None,
    not_on_or_after: datetime | None = None,
    scd_not_on_or_after: datetime | None = None,
    issue_instant: datetime | None = None,
    lifetime: timedelta = timedelta(minutes=5),
    response_id: str | None = None,
    assertion_id: str | None = None,
    status: str = SUCCESS,
    session_index: str | None = "_session",
) -> Any:
    """An unsigned ``samlp:Response`` with one assertion (Issuer, Subject with NameID and a
    bearer SubjectConfirmationData, Conditions with an AudienceRestriction, AuthnStatement,
    AttributeStatement). Returns the root lxml element.

    ``""`` for ``destination``/``recipient`` means "the ACS URL", for
    ``response_in_response_to`` "same as ``in_response_to``", for ``assertion_issuer``
    "same as ``issuer``"; ``None`` leaves the attribute or element out (to build the
    attacks). Times default to ``now`` ± ``lifetime``.
    """
    now = now or datetime.now(UTC)
    issued = issue_instant or now
    destination = acs_url if destination == "" else destination
    recipient = acs_url if recipient == "" else recipient
    response_in_response_to = in_response_to if response_in_response_to == "" else response_in_response_to
    assertion_issuer = issuer if assertion_issuer == "" else assertion_issuer
    not_before = not_before or now - timedelta(seconds=30)
    not_on_or_after = not_on_or_after or now + lifetime
    scd_not_on_or_after = scd_not_on_or_after or now + lifetime

    response = etree.Element(_q(SAMLP_NS, "Response"), nsmap=NSMAP)
    response.set("ID", response_id or new_id())
    response.set("Version", "2.0")
    response.set("IssueInstant", saml_time(issued))
    if destination is not None:
        response.set("Destination", destination)
    if response_in_response_to is not None:
        response.set("InResponseTo", response_in_response_to)
    etree.SubElement(response, _q(SAML_NS, "Issuer")).text = issuer
    status_el = etree.SubElement(response, _q(SAMLP_NS, "Status"))
    etree.SubElement(status_el, _q(SAMLP_NS, "StatusCode")).set("Value", status)

    assertion = etree.SubElement(response, _q(SAML_NS, "Assertion"))
    assertion.set("ID", assertion_id or new_id())
    assertion.set("Version", "2.0")
    assertion.set("IssueInstant", saml_time(issued))
    if assertion_issuer is not None:
        etree.SubElement(assertion, _q(SAML_NS, "Issuer")).text = assertion_issuer

    subject = etree.SubElement(assertion, _q(SAML_NS, "Subject"))
    name_id_el = etree.SubElement(subject, _q(SAML_NS, "NameID"))
    if name_id_format is not None:
        name_id_el.set("Format", name_id_format)
    name_id_el.text = name_id
    confirmation = etree.SubElement(subject, _q(SAML_NS, "SubjectConfirmation"))
    confirmation.set("Method", BEARER)
    scd = etree.SubElement(confirmation, _q(SAML_NS, "SubjectConfirmationData"))
    scd.set("NotOnOrAfter", saml_time(scd_not_on_or_after))
    if recipient is not None:
        scd.set("Recipient", recipient)
    if in_response_to is not None:
        scd.set("InResponseTo", in_response_to)

    conditions = etree.SubElement(assertion, _q(SAML_NS, "Conditions"))
    conditions.set("NotBefore", saml_time(not_before))
    conditions.set("NotOnOrAfter", saml_time(not_on_or_after))
    if audience is not None:
        restriction = etree.SubElement(conditions, _q(SAML_NS, "AudienceRestriction"))
        etree.SubElement(restriction, _q(SAML_NS, "Audience")).text = audience

    authn = etree.SubElement(assertion, _q(SAML_NS, "AuthnStatement"))
    authn.set("AuthnInstant", saml_time(issued))
    if session_index is not None:
        authn.set("SessionIndex", session_index)
    context = etree.SubElement(authn, _q(SAML_NS, "AuthnContext"))
    etree.SubElement(context, _q(SAML_NS, "AuthnContextClassRef")).text = PASSWORD_PROTECTED

    if attributes:
        statement = etree.SubElement(assertion, _q(SAML_NS, "AttributeStatement"))
        for name, values in attributes.items():
            attribute = etree.SubElement(statement, _q(SAML_NS, "Attribute"))
            attribute.set("Name", name)
            attribute.set("NameFormat", "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified")
            for value in values:
                value_el = etree.SubElement(
                    attribute, _q(SAML_NS, "AttributeValue"), nsmap={"xs": XS_NS, "xsi": XSI_NS}
                )
                value_el.set(_q(XSI_NS, "type"), "xs:string")
                value_el.text = value
    return response


def assertion_of(response: Any) -> Any:
    """The (first) ``saml:Assertion`` child of a Response element."""
    return response.find(_q(SAML_NS, "Assertion"))


# -- signing --------------------------------------------------------------------------------

#: default algorithms; pass others (``xmlsec.constants.TransformRsaSha1``, ``...Md5``) to
#: build attacks
RSA_SHA256 = xmlsec.constants.TransformRsaSha256
SHA256 = xmlsec.constants.TransformSha256
ENVELOPED = xmlsec.constants.TransformEnveloped
EXCL_C14N = xmlsec.constants.TransformExclC14N


def sign(
    element: Any,
    key: SigningKey,
    *,
    signature_method: Any = RSA_SHA256,
    digest_method: Any = SHA256,
    transforms: Sequence[Any] = (ENVELOPED, EXCL_C14N),
    include_certificate: bool = True,
) -> Any:
    """Sign ``element`` (a Response or Assertion with an ``ID``) in place with an enveloped
    XML signature placed right after its ``saml:Issuer`` (first child if it has none), the way
    real IdPs do. Returns the ``ds:Signature`` element.

    Sign the assertion before the response when both are signed: the response signature
    then covers the signed assertion.
    """
    element_id = element.get("ID")
    if not element_id:
        raise ValueError("the element to sign needs an ID attribute")
    signature = xmlsec.template.create(element, EXCL_C14N, signature_method, ns="ds")
    issuer = element.find(_q(SAML_NS, "Issuer"))
    if issuer is not None:
        issuer.addnext(signature)
    else:
        element.insert(0, signature)
    reference = xmlsec.template.add_reference(signature, digest_method, uri=f"#{element_id}")
    for transform in transforms:
        xmlsec.template.add_transform(reference, transform)
    if include_certificate:
        key_info = xmlsec.template.ensure_key_info(signature)
        xmlsec.template.add_x509_data(key_info)
    root = element.getroottree().getroot()
    xmlsec.tree.add_ids(root, ["ID"])
    context = xmlsec.SignatureContext()
    signing_key = xmlsec.Key.from_memory(key.private_key_pem, xmlsec.constants.KeyDataFormatPem, None)
    signing_key.load_cert_from_memory(key.certificate_pem.encode("ascii"), xmlsec.constants.KeyDataFormatCertPem)
    context.key = signing_key
    context.sign(signature)
    return signature


def reparse(root: Any) -> Any:
    """A fresh parse of the serialised element. Nodes xmlsec creates are not interned in
    lxml's name dictionary, so ``find()`` misses them until the tree is parsed again: do
    this before editing a signed document."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(to_bytes(root), parser)


def to_bytes(root: Any) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=False, encoding="utf-8"))


def encode(document: Any) -> str:
    """base64 of a Response element (or of raw bytes/str), as posted in ``SAMLResponse``."""
    if isinstance(document, str):
        document = document.encode("utf-8")
    data = document if isinstance(document, bytes) else to_bytes(document)
    return base64.b64encode(data).decode("ascii")


# -- AuthnRequest (HTTP-Redirect binding) ----------------------------------------------------


@dataclass(frozen=True)
class AuthnRequestInfo:
    id: str
    issuer: str
    acs_url: str | None
    destination: str | None
    name_id_policy_format: str | None
    relay_state: str | None
    xml: bytes


def parse_authn_request(redirect_url: str) -> AuthnRequestInfo:
    """Inflate and parse the ``SAMLRequest`` of an HTTP-Redirect URL (no DTDs, no network)."""
    query = parse_qs(urlsplit(redirect_url).query)
    raw = base64.b64decode(query["SAMLRequest"][0])
    xml = zlib.decompress(raw, -15)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(xml, parser)
    if root.tag != _q(SAMLP_NS, "AuthnRequest"):
        raise ValueError("not an AuthnRequest")
    issuer = root.find(_q(SAML_NS, "Issuer"))
    policy = root.find(_q(SAMLP_NS, "NameIDPolicy"))
    relay = query.get("RelayState")
    return AuthnRequestInfo(
        id=root.get("ID", ""),
        issuer=(issuer.text or "").strip() if issuer is not None else "",
        acs_url=root.get("AssertionConsumerServiceURL"),
        destination=root.get("Destination"),
        name_id_policy_format=policy.get("Format") if policy is not None else None,
        relay_state=relay[0] if relay else None,
        xml=xml,
    )


# -- the fake IdP ---------------------------------------------------------------------------


class FakeSamlIdp:
    """An IdP with its own signing key. ``response()`` answers an AuthnRequest (or builds an
    unsolicited response) and signs it; ``signed_response()`` returns the element so tests
    can tamper with it afterwards."""

    def __init__(
        self,
        *,
        entity_id: str = "https://idp.example.test/saml/metadata",
        sso_url: str = "https://idp.example.test/saml/sso",
        key: SigningKey | None = None,
        common_name: str = "Transom Fake IdP",
    ) -> None:
        self.entity_id = entity_id
        self.sso_url = sso_url
        self.key = key or SigningKey.generate(common_name)

    def connector_settings(self, **extra: Any) -> dict[str, Any]:
        """The SAML keys of a ``[connectors.settings]`` table pointing at this IdP."""
        return {
            "idp_entity_id": self.entity_id,
            "idp_sso_url": self.sso_url,
            "idp_certificates": [self.key.certificate_pem],
            **extra,
        }

    def metadata_xml(self, *, extra_keys: Sequence[SigningKey] = ()) -> str:
        """IdP metadata (EntityDescriptor with one IDPSSODescriptor), for metadata_file/url."""
        root = etree.Element(_q(MD_NS, "EntityDescriptor"), nsmap={"md": MD_NS, "ds": DS_NS})
        root.set("entityID", self.entity_id)
        descriptor = etree.SubElement(root, _q(MD_NS, "IDPSSODescriptor"))
        descriptor.set("protocolSupportEnumeration", SAMLP_NS)
        for key in (self.key, *extra_keys):
            key_descriptor = etree.SubElement(descriptor, _q(MD_NS, "KeyDescriptor"))
            key_descriptor.set("use", "signing")
            key_info = etree.SubElement(key_descriptor, _q(DS_NS, "KeyInfo"))
            x509_data = etree.SubElement(key_info, _q(DS_NS, "X509Data"))
            etree.SubElement(x509_data, _q(DS_NS, "X509Certificate")).text = key.certificate_base64
        etree.SubElement(descriptor, _q(MD_NS, "NameIDFormat")).text = PERSISTENT
        sso = etree.SubElement(descriptor, _q(MD_NS, "SingleSignOnService"))
        sso.set("Binding", BINDING_REDIRECT)
        sso.set("Location", self.sso_url)
        text: str = etree.tostring(root, encoding="unicode")
        return text

    def signed_response(
        self,
        *,
        acs_url: str,
        audience: str | None,
        name_id: str,
        in_response_to: str | None,
        attributes: Mapping[str, Sequence[str]] | None = None,
        sign_assertion: bool = True,
        sign_response: bool = False,
        signing_key: SigningKey | None = None,
        signature_method: Any = RSA_SHA256,
        digest_method: Any = SHA256,
        transforms: Sequence[Any] = (ENVELOPED, EXCL_C14N),
        before_signing: Callable[[Any], None] | None = None,
        **build: Any,
    ) -> Any:
        """Build and sign a Response element; ``before_signing`` may edit it first."""
        root = build_response(
            issuer=self.entity_id, acs_url=acs_url, audience=audience, name_id=name_id,
            in_response_to=in_response_to, attributes=attributes, **build,
        )
        if before_signing is not None:
            before_signing(root)
        key = signing_key or self.key
        options = {"signature_method": signature_method, "digest_method": digest_method, "transforms": transforms}
        if sign_assertion:
            sign(assertion_of(root), key, **options)
        if sign_response:
            sign(root, key, **options)
        return reparse(root)

    def response(self, request: AuthnRequestInfo, **kwargs: Any) -> str:
        """A signed, base64-encoded answer to ``request`` (ACS, audience and InResponseTo
        taken from it)."""
        kwargs.setdefault("name_id", "user")
        root = self.signed_response(
            acs_url=request.acs_url or "", audience=request.issuer, in_response_to=request.id, **kwargs
        )
        encoded: str = encode(root)
        return encoded


# -- driving a login through the real app ----------------------------------------------------


def start_login(client: TestClient, connector_id: str, *, next_path: str | None = None) -> AuthnRequestInfo:
    """``GET /api/accounts/login/{connector_id}`` and parse the AuthnRequest it redirects to."""
    url = f"/api/accounts/login/{connector_id}"
    if next_path is not None:
        url += "?" + urlencode({"next": next_path})
    started = client.get(url, follow_redirects=False)
    if started.status_code not in (302, 303):
        raise AssertionError(f"login start answered {started.status_code}: {started.text[:300]}")
    return parse_authn_request(started.headers["location"])


def post_response(
    client: TestClient, connector_id: str, saml_response: str, *, relay_state: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST a ``SAMLResponse`` form to the connector's ACS (HTTP-POST binding)."""
    data = {"SAMLResponse": saml_response}
    if relay_state is not None:
        data["RelayState"] = relay_state
    answer: httpx.Response = client.post(
        f"/api/accounts/saml/{connector_id}/acs", data=data, follow_redirects=False,
        headers={"accept": "application/json", **(headers or {})},
    )
    return answer


def saml_login(
    client: TestClient,
    idp: FakeSamlIdp,
    *,
    connector_id: str,
    name_id: str,
    attributes: Mapping[str, Sequence[str]] | None = None,
    next_path: str | None = None,
    tamper: Callable[[Any], None] | None = None,
    **response_options: Any,
) -> httpx.Response:
    """A whole SP-initiated login: start, let ``idp`` answer the AuthnRequest (signed), let
    ``tamper`` edit the signed document if given, post it to the ACS. Returns the ACS answer."""
    request = start_login(client, connector_id, next_path=next_path)
    root = idp.signed_response(
        acs_url=request.acs_url or "", audience=request.issuer, in_response_to=request.id,
        name_id=name_id, attributes=attributes, **response_options,
    )
    if tamper is not None:
        tamper(root)
    return post_response(client, connector_id, encode(root))

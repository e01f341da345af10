"""Checks before xmlsec: hardened parse, allow-listed algorithms and transforms, no
encrypted content, each signature covering its parent."""

from __future__ import annotations

from typing import Any

from lxml import etree
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from transom.errors import BadRequest
from transom.saml.common import DS, SAML, SAMLP, XENC, refused

ALLOWED_SIGNATURE_METHODS = frozenset({
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
})
ALLOWED_DIGEST_METHODS = frozenset({
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
})
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
ALLOWED_TRANSFORMS = frozenset({ENVELOPED, EXC_C14N})
ALLOWED_CANONICALIZATIONS = frozenset({EXC_C14N})
#: ds elements that make libxmlsec dereference more than the one enveloped reference
_FORBIDDEN_DS_ELEMENTS = ("Manifest", "RetrievalMethod", "XPath", "XSLT")


#: every algorithm-bearing ds: element, checked against its allow-list before xmlsec runs
_ALGORITHM_ALLOW_LISTS = (
    ("SignatureMethod", ALLOWED_SIGNATURE_METHODS, "signature algorithm",
     "sign with RSA-SHA256 (or RSA/ECDSA with SHA-384/512) in the IdP's signing options", "saml.signature_method"),
    ("DigestMethod", ALLOWED_DIGEST_METHODS, "digest algorithm",
     "use the SHA-256 (or SHA-384/512) digest algorithm in the IdP's signing options", "saml.digest_method"),
    ("Transform", ALLOWED_TRANSFORMS, "transform",
     "only the enveloped-signature and exclusive canonicalization transforms are accepted", "saml.transform"),
    ("CanonicalizationMethod", ALLOWED_CANONICALIZATIONS, "canonicalization",
     "use exclusive XML canonicalization (xml-exc-c14n) for signatures", "saml.canonicalization"),
)


_ENCRYPTED_SAML_TAGS = tuple(f"{SAML}{tag}" for tag in ("EncryptedAssertion", "EncryptedID", "EncryptedAttribute"))
#: every element a rule below looks at (the root is a samlp:Response, never one of them)
_WATCHED_TAGS = (
    *_ENCRYPTED_SAML_TAGS,
    f"{XENC}EncryptedData",
    *(f"{DS}{name}" for name in _FORBIDDEN_DS_ELEMENTS),
    *(f"{DS}{element}" for element, *_ in _ALGORITHM_ALLOW_LISTS),
    f"{DS}Signature",
)


#: lxml's own iter: python3-saml's RestrictedElement.iter cannot take several tags (it passes
#: ``tag=`` and ``*tags`` together) and only filters comments, processing instructions and
#: entities, which a tag filter never yields
_iter = etree.ElementBase.iter


def precheck_document(xml: bytes) -> Any:
    """Parse with python3-saml's hardened parser and reject what must never reach libxmlsec.
    Returns the root element."""
    try:
        root = OneLogin_Saml2_XML.to_etree(xml)
    except Exception as exc:
        # DTDForbidden, EntitiesForbidden, XMLSyntaxError, ...: the refusal line names the
        # type, never the content.
        raise BadRequest("the SAML response is not well-formed XML without a DTD", reason="saml.xml",
                         log_detail=f"error={type(exc).__name__}") from exc
    if root.tag != f"{SAMLP}Response":
        raise BadRequest("the posted document is not a SAML Response", reason="saml.not_a_response")
    # One walk collects every element the rules below look at, in document order; the rules
    # then run in their order on those lists (the refusal a document gets does not depend
    # on the walk: each rule used to walk the tree again, 14 walks per response).
    found: dict[str, list[Any]] = {tag: [] for tag in _WATCHED_TAGS}
    for node in _iter(root, *_WATCHED_TAGS):
        found[node.tag].append(node)
    for tag in _ENCRYPTED_SAML_TAGS:
        if found[tag]:
            raise refused(
                "the identity provider sent encrypted content this service cannot read",
                "turn off assertion encryption for this application in the IdP; Transom relies on "
                "signed assertions over HTTPS and holds no decryption key",
                "saml.encrypted",
            )
    if found[f"{XENC}EncryptedData"]:
        raise refused("the identity provider sent encrypted content this service cannot read",
                      "turn off encryption for this application in the IdP", "saml.encrypted")
    for name in _FORBIDDEN_DS_ELEMENTS:
        if found[f"{DS}{name}"]:
            raise refused("the SAML response's signature uses a construct that is not allowed",
                          f"signatures must not contain ds:{name}", "saml.ds_forbidden")
    for element, allowed, problem, fix, reason in _ALGORITHM_ALLOW_LISTS:
        for node in found[f"{DS}{element}"]:
            if node.get("Algorithm") not in allowed:
                raise refused(f"the SAML response's signature uses a {problem} that is not allowed", fix, reason)
    for signature in found[f"{DS}Signature"]:
        references = signature.findall(f"{DS}SignedInfo/{DS}Reference")
        parent = signature.getparent()
        parent_id = parent.get("ID") if parent is not None else None
        if len(references) != 1 or not parent_id or references[0].get("URI") != f"#{parent_id}":
            raise refused(
                "the SAML response's signature does not cover the element that carries it",
                "each signature must have one Reference whose URI is '#' + the ID of its parent",
                "saml.reference",
            )
    return root

"""Transom's shortcuts through python3-saml answer exactly what the stock library answers
(issue 13, docs/performance.md "SAML ACS: one parse, cached XPath"):

* ``library_response``: the library's Response object over the tree ``precheck_document``
  parsed, instead of decoding and parsing the posted text a second time;
* ``library_attributes``: ``get_attributes()`` without the per-value detours;
* ``xpath_cache``: ``OneLogin_Saml2_XML.query`` through compiled XPath objects;
* ``time_parse``: ``parse_SAML_to_time`` by arithmetic on the common form;
* ``key_cache``: the IdP certificate loaded into an xmlsec key once per thread, not per check;
* ``login_activity._bounded``: short strings in lists taken as they are.

Each is compared with the stock function on documents of every shape the attack tests
build (signature wrapping, comments, encrypted content, bad status, ...) and, where the
input is small, on generated inputs (hypothesis). The sources the shortcuts copy are pinned:
a python3-saml upgrade that changes them fails here and must be re-reviewed.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import xmlsec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from onelogin.saml2 import utils as onelogin_utils
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from onelogin.saml2.xmlparser import GlobalParserTLS, RestrictedElement
from test_saml_attacks import XSW, name_id_of

from transom import login_activity, saml
from transom.errors import TransomError
from transom.saml import key_cache, xpath_cache
from transom.saml.library_response import library_attributes, library_response
from transom.saml.time_parse import parse_saml_time
from transom.testing.keys import SigningKey
from transom.testing.saml import DS_NS, SAML_NS, SAMLP_NS, FakeSamlIdp, assertion_of, to_bytes

ACS = "https://transom.example/api/accounts/saml/acme-saml/acs"
SP_ID = "https://transom.example/api/accounts/saml/acme-saml/metadata"
SAML = f"{{{SAML_NS}}}"
SAMLP = f"{{{SAMLP_NS}}}"
DS = f"{{{DS_NS}}}"
REQUEST_DATA = {"https": "on", "http_host": "transom.example", "script_name": "/api/accounts/saml/acme-saml/acs",
                "get_data": {}, "post_data": {}}
SLOW = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

# -- the documents -------------------------------------------------------------------------


def _library_settings(idp: FakeSamlIdp, *, allow_repeat: bool = False,
                      certificates: tuple[str, ...] | None = None) -> OneLogin_Saml2_Settings:
    sp = saml.SpEndpoints(entity_id=SP_ID, acs_url=ACS, metadata_url=SP_ID)
    resolved = saml.ResolvedIdp(entity_id=idp.entity_id, sso_url=idp.sso_url,
                                certificates=certificates or (idp.key.certificate_pem,), allow_idp_initiated=True,
                                want_messages_signed=False, name_id_format=None)
    data = saml.settings_dict(sp, resolved, name_id_format=None)
    data["security"]["allowRepeatAttributeName"] = allow_repeat
    return OneLogin_Saml2_Settings(data)


def _edit(idp: FakeSamlIdp, edit: Callable[[Any], None], *, after_signing: bool = False, **options: Any) -> bytes:
    """A response from ``idp`` edited before it is signed, or after (an attack)."""
    options.setdefault("name_id", "ada@acme.example")
    if not after_signing:
        options["before_signing"] = edit
    root = idp.signed_response(acs_url=ACS, audience=SP_ID, in_response_to="ONELOGIN_1", **options)
    if after_signing:
        edit(root)
    return to_bytes(root)


def _comment_in_name_id(root: Any) -> None:
    """CVE-2017-11427: the IdP signed the long value, a comment is inserted afterwards."""
    name_id = name_id_of(assertion_of(root))
    name_id.text = "ada@acme.example"
    comment = etree.Comment("")
    name_id.append(comment)
    comment.tail = ".evil.example"


def _nested_name_id_value(root: Any) -> None:
    statement = assertion_of(root).find(f"{SAML}AttributeStatement")
    attribute = etree.SubElement(statement, f"{SAML}Attribute", Name="manager")
    value = etree.SubElement(attribute, f"{SAML}AttributeValue")
    value.text = "  lead  "
    nested = etree.SubElement(value, f"{SAML}NameID", Format="urn:x", NameQualifier="q")
    nested.text = " boss "
    etree.SubElement(attribute, f"{SAML}AttributeValue").text = "   "
    etree.SubElement(attribute, f"{SAML}AttributeValue")


def _duplicate_attribute(root: Any) -> None:
    statement = assertion_of(root).find(f"{SAML}AttributeStatement")
    statement.append(copy.deepcopy(statement[0]))


def _encrypted_assertion(root: Any) -> None:
    encrypted = etree.SubElement(root, f"{SAML}EncryptedAssertion")
    etree.SubElement(encrypted, "{http://www.w3.org/2001/04/xmlenc#}EncryptedData")


def _drop(path: str) -> Callable[[Any], None]:
    def edit(root: Any) -> None:
        for node in root.findall(path):
            node.getparent().remove(node)
    return edit


def _set(path: str, name: str, value: str) -> Callable[[Any], None]:
    def edit(root: Any) -> None:
        node = root if path == "." else root.find(path)
        node.set(name, value)
    return edit


def _nothing(root: Any) -> None:
    return None


@pytest.fixture(scope="module")
def idp() -> FakeSamlIdp:
    return FakeSamlIdp()


@pytest.fixture(scope="module")
def corpus(idp: FakeSamlIdp) -> dict[str, bytes]:
    """Good responses, each attack shape of tests/test_saml_attacks.py, and broken ones."""
    groups = {"mail": ["ada@acme.example"], "groups": [f"g-{i}" for i in range(40)], "empty": [" ", ""]}
    documents = {
        "good": _edit(idp, _nothing, attributes=groups),
        "good, response signed too": _edit(idp, _nothing, attributes=groups, sign_response=True),
        "response signed only": _edit(idp, _nothing, attributes=groups, sign_assertion=False, sign_response=True),
        "unsigned": _edit(idp, _nothing, attributes=groups, sign_assertion=False),
        "other key": _edit(idp, _nothing, signing_key=SigningKey.generate("Other")),
        "no attributes": _edit(idp, _nothing),
        "comment in NameID": _edit(idp, _comment_in_name_id, attributes=groups, after_signing=True,
                                   name_id="ada@acme.example.evil.example"),
        "edited after signing": _edit(idp, _set(f"{SAML}Assertion/{SAML}Subject/{SAML}NameID", "Format", "x"),
                                      after_signing=True),
        "nested NameID value": _edit(idp, _nested_name_id_value, attributes=groups),
        "duplicate attribute": _edit(idp, _duplicate_attribute, attributes=groups),
        "encrypted assertion": _edit(idp, _encrypted_assertion),
        "no NameID": _edit(idp, _drop(f"{SAML}Assertion/{SAML}Subject/{SAML}NameID")),
        "no Conditions": _edit(idp, _drop(f"{SAML}Assertion/{SAML}Conditions")),
        "no Status": _edit(idp, _drop(f"{SAMLP}Status")),
        "version 1.1": _edit(idp, _set(".", "Version", "1.1")),
        "wrong destination": _edit(idp, _set(".", "Destination", "https://evil.example/acs")),
        # xs:dateTime forms other than the common one (the stock parser's other paths)
        "long fraction": _edit(idp, _set(f"{SAML}Assertion/{SAML}Conditions", "NotOnOrAfter",
                                         "2999-01-01T00:00:00.1234567Z")),
        "no zone": _edit(idp, _set(f"{SAML}Assertion/{SAML}Conditions", "NotOnOrAfter", "2999-01-01T00:00:00")),
        "offset": _edit(idp, _set(f"{SAML}Assertion/{SAML}Conditions", "NotOnOrAfter", "2999-01-01T00:00:00+00:00")),
        "lower case": _edit(idp, _set(f"{SAML}Assertion/{SAML}Conditions", "NotOnOrAfter", "2999-01-01t00:00:00z")),
    }
    for name, (attack, response_signed) in XSW.items():
        documents[name] = _edit(idp, attack, attributes=groups, sign_response=response_signed, after_signing=True)
    expired = datetime.now(UTC) - timedelta(hours=1)
    documents["expired"] = _edit(idp, _nothing, now=expired)
    return documents


@contextmanager
def stock_library() -> Iterator[None]:
    """python3-saml as shipped: no XPath, time or key patch (the schema cache has its own test)."""
    query, parse_time = OneLogin_Saml2_XML.query, OneLogin_Saml2_Utils.parse_SAML_to_time
    view = onelogin_utils.xmlsec  # type: ignore[attr-defined]
    OneLogin_Saml2_XML.query = staticmethod(saml.STOCK_QUERY)
    OneLogin_Saml2_Utils.parse_SAML_to_time = staticmethod(saml.STOCK_PARSE_SAML_TO_TIME)
    onelogin_utils.xmlsec = key_cache.STOCK_XMLSEC  # type: ignore[attr-defined]
    try:
        yield
    finally:
        OneLogin_Saml2_XML.query = query
        OneLogin_Saml2_Utils.parse_SAML_to_time = parse_time
        onelogin_utils.xmlsec = view  # type: ignore[attr-defined]


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "value", call()
    except Exception as exc:
        return "error", (type(exc).__name__, getattr(exc, "code", None), str(exc))


def _observe(response: OneLogin_Saml2_Response) -> dict[str, Any]:
    """Everything Transom reads from the library, in the order verify_saml_response reads it."""
    seen: dict[str, Any] = {"valid": _outcome(lambda: response.is_valid(REQUEST_DATA, raise_exceptions=True))}
    seen["error"] = response.get_error()
    seen["scd"] = response.valid_scd_not_on_or_after
    seen["assertion ids"] = _outcome(lambda: [a.get("ID") for a in response._query_assertion("")])
    seen["nameid data"] = _outcome(response.get_nameid_data)
    seen["nameid"] = _outcome(response.get_nameid)
    seen["nameid format"] = _outcome(response.get_nameid_format)
    seen["attributes"] = _outcome(response.get_attributes)
    seen["session index"] = _outcome(response.get_session_index)
    seen["document"] = etree.tostring(response.document)
    return seen


def _patched_response(settings_: OneLogin_Saml2_Settings, xml: bytes) -> OneLogin_Saml2_Response:
    """As verify_saml_response builds it: precheck_document's tree when it passes (else the
    same parse: the library never sees a refused document, the constructor is compared anyway)."""
    try:
        root = saml.precheck_document(xml)
    except TransomError:
        root = OneLogin_Saml2_XML.to_etree(xml)
    return library_response(settings_, xml, root)


# -- library_response ----------------------------------------------------------------------


def test_library_response_is_what_the_stock_constructor_builds(idp: FakeSamlIdp, corpus: dict[str, bytes]) -> None:
    settings_ = _library_settings(idp)
    for name, xml in corpus.items():
        posted = base64.b64encode(xml).decode("ascii")
        stock = _outcome(lambda posted=posted: OneLogin_Saml2_Response(settings_, posted))  # type: ignore[misc]
        ours = _outcome(lambda xml=xml: _patched_response(settings_, xml))  # type: ignore[misc]
        assert stock[0] == ours[0], name
        if stock[0] == "error":
            assert stock == ours, name  # the encrypted one: no SP key to decrypt with
            continue
        stock_response, our_response = stock[1], ours[1]
        assert set(vars(stock_response)) == set(vars(our_response)), name
        for attribute in ("response", "encrypted", "decrypted_document", "valid_scd_not_on_or_after", "_error"):
            assert getattr(stock_response, attribute) == getattr(our_response, attribute), (name, attribute)
        assert our_response._settings is settings_
        assert etree.tostring(stock_response.document) == etree.tostring(our_response.document), name
        assert type(stock_response.document) is type(our_response.document)


def test_library_response_takes_the_encrypted_branch_as_the_constructor_does(
        idp: FakeSamlIdp, corpus: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """Transom holds no SP key, so decrypting always fails; with the decryption stubbed out,
    the copy of __init__ still sets what the stock one sets for an encrypted assertion."""
    monkeypatch.setattr(OneLogin_Saml2_Response, "_decrypt_assertion", lambda self, xml: xml)
    settings_ = _library_settings(idp)
    xml = corpus["encrypted assertion"]
    stock = OneLogin_Saml2_Response(settings_, base64.b64encode(xml).decode("ascii"))
    ours = library_response(settings_, xml, OneLogin_Saml2_XML.to_etree(xml))
    assert stock.encrypted is True and ours.encrypted is True
    assert etree.tostring(stock.decrypted_document) == etree.tostring(ours.decrypted_document)
    assert ours.decrypted_document is not ours.document  # a copy, as __init__ makes


def test_the_patched_library_path_answers_as_the_stock_library(idp: FakeSamlIdp, corpus: dict[str, bytes]) -> None:
    """One parse + cached XPath + fast times + cached keys + library_attributes against
    python3-saml as shipped, on every document: the same verdict, error, NameID, attributes
    and tree. The cached key of the IdP's certificate checks every document in turn, good
    and forged alike."""
    settings_ = _library_settings(idp)
    accepted = 0
    for name, xml in corpus.items():
        if name == "encrypted assertion":
            continue  # refused by precheck_document; its constructor is compared above
        with stock_library():
            stock = _observe(OneLogin_Saml2_Response(settings_, base64.b64encode(xml).decode("ascii")))
        ours = _observe(_patched_response(settings_, xml))
        ours_attributes = _outcome(lambda xml=xml: library_attributes(_patched_response(settings_, xml)))  # type: ignore[misc]
        assert stock == ours, name
        assert ours_attributes == stock["attributes"], name
        accepted += stock["valid"] == ("value", True)
    assert accepted >= 7  # the good ones, the comment, the nested NameID, an odd time, wrong ones after the library


def test_the_copied_library_sources_are_the_reviewed_ones() -> None:
    """library_response copies Response.__init__, library_attributes _get_attributes and
    xpath_cache the contract of query: an upgrade that changes them must be re-reviewed."""
    pinned = {
        "OneLogin_Saml2_Response.__init__": (OneLogin_Saml2_Response.__init__,
                                             "f4ec966812781329fc4159850d809e3b"),
        "OneLogin_Saml2_Response._get_attributes": (OneLogin_Saml2_Response._get_attributes,
                                                    "af87626a157413bdd6efa1c1da6c5e93"),
        "OneLogin_Saml2_XML.query": (saml.STOCK_QUERY, "79a3cc93b5511c8ddfc03802b09f2883"),
        "OneLogin_Saml2_Utils.parse_SAML_to_time": (saml.STOCK_PARSE_SAML_TO_TIME,
                                                    "c5d361fd63c31084ac6670be9ad09ef4"),
        # key_cache: the functions that load a certificate only hand the key to xmlsec, which copies it
        "OneLogin_Saml2_Utils.validate_node_sign": (OneLogin_Saml2_Utils.validate_node_sign,
                                                  "6e9fc3b62a59d8e8eafc8a888687e06b"),
        "OneLogin_Saml2_Utils.validate_binary_sign": (OneLogin_Saml2_Utils.validate_binary_sign,
                                                  "fdf4b47ad3829905672212515cb7ee33"),
        "OneLogin_Saml2_Utils.generate_name_id": (OneLogin_Saml2_Utils.generate_name_id,
                                                  "97f42189fbe72e83a74dab2503f002dc"),
    }
    for name, (function, digest) in pinned.items():
        source = inspect.getsource(function)
        assert hashlib.sha256(source.encode()).hexdigest()[:32] == digest, name
    assert GlobalParserTLS.parser_config == {"resolve_entities": False, "remove_comments": True, "no_network": True,
                                             "remove_pis": True, "huge_tree": False}


def test_every_key_python3_saml_loads_is_a_reviewed_call() -> None:
    """key_cache hands out a loaded certificate again: every ``Key.from_memory`` call in
    python3-saml must be one that passes the key straight to xmlsec (which copies it). A new
    call, or one that keeps or changes the key, must be reviewed before the cache stays."""
    source = inspect.getsource(onelogin_utils)
    calls = [line.strip() for line in source.splitlines() if "Key.from_memory(" in line]
    assert calls == [
        "manager.add_key(xmlsec.Key.from_memory(cert, xmlsec.KeyFormat.CERT_PEM, None))",
        "manager.add_key(xmlsec.Key.from_memory(key, xmlsec.KeyFormat.PEM, None))",
        "sign_key = xmlsec.Key.from_memory(key, xmlsec.KeyFormat.PEM, None)",
        "dsig_ctx.key = xmlsec.Key.from_memory(cert, xmlsec.KeyFormat.CERT_PEM, None)",
        "dsig_ctx.key = xmlsec.Key.from_memory(key, xmlsec.KeyFormat.PEM, None)",
        "dsig_ctx.key = xmlsec.Key.from_memory(cert, xmlsec.KeyFormat.CERT_PEM, None)",
    ]
    assert source.count("import xmlsec") == 1 and "from xmlsec" not in source


# -- the key cache -------------------------------------------------------------------------


def test_cached_keys_answer_as_fresh_keys_with_several_certificates(idp: FakeSamlIdp,
                                                                     corpus: dict[str, bytes]) -> None:
    """Rollover: the IdP's certificate after or before another one (python3-saml tries each);
    with the cached keys the same verdict on every document as python3-saml as shipped."""
    other = SigningKey.generate("Rollover").certificate_pem
    for certificates in ((other, idp.key.certificate_pem), (idp.key.certificate_pem, other), (other,)):
        settings_ = _library_settings(idp, certificates=certificates)
        for name, xml in corpus.items():
            if name == "encrypted assertion":
                continue
            with stock_library():
                stock = _observe(OneLogin_Saml2_Response(settings_, base64.b64encode(xml).decode("ascii")))
            assert _observe(_patched_response(settings_, xml)) == stock, (name, len(certificates))


def test_a_cached_key_keeps_no_verdict(idp: FakeSamlIdp, corpus: dict[str, bytes]) -> None:
    """The same cached key checks a good, a forged and a good signature in turn: xmlsec
    verifies with a copy each time, so nothing of one check reaches the next."""
    certificate = OneLogin_Saml2_Utils.format_cert(idp.key.certificate_pem)
    assert onelogin_utils.xmlsec is key_cache.XMLSEC_VIEW  # type: ignore[attr-defined]
    key = onelogin_utils.xmlsec.Key.from_memory(certificate, xmlsec.KeyFormat.CERT_PEM, None)  # type: ignore[attr-defined]
    verdicts = []
    for name in ("good", "edited after signing", "other key", "good", "comment in NameID", "good"):
        root = OneLogin_Saml2_XML.to_etree(corpus[name])
        xmlsec.tree.add_ids(root, ["ID"])
        signature = root.find(f"{SAML}Assertion/{DS}Signature")
        verdicts.append(OneLogin_Saml2_Utils.validate_node_sign(signature, root, certificate))
        assert key_cache.cached_from_memory(certificate, xmlsec.KeyFormat.CERT_PEM) is key
    assert verdicts == [True, False, False, True, True, True]


def test_the_key_cache_is_per_thread_bounded_and_only_for_certificates(
        idp: FakeSamlIdp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(key_cache._local, "keys", {})  # this thread's cache, emptied for the count below
    certificate = idp.key.certificate_pem
    cert_pem = xmlsec.KeyFormat.CERT_PEM
    mine = key_cache.cached_from_memory(certificate, cert_pem, None)
    assert isinstance(mine, xmlsec.Key)
    assert key_cache.cached_from_memory(certificate, cert_pem) is mine
    as_bytes = key_cache.cached_from_memory(certificate.encode(), cert_pem)
    assert as_bytes is not mine and key_cache.cached_from_memory(certificate.encode(), cert_pem) is as_bytes
    theirs: list[Any] = []
    thread = threading.Thread(target=lambda: theirs.append(key_cache.cached_from_memory(certificate, cert_pem)))
    thread.start()
    thread.join()
    assert isinstance(theirs[0], xmlsec.Key) and theirs[0] is not mine
    # a private key (signing), a password, or a certificate that does not load: the stock
    # loader every time, with its own answer or error
    private = SigningKey.generate("Private").private_key_pem
    first = key_cache.cached_from_memory(private, xmlsec.KeyFormat.PEM, None)
    assert isinstance(first, xmlsec.Key) and key_cache.cached_from_memory(private, xmlsec.KeyFormat.PEM) is not first
    assert key_cache.cached_from_memory(certificate, cert_pem, "pw") is not mine
    for broken in ("", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 5):
        stock = _outcome(lambda broken=broken: key_cache.STOCK_FROM_MEMORY(broken, cert_pem, None))  # type: ignore[misc]
        assert stock[0] == "error"
        assert _outcome(lambda broken=broken: key_cache.cached_from_memory(broken, cert_pem)) == stock  # type: ignore[misc]
        assert _outcome(lambda broken=broken: key_cache.cached_from_memory(broken, cert_pem)) == stock  # type: ignore[misc]
    assert len(key_cache._local.keys) == 2
    # full: emptied, then the new certificate cached
    monkeypatch.setattr(key_cache, "MAX_CACHED_PER_THREAD", 2)
    other = SigningKey.generate("Other").certificate_pem
    fresh = key_cache.cached_from_memory(other, cert_pem)
    assert key_cache._local.keys == {(str, other): fresh}
    assert key_cache.cached_from_memory(certificate, cert_pem) is not mine


def test_the_xmlsec_view_is_the_real_module_but_for_key_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    view = key_cache.XMLSEC_VIEW
    assert onelogin_utils.xmlsec is view  # type: ignore[attr-defined]
    for name in ("SignatureContext", "KeysManager", "KeyFormat", "KeyData", "KeyDataType", "Transform", "tree",
                 "template", "enable_debug_trace", "Error", "EncryptionContext", "EncryptionType", "constants"):
        assert getattr(view, name) is getattr(xmlsec, name), name
    assert view.Key.from_memory is key_cache.cached_from_memory  # type: ignore[attr-defined]
    assert view.Key.from_file == xmlsec.Key.from_file  # type: ignore[attr-defined]
    assert xmlsec.Key.from_memory == key_cache.STOCK_FROM_MEMORY  # the real module is untouched
    saml.install_key_cache()
    assert onelogin_utils.xmlsec is view  # type: ignore[attr-defined]
    # applied once per process: a later install does not touch the module again
    monkeypatch.setattr(onelogin_utils, "xmlsec", key_cache.STOCK_XMLSEC)
    saml.install_key_cache()
    assert onelogin_utils.xmlsec is key_cache.STOCK_XMLSEC  # type: ignore[attr-defined]


# -- library_attributes --------------------------------------------------------------------

_VALUE_TEXT = st.sampled_from(["", " ", "a", " a ", "\n\tb\n", "ä x"]) | st.none()


@st.composite
def _attribute_statements(draw: st.DrawFn) -> list[tuple[str | None, list[dict[str, Any]]]]:
    attributes = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from([None, "", "mail", "groups", "x"]))
        values = [{"text": draw(_VALUE_TEXT), "name_id": draw(st.sampled_from([None, "n", " n ", ""])),
                   "comment": draw(st.booleans()), "tail": draw(_VALUE_TEXT), "other": draw(st.booleans())}
                  for _ in range(draw(st.integers(0, 3)))]
        attributes.append((name, values))
    return attributes


def _response_with(statement: list[tuple[str | None, list[dict[str, Any]]]], settings_: OneLogin_Saml2_Settings,
                   ) -> OneLogin_Saml2_Response:
    """An unsigned Response tree built directly (so it may hold comments, which the hardened
    parser removes), with RestrictedElement nodes as python3-saml's parser makes them."""
    parser = etree.XMLParser(remove_comments=False)
    parser.set_element_class_lookup(etree.ElementDefaultClassLookup(element=RestrictedElement))
    root = parser.makeelement(f"{SAMLP}Response", nsmap={"samlp": SAMLP_NS, "saml": SAML_NS})
    assertion = etree.SubElement(root, f"{SAML}Assertion")
    attribute_statement = etree.SubElement(assertion, f"{SAML}AttributeStatement")
    for name, values in statement:
        attribute = etree.SubElement(attribute_statement, f"{SAML}Attribute")
        if name is not None:
            attribute.set("Name", name)
        for value in values:
            if value["other"]:
                etree.SubElement(attribute, f"{SAML}Other").text = "not a value"
            element = etree.SubElement(attribute, f"{SAML}AttributeValue")
            element.text = value["text"]
            if value["comment"]:
                comment = etree.Comment("c")
                element.append(comment)
                comment.tail = value["tail"]
            if value["name_id"] is not None:
                nested = etree.SubElement(element, f"{SAML}NameID", Format="f")
                nested.text = value["name_id"]
                nested.tail = value["tail"]
    response: OneLogin_Saml2_Response = OneLogin_Saml2_Response.__new__(OneLogin_Saml2_Response)
    response._settings, response.document, response.encrypted = settings_, root, None
    return response


@SLOW
@given(statement=_attribute_statements(), allow_repeat=st.booleans())
def test_library_attributes_match_get_attributes(idp: FakeSamlIdp, statement: Any, allow_repeat: bool) -> None:
    settings_ = _library_settings(idp, allow_repeat=allow_repeat)
    with stock_library():
        stock = _outcome(_response_with(statement, settings_).get_attributes)
    ours = _outcome(lambda: library_attributes(_response_with(statement, settings_)))
    assert stock == ours


def test_library_attributes_default_to_unique_names_as_the_library_does(idp: FakeSamlIdp) -> None:
    """Without allowRepeatAttributeName in the settings (python3-saml fills it in; a settings
    object built otherwise may lack it) a repeated name is refused, as get_attributes does."""
    settings_ = _library_settings(idp)
    del settings_.get_security_data()["allowRepeatAttributeName"]
    statement: list[tuple[str | None, list[dict[str, Any]]]] = [
        ("mail", [{"text": "a", "name_id": None, "comment": False, "tail": None, "other": False}])] * 2
    with stock_library():
        stock = _outcome(_response_with(statement, settings_).get_attributes)
    assert stock[0] == "error"
    assert _outcome(lambda: library_attributes(_response_with(statement, settings_))) == stock


# -- the XPath cache -----------------------------------------------------------------------


def _recorded_queries(idp: FakeSamlIdp, corpus: dict[str, bytes]) -> list[tuple[Any, str, Any, Any]]:
    """Every (dom, query, context, tagid) python3-saml evaluates over the corpus."""
    calls: list[tuple[Any, str, Any, Any]] = []

    def recorder(dom: Any, query: str, context: Any = None, tagid: Any = None) -> Any:
        calls.append((dom, query, context, tagid))
        return saml.STOCK_QUERY(dom, query, context, tagid)

    settings_ = _library_settings(idp)
    with stock_library():
        OneLogin_Saml2_XML.query = staticmethod(recorder)
        for name, xml in corpus.items():
            if name != "encrypted assertion":
                _observe(OneLogin_Saml2_Response(settings_, base64.b64encode(xml).decode("ascii")))
    return calls


def test_cached_query_matches_the_stock_query(idp: FakeSamlIdp, corpus: dict[str, bytes]) -> None:
    calls = _recorded_queries(idp, corpus)
    assert len({query for _, query, _, _ in calls}) >= 15
    for dom, query, context, tagid in calls:
        stock = _outcome(lambda: saml.STOCK_QUERY(dom, query, context, tagid))
        ours = _outcome(lambda: xpath_cache.cached_query(dom, query, context, tagid))
        assert stock == ours, query
    # every expression on every document, with ids that match, do not match or need quoting
    queries = sorted({query for _, query, _, _ in calls})
    for xml in corpus.values():
        root = OneLogin_Saml2_XML.to_etree(xml)
        assertion = root.find(f"{SAML}Assertion")
        for query in queries:
            for tagid in (None, "", assertion.get("ID") if assertion is not None else "x", "a'b\"c"):
                for context in (None, assertion):
                    stock = _outcome(lambda: saml.STOCK_QUERY(root, query, context, tagid))
                    ours = _outcome(lambda: xpath_cache.cached_query(root, query, context, tagid))
                    assert stock == ours, (query, tagid)


@pytest.mark.parametrize("query", [
    "/samlp:Response[@ID=$tagid]",  # a variable left unbound
    "/samlp:Response[",  # does not compile: the stock error, not XPath's
    "//nope:Thing",  # an unknown prefix
    "count(//saml:Assertion)",  # not a node set
    "string(/samlp:Response/@ID)",
])
def test_cached_query_fails_and_answers_as_the_stock_query(idp: FakeSamlIdp, corpus: dict[str, bytes],
                                                            query: str) -> None:
    root = OneLogin_Saml2_XML.to_etree(corpus["good"])
    for source in (root, root.getroottree(), None, "<samlp:Response/>"):  # no element: the stock errors
        stock = _outcome(lambda: saml.STOCK_QUERY(source, query))
        assert _outcome(lambda: xpath_cache.cached_query(source, query)) == stock


def test_the_xpath_cache_is_per_thread_and_bounded(idp: FakeSamlIdp, corpus: dict[str, bytes],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert OneLogin_Saml2_XML.query is xpath_cache.cached_query
    root = OneLogin_Saml2_XML.to_etree(corpus["good"])
    query = "/samlp:Response/saml:Assertion"
    mine = xpath_cache._compiled(query)
    assert mine is not None and xpath_cache._compiled(query) is mine
    theirs: list[Any] = []
    thread = threading.Thread(target=lambda: theirs.append(xpath_cache._compiled(query)))
    thread.start()
    thread.join()
    assert theirs[0] is not None and theirs[0] is not mine
    monkeypatch.setattr(xpath_cache, "MAX_CACHED_PER_THREAD", 0)
    fresh = "/samlp:Response/saml:Issuer[1]"  # not cached yet: with the cache full, the stock query answers
    assert xpath_cache._compiled(fresh) is None
    assert xpath_cache.cached_query(root, fresh)[0].text == idp.entity_id


# -- the time parser -----------------------------------------------------------------------

_DIGITS = st.text("0123456789", min_size=1, max_size=5)
_NEAR_FORM = st.builds(
    "{}{}{}{}{}{}{}T{}:{}{}:{}{}{}".format,
    _DIGITS, st.sampled_from(["-", "/"]), _DIGITS, st.just("-"), _DIGITS, st.just(""), st.just(""),
    _DIGITS, _DIGITS, st.just(""), _DIGITS,
    st.sampled_from(["", ".", ".0", ".123456", ".1234567", ".5z"]),
    st.sampled_from(["Z", "z", "", "+00:00", "Z\n", " Z", "ZZ"]),
)
_COMMON = st.builds(
    lambda moment, fraction, zone: moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + zone,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.sampled_from(["", ".0", ".999999", ".1234567", ".", ".1"]),
    st.sampled_from(["Z", "z", ""]),
)
_FIELDS = st.builds(
    lambda y, mo, d, h, mi, s: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z",
    st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25), st.integers(0, 61),
    st.integers(0, 62),
)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(value=_COMMON | _FIELDS | _NEAR_FORM | st.text(max_size=30) | st.from_regex(
    r"[0-9٠-٩]{4}-[0-9٠-٩]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,8})?Z?\n?", fullmatch=True))
def test_parse_saml_time_matches_the_stock_parser(value: str) -> None:
    assert _outcome(lambda: parse_saml_time(value)) == _outcome(lambda: saml.STOCK_PARSE_SAML_TO_TIME(value))


def test_parse_saml_time_is_installed_and_takes_the_common_form() -> None:
    assert OneLogin_Saml2_Utils.parse_SAML_to_time is parse_saml_time
    assert parse_saml_time("1970-01-01T00:00:00Z") == 0
    assert parse_saml_time("2026-12-02T07:00:00.123Z") == saml.STOCK_PARSE_SAML_TO_TIME("2026-12-02T07:00:00Z")
    for value in ("2026-02-29T00:00:00Z", "2026-12-02T07:00:60Z", None, 5, "2026-12-02T07:00:00+01:00"):
        assert _outcome(lambda: parse_saml_time(value)) == _outcome(  # type: ignore[arg-type]
            lambda: saml.STOCK_PARSE_SAML_TO_TIME(value))  # type: ignore[arg-type]


# -- login_activity._bounded -------------------------------------------------------------


def _bounded_before(value: Any, depth: int = 0) -> Any:
    """login_activity._bounded as it was before the list shortcut."""
    if isinstance(value, str):
        limit = login_activity.MAX_TEXT
        return value if len(value) <= limit else value[:limit] + f"… ({len(value)} characters)"
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth >= 4:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())
        out = {str(k): "[redacted]" if login_activity._secretish(str(k)) else _bounded_before(v, depth + 1)
               for k, v in items[:login_activity.MAX_ITEMS]}
        if len(items) > login_activity.MAX_ITEMS:
            out["…"] = f"{len(items) - login_activity.MAX_ITEMS} more"
        return out
    if isinstance(value, list | tuple):
        cut = [_bounded_before(v, depth + 1) for v in list(value)[:login_activity.MAX_ITEMS]]
        if len(value) > login_activity.MAX_ITEMS:
            cut.append(f"… {len(value) - login_activity.MAX_ITEMS} more")
        return cut
    return _bounded_before(str(value), depth)


class _Text(str):
    pass


_LEAVES = (st.text(max_size=3) | st.integers() | st.none() | st.booleans()
           | st.builds(lambda n: "x" * n, st.sampled_from([499, 500, 501, 900]))
           | st.builds(_Text, st.text(max_size=3)) | st.builds(lambda n: 1.5 * n, st.integers()))
_JSONISH = st.recursive(
    _LEAVES,
    lambda inner: (st.lists(inner, max_size=6) | st.builds(tuple, st.lists(inner, max_size=3))
                   | st.dictionaries(st.sampled_from(["a", "token", "groups", "b"]), inner, max_size=4)),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(value=_JSONISH)
def test_bounded_is_unchanged_by_the_list_shortcut(value: Any) -> None:
    assert login_activity._bounded(value) == _bounded_before(value)


def test_bounded_cuts_long_lists_and_strings_in_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(login_activity, "MAX_ITEMS", 3)
    value = ["a", "x" * 600, ["b"], "c", "d"]
    assert login_activity._bounded(value) == _bounded_before(value)
    assert login_activity._bounded(value)[1].endswith("(600 characters)")

"""The ACS form parser: the fields ``urllib.parse.parse_qs`` reads, the input policy on every
name and value (as the app-wide check applied it before the ACS was exempted from it), and
only the ACS exempt from the app-wide second parse."""

from __future__ import annotations

import base64
import os
import urllib.parse
from typing import Any

import pytest
from conftest import client_for
from hypothesis import given, settings
from hypothesis import strategies as st
from saml_support import generic_connector

from transom import textpolicy
from transom.saml.form import MAX_ACS_FIELDS, parse_form
from transom.testing.saml import FakeSamlIdp
from transom.textpolicy import UnsafeText
from transom.web.inputs import _is_acs

#: what makes form decoding interesting: escapes (valid, broken, lower case), pluses, separators
_PIECES = st.sampled_from(["%2B", "%2b", "%2F", "%2f", "%3D", "%3d", "%25", "%", "%2", "%3", "%0", "%00", "%0A",
                           "%C3%A9", "%ED%A0%80", "%FF", "%zz", "+", "&", "=", "2", "B", "b", "F", "3", "D", "d",
                           "A", "x", "SAMLResponse", "RelayState", "name"])
_FORMS = st.lists(_PIECES, max_size=40).map("".join)


def _stdlib(text: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(text, keep_blank_values=True, max_num_fields=MAX_ACS_FIELDS)


def _passes_policy(fields: dict[str, list[str]]) -> bool:
    for name, values in fields.items():
        if textpolicy.violation(name, identifier=True):
            return False
        identifier = name.lower() in textpolicy.IDENTIFIER_FIELDS
        if any(textpolicy.violation(value, identifier=identifier) for value in values):
            return False
    return True


@settings(max_examples=1500, deadline=None)
@given(text=_FORMS)
def test_the_same_fields_as_parse_qs_or_the_policy_refuses(text: str) -> None:
    try:
        expected: Any = _stdlib(text)
    except ValueError:
        with pytest.raises(ValueError):
            parse_form(text)
        return
    if _passes_policy(expected):
        assert parse_form(text) == expected
    else:
        with pytest.raises(UnsafeText):
            parse_form(text)


def test_a_real_form_encoded_saml_response() -> None:
    saml_response = base64.b64encode(os.urandom(30_000)).decode("ascii")
    body = urllib.parse.urlencode({"SAMLResponse": saml_response, "RelayState": "/app?x=1&y=2"})
    assert "%2B" in body and "%2F" in body
    assert parse_form(body) == {"SAMLResponse": [saml_response], "RelayState": ["/app?x=1&y=2"]}
    assert parse_form(body) == _stdlib(body)


@pytest.mark.parametrize(("body", "reason"), [
    ("SAMLResponse=eA%3D%3D&RelayState=a%00b", textpolicy.REASON_NUL),
    ("SAMLResponse=eA%0B%3D%3D", textpolicy.REASON_CONTROL),
    ("SAMLResponse=eA%3D%3D&Relay%0AState=x", textpolicy.REASON_CONTROL),  # a name is an identifier
    ("SAMLResponse=eA%3D%3D&name=a%09b", textpolicy.REASON_CONTROL),  # an identifier field's value
    ("SAMLResponse=eA%3D%3D&RelayState=%ED%A0%80", None),  # not a surrogate: unquote replaces bad UTF-8
])
def test_the_policy_applies_to_every_name_and_value(body: str, reason: str | None) -> None:
    if reason is None:
        assert parse_form(body)["RelayState"] == ["\ufffd\ufffd\ufffd"]
        return
    with pytest.raises(UnsafeText) as refused:
        parse_form(body)
    assert refused.value.reason == reason


def test_too_many_fields() -> None:
    with pytest.raises(ValueError):
        parse_form("&".join(f"f{i}=1" for i in range(MAX_ACS_FIELDS + 1)))
    assert len(parse_form("&".join(f"f{i}=1" for i in range(MAX_ACS_FIELDS)))) == MAX_ACS_FIELDS


@pytest.mark.parametrize(("path", "exempt"), [
    ("/api/accounts/saml/acme/acs", True),
    ("/api/accounts/saml/acme/metadata", False),
    ("/api/accounts/saml/acme/x/acs", False),
    ("/api/accounts/saml//acs", True),
    ("/api/admin/acs", False),
    ("/api/accounts/login/acme", False),
])
def test_only_the_acs_skips_the_app_wide_form_check(path: str, exempt: bool) -> None:
    assert _is_acs(path) is exempt


@pytest.fixture
def acs_client(make_runtime: Any) -> Any:
    runtime = make_runtime(connectors=[generic_connector(FakeSamlIdp())])
    with client_for(runtime) as client:
        yield client


@pytest.mark.parametrize(("fields", "reason"), [
    ({"SAMLResponse": "eA==", "RelayState": "\x07"}, textpolicy.REASON_CONTROL),
    ({"SAMLResponse": "eA==", "RelayState": "a\x00"}, textpolicy.REASON_NUL),
    ({"SAMLResponse": "eA\x0b=="}, textpolicy.REASON_CONTROL),  # a blank decode_saml_response would drop
    ({"SAMLResponse": "eA==", "Relay\nState": "x"}, textpolicy.REASON_CONTROL),
])
def test_the_acs_refuses_unsafe_text_through_http(acs_client: Any, fields: dict[str, str], reason: str) -> None:
    response = acs_client.post("/api/accounts/saml/acme-saml/acs", data=fields)
    assert response.status_code == 400
    assert response.json()["reason"] == reason

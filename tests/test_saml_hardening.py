"""SAML checks that Transom adds on top of python3-saml, each pinned on its own (issue 12):
the refusal names the rule that refused (``reason``), so a check that the library also
performs cannot be deleted unnoticed. Also the clock skew on every time check (case 5) and
the SP metadata's validity (case 11).

Responses are real: built by FakeSamlIdp and signed with xmlsec.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import client_for
from lxml import etree
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from saml_support import acs_url, assert_refused, build, counts, generic_attributes, generic_connector, sp_entity_id
from sqlalchemy import false, select
from starlette.testclient import TestClient

import transom.saml.library_clock as library_clock_module
import transom.saml.replay
from transom.errors import LoginRefused
from transom.login import complete_login
from transom.loginstate import BINDING_COOKIE, check_login_state
from transom.models import SamlAssertionSeen
from transom.runtime import Runtime
from transom.saml.form import AcsForm
from transom.saml.response import VerifiedResponse
from transom.saml.verify import verify_saml
from transom.testing.saml import (
    DS_NS,
    SAML_NS,
    AuthnRequestInfo,
    FakeSamlIdp,
    assertion_of,
    encode,
    post_response,
    start_login,
)

DS = f"{{{DS_NS}}}"
SAML = f"{{{SAML_NS}}}"
MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
SKEW = 120  # conftest default server.clock_skew_seconds


@dataclass
class Env:
    idp: FakeSamlIdp
    runtime: Runtime
    client: TestClient
    connector_id: str = "acme-saml"

    def start(self) -> AuthnRequestInfo:
        return start_login(self.client, self.connector_id)

    def signed(self, request: AuthnRequestInfo | None, **options: Any) -> Any:
        options.setdefault("attributes", generic_attributes())
        options.setdefault("name_id", "ada-persistent-id")
        options.setdefault("in_response_to", request.id if request else None)
        return self.idp.signed_response(acs_url=acs_url(self.connector_id),
                                        audience=sp_entity_id(self.connector_id), **options)

    def post(self, document: Any) -> Any:
        return post_response(self.client, self.connector_id, encode(document))

    def refused(self, response: Any, reason: str) -> dict[str, Any]:
        body = assert_refused(response, self.runtime, self.client, login_states=1)
        assert body.get("reason") == reason, body
        return body

    def accepted(self, response: Any) -> None:
        assert response.status_code == 303, response.text
        assert self.client.get("/api/me").status_code == 200


@pytest.fixture
def env(make_runtime: Any) -> Iterator[Env]:
    idp = FakeSamlIdp()
    runtime = build(make_runtime, [generic_connector(idp)])
    with client_for(runtime) as client:
        yield Env(idp, runtime, client)


def _confirmation(root: Any) -> Any:
    return assertion_of(root).find(f"{SAML}Subject/{SAML}SubjectConfirmation")


# -- clock skew on every time check (case 5) ------------------------------------------------


@pytest.mark.parametrize("late", [30, 60, 110])
def test_conditions_expired_inside_the_skew_is_accepted(env: Env, late: int) -> None:
    request = env.start()
    now = datetime.now(UTC)  # after the login start: only signing and posting eat into the margin
    env.accepted(env.post(env.signed(request, now=now - timedelta(seconds=late + 60),
                                     not_on_or_after=now - timedelta(seconds=late),
                                     scd_not_on_or_after=now + timedelta(seconds=300))))


@pytest.mark.parametrize("late", [30, 60, 110])
def test_subject_confirmation_expired_inside_the_skew_is_accepted(env: Env, late: int) -> None:
    """python3-saml compares the bearer NotOnOrAfter with no drift at all; docs/saml.md
    promises the configured skew for every time."""
    request = env.start()
    now = datetime.now(UTC)  # after the login start: only signing and posting eat into the margin
    env.accepted(env.post(env.signed(request, scd_not_on_or_after=now - timedelta(seconds=late))))


def test_conditions_expired_beyond_the_skew_is_refused_by_transom(env: Env) -> None:
    """180 s: inside python3-saml's fixed 300 s, so only Transom's own check refuses."""
    now = datetime.now(UTC)
    request = env.start()
    body = env.refused(env.post(env.signed(request, now=now - timedelta(seconds=240),
                                           not_on_or_after=now - timedelta(seconds=180),
                                           scd_not_on_or_after=now + timedelta(seconds=300))),
                       "saml.expired")
    assert f"allowed skew: {SKEW} s" in body["hint"]


def test_subject_confirmation_expired_beyond_the_skew_is_refused_by_transom(env: Env) -> None:
    now = datetime.now(UTC)
    request = env.start()
    body = env.refused(env.post(env.signed(request, scd_not_on_or_after=now - timedelta(seconds=180))),
                       "saml.scd_expired")
    assert f"allowed skew: {SKEW} s" in body["hint"]


def test_subject_confirmation_long_expired_is_refused(env: Env) -> None:
    now = datetime.now(UTC)
    request = env.start()
    body = assert_refused(env.post(env.signed(request, scd_not_on_or_after=now - timedelta(seconds=900))),
                          env.runtime, env.client, login_states=1)
    assert body["reason"] in ("saml.scd_expired", "saml.library.wrong_subjectconfirmation")


def _scd_not_before(moment: datetime) -> Any:
    def edit(root: Any) -> None:
        data = _confirmation(root).find(f"{SAML}SubjectConfirmationData")
        data.set("NotBefore", moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return edit


def test_subject_confirmation_not_yet_valid_inside_the_skew_is_accepted(env: Env) -> None:
    request = env.start()
    env.accepted(env.post(env.signed(request, before_signing=_scd_not_before(
        datetime.now(UTC) + timedelta(seconds=60)))))


def test_subject_confirmation_not_yet_valid_beyond_the_skew_is_refused(env: Env) -> None:
    request = env.start()
    env.refused(env.post(env.signed(request, before_signing=_scd_not_before(
        datetime.now(UTC) + timedelta(seconds=200)))), "saml.scd_not_yet_valid")


def _session_not_on_or_after(moment: datetime) -> Any:
    def edit(root: Any) -> None:
        assertion_of(root).find(f"{SAML}AuthnStatement").set(
            "SessionNotOnOrAfter", moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return edit


def test_session_not_on_or_after_inside_the_skew_is_accepted(env: Env) -> None:
    request = env.start()
    env.accepted(env.post(env.signed(request, before_signing=_session_not_on_or_after(
        datetime.now(UTC) - timedelta(seconds=60)))))


def test_session_not_on_or_after_beyond_the_skew_is_refused(env: Env) -> None:
    request = env.start()
    env.refused(env.post(env.signed(request, before_signing=_session_not_on_or_after(
        datetime.now(UTC) - timedelta(seconds=200)))), "saml.session_expired")


# -- the replay row's lifetime ----------------------------------------------------------------


@pytest.mark.parametrize(("conditions_s", "scd_s"), [(300, 200), (200, 400)])
def test_replay_row_lives_until_the_latest_expiry_plus_the_skew(env: Env, conditions_s: int, scd_s: int) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    request = env.start()
    env.accepted(env.post(env.signed(request, not_on_or_after=now + timedelta(seconds=conditions_s),
                                     scd_not_on_or_after=now + timedelta(seconds=scd_s))))
    with env.runtime.db.transaction() as db:
        row = db.scalar(select(SamlAssertionSeen))
        assert row is not None
        expires_at = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    assert expires_at == now + timedelta(seconds=max(conditions_s, scd_s) + SKEW)


# -- signature constructs refused before xmlsec --------------------------------------------


@pytest.mark.parametrize("name", ["Manifest", "RetrievalMethod", "XPath", "XSLT"])
def test_forbidden_signature_elements_are_refused(env: Env, name: str) -> None:
    request = env.start()
    root = env.signed(request)
    signature = assertion_of(root).find(f"{DS}Signature")
    holder = etree.SubElement(signature, f"{DS}Object")
    etree.SubElement(holder, f"{DS}{name}")
    body = env.refused(env.post(root), "saml.ds_forbidden")
    assert f"ds:{name}" in body["hint"]


# -- the bearer confirmation -------------------------------------------------------------------


def test_bearer_confirmation_without_not_on_or_after_is_refused(env: Env) -> None:
    """python3-saml accepts a SubjectConfirmationData with no NotOnOrAfter; the Web SSO
    profile requires one."""
    def edit(root: Any) -> None:
        del _confirmation(root).find(f"{SAML}SubjectConfirmationData").attrib["NotOnOrAfter"]

    request = env.start()
    env.refused(env.post(env.signed(request, before_signing=edit)), "saml.scd_not_on_or_after_missing")


def _second_confirmation(in_response_to: str | None) -> Any:
    def edit(root: Any) -> None:
        first = _confirmation(root)
        second = copy.deepcopy(first)
        data = second.find(f"{SAML}SubjectConfirmationData")
        if in_response_to is None:
            data.attrib.pop("InResponseTo", None)
        else:
            data.set("InResponseTo", in_response_to)
        first.addnext(second)
    return edit


@pytest.mark.parametrize("outer", ["request", None])
def test_confirmations_answering_different_requests_are_refused(env: Env, outer: str | None) -> None:
    """The library is satisfied by the first valid confirmation; a second one naming another
    request means the assertion cannot be bound to one login."""
    request = env.start()
    root = env.signed(request, before_signing=_second_confirmation("ONELOGIN_another_request"),
                      response_in_response_to=request.id if outer else None)
    env.refused(env.post(root), "saml.in_response_to_mixed")


def test_confirmations_one_without_in_response_to_are_refused(env: Env) -> None:
    request = env.start()
    root = env.signed(request, before_signing=_second_confirmation(None), response_in_response_to=None)
    env.refused(env.post(root), "saml.in_response_to_mixed")


def test_unsigned_in_response_to_without_a_signed_one_is_refused(env: Env) -> None:
    request = env.start()
    root = env.signed(None, response_in_response_to=request.id)
    env.refused(env.post(root), "saml.in_response_to_unsigned")


def test_unsigned_in_response_to_disagreeing_with_the_signed_one_is_refused(env: Env) -> None:
    """python3-saml skips every confirmation whose InResponseTo differs from the Response's,
    so it refuses first; Transom's own comparison stays as a second layer (listed as an
    equivalent mutant in bench/mutation_equivalent.txt)."""
    request = env.start()
    root = env.signed(request, response_in_response_to="ONELOGIN_another_request")
    env.refused(env.post(root), "saml.library.wrong_subjectconfirmation")


# -- audience ----------------------------------------------------------------------------------


def test_every_audience_restriction_must_name_this_sp(env: Env) -> None:
    """Conditions with two AudienceRestrictions mean "both must hold": one naming another SP
    is a refusal, although python3-saml is satisfied when any Audience names us."""
    def edit(root: Any) -> None:
        conditions = assertion_of(root).find(f"{SAML}Conditions")
        restriction = etree.SubElement(conditions, f"{SAML}AudienceRestriction")
        etree.SubElement(restriction, f"{SAML}Audience").text = "https://other-sp.example/metadata"

    request = env.start()
    body = env.refused(env.post(env.signed(request, before_signing=edit)), "saml.audience")
    assert sp_entity_id(env.connector_id) in body["hint"]


def test_two_audience_restrictions_both_naming_this_sp_are_accepted(env: Env) -> None:
    def edit(root: Any) -> None:
        conditions = assertion_of(root).find(f"{SAML}Conditions")
        restriction = etree.SubElement(conditions, f"{SAML}AudienceRestriction")
        etree.SubElement(restriction, f"{SAML}Audience").text = "https://other-sp.example/metadata"
        etree.SubElement(restriction, f"{SAML}Audience").text = sp_entity_id(env.connector_id)

    request = env.start()
    env.accepted(env.post(env.signed(request, before_signing=edit)))


# -- SP metadata validity (case 11) ------------------------------------------------------------


def test_sp_metadata_validity_is_consistent(env: Env) -> None:
    """No validUntil and no cacheDuration: the metadata holds no key, only URLs derived from
    base_url, so a static copy at the IdP never goes stale (docs/saml.md)."""
    response = env.client.get(f"/api/accounts/saml/{env.connector_id}/metadata")
    assert response.status_code == 200
    root = etree.fromstring(response.content, etree.XMLParser(resolve_entities=False, no_network=True))
    assert root.tag == f"{MD}EntityDescriptor"
    assert root.get("entityID") == sp_entity_id(env.connector_id)
    for element in root.iter():
        assert element.get("validUntil") is None, element.tag
        assert element.get("cacheDuration") is None, element.tag
    acs = root.find(f"{MD}SPSSODescriptor/{MD}AssertionConsumerService")
    assert acs is not None and acs.get("Location") == acs_url(env.connector_id)
    assert not isinstance(OneLogin_Saml2_XML.validate_xml(response.content, "saml-schema-metadata-2.0.xsd"), str)


# -- second layers the library leaves open -----------------------------------------------------


def test_assertion_without_conditions_is_refused(env: Env) -> None:
    """python3-saml refuses it first (MISSING_CONDITIONS); Transom's own "one Conditions"
    check stays behind it as a second layer (an equivalent mutant, bench/mutation_equivalent.txt)."""
    def edit(root: Any) -> None:
        assertion = assertion_of(root)
        assertion.remove(assertion.find(f"{SAML}Conditions"))

    request = env.start()
    env.refused(env.post(env.signed(request, before_signing=edit)), "saml.library.missing_conditions")


def test_second_bearer_confirmation_without_data_is_refused(env: Env) -> None:
    """The library is satisfied by the first valid confirmation and skips one without data;
    every bearer confirmation must be complete."""
    def edit(root: Any) -> None:
        first = _confirmation(root)
        second = copy.deepcopy(first)
        second.remove(second.find(f"{SAML}SubjectConfirmationData"))
        first.addnext(second)

    request = env.start()
    env.refused(env.post(env.signed(request, before_signing=edit)), "saml.scd_missing")


def test_second_bearer_confirmation_with_another_recipient_is_refused(env: Env) -> None:
    def edit(root: Any) -> None:
        first = _confirmation(root)
        second = copy.deepcopy(first)
        second.find(f"{SAML}SubjectConfirmationData").set("Recipient", "https://other-sp.example/acs")
        first.addnext(second)

    request = env.start()
    env.refused(env.post(env.signed(request, before_signing=edit)), "saml.recipient")


def test_encrypted_data_outside_an_encrypted_assertion_is_refused(env: Env) -> None:
    """xenc:EncryptedData anywhere (here in the unsigned Response's Extensions) is refused
    before parsing goes on: Transom holds no decryption key."""
    request = env.start()
    root = env.signed(request)
    extensions = etree.Element("{urn:oasis:names:tc:SAML:2.0:protocol}Extensions")
    etree.SubElement(extensions, "{http://www.w3.org/2001/04/xmlenc#}EncryptedData")
    root.find(f"{SAML}Issuer").addnext(extensions)
    env.refused(env.post(root), "saml.encrypted")


def test_replay_is_refused_by_the_cache_lookup(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """The lookup refuses (and logs) a replay; the primary key is the second layer for two
    posts racing each other (tests/test_concurrent_first_login.py)."""
    request = env.start()
    encoded = encode(env.signed(request))
    env.accepted(post_response(env.client, env.connector_id, encoded))
    caplog.clear()
    with caplog.at_level("INFO", logger="transom.refusal"):
        again = post_response(env.client, env.connector_id, encoded)
    assert again.status_code == 400 and again.json()["reason"] == "saml.replay"
    assert "code=saml.replay" in caplog.text and "layer=lookup" in caplog.text


@pytest.mark.parametrize(("relay_state", "expected"), [
    ("/reports?tab=1", "/reports?tab=1"), ("https://evil.example/", None), ("//evil.example/x", None), ("", None),
    (None, None),
])
def test_unsolicited_relay_state_is_kept_only_when_it_is_a_local_path(
    env: Env, relay_state: str | None, expected: str | None
) -> None:
    """The replay step's own rule, without the redirect's safe_next behind it (which would
    turn any unsafe target into "/" anyway); the check runs in a write transaction, as in
    the login's, and only reads."""
    verified = VerifiedResponse(assertion_id=f"_a{relay_state!r}", in_response_to=None,
                                expires_at=datetime.now(UTC) + timedelta(minutes=5), payload={})
    with env.runtime.db.transaction() as db:
        checked = transom.saml.replay.check_response(
            db, connector=env.runtime.connector(env.connector_id), verified=verified, binding=None,
            relay_state=relay_state)
    assert checked.next_path == expected
    assert counts(env.runtime)["assertions_seen"] == 0


def test_replay_racing_past_the_lookup_is_refused_by_the_primary_key(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second layer on its own: a post whose lookup missed although the same response
    was spent (as for the second of two posts racing on PostgreSQL, where two login
    transactions can both look before either inserts: tests/test_login_writes_once.py), so
    only the primary key can refuse it, in its login transaction; nothing of that login is
    kept."""
    request = env.start()
    form = AcsForm(saml_response=encode(env.signed(request)), relay_state=None)
    binding = env.client.cookies.get(BINDING_COOKIE)
    connector = env.runtime.connector(env.connector_id)
    first = verify_saml(env.runtime, connector, form, binding=binding)
    second = verify_saml(env.runtime, connector, form, binding=binding)
    with env.runtime.db.read() as db:  # the request as the second's check saw it, before the first committed
        pending = check_login_state(db, key=request.id, binding=binding)
    complete_login(env.runtime, first)
    # The second's check ran before the first committed: its lookup missed, the request was pending.
    monkeypatch.setattr(transom.saml.replay, "_SEEN", transom.saml.replay._SEEN.where(false()))
    monkeypatch.setattr(transom.saml.replay, "check_login_state", lambda _db, **_kw: pending)
    with pytest.raises(LoginRefused) as refused:
        complete_login(env.runtime, second)
    assert refused.value.reason == "saml.replay" and refused.value.log_detail == "layer=primary_key"
    state = counts(env.runtime)
    assert (state["users"], state["sessions"], state["assertions_seen"], state["login_states"]) == (1, 1, 1, 0)


def test_the_library_clock_stands_still_while_the_library_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    """The moved clock sits one second inside the confirmation's window; if it kept running, a
    validation slower than that second (xmlsec on a loaded host) would step out of the window
    and the library would refuse a confirmation that the skew allows."""
    ticks = iter(range(1_000_000, 2_000_000, 7))  # a real clock that moves 7 s per reading
    monkeypatch.setattr(library_clock_module, "_stock_now", lambda: next(ticks))
    with library_clock_module.library_clock(-100):
        readings = {OneLogin_Saml2_Utils.now() for _ in range(5)}
    assert readings == {1_000_000 - 100}
    assert OneLogin_Saml2_Utils.now() > 1_000_000  # outside the block: the real clock again

"""One write transaction per SSO callback (issue 13), and the single-use marks stay single use.

An OIDC callback checks its login state read-only before the code exchange; a SAML ACS
checks its marks (the replay row and the login state named by InResponseTo) inside the
login's one transaction; both spend them as that transaction's first statements
(transom.singleuse). Pinned here: a successful OIDC callback and SAML ACS commit once (and
on SQLite begin one ``BEGIN IMMEDIATE``), and a SAML ACS uses one database unit in all;
every refusal by SAML's check answers as before and writes nothing of the login; after
anything fails past the check the marks are spent anyway; two callbacks that both passed
the check cannot both spend them; a groups overage looked up through Graph is never
reached with a replayed or refused assertion.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import client_for
from oidc_support import build as build_oidc
from oidc_support import counts as oidc_counts
from oidc_support import entra_claims, entra_connector, entra_fake, okta_claims, okta_connector, okta_org_fake
from saml_support import ENTRA_GROUPS, OID, TENANT, entra_attributes, generic_attributes, generic_connector
from saml_support import build as build_saml
from saml_support import counts as saml_counts
from saml_support import entra_connector as entra_saml_connector
from sqlalchemy import Engine, delete, event, select, text, update
from sqlalchemy.orm import Session

import transom.login
import transom.saml.replay
from transom import directory
from transom.db import ReadOnlyViolation
from transom.errors import LoginRefused
from transom.login import complete_login
from transom.loginstate import BINDING_COOKIE, PendingState, check_login_state, login_state_mark
from transom.models import USER_DEPROVISIONED, Account, LoginState, User, utcnow
from transom.oidc.verify import read_callback_params, verify_oidc
from transom.runtime import Runtime
from transom.saml.form import AcsForm
from transom.saml.verify import verify_saml
from transom.singleuse import SingleUse
from transom.testing.graph import FakeGraph
from transom.testing.jwt import OMIT
from transom.testing.oidc import finish_login, oidc_login, start_login
from transom.testing.saml import FakeSamlIdp, encode, post_response
from transom.testing.saml import start_login as start_saml
from transom_azure_ad import graph

# -- counting write transactions -------------------------------------------------------------


@dataclass
class Writes:
    commits: int = 0
    immediate: int = 0  # SQLite: BEGIN IMMEDIATE (the writer lock)
    checkouts: int = 0  # connections taken from the pool: one per database unit
    statements: list[str] = field(default_factory=list)


@contextmanager
def counted(engine: Engine) -> Iterator[Writes]:
    """The commits (every engine) and ``BEGIN IMMEDIATE``s (SQLite) inside the block. On
    SQLite the statements are what SQLite itself ran (its trace callback on every connection
    checked out in the block): transom.db sends ``BEGIN`` on the driver connection, past
    SQLAlchemy's statement events."""
    writes = Writes()
    on_sqlite = engine.dialect.name == "sqlite"
    traced: list[Any] = []

    def on_commit(_conn: Any) -> None:
        writes.commits += 1

    def on_sql(statement: str) -> None:
        writes.statements.append(statement)
        if statement.strip().upper() == "BEGIN IMMEDIATE":
            writes.immediate += 1

    def on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        writes.checkouts += 1
        if on_sqlite:
            dbapi_conn.set_trace_callback(on_sql)
            traced.append(dbapi_conn)

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        on_sql(statement)

    event.listen(engine, "commit", on_commit)
    event.listen(engine, "checkout", on_checkout)
    if not on_sqlite:
        event.listen(engine, "before_cursor_execute", on_statement)
    try:
        yield writes
    finally:
        event.remove(engine, "commit", on_commit)
        event.remove(engine, "checkout", on_checkout)
        for dbapi_conn in traced:
            dbapi_conn.set_trace_callback(None)
        if not on_sqlite:
            event.remove(engine, "before_cursor_execute", on_statement)


def sqlite(runtime: Runtime) -> bool:
    return runtime.db.url.startswith("sqlite")


def assert_one_write(runtime: Runtime, writes: Writes) -> None:
    assert writes.commits == 1, writes.statements
    if sqlite(runtime):
        assert writes.immediate == 1, writes.statements


def assert_oidc_units(runtime: Runtime, writes: Writes) -> None:
    """One write, and before it the state's read-only unit (kept: it refuses an unknown
    state before the code exchange goes to the IdP)."""
    assert_one_write(runtime, writes)
    if sqlite(runtime):
        assert "BEGIN" in [s.strip().upper() for s in writes.statements]  # the check's read unit


def assert_one_unit(runtime: Runtime, writes: Writes) -> None:
    """One write and nothing else: the ACS checks its marks inside the login's transaction."""
    assert_one_write(runtime, writes)
    assert writes.checkouts == 1, writes.statements
    if sqlite(runtime):
        assert "BEGIN" not in [s.strip().upper() for s in writes.statements]  # no read unit


_WRITE = re.compile(r'^\s*(?:INSERT\s+INTO|DELETE\s+FROM|UPDATE)\s+"?(\w+)', re.IGNORECASE)


def written_tables(writes: Writes) -> set[str]:
    """The tables the block's statements wrote to (or tried to: rolled back ones included)."""
    return {m.group(1).lower() for s in writes.statements if (m := _WRITE.match(s))}


# -- OIDC --------------------------------------------------------------------------------------


def test_successful_oidc_callback_writes_once(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build_oidc(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        for _ in range(2):  # a first login (user created) and a returning one
            params = fake.authorize(start_login(client, "acme-okta"), okta_claims())
            with counted(runtime.db.engine) as writes:
                assert finish_login(client, params).status_code == 303
            assert_oidc_units(runtime, writes)
    assert oidc_counts(runtime)["login_states"] == 0


def test_failed_code_exchange_spends_the_state(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build_oidc(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        params = fake.authorize(start_login(client, "acme-okta"), okta_claims())
        wrong = {**params, "code": "not-a-code-the-idp-issued"}
        response = finish_login(client, wrong)
        assert response.status_code == 400 and "refused the authorization code" in response.json()["hint"]
        assert oidc_counts(runtime)["login_states"] == 0
        # the state is gone: not even the right code can use it now
        again = finish_login(client, params)
        assert again.status_code == 400 and again.json()["reason"] == "login.state"
    assert oidc_counts(runtime)["users"] == 0


def test_token_failure_and_plugin_refusal_spend_the_state(make_runtime: Any) -> None:
    fake = entra_fake()
    runtime = build_oidc(make_runtime, fake, entra_connector())
    with client_for(runtime) as client:
        for claims, reason in ((entra_claims(aud="someone-else"), "oidc.aud"),
                               (entra_claims(oid=OMIT), "oidc.entra_ids_missing")):
            location = start_login(client, "acme-entra")
            params = fake.authorize(location, claims)
            response = finish_login(client, params)
            assert response.status_code == 400 and response.json()["reason"] == reason, response.text
            assert oidc_counts(runtime)["login_states"] == 0
            # a fresh code for the same state (the IdP would never issue one, but a code is
            # not what protects the state): refused as a spent state
            params = fake.authorize(location, entra_claims())
            assert finish_login(client, params).json()["reason"] == "login.state"
    assert oidc_counts(runtime)["users"] == 0


def test_refused_login_spends_the_state(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build_oidc(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        assert oidc_login(client, fake, "acme-okta", claims=okta_claims()).status_code == 303
    with runtime.db.transaction() as db:
        db.execute(update(User).values(status=USER_DEPROVISIONED))
    with client_for(runtime) as client:
        location = start_login(client, "acme-okta")
        params = fake.authorize(location, okta_claims())
        response = finish_login(client, params)
        assert response.status_code == 400 and response.json()["reason"] == "login.deprovisioned"
        assert oidc_counts(runtime)["login_states"] == 0
        params = fake.authorize(location, okta_claims())
        assert finish_login(client, params).json()["reason"] == "login.state"


def test_idp_error_answer_spends_the_state_and_a_foreign_browser_does_not(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build_oidc(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        state = parse_qs(urlsplit(start_login(client, "acme-okta")).query)["state"][0]
        with client_for(runtime) as stranger:  # refused by the check: spends nothing
            assert finish_login(stranger, {"state": state, "error": "access_denied"}).status_code == 400
        assert oidc_counts(runtime)["login_states"] == 1
        assert finish_login(client, {"state": state, "error": "access_denied"}).json()["reason"] == "oidc.idp_error"
        assert oidc_counts(runtime)["login_states"] == 0


def _hybrid_params(fake: Any, location: str) -> dict[str, str]:
    """A front-channel id_token (form_post hybrid): no code, so two callbacks with the same
    parameters both get through the token checks and only the state can stop the second."""
    request = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    return {"state": request["state"], "id_token": fake.id_token(okta_claims(), nonce=request["nonce"])}


def test_two_callbacks_checked_before_either_spent_sign_in_once(make_runtime: Any) -> None:
    """The worst interleaving of two concurrent callbacks with one state: both pass the
    read-only check, then only one login transaction's DELETE matches the row."""
    fake = okta_org_fake()
    runtime = build_oidc(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        params = read_callback_params(_hybrid_params(fake, start_login(client, "acme-okta")))
        binding = client.cookies.get(BINDING_COOKIE)
    first = verify_oidc(runtime, params, binding=binding)
    second = verify_oidc(runtime, params, binding=binding)
    assert complete_login(runtime, first).session_cookie
    with pytest.raises(LoginRefused) as refused:
        complete_login(runtime, second)
    assert refused.value.reason == "login.state"
    left = oidc_counts(runtime)
    assert (left["users"], left["sessions"], left["login_states"]) == (1, 1, 0)


def test_the_login_takes_the_account_from_the_checked_state(make_runtime: Any) -> None:
    """The login transaction does not read the account again: the state's DELETE, its first
    statement, is scoped by the account the check read; with the account gone in between
    (its states go with it), that DELETE matches nothing and the login is refused."""
    fake = okta_org_fake()
    runtime = build_oidc(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        for returning in (False, True):  # the first login reads the account to create the user
            params = read_callback_params(_hybrid_params(fake, start_login(client, "acme-okta")))
            verified = verify_oidc(runtime, params, binding=client.cookies.get(BINDING_COOKIE))
            with counted(runtime.db.engine) as writes:
                assert complete_login(runtime, verified).session_cookie
            assert writes.commits == 1
            if returning:
                assert not [s for s in writes.statements if "FROM accounts" in s], writes.statements
        params = read_callback_params(_hybrid_params(fake, start_login(client, "acme-okta")))
        verified = verify_oidc(runtime, params, binding=client.cookies.get(BINDING_COOKIE))
    with runtime.db.transaction() as db:
        db.execute(delete(Account))
    with pytest.raises(LoginRefused) as refused:
        complete_login(runtime, verified)
    assert refused.value.reason == "login.state"
    left = oidc_counts(runtime)
    assert (left["users"], left["sessions"], left["login_states"]) == (0, 0, 0)


# -- SAML --------------------------------------------------------------------------------------


@pytest.fixture
def saml_runtime(make_runtime: Any) -> tuple[Runtime, FakeSamlIdp]:
    idp = FakeSamlIdp()
    return build_saml(make_runtime, [generic_connector(idp)]), idp


def _signed(idp: FakeSamlIdp, request: Any, **options: Any) -> str:
    options.setdefault("attributes", generic_attributes())
    return encode(idp.signed_response(acs_url=request.acs_url or "", audience=request.issuer,
                                      in_response_to=request.id, name_id="ada-persistent-id", **options))


def test_successful_saml_acs_writes_once(saml_runtime: tuple[Runtime, FakeSamlIdp]) -> None:
    runtime, idp = saml_runtime
    with client_for(runtime) as client:
        for _ in range(2):
            encoded = _signed(idp, start_saml(client, "acme-saml"))
            with counted(runtime.db.engine) as writes:
                assert post_response(client, "acme-saml", encoded).status_code == 303
            assert_one_unit(runtime, writes)
    left = saml_counts(runtime)
    assert (left["assertions_seen"], left["login_states"]) == (2, 0)


def test_refused_saml_login_spends_the_assertion_and_the_request(saml_runtime: tuple[Runtime, FakeSamlIdp]) -> None:
    runtime, idp = saml_runtime
    with client_for(runtime) as client:
        assert post_response(client, "acme-saml", _signed(idp, start_saml(client, "acme-saml"))).status_code == 303
        with runtime.db.transaction() as db:
            db.execute(update(User).values(status=USER_DEPROVISIONED))
        encoded = _signed(idp, start_saml(client, "acme-saml"))
        response = post_response(client, "acme-saml", encoded)
        assert response.status_code == 400 and response.json()["reason"] == "login.deprovisioned"
        left = saml_counts(runtime)
        assert (left["assertions_seen"], left["login_states"]) == (2, 0)
        with runtime.db.transaction() as db:  # even once the user is back, the response stays spent
            db.execute(update(User).values(status="active"))
        again = post_response(client, "acme-saml", encoded)
        assert again.status_code == 400 and again.json()["reason"] == "saml.replay"


def test_saml_plugin_refusal_spends_nothing(saml_runtime: tuple[Runtime, FakeSamlIdp]) -> None:
    """The plugin maps the payload before the marks are even checked (as before this change:
    docs/saml.md step 6), so its refusal writes nothing."""
    runtime, idp = saml_runtime
    with client_for(runtime) as client:
        encoded = _signed(idp, start_saml(client, "acme-saml"),
                          name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:transient")
        with counted(runtime.db.engine) as writes:
            response = post_response(client, "acme-saml", encoded)
        assert response.status_code == 400 and response.json()["reason"] == "saml.name_id_transient"
    left = saml_counts(runtime)
    assert (left["assertions_seen"], left["login_states"]) == (0, 1)
    assert writes.immediate <= 1  # at most the login-activity row (transom.login_activity)


def test_two_acs_posts_checked_before_either_spent_sign_in_once(saml_runtime: tuple[Runtime, FakeSamlIdp]) -> None:
    """Both posts verified before either login runs; the marks are checked and spent by
    each login's transaction, so the second finds the first's replay row (the interleaving
    where both check before either commits: test_two_login_transactions_racing_...)."""
    runtime, idp = saml_runtime
    with client_for(runtime) as client:
        form = AcsForm(saml_response=_signed(idp, start_saml(client, "acme-saml")), relay_state=None)
        binding = client.cookies.get(BINDING_COOKIE)
    connector = runtime.connector("acme-saml")
    first = verify_saml(runtime, connector, form, binding=binding)
    second = verify_saml(runtime, connector, form, binding=binding)
    complete_login(runtime, first)
    with pytest.raises(LoginRefused) as refused:
        complete_login(runtime, second)
    assert refused.value.reason == "saml.replay"
    left = saml_counts(runtime)
    assert (left["users"], left["sessions"], left["assertions_seen"], left["login_states"]) == (1, 1, 1, 0)


# -- SAML: the check inside the login's transaction refuses as the read-only check did ----------

STATE_REFUSAL = {
    "detail": "this sign-in link has expired or was already used; start the sign-in again",
    "hint": "the login state was unknown, reused, expired or started in another browser",
    "reason": "login.state",
}
REPLAY_REFUSAL = {
    "detail": "this sign-in response was already used; start the sign-in again",
    "hint": "the same SAML assertion was posted twice (replay)",
    "reason": "saml.replay",
}


def assert_refused_writing_nothing(
    runtime: Runtime, client: Any, connector_id: str, encoded: str, expected: dict[str, str],
    caplog: pytest.LogCaptureFixture, *, log_detail: str | None = None,
) -> None:
    """The post is refused as the read-only check refused it (status, body, the one refusal
    line) and writes nothing but the login-activity row of the refusal: the login
    transaction that made the check is rolled back before any write, and nothing of the
    response is spent after it."""
    before = saml_counts(runtime)
    caplog.clear()
    with counted(runtime.db.engine) as writes, caplog.at_level(logging.INFO, logger="transom.refusal"):
        response = post_response(client, connector_id, encoded)
    assert response.status_code == 400, response.text
    body = response.json()
    assert {key: body.get(key) for key in expected} == expected, body
    lines = [r.getMessage() for r in caplog.records if r.name == "transom.refusal"]
    assert len(lines) == 1 and f"code={expected['reason']}" in lines[0], lines
    if log_detail is not None:
        assert log_detail in lines[0], lines
    assert written_tables(writes) == {"login_attempts"}, writes.statements
    assert writes.commits == 1, writes.statements  # the login-activity row's own transaction
    assert saml_counts(runtime) == before


def test_replayed_assertion_is_refused_by_the_check_writing_nothing(
    saml_runtime: tuple[Runtime, FakeSamlIdp], caplog: pytest.LogCaptureFixture
) -> None:
    runtime, idp = saml_runtime
    with client_for(runtime) as client:
        encoded = _signed(idp, start_saml(client, "acme-saml"))
        assert post_response(client, "acme-saml", encoded).status_code == 303
        assert_refused_writing_nothing(runtime, client, "acme-saml", encoded, REPLAY_REFUSAL, caplog,
                                       log_detail="layer=lookup")
        with client_for(runtime) as stranger:  # from another browser: the same answer
            assert_refused_writing_nothing(runtime, stranger, "acme-saml", encoded, REPLAY_REFUSAL, caplog,
                                           log_detail="layer=lookup")
    left = saml_counts(runtime)
    assert (left["users"], left["sessions"], left["assertions_seen"], left["login_states"]) == (1, 1, 1, 0)


def test_unknown_in_response_to_is_refused_writing_nothing(
    saml_runtime: tuple[Runtime, FakeSamlIdp], caplog: pytest.LogCaptureFixture
) -> None:
    runtime, idp = saml_runtime
    with client_for(runtime) as client:
        request = start_saml(client, "acme-saml")
        encoded = encode(idp.signed_response(acs_url=request.acs_url or "", audience=request.issuer,
                                             in_response_to="ONELOGIN_0000not0a0request0we0sent",
                                             name_id="ada-persistent-id", attributes=generic_attributes()))
        assert_refused_writing_nothing(runtime, client, "acme-saml", encoded, STATE_REFUSAL, caplog)
        # the pending request is untouched: its own response still signs in
        assert post_response(client, "acme-saml", _signed(idp, request)).status_code == 303
    assert saml_counts(runtime)["users"] == 1


def test_expired_in_response_to_is_refused_writing_nothing(
    saml_runtime: tuple[Runtime, FakeSamlIdp], caplog: pytest.LogCaptureFixture
) -> None:
    runtime, idp = saml_runtime
    with client_for(runtime) as client:
        encoded = _signed(idp, start_saml(client, "acme-saml"))
        with runtime.db.transaction() as db:
            db.execute(update(LoginState).values(expires_at=utcnow()))
        assert_refused_writing_nothing(runtime, client, "acme-saml", encoded, STATE_REFUSAL, caplog)
    left = saml_counts(runtime)
    assert (left["users"], left["assertions_seen"], left["login_states"]) == (0, 0, 1)


def test_in_response_to_of_another_connector_is_refused_writing_nothing(
    make_runtime: Any, caplog: pytest.LogCaptureFixture
) -> None:
    idp, other_idp = FakeSamlIdp(), FakeSamlIdp(entity_id="https://other-idp.example.test/saml/metadata")
    runtime = build_saml(make_runtime, [generic_connector(idp), generic_connector(other_idp, "acme-saml-2")])
    with client_for(runtime) as client:
        mine, theirs = start_saml(client, "acme-saml"), start_saml(client, "acme-saml-2")
        # signed for acme-saml, naming the request acme-saml-2 sent (same account, same browser)
        encoded = encode(idp.signed_response(acs_url=mine.acs_url or "", audience=mine.issuer,
                                             in_response_to=theirs.id, name_id="ada-persistent-id",
                                             attributes=generic_attributes()))
        assert_refused_writing_nothing(runtime, client, "acme-saml", encoded, STATE_REFUSAL, caplog)
        assert post_response(client, "acme-saml-2", _signed(other_idp, theirs)).status_code == 303
        assert post_response(client, "acme-saml", _signed(idp, mine)).status_code == 303


def test_response_from_another_browser_is_refused_writing_nothing(
    saml_runtime: tuple[Runtime, FakeSamlIdp], caplog: pytest.LogCaptureFixture
) -> None:
    """The binding cookie does not match the request's: refused, and the request stays
    usable by the browser that started it (another browser cannot burn someone's login),
    which then lands on the path the request carried: the check's next_path."""
    runtime, idp = saml_runtime
    with client_for(runtime) as client:
        encoded = _signed(idp, start_saml(client, "acme-saml", next_path="/reports?tab=2"))
        with client_for(runtime) as stranger:
            assert_refused_writing_nothing(runtime, stranger, "acme-saml", encoded, STATE_REFUSAL, caplog)
        with client_for(runtime) as stranger:  # no binding cookie at all
            stranger.cookies.clear()
            assert_refused_writing_nothing(runtime, stranger, "acme-saml", encoded, STATE_REFUSAL, caplog)
        response = post_response(client, "acme-saml", encoded)
        assert response.status_code == 303 and response.headers["location"].endswith("/reports?tab=2")
    left = saml_counts(runtime)
    assert (left["users"], left["sessions"], left["assertions_seen"], left["login_states"]) == (1, 1, 1, 0)


def test_the_replay_is_checked_before_the_request(
    saml_runtime: tuple[Runtime, FakeSamlIdp], caplog: pytest.LogCaptureFixture
) -> None:
    """Where both would refuse (a replayed response posted from another browser whose
    request was spent with it), the replay answers, as with the read-only check."""
    runtime, idp = saml_runtime
    with client_for(runtime) as client:
        encoded = _signed(idp, start_saml(client, "acme-saml"))
        assert post_response(client, "acme-saml", encoded).status_code == 303
    with client_for(runtime) as stranger:
        assert_refused_writing_nothing(runtime, stranger, "acme-saml", encoded, REPLAY_REFUSAL, caplog,
                                       log_detail="layer=lookup")


def test_a_failure_before_the_login_transaction_still_spends_the_response(
    saml_runtime: tuple[Runtime, FakeSamlIdp], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure (a bug) after verification but before the transaction that checks and
    spends the marks: the response is checked in the failure's own transaction and spent
    there, unless that check refuses it (then nothing is spent)."""
    runtime, idp = saml_runtime
    with client_for(runtime) as client:
        form = AcsForm(saml_response=_signed(idp, start_saml(client, "acme-saml")), relay_state=None)
        binding = client.cookies.get(BINDING_COOKIE)
    connector = runtime.connector("acme-saml")

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug in group resolution")

    monkeypatch.setattr(transom.login, "resolve_groups", broken)
    foreign = verify_saml(runtime, connector, form, binding="another-browser")
    with pytest.raises(RuntimeError):
        complete_login(runtime, foreign)
    left = saml_counts(runtime)
    assert (left["assertions_seen"], left["login_states"]) == (0, 1)  # the check refused: nothing spent
    with pytest.raises(RuntimeError):
        complete_login(runtime, verify_saml(runtime, connector, form, binding=binding))
    left = saml_counts(runtime)
    assert (left["users"], left["assertions_seen"], left["login_states"]) == (0, 1, 0)
    monkeypatch.undo()
    with pytest.raises(LoginRefused) as refused:
        complete_login(runtime, verify_saml(runtime, connector, form, binding=binding))
    assert refused.value.reason == "saml.replay"


def test_two_login_transactions_racing_one_assertion_sign_in_once(
    saml_runtime: tuple[Runtime, FakeSamlIdp], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: the second post's check runs while the first post's transaction has
    spent the marks but not committed, so its lookup misses and its state is still there;
    only the replay row's primary key can stop it. (On SQLite the writer lock, taken at
    ``BEGIN IMMEDIATE``, serialises the two transactions: the lookup refuses the second.)"""
    runtime, idp = saml_runtime
    if sqlite(runtime):
        pytest.skip("SQLite serialises login transactions at BEGIN IMMEDIATE: no interleaving to test")
    with client_for(runtime) as client:
        form = AcsForm(saml_response=_signed(idp, start_saml(client, "acme-saml")), relay_state=None)
        binding = client.cookies.get(BINDING_COOKIE)
    connector = runtime.connector("acme-saml")
    first = verify_saml(runtime, connector, form, binding=binding)
    second = verify_saml(runtime, connector, form, binding=binding)
    first_spent, second_checked = threading.Event(), threading.Event()
    login_transaction = transom.login._login_transaction
    check_login_state_ = transom.saml.replay.check_login_state

    def first_waits(db: Session, **kwargs: Any) -> Any:
        if threading.current_thread().name == "first":
            first_spent.set()
            assert second_checked.wait(30), "the second post never reached its check"
        return login_transaction(db, **kwargs)

    def second_checks(db: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "second":
            assert first_spent.wait(30)
            state = check_login_state_(db, **kwargs)  # the first's DELETE is not committed yet
            second_checked.set()
            return state
        return check_login_state_(db, **kwargs)

    monkeypatch.setattr(transom.login, "_login_transaction", first_waits)
    monkeypatch.setattr(transom.saml.replay, "check_login_state", second_checks)
    outcomes: dict[str, str] = {}

    def run(name: str, verified: Any) -> None:
        try:
            complete_login(runtime, verified)
            outcomes[name] = "signed in"
        except LoginRefused as exc:
            outcomes[name] = f"{exc.reason} {exc.log_detail}"

    threads = [threading.Thread(target=run, args=(n, v), name=n) for n, v in (("first", first), ("second", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == {"first": "signed in", "second": "saml.replay layer=primary_key"}
    left = saml_counts(runtime)
    assert (left["users"], left["sessions"], left["assertions_seen"], left["login_states"]) == (1, 1, 1, 0)


# -- a groups overage never reaches Graph with a replayed assertion -----------------------------

GROUPS_LINK = "http://schemas.microsoft.com/claims/groups.link"
G_OPS = "d0000000-0000-4000-8000-000000000002"


@pytest.fixture
def entra(make_runtime: Any) -> Iterator[tuple[Runtime, FakeSamlIdp, FakeGraph]]:
    graph.TOKENS.clear()
    idp = FakeSamlIdp(entity_id=f"https://sts.windows.net/{TENANT}/")
    fake_graph = FakeGraph(page_size=50)
    connector = entra_saml_connector(idp, authority=fake_graph.authority, graph_url=fake_graph.graph_url,
                                     client_id=fake_graph.client_id, client_secret=fake_graph.client_secret)
    runtime: Runtime = make_runtime(connectors=[connector], http=httpx.Client(transport=fake_graph.transport()))
    with runtime.db.transaction() as db:
        account = directory.create_account(db, name="acme")
        directory.create_group(db, account=account, name="Ops", idp_identifier=G_OPS)
    fake_graph.groups[OID] = [G_OPS]
    yield runtime, idp, fake_graph
    graph.TOKENS.clear()


def test_overage_lookup_comes_after_the_marks_are_spent(
    entra: tuple[Runtime, FakeSamlIdp, FakeGraph], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, idp, fake_graph = entra
    overage = entra_attributes(**{GROUPS_LINK: [f"https://graph.windows.net/{TENANT}/users/{OID}/getMemberObjects"]})
    assert ENTRA_GROUPS not in overage
    with client_for(runtime) as client:
        request = start_saml(client, "acme-entra")
        form = AcsForm(saml_response=encode(idp.signed_response(
            acs_url=request.acs_url or "", audience=request.issuer, in_response_to=request.id,
            name_id="ada@acme.example", attributes=overage)), relay_state=None)
        binding = client.cookies.get(BINDING_COOKIE)
    seen_at_lookup: list[dict[str, int]] = []
    lookup = runtime.plugins.lookup_group_ids

    def recording(*args: Any) -> Any:
        seen_at_lookup.append(saml_counts(runtime))
        return lookup(*args)

    monkeypatch.setattr(runtime.plugins, "lookup_group_ids", recording)
    connector = runtime.connector("acme-entra")
    first = verify_saml(runtime, connector, form, binding=binding)
    second = verify_saml(runtime, connector, form, binding=binding)  # a replay racing the original
    complete_login(runtime, first)
    calls = fake_graph.graph_calls
    assert calls >= 1 and len(seen_at_lookup) == 1
    # when Graph was asked, the assertion and the request were already spent
    assert (seen_at_lookup[0]["assertions_seen"], seen_at_lookup[0]["login_states"]) == (1, 0)
    with pytest.raises(LoginRefused) as refused:
        complete_login(runtime, second)
    assert refused.value.reason == "saml.replay"
    assert fake_graph.graph_calls == calls and len(seen_at_lookup) == 1  # the replay never reached Graph


def test_overage_marks_spent_first_are_not_spent_again_after_a_refusal(
    entra: tuple[Runtime, FakeSamlIdp, FakeGraph]
) -> None:
    """A login refused after its marks were spent before Graph (a deprovisioned user): the
    marks' statements ran once, in their own transaction; the failure spends nothing again."""
    runtime, idp, fake_graph = entra
    overage = entra_attributes(**{GROUPS_LINK: [f"https://graph.windows.net/{TENANT}/users/{OID}/getMemberObjects"]})

    def signed(request: Any) -> str:
        return encode(idp.signed_response(acs_url=request.acs_url or "", audience=request.issuer,
                                          in_response_to=request.id, name_id="ada@acme.example",
                                          attributes=overage))

    with client_for(runtime) as client:
        assert post_response(client, "acme-entra", signed(start_saml(client, "acme-entra"))).status_code == 303
        with runtime.db.transaction() as db:
            db.execute(update(User).values(status=USER_DEPROVISIONED))
        encoded = signed(start_saml(client, "acme-entra"))
        calls = fake_graph.graph_calls
        with counted(runtime.db.engine) as writes:
            response = post_response(client, "acme-entra", encoded)
        assert response.status_code == 400 and response.json()["reason"] == "login.deprovisioned"
    assert fake_graph.graph_calls > calls
    spends = [s for s in writes.statements if _WRITE.match(s) and re.search(r"saml_assertions_seen|login_states", s)]
    assert len([s for s in spends if s.lstrip().upper().startswith("INSERT")]) == 1, spends
    assert len([s for s in spends if "login_states" in s]) == 1, spends
    left = saml_counts(runtime)
    assert (left["sessions"], left["assertions_seen"], left["login_states"]) == (1, 2, 0)


def test_overage_response_refused_by_the_check_never_reaches_graph(
    entra: tuple[Runtime, FakeSamlIdp, FakeGraph], caplog: pytest.LogCaptureFixture
) -> None:
    """The overage path's own transaction (marks spent before Graph) runs the same check:
    a response from another browser is refused there, writing nothing and asking Graph
    nothing; the browser that started the login then signs in, Graph asked once."""
    runtime, idp, fake_graph = entra
    overage = entra_attributes(**{GROUPS_LINK: [f"https://graph.windows.net/{TENANT}/users/{OID}/getMemberObjects"]})
    with client_for(runtime) as client:
        request = start_saml(client, "acme-entra")
        encoded = encode(idp.signed_response(acs_url=request.acs_url or "", audience=request.issuer,
                                             in_response_to=request.id, name_id="ada@acme.example",
                                             attributes=overage))
        with client_for(runtime) as stranger:
            assert_refused_writing_nothing(runtime, stranger, "acme-entra", encoded, STATE_REFUSAL, caplog)
        assert fake_graph.graph_calls == 0
        assert post_response(client, "acme-entra", encoded).status_code == 303
        assert fake_graph.graph_calls >= 1
        calls = fake_graph.graph_calls
        assert_refused_writing_nothing(runtime, client, "acme-entra", encoded, REPLAY_REFUSAL, caplog,
                                       log_detail="layer=lookup")
        assert fake_graph.graph_calls == calls


# -- the marks' statements on their own, racing in two threads -----------------------------------


def _pending_state(runtime: Runtime) -> PendingState:
    with client_for(runtime) as client:
        client.get("/api/accounts/login/acme-okta")
        binding = client.cookies.get(BINDING_COOKIE)
    with runtime.db.read() as db:
        key = db.scalar(select(LoginState.key))
        assert key is not None
        return check_login_state(db, key=key, binding=binding)


def test_of_two_racing_spends_one_matches(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build_oidc(make_runtime, fake, okta_connector())
    state = _pending_state(runtime)
    marks = [SingleUse(login_state_mark(state)), SingleUse(login_state_mark(state))]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def spend(single_use: SingleUse) -> None:
        barrier.wait()
        try:
            with runtime.db.transaction() as db:
                single_use.spend(db)
            outcomes.append("spent")
        except LoginRefused as exc:
            outcomes.append(exc.reason or "")

    threads = [threading.Thread(target=spend, args=(m,)) for m in marks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["login.state", "spent"]


# -- the read-only unit ---------------------------------------------------------------------------


def test_read_unit_refuses_writes_and_needs_no_writer_lock(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build_oidc(make_runtime, fake, okta_connector())
    with pytest.raises(ReadOnlyViolation), runtime.db.read() as db:
        db.execute(text("DELETE FROM login_states"))
    # a read while this very thread holds a write transaction (and, on SQLite, the
    # process's writer lock): it would wait on that lock if it took it
    with runtime.db.transaction() as writer:
        writer.execute(text("SELECT 1"))
        with runtime.db.read() as db:
            assert db.scalar(text("SELECT count(*) FROM accounts")) == 1

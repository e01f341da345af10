"""One write transaction per SSO callback (issue 13), and the single-use marks stay single use.

A callback checks its marks (the OIDC login state; SAML's replay row and the login state
named by InResponseTo) read-only and spends them as the first statements of the login's one
transaction (transom.singleuse). Pinned here: a successful OIDC callback and SAML ACS commit
once (and on SQLite begin one ``BEGIN IMMEDIATE``); after anything fails past the check the
marks are spent anyway; two callbacks that both passed the check cannot both spend them;
a groups overage looked up through Graph is never reached with a replayed assertion.
"""

from __future__ import annotations

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

from transom import directory
from transom.db import ReadOnlyViolation
from transom.errors import LoginRefused
from transom.login import complete_login
from transom.loginstate import BINDING_COOKIE, PendingState, check_login_state, login_state_mark
from transom.models import USER_DEPROVISIONED, Account, LoginState, User
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
        dbapi_conn.set_trace_callback(on_sql)
        traced.append(dbapi_conn)

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        on_sql(statement)

    event.listen(engine, "commit", on_commit)
    if on_sqlite:
        event.listen(engine, "checkout", on_checkout)
    else:
        event.listen(engine, "before_cursor_execute", on_statement)
    try:
        yield writes
    finally:
        event.remove(engine, "commit", on_commit)
        if on_sqlite:
            event.remove(engine, "checkout", on_checkout)
            for dbapi_conn in traced:
                dbapi_conn.set_trace_callback(None)
        else:
            event.remove(engine, "before_cursor_execute", on_statement)


def sqlite(runtime: Runtime) -> bool:
    return runtime.db.url.startswith("sqlite")


def assert_one_write(runtime: Runtime, writes: Writes) -> None:
    assert writes.commits == 1, writes.statements
    if sqlite(runtime):
        assert writes.immediate == 1, writes.statements
        assert "BEGIN" in [s.strip().upper() for s in writes.statements]  # the check's read unit


# -- OIDC --------------------------------------------------------------------------------------


def test_successful_oidc_callback_writes_once(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build_oidc(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        for _ in range(2):  # a first login (user created) and a returning one
            params = fake.authorize(start_login(client, "acme-okta"), okta_claims())
            with counted(runtime.db.engine) as writes:
                assert finish_login(client, params).status_code == 303
            assert_one_write(runtime, writes)
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
            assert_one_write(runtime, writes)
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

"""Group sync end to end through HTTP: real logins against fake IdPs that sign real tokens
(Azure OIDC, Okta OIDC; SAML in test_group_sync_saml.py), with a fake Microsoft Graph that
counts calls and pages its results. Memberships are read back through ``/api/me``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import client_for
from oidc_support import (
    ENTRA_CLIENT,
    SECRET,
    TENANT,
    entra_claims,
    entra_connector,
    entra_fake,
    okta_claims,
    okta_connector,
    okta_org_fake,
)

from transom import directory
from transom.runtime import Runtime
from transom.testing.graph import FakeGraph
from transom.testing.oidc import FakeOidcIdp, oidc_login
from transom_azure_ad import graph

OID = "a1b2c3d4-0000-4000-8000-000000000001"
G_DEV = "d0000000-0000-4000-8000-000000000001"
G_OPS = "d0000000-0000-4000-8000-000000000002"
G_SEC = "d0000000-0000-4000-8000-000000000003"


@pytest.fixture(autouse=True)
def _fresh_graph_tokens() -> Iterator[None]:
    graph.TOKENS.clear()
    yield
    graph.TOKENS.clear()


def seed_groups(runtime: Runtime, mapping: dict[str, str | None]) -> None:
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        for name, identifier in mapping.items():
            directory.create_group(db, account=account, name=name, idp_identifier=identifier)


def login(runtime: Runtime, fake: FakeOidcIdp, connector: str, claims: dict[str, Any]) -> dict[str, str]:
    """One complete SSO login in a fresh browser; returns the user's groups -> source."""
    with client_for(runtime) as client:
        response = oidc_login(client, fake, connector, claims=claims)
        assert response.status_code == 303, response.text
        me = client.get("/api/me").json()
    return {g["name"]: g["source"] for g in me["groups"]}


# -- Azure AD (Entra) OIDC ---------------------------------------------------------------------


@pytest.fixture
def entra(make_runtime: Any) -> tuple[Runtime, FakeOidcIdp, FakeGraph]:
    fake = entra_fake()
    fake_graph = FakeGraph(
        authority="https://login.entra.test",
        client_id=ENTRA_CLIENT,
        client_secret=SECRET,
        page_size=100,
        fallback=fake.handle,
    )
    runtime: Runtime = make_runtime(
        connectors=[entra_connector(graph_url=fake_graph.graph_url)],
        http=httpx.Client(transport=fake_graph.transport()),
    )
    with runtime.db.transaction() as db:
        directory.create_account(db, name="acme")
    seed_groups(runtime, {"Dev": G_DEV, "Ops": G_OPS, "Security": G_SEC, "Local": None})
    return runtime, fake, fake_graph


def overage_claims() -> dict[str, Any]:
    return entra_claims(
        OID,
        _claim_names={"groups": "src1"},
        _claim_sources={"src1": {"endpoint": f"https://graph.windows.net/{TENANT}/users/{OID}/getMemberObjects"}},
    )


def test_entra_oidc_add_remove_sequence(entra: tuple[Runtime, FakeOidcIdp, FakeGraph]) -> None:
    runtime, fake, _ = entra
    assert login(runtime, fake, "acme-entra", entra_claims(OID, groups=[G_DEV, G_OPS, "unmapped-guid"])) == {
        "Dev": "idp",
        "Ops": "idp",
    }
    assert login(runtime, fake, "acme-entra", entra_claims(OID, groups=[G_OPS, G_SEC])) == {
        "Ops": "idp",
        "Security": "idp",
    }
    # Upper-case GUIDs (some tools print them so) still match.
    assert login(runtime, fake, "acme-entra", entra_claims(OID, groups=[G_SEC.upper()])) == {"Security": "idp"}


def test_entra_oidc_present_empty_vs_absent(
    entra: tuple[Runtime, FakeOidcIdp, FakeGraph], caplog: pytest.LogCaptureFixture
) -> None:
    runtime, fake, _ = entra
    login(runtime, fake, "acme-entra", entra_claims(OID, groups=[G_DEV, G_OPS]))
    caplog.set_level("INFO", logger="transom.login")
    assert login(runtime, fake, "acme-entra", entra_claims(OID)) == {"Dev": "idp", "Ops": "idp"}  # absent
    assert "no groups claim" in caplog.text and "Add groups claim" in caplog.text
    assert login(runtime, fake, "acme-entra", entra_claims(OID, groups=[])) == {}  # present, empty


def test_entra_oidc_overage_resolved_through_graph(entra: tuple[Runtime, FakeOidcIdp, FakeGraph]) -> None:
    runtime, fake, fake_graph = entra
    login(runtime, fake, "acme-entra", entra_claims(OID, groups=[G_DEV]))
    bulk = [f"e{i:07d}-0000-4000-8000-000000000000" for i in range(250)]
    fake_graph.groups[OID] = [*bulk[:120], G_OPS, *bulk[120:], G_SEC]
    fake_graph.other_objects[OID] = [G_DEV]  # a directory role with that id is not a group
    assert login(runtime, fake, "acme-entra", overage_claims()) == {"Ops": "idp", "Security": "idp"}
    assert fake_graph.graph_calls == 3 and fake_graph.token_calls == 1  # 253 objects / 100 per page
    fake_graph.groups[OID] = [G_DEV]
    assert login(runtime, fake, "acme-entra", overage_claims()) == {"Dev": "idp"}
    assert fake_graph.token_calls == 1  # the app token is cached
    assert fake_graph.tenants_asked == [TENANT]


@pytest.mark.parametrize("failure", ["graph_status", "token_status", "unknown_user"])
def test_entra_oidc_graph_failure_leaves_memberships(
    entra: tuple[Runtime, FakeOidcIdp, FakeGraph], caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    runtime, fake, fake_graph = entra
    login(runtime, fake, "acme-entra", entra_claims(OID, groups=[G_DEV, G_OPS]))
    if failure == "graph_status":
        fake_graph.graph_status = 503
    elif failure == "token_status":
        fake_graph.token_status = 401
    caplog.set_level("WARNING", logger="transom.login")
    # the login succeeds; memberships stay as they were
    assert login(runtime, fake, "acme-entra", overage_claims()) == {"Dev": "idp", "Ops": "idp"}
    assert "overage" in caplog.text and "left unchanged" in caplog.text
    assert SECRET not in caplog.text


def test_entra_oidc_unmapped_and_password_users_untouched(
    entra: tuple[Runtime, FakeOidcIdp, FakeGraph],
) -> None:
    runtime, fake, _ = entra
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        bob = directory.create_user(
            db,
            account=account,
            user_name="bob@acme.example",
            email="bob@acme.example",
            password="correct horse battery",
        )
        for name in ("Dev", "Local"):
            grp = directory.get_group(db, account=account, name=name)
            directory.add_group_member(db, account=account, group=grp, user=bob, actor="test", idp_owned=False)
    # bob signs in through Entra (linked by user name) with a groups claim: ignored, he has a password
    bob_claims = entra_claims(
        "b0b00000-0000-4000-8000-000000000002",
        preferred_username="bob@acme.example",
        email="bob@acme.example",
        groups=[G_OPS],
    )
    assert login(runtime, fake, "acme-entra", bob_claims) == {"Dev": "manual", "Local": "manual"}
    # ada's manual membership of an unmapped group survives every sync
    login(runtime, fake, "acme-entra", entra_claims(OID, groups=[G_DEV]))
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        ada = directory.get_user(db, account=account, email_or_user_name="ada@acme.example")
        local = directory.get_group(db, account=account, name="Local")
        directory.add_group_member(db, account=account, group=local, user=ada, actor="test", idp_owned=False)
    assert login(runtime, fake, "acme-entra", entra_claims(OID, groups=[])) == {"Local": "manual"}


# -- Okta OIDC ---------------------------------------------------------------------------------


@pytest.fixture
def okta(make_runtime: Any) -> tuple[Runtime, FakeOidcIdp]:
    fake = okta_org_fake()
    runtime: Runtime = make_runtime(connectors=[okta_connector()], http=httpx.Client(transport=fake.transport()))
    with runtime.db.transaction() as db:
        directory.create_account(db, name="acme")
    # Okta sends group names by default, so the identifiers are names (case-sensitive)
    seed_groups(runtime, {"Developers": "Engineering", "Operators": "Ops", "Local": None})
    return runtime, fake


def test_okta_oidc_group_names_add_remove(okta: tuple[Runtime, FakeOidcIdp]) -> None:
    runtime, fake = okta
    assert login(runtime, fake, "acme-okta", okta_claims(groups=["Everyone", "Engineering"])) == {"Developers": "idp"}
    assert login(runtime, fake, "acme-okta", okta_claims(groups=["Everyone", "Ops", "engineering"])) == {
        "Operators": "idp"
    }  # names compare exactly: "engineering" is another group
    assert login(runtime, fake, "acme-okta", okta_claims()) == {"Operators": "idp"}  # no claim: unchanged
    assert login(runtime, fake, "acme-okta", okta_claims(groups=[])) == {}


def test_okta_brokering_entra_sends_guids_under_a_custom_claim(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime: Runtime = make_runtime(
        connectors=[okta_connector(groups_claim="entraGroups")], http=httpx.Client(transport=fake.transport())
    )
    with runtime.db.transaction() as db:
        directory.create_account(db, name="acme")
    seed_groups(runtime, {"Dev": G_DEV, "Ops": G_OPS})
    assert login(runtime, fake, "acme-okta", okta_claims(entraGroups=[G_DEV, G_OPS], groups=["Everyone"])) == {
        "Dev": "idp",
        "Ops": "idp",
    }
    assert login(runtime, fake, "acme-okta", okta_claims(entraGroups=[G_OPS])) == {"Ops": "idp"}


def test_manual_change_of_synced_user_refused_over_http(okta: tuple[Runtime, FakeOidcIdp]) -> None:
    runtime, fake = okta
    login(runtime, fake, "acme-okta", okta_claims(groups=["Engineering"]))
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        token = directory.create_token(db, account=account, permissions=["admin"], name="ops")
    h = {"authorization": f"Bearer {token}"}
    with client_for(runtime) as client:
        refused = client.delete("/api/admin/groups/Developers/members/ada@acme.example", headers=h)
        assert refused.status_code == 403 and "IdP owns this membership" in refused.json()["detail"]
        refused = client.post("/api/admin/groups/Operators/members/ada@acme.example", headers=h)
        assert refused.status_code == 403
        assert client.post("/api/admin/groups/Local/members/ada@acme.example", headers=h).status_code == 201
        members = client.get("/api/admin/groups/Developers/members", headers=h).json()
    assert [(m["user_name"], m["source"]) for m in members] == [("ada@acme.example", "idp")]

"""Managing groups, IdP identifiers and members: the admin API through HTTP and the CLI,
including the refusal to change an IdP-owned membership by hand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import SESSION_SECRET, client_for
from sqlalchemy import select
from starlette.testclient import TestClient

from transom import directory
from transom.models import AuditEvent, ExternalIdentity
from transom.runtime import Runtime

GUID = "6f1e2d3c-aaaa-4bbb-8ccc-0123456789ab"
OKTA = {
    "id": "okta",
    "type": "okta",
    "account": "acme",
    "settings": {"domain": "acme.okta.test", "client_id": "cid", "client_secret": "s"},
}


def seed(runtime: Runtime) -> dict[str, str]:
    """Account acme with a mapped and an unmapped group, a group-synced SSO user (ada), a
    password user (bob), and tokens."""
    with runtime.db.transaction() as db:
        account = directory.create_account(db, name="acme")
        dev = directory.create_group(db, account=account, name="Dev", idp_identifier=GUID)
        local = directory.create_group(db, account=account, name="Local")
        ada = directory.create_user(db, account=account, user_name="ada@acme.example", email="ada@acme.example")
        db.add(ExternalIdentity(account_id=account.id, user_id=ada.id, connector_id="okta", subject="00uada"))
        bob = directory.create_user(
            db,
            account=account,
            user_name="bob@acme.example",
            email="bob@acme.example",
            password="correct horse battery",
        )
        db.flush()
        directory.add_group_member(db, account=account, group=dev, user=ada, actor="test", idp_owned=False)
        directory.add_group_member(db, account=account, group=local, user=bob, actor="test", idp_owned=False)
        admin = directory.create_token(db, account=account, permissions=["admin"], name="ops")
        users = directory.create_token(db, account=account, permissions=["manage-users"], name="scim")
        other = directory.create_account(db, name="other")
        directory.create_group(db, account=other, name="Secret")
        other_admin = directory.create_token(db, account=other, permissions=["admin"], name="other")
    return {"admin": admin, "users": users, "other": other_admin}


@pytest.fixture
def api(make_runtime: Any) -> tuple[TestClient, dict[str, str]]:
    runtime: Runtime = make_runtime([OKTA])
    tokens = seed(runtime)
    return client_for(runtime), tokens


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_requires_an_admin_token(api: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = api
    assert client.get("/api/admin/groups").status_code == 401
    assert client.get("/api/admin/groups", headers=auth("trn_nope")).status_code == 401
    response = client.get("/api/admin/groups", headers=auth(tokens["users"]))
    assert response.status_code == 403 and "admin" in response.json()["detail"]


def test_list_and_get_groups_of_the_tokens_account_only(api: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = api
    groups = client.get("/api/admin/groups", headers=auth(tokens["admin"])).json()
    assert [(g["name"], g["idp_identifier"], g["members"]) for g in groups] == [("Dev", GUID, 1), ("Local", None, 1)]
    assert client.get("/api/admin/groups/dev", headers=auth(tokens["admin"])).json()["name"] == "Dev"
    assert client.get("/api/admin/groups/Secret", headers=auth(tokens["admin"])).status_code == 404
    assert [g["name"] for g in client.get("/api/admin/groups", headers=auth(tokens["other"])).json()] == ["Secret"]


def test_set_and_clear_idp_identifier(api: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = api
    h = auth(tokens["admin"])
    upper = "0A1B2C3D-0000-4000-8000-00000000ABCD"
    response = client.put("/api/admin/groups/Local/idp-identifier", json={"idp_identifier": upper}, headers=h)
    assert response.status_code == 200
    assert response.json()["idp_identifier"] == upper.lower()  # GUIDs are stored lower-cased
    taken = client.put("/api/admin/groups/Dev/idp-identifier", json={"idp_identifier": upper.lower()}, headers=h)
    assert taken.status_code == 409 and "Local" in taken.json()["detail"]
    blank = client.put("/api/admin/groups/Dev/idp-identifier", json={"idp_identifier": "  "}, headers=h)
    assert blank.status_code == 400 and "DELETE" in blank.json()["detail"]
    assert client.put("/api/admin/groups/Dev/idp-identifier", json={}, headers=h).status_code == 400
    cleared = client.delete("/api/admin/groups/Dev/idp-identifier", headers=h)
    assert cleared.status_code == 200 and cleared.json()["idp_identifier"] is None
    members = client.get("/api/admin/groups/Dev/members", headers=h).json()
    assert [(m["user_name"], m["source"]) for m in members] == [("ada@acme.example", "manual")]


def test_members_with_source_and_manual_changes(api: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = api
    h = auth(tokens["admin"])
    assert client.post("/api/admin/groups/Dev/members/bob@acme.example", headers=h).status_code == 201
    again = client.post("/api/admin/groups/Dev/members/bob@acme.example", headers=h)
    assert again.status_code == 409
    members = client.get("/api/admin/groups/Dev/members", headers=h).json()
    assert [(m["user_name"], m["source"]) for m in members] == [
        ("ada@acme.example", "manual"),
        ("bob@acme.example", "manual"),
    ]
    assert client.delete("/api/admin/groups/Dev/members/BOB@acme.example", headers=h).status_code == 204
    assert client.delete("/api/admin/groups/Dev/members/bob@acme.example", headers=h).status_code == 404
    assert client.post("/api/admin/groups/Dev/members/nobody@acme.example", headers=h).status_code == 404


def test_idp_owned_membership_is_refused(api: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = api
    h = auth(tokens["admin"])
    for method in (client.post, client.delete):
        response = method("/api/admin/groups/Dev/members/ada@acme.example", headers=h)
        assert response.status_code == 403
        assert "IdP owns this membership" in response.json()["detail"]
    # unmapped group: ada is managed by hand there
    assert client.post("/api/admin/groups/Local/members/ada@acme.example", headers=h).status_code == 201


def test_create_group(api: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = api
    h = auth(tokens["admin"])
    created = client.post("/api/admin/groups", json={"name": "Ops", "idp_identifier": "Okta Ops"}, headers=h)
    assert created.status_code == 201
    assert created.json() | {"id": None} == {"id": None, "name": "Ops", "idp_identifier": "Okta Ops", "members": 0}
    assert client.post("/api/admin/groups", json={"name": "ops"}, headers=h).status_code == 409
    assert client.post("/api/admin/groups", json={"name": ""}, headers=h).status_code == 400
    assert client.post("/api/admin/groups", content=b"{oops", headers=h).status_code == 400


def test_openapi_documents_the_admin_paths(api: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = api
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/admin/groups",
        "/api/admin/groups/{group}/idp-identifier",
        "/api/admin/groups/{group}/members",
        "/api/admin/groups/{group}/members/{user}",
    ):
        assert path in paths
    assert set(paths["/api/admin/groups/{group}/members/{user}"]) == {"post", "delete"}


# -- CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, database_url: str, make_runtime: Any) -> Any:
    runtime: Runtime = make_runtime([OKTA])
    seed(runtime)
    config = tmp_path / "transom.toml"
    config.write_text(
        f'[server]\nsession_secret = "{SESSION_SECRET}"\n\n'
        '[[connectors]]\nid = "okta"\ntype = "okta"\naccount = "acme"\n'
        '[connectors.settings]\ndomain = "acme.okta.test"\nclient_id = "cid"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSOM_")}
    env["TRANSOM_DATABASE_URL"] = database_url

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "transom.cli", "--config", str(config), *args],
            capture_output=True,
            text=True,
            env=env,
        )

    return run


def test_cli_refuses_idp_owned_membership_and_lists_sources(cli: Any) -> None:
    for command in ("add-member", "remove-member"):
        result = cli("groups", command, "--account", "acme", "Dev", "ada@acme.example")
        assert result.returncode == 1
        assert "IdP owns this membership" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    added = cli("groups", "add-member", "--account", "acme", "Dev", "bob@acme.example")
    assert added.returncode == 0, added.stderr
    listed = cli("groups", "members", "--account", "acme", "Dev")
    assert listed.stdout.splitlines() == ["ada@acme.example\tmanual", "bob@acme.example\tmanual"]
    unmapped = cli("groups", "set-idp-identifier", "--account", "acme", "Dev", "")
    assert unmapped.returncode == 0 and "unmapped" in unmapped.stdout
    # unmapped: ada's membership is manual again and can be changed by hand
    removed = cli("groups", "remove-member", "--account", "acme", "Dev", "ada@acme.example")
    assert removed.returncode == 0, removed.stderr
    mapped = cli("groups", "set-idp-identifier", "--account", "acme", "Dev", GUID.upper())
    assert mapped.returncode == 0 and GUID in mapped.stdout


def test_account_admin_session_may_use_the_admin_api(make_runtime: Any) -> None:
    runtime: Runtime = make_runtime([OKTA])
    seed(runtime)
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        directory.create_user(db, account=account, user_name="root@acme.example", email="root@acme.example",
                              password="admin password 1", account_role="Account Admin")
    client = client_for(runtime)
    login = {"email": "bob@acme.example", "password": "correct horse battery", "account": "acme"}
    assert client.post("/api/accounts/login", data=login).status_code == 303
    refused = client.get("/api/admin/groups")
    assert refused.status_code == 403 and "Account Admin" in refused.json()["detail"]

    admin = client_for(runtime)
    login = {"email": "root@acme.example", "password": "admin password 1", "account": "acme"}
    assert admin.post("/api/accounts/login", data=login).status_code == 303
    groups = admin.get("/api/admin/groups")
    assert groups.status_code == 200
    assert sorted(g["name"] for g in groups.json()) == ["Dev", "Local"]
    cleared = admin.delete("/api/admin/groups/Local/idp-identifier")
    assert cleared.status_code == 200
    with runtime.db.transaction() as db:
        actors = [e.actor for e in db.scalars(select(AuditEvent).where(AuditEvent.action.like("group.%")))]
    assert any(a.startswith("user:") for a in actors)

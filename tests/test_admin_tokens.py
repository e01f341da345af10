"""API tokens after creation: listed without secrets (API and CLI), revoked at once (the next
SCIM request with the token is 401), "last used" stamped, every query scoped by account."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import client_for
from sqlalchemy import select

from transom import directory
from transom.models import ApiToken, AuditEvent
from transom.runtime import Runtime


def seed(runtime: Runtime) -> dict[str, str]:
    with runtime.db.transaction() as db:
        acme = directory.create_account(db, name="acme")
        other = directory.create_account(db, name="other")
        return {
            "admin": directory.create_token(db, account=acme, permissions=["admin"], name="ops"),
            "scim": directory.create_token(db, account=acme, permissions=["manage-users"], name="okta-scim"),
            "other": directory.create_token(db, account=other, permissions=["admin"], name="other-ops"),
        }


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_list_create_revoke_over_the_api(make_runtime: Any) -> None:
    runtime = make_runtime()
    secrets = seed(runtime)
    with client_for(runtime) as client:
        listed = client.get("/api/admin/tokens", headers=auth(secrets["admin"]))
        assert listed.status_code == 200
        rows = listed.json()
        assert [(t["name"], t["permissions"]) for t in rows] == [("ops", ["admin"]), ("okta-scim", ["manage-users"])]
        # never a secret, nor its digest: no listed value is (part of) a token
        for secret in secrets.values():
            assert secret not in listed.text and secret[4:20] not in listed.text
        assert "token_hash" not in listed.text and "digest" not in listed.text
        scim_id = next(t["id"] for t in rows if t["name"] == "okta-scim")

        # the SCIM token works, then is revoked, then is refused on the very next request
        assert client.get("/api/scim/v2/Users", headers=auth(secrets["scim"])).status_code == 200
        assert client.delete(f"/api/admin/tokens/{scim_id}", headers=auth(secrets["admin"])).status_code == 204
        refused = client.get("/api/scim/v2/Users", headers=auth(secrets["scim"]))
        assert refused.status_code == 401
        assert client.delete(f"/api/admin/tokens/{scim_id}", headers=auth(secrets["admin"])).status_code == 404

        # another account's admin can neither see nor revoke acme's tokens
        assert client.get("/api/admin/tokens", headers=auth(secrets["other"])).json()[0]["name"] == "other-ops"
        ops_id = rows[0]["id"]
        assert client.delete(f"/api/admin/tokens/{ops_id}", headers=auth(secrets["other"])).status_code == 404

        created = client.post("/api/admin/tokens", headers=auth(secrets["admin"]),
                              json={"name": "entra-scim", "permissions": ["manage-users"]})
        assert created.status_code == 201
        body = created.json()
        assert body["token"].startswith("trn_") and body["permissions"] == ["manage-users"]
        assert body["token"] not in client.get("/api/admin/tokens", headers=auth(secrets["admin"])).text
        assert client.get("/api/scim/v2/Users", headers=auth(body["token"])).status_code == 200
        bad = client.post("/api/admin/tokens", headers=auth(secrets["admin"]),
                          json={"name": "x", "permissions": ["root"]})
        assert bad.status_code == 400 and "unknown permission" in bad.json()["detail"]
    with runtime.db.transaction() as db:
        revoked = db.scalars(select(AuditEvent).where(AuditEvent.action == "token.revoked")).one()
        assert revoked.actor == "api:ops" and revoked.details == {
            "id": scim_id, "name": "okta-scim", "permissions": ["manage-users"]}


def test_last_used_is_stamped_by_scim_and_admin_requests(make_runtime: Any) -> None:
    runtime = make_runtime()
    secrets = seed(runtime)
    with client_for(runtime) as client:
        before = {t["name"]: t["last_used_at"] for t in client.get("/api/admin/tokens",
                                                                   headers=auth(secrets["admin"])).json()}
        assert before["okta-scim"] is None
        assert before["ops"] is not None  # this very listing used it
        client.get("/api/scim/v2/Users", headers=auth(secrets["scim"]))
        after = {t["name"]: t["last_used_at"] for t in client.get("/api/admin/tokens",
                                                                  headers=auth(secrets["admin"])).json()}
    assert after["okta-scim"] is not None


def test_cli_lists_without_secrets_and_revokes(make_runtime: Any, tmp_path: Path, database_url: str) -> None:
    runtime = make_runtime()
    secrets = seed(runtime)
    config = tmp_path / "transom.toml"
    config.write_text(f'[server]\nsession_secret = "{"c" * 40}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSOM_")}
    env["TRANSOM_DATABASE_URL"] = database_url

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "transom.cli", "--config", str(config), *args],
                              capture_output=True, text=True, env=env, timeout=120)

    listed = cli("tokens", "list", "--account", "acme", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["name"] for r in rows] == ["ops", "okta-scim"]
    assert set(rows[0]) == {"id", "name", "permissions", "created_at", "last_used_at"}
    plain = cli("tokens", "list", "--account", "acme")
    assert plain.returncode == 0 and "okta-scim\tmanage-users\tcreated " in plain.stdout
    for secret in secrets.values():
        assert secret not in listed.stdout + plain.stdout
    scim_id = rows[1]["id"]
    revoked = cli("tokens", "revoke", "--account", "acme", scim_id)
    assert revoked.returncode == 0 and f"({scim_id}) revoked" in revoked.stdout
    with client_for(runtime) as client:
        assert client.get("/api/scim/v2/Users", headers=auth(secrets["scim"])).status_code == 401
    again = cli("tokens", "revoke", "--account", "acme", scim_id)
    assert again.returncode == 1 and again.stderr.startswith("error: no API token")
    # an id of another account's token is not found in this one
    with runtime.db.transaction() as db:
        other_id = db.scalar(select(ApiToken.id).where(ApiToken.name == "other-ops"))
    assert cli("tokens", "revoke", "--account", "acme", str(other_id)).returncode == 1
    created = cli("tokens", "create", "--account", "acme", "--permission", "admin", "--name", "new")
    assert created.returncode == 0
    new_id = created.stdout.split("(id ")[1].split(",")[0]
    assert new_id in cli("tokens", "list", "--account", "acme").stdout


def test_openapi_documents_the_new_admin_paths(make_runtime: Any) -> None:
    with client_for(make_runtime()) as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/api/admin/tokens"]) == {"get", "post"}
    assert set(paths["/api/admin/tokens/{token_id}"]) == {"delete"}
    assert "connector" in [p["name"] for p in paths["/api/admin/logins"]["get"]["parameters"]]
    for path in ("/api/admin/logins/{attempt_id}", "/api/admin/users", "/api/admin/users/{user_id}",
                 "/api/admin/users/{user_id}/deactivate", "/api/admin/users/{user_id}/reactivate",
                 "/api/admin/spaces", "/api/admin/roles", "/api/admin/audit"):
        assert path in paths, path
    assert "patch" in paths["/api/admin/groups/{group}"]
    assert not any(p.startswith("/admin") for p in paths)  # the console's pages are not API


def test_users_spaces_and_audit_endpoints(make_runtime: Any) -> None:
    runtime = make_runtime()
    secrets = seed(runtime)
    with runtime.db.transaction() as db:
        acme = directory.get_account(db, name="acme")
        directory.create_user(db, account=acme, user_name="ada@acme.example", email="ada@acme.example",
                              display_name="Ada Lovelace")
        directory.create_user(db, account=acme, user_name="bob@acme.example", email="bob@acme.example")
    headers = auth(secrets["admin"])
    with client_for(runtime) as client:
        found = client.get("/api/admin/users", params={"q": "lovelace"}, headers=headers).json()
        assert [u["user_name"] for u in found] == ["ada@acme.example"]
        ada = found[0]["id"]
        detail = client.get(f"/api/admin/users/{ada}", headers=headers).json()
        assert detail["identities"] == [] and detail["recent_audit"][0]["action"] == "user.created"
        off = client.post(f"/api/admin/users/{ada}/deactivate", headers=headers)
        assert off.status_code == 200 and off.json()["status"] == "deprovisioned"
        listed = client.get("/api/admin/users", params={"status": "deprovisioned"}, headers=headers).json()
        assert [u["id"] for u in listed] == [ada]
        on = client.post(f"/api/admin/users/{ada}/reactivate", headers=headers)
        assert on.json()["status"] == "pending"  # never signed in
        assert client.get("/api/admin/users", params={"status": "gone"}, headers=headers).status_code == 400
        assert client.get("/api/admin/users/nope", headers=headers).status_code == 404
        other_users = client.get("/api/admin/users", headers=auth(secrets["other"])).json()
        assert other_users == []

        assert client.post("/api/admin/spaces", json={"name": "Prod"}, headers=headers).status_code == 201
        assert client.post("/api/admin/spaces", json={"name": " prod "}, headers=headers).status_code == 409
        assert client.post("/api/admin/spaces", json={"nom": "x"}, headers=headers).status_code == 400
        assert client.get("/api/admin/spaces", headers=headers).json()[0]["name"] == "Prod"
        roles = client.get("/api/admin/roles", headers=headers).json()
        assert {(r["scope"], r["name"]) for r in roles} >= {("account", "Account Admin"), ("space", "Space Member")}

        kinds = client.get("/api/admin/audit", params={"kind": "user"}, headers=headers).json()
        assert {e["action"] for e in kinds} == {"user.created", "user.deprovisioned", "user.reactivated"}
        by_user = client.get("/api/admin/audit", params={"user": "ada@acme.example"}, headers=headers).json()
        assert [e["action"] for e in by_user] == ["user.reactivated", "user.deprovisioned", "user.created"]
        assert client.get("/api/admin/audit", params={"user": "nobody"}, headers=headers).status_code == 404

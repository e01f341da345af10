"""SCIM through HTTP: authentication, tenant isolation, the pending/deprovisioned lifecycle
(including the first SSO login that links a SCIM-created user), body limits, ETags,
paging, attribute projection and mass assignment."""

from __future__ import annotations

import json
from typing import Any

import httpx
from conftest import client_for
from oidc_support import entra_claims, entra_connector, entra_fake
from scim_support import SCIM, auth, create, find, make_tenants, new_user
from sqlalchemy import func, select

from transom import directory
from transom.models import (
    USER_ACTIVE,
    USER_DEPROVISIONED,
    USER_PENDING,
    Account,
    AuditEvent,
    ExternalIdentity,
    GroupMembership,
    Role,
    ScimValue,
    SpaceMembership,
    User,
    WebSession,
)
from transom.runtime import Runtime
from transom.sessions import start_session
from transom.testing.oidc import oidc_login

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def _user(runtime: Runtime, user_id: str) -> User | None:
    with runtime.db.transaction() as db:
        return db.scalar(select(User).where(User.id == user_id))


# -- authentication ---------------------------------------------------------------------


def test_bad_credentials_all_answer_the_same_401(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime)
    variants: list[dict[str, str]] = [{}, {"Authorization": "Bearer "}, {"Authorization": "Bearer garbage"},
                                      {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "garbage"},
                                      {"Authorization": f"Bearer {tenants.token}x"}]
    with client_for(tenants.runtime) as client:
        bodies = []
        for headers in variants:
            response = client.get(f"{SCIM}/Users", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.headers["content-type"].startswith("application/scim+json")
            bodies.append(response.json())
        assert all(b == bodies[0] for b in bodies)
        assert bodies[0]["schemas"] == [ERROR] and bodies[0]["status"] == "401" and bodies[0]["detail"]
        # a valid token in the query string is ignored (it would leak to logs)
        assert client.get(f"{SCIM}/Users", params={"access_token": tenants.token}).status_code == 401
        # the bare token (Okta's HTTP-header mode) and "Bearer" both work
        assert client.get(f"{SCIM}/Users", headers={"Authorization": tenants.token}).status_code == 200
        assert client.get("/api/scim/Users", headers=auth(tenants.token)).status_code == 200


def test_token_sees_only_its_own_account(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime)
    with client_for(tenants.runtime) as client:
        mine = create(client, tenants.token, new_user("ada@acme.example", externalId="ext-1"))
        other = auth(tenants.other_token)
        deactivate = {"Operations": [{"op": "replace", "path": "active", "value": False}]}
        for method, extra in (("GET", {}), ("PUT", {"json": new_user("evil@globex.example")}),
                              ("PATCH", {"json": deactivate}), ("DELETE", {})):
            response = client.request(method, f"{SCIM}/Users/{mine['id']}", headers=other, **extra)
            assert response.status_code == 404, method
        for flt in (f'id eq "{mine["id"]}"', 'userName eq "ada@acme.example"', 'externalId eq "ext-1"'):
            assert find(client, tenants.other_token, flt)["totalResults"] == 0
        search = client.post(f"{SCIM}/Users/.search", headers=other,
                             json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]})
        assert search.json()["totalResults"] == 0
        # the same user name is free in another account; a body naming an account is ignored
        theirs = create(client, tenants.other_token, new_user("ADA@acme.example", account_id="x", tenantId="y"))
        assert theirs["id"] != mine["id"]
    unchanged = _user(tenants.runtime, mine["id"])
    assert unchanged is not None and unchanged.status == USER_PENDING and unchanged.version == 1
    with tenants.runtime.db.transaction() as db:
        globex = db.scalar(select(Account).where(Account.name == "globex"))
        moved = db.scalar(select(User).where(User.id == theirs["id"]))
        assert globex is not None and moved is not None and moved.account_id == globex.id


# -- lifecycle --------------------------------------------------------------------------


def test_pending_user_linked_on_first_sso_login_then_deprovisioned_and_restored(make_runtime: Any) -> None:
    fake = entra_fake()
    runtime: Runtime = make_runtime(connectors=[entra_connector()], http=httpx.Client(transport=fake.transport()))
    with runtime.db.transaction() as db:
        acme = directory.create_account(db, name="acme")
        token = directory.create_token(db, account=acme, permissions=["manage-users"], name="entra-scim")
    with client_for(runtime) as client:
        scim_user = create(client, token, new_user("Ada@Acme.Example", displayName="Ada L"))
        stored = _user(runtime, scim_user["id"])
        assert stored is not None and stored.status == USER_PENDING and stored.password_hash is None
        # first SSO login: the same person, linked to the SCIM-created user, now active
        login = oidc_login(client, fake, "acme-entra", claims=entra_claims())
        assert login.status_code == 303, login.text
        linked = _user(runtime, scim_user["id"])
        assert linked is not None and linked.status == USER_ACTIVE and linked.first_login_at is not None
        with runtime.db.transaction() as db:
            assert db.scalar(select(func.count()).select_from(User)) == 1
            assert db.scalar(select(ExternalIdentity.user_id)) == scim_user["id"]
        assert client.get("/api/me").json()["id"] == scim_user["id"]
        # deprovisioned: the session ends, and SSO is refused
        off = client.patch(f"{SCIM}/Users/{scim_user['id']}", headers=auth(token),
                           json={"Operations": [{"op": "replace", "path": "active", "value": False}]})
        assert off.json()["active"] is False
        assert client.get("/api/me").status_code == 401
        refused = oidc_login(client, fake, "acme-entra", claims=entra_claims())
        assert 400 <= refused.status_code < 500
        # restored: it has logged in before, so it is active again and can sign in
        client.patch(f"{SCIM}/Users/{scim_user['id']}", headers=auth(token),
                     json={"Operations": [{"op": "replace", "path": "active", "value": True}]})
        restored = _user(runtime, scim_user["id"])
        assert restored is not None and restored.status == USER_ACTIVE
        assert oidc_login(client, fake, "acme-entra", claims=entra_claims()).status_code == 303


def test_deprovision_removes_spaces_groups_and_sessions(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime)
    with client_for(tenants.runtime) as client:
        user = create(client, tenants.token, new_user("bob@acme.example"))
        with tenants.runtime.db.transaction() as db:
            acme = directory.get_account(db, name="acme")
            row = db.scalar(select(User).where(User.id == user["id"]))
            assert row is not None
            space = directory.create_space(db, account=acme, name="Trial")
            role = db.scalar(select(Role).where(Role.account_id == acme.id, Role.name == "Space Member"))
            assert role is not None
            db.add(SpaceMembership(account_id=acme.id, user_id=row.id, space_id=space.id, role_id=role.id))
            group = directory.create_group(db, account=acme, name="Dev")
            directory.add_group_member(db, account=acme, group=group, user=row, actor="cli", idp_owned=False)
            start_session(db, user=row, secret="s" * 32, max_age_seconds=600, connector_id=None)
        response = client.put(f"{SCIM}/Users/{user['id']}", json=new_user("bob@acme.example", active=False),
                              headers=auth(tenants.token))
        assert response.status_code == 200 and response.json()["active"] is False
        assert client.get(f"{SCIM}/Users/{user['id']}", headers=auth(tenants.token)).json()["active"] is False
    with tenants.runtime.db.transaction() as db:
        for model in (SpaceMembership, GroupMembership, WebSession):
            assert db.scalar(select(func.count()).select_from(model)) == 0, model.__name__
        event = db.scalar(select(AuditEvent).where(AuditEvent.action == "user.deprovisioned"))
        assert event is not None and event.details == {"spaces_removed": 1, "groups_removed": 1}
        assert event.actor == "scim:entra-app"
        assert db.scalar(select(User.status).where(User.id == user["id"])) == USER_DEPROVISIONED


def test_delete_removes_the_user_and_personal_data(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime)
    with client_for(tenants.runtime) as client:
        user = create(client, tenants.token, new_user("carol@acme.example", displayName="Carol"))
        assert client.delete(f"{SCIM}/Users/{user['id']}", headers=auth(tenants.token)).status_code == 204
        assert client.delete(f"{SCIM}/Users/{user['id']}", headers=auth(tenants.token)).status_code == 404
        assert find(client, tenants.token, 'userName eq "carol@acme.example"')["totalResults"] == 0
    with tenants.runtime.db.transaction() as db:
        assert db.scalar(select(func.count()).select_from(User)) == 0
        assert db.scalar(select(func.count()).select_from(ScimValue)) == 0
        events = list(db.scalars(select(AuditEvent).where(AuditEvent.user_id == user["id"])))
        assert [e.action for e in events] == ["user.created", "user.deleted"]
        assert all(e.details is None for e in events)
        assert "carol" not in json.dumps([e.details for e in db.scalars(select(AuditEvent))])


# -- bodies, ETags, paging, projection --------------------------------------------------


def test_malformed_bodies_are_4xx_and_change_nothing(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime)
    headers = auth(tenants.token)
    with client_for(tenants.runtime) as client:
        cases = {
            b"{not json": ("400", "invalidSyntax"),
            b'{"userName": "alice", "userName": "admin"}': ("400", "invalidSyntax"),
            b"[" * 100_000 + b"]" * 100_000: ("413", None),
            b"[" * 5000 + b"]" * 5000: ("400", "invalidSyntax"),
            b'{"userName": NaN}': ("400", "invalidSyntax"),
            b"[]": ("400", "invalidSyntax"),
            b"": ("400", "invalidSyntax"),
            b'{"userName": "x", "displayName": "' + b"a" * 70_000 + b'"}': ("413", None),
            b'{"userName": "x", "displayName": "' + b"a" * 2000 + b'"}': ("400", "invalidValue"),
            b'{"userName": ""}': ("400", "invalidValue"),
            b'{"userName": "x", "active": "maybe"}': ("400", "invalidValue"),
            b'{"userName": "x", "emails": [' + b'{"value": "a@b.c"},' * 150 + b'{"value": "a@b.c"}]}':
                ("400", "invalidValue"),
            b"\xff\xfe": ("400", "invalidSyntax"),
        }
        for raw, (status, scim_type) in cases.items():
            response = client.post(f"{SCIM}/Users", content=raw, headers=headers)
            assert response.json()["status"] == status, raw[:40]
            assert response.json().get("scimType") == scim_type, raw[:40]
        huge = client.post(f"{SCIM}/Users", content=b"x" * 400_000, headers=headers)
        assert huge.status_code == 413 and huge.json()["schemas"] == [ERROR]
    with tenants.runtime.db.transaction() as db:
        assert db.scalar(select(func.count()).select_from(User)) == 0


def test_etags_and_if_match(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime)
    with client_for(tenants.runtime) as client:
        user = create(client, tenants.token, new_user("dan@acme.example"))
        url = f"{SCIM}/Users/{user['id']}"
        got = client.get(url, headers=auth(tenants.token))
        assert got.headers["etag"] == 'W/"1"' == got.json()["meta"]["version"]
        assert client.get(url, headers=auth(tenants.token) | {"If-None-Match": 'W/"1"'}).status_code == 304
        patch = {"Operations": [{"op": "replace", "path": "displayName", "value": "Dan"}]}
        stale = client.patch(url, json=patch, headers=auth(tenants.token) | {"If-Match": 'W/"7"'})
        assert stale.status_code == 412 and stale.json()["status"] == "412"
        assert client.delete(url, headers=auth(tenants.token) | {"If-Match": 'W/"7"'}).status_code == 412
        fresh = client.patch(url, json=patch, headers=auth(tenants.token) | {"If-Match": 'W/"1"'})
        assert fresh.status_code == 200 and fresh.headers["etag"] == 'W/"2"'
        assert fresh.json()["meta"]["version"] == 'W/"2"'


def test_paging_sorting_and_projection(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime)
    with client_for(tenants.runtime) as client:
        for name in ("c@acme.example", "a@acme.example", "b@acme.example"):
            create(client, tenants.token, new_user(name, title="Engineer"))

        def page(**params: Any) -> httpx.Response:
            return client.get(f"{SCIM}/Users", params=params, headers=auth(tenants.token))

        assert [r["userName"] for r in page(sortBy="userName").json()["Resources"]] == \
            ["a@acme.example", "b@acme.example", "c@acme.example"]
        descending = page(sortBy="USERNAME", sortOrder="descending", count=2).json()["Resources"]
        assert [r["userName"] for r in descending] == ["c@acme.example", "b@acme.example"]
        # default order is creation order, stable across pages
        first, second = page(startIndex=1, count=2).json(), page(startIndex=3, count=2).json()
        assert [r["userName"] for r in first["Resources"] + second["Resources"]] == \
            ["c@acme.example", "a@acme.example", "b@acme.example"]
        assert (second["startIndex"], second["itemsPerPage"], second["totalResults"]) == (3, 1, 3)
        assert page(startIndex=0).json()["startIndex"] == 1
        assert page(count=-1).json() | {"Resources": []} == page(count=0).json() | {"Resources": []}
        assert page(count=0).json()["itemsPerPage"] == 0 and page(count=0).json()["totalResults"] == 3
        assert page(startIndex=10**12).json()["Resources"] == []
        for bad in ({"count": "abc"}, {"count": "1e3"}, {"startIndex": "x"}, {"sortBy": "password"},
                    {"sortOrder": "sideways"}):
            response = page(**bad)
            assert response.status_code == 400 and response.json()["scimType"] == "invalidValue", bad
        only = page(attributes="userName,name.givenName").json()["Resources"][0]
        assert set(only) == {"schemas", "id", "userName", "name"} and only["name"] == {"givenName": "Ada"}
        without = page(excludedAttributes="emails,title,id").json()["Resources"][0]
        assert "emails" not in without and "title" not in without and "id" in without
        search = client.post(f"{SCIM}/Users/.search", headers=auth(tenants.token), json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": 'userName sw "b"',
            "attributes": ["userName"], "count": 5})
        assert search.json()["totalResults"] == 1
        assert set(search.json()["Resources"][0]) == {"schemas", "id", "userName"}
        config = client.get(f"{SCIM}/ServiceProviderConfig", headers=auth(tenants.token)).json()
        assert config["filter"] == {"supported": True, "maxResults": 200} and config["etag"]["supported"] is True
        assert client.get(f"{SCIM}/Schemas", params={"filter": 'id eq "x"'},
                          headers=auth(tenants.token)).status_code == 403


def test_no_mass_assignment(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime)
    with client_for(tenants.runtime) as client:
        body = new_user("eve@acme.example", id="attacker-id", password="Passw0rd!", groups=[{"value": "admins"}],
                        roles=[{"value": "Account Admin", "primary": True}], is_admin=True,
                        password_hash="x", account_role_id="y", status="active",
                        meta={"created": "2000-01-01T00:00:00Z", "version": 'W/"99"'})
        user = create(client, tenants.token, body)
        assert user["id"] != "attacker-id" and "password" not in user and "groups" not in user
        assert user["meta"]["version"] == 'W/"1"'
        url = f"{SCIM}/Users/{user['id']}"
        for op in ({"op": "replace", "path": "id", "value": "x"},
                   {"op": "add", "path": "groups", "value": [{"value": "g"}]},
                   {"op": "replace", "path": "meta.created", "value": "2000"},
                   {"op": "replace", "value": {"id": "someone-else"}}):
            response = client.patch(url, json={"Operations": [op]}, headers=auth(tenants.token))
            assert response.status_code == 400 and response.json()["scimType"] == "mutability", op
        client.patch(url, headers=auth(tenants.token), json={"Operations": [
            {"op": "replace", "path": "password", "value": "Passw0rd!"},
            {"op": "replace", "value": {"password_hash": "x", "account_role_id": "y", "status": "active"}}]})
    with tenants.runtime.db.transaction() as db:
        row = db.scalar(select(User).where(User.id == user["id"]))
        assert row is not None and row.password_hash is None and row.status == USER_PENDING
        role = db.scalar(select(Role).where(Role.id == row.account_role_id))
        assert role is not None and role.name == "Account Member"  # SCIM roles never grant Transom roles

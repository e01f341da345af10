"""The one input policy (transom.textpolicy, docs/security.md): lone surrogates, NUL and
other C0 controls are a 400 on every surface, identical on SQLite and PostgreSQL, and
nothing is stored (issue 12 cases 1 and 2). The whole suite runs on both engines."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import client_for
from scim_support import SCIM, auth, create, make_tenants, new_user
from sqlalchemy import func, select

from transom import directory
from transom.models import Group, User
from transom.textpolicy import UnsafeText

BAD = [("\\ud800", "lone_surrogate"), ("\\udc00x", "lone_surrogate"), ("a\\u0000b", "nul_character"),
       ("a\\u001bb", "control_character")]
IDS = ["high-surrogate", "low-surrogate", "nul", "escape"]


@pytest.fixture
def tenants(make_runtime: Any) -> Any:
    return make_tenants(make_runtime)


def _scim_refused(response: Any, reason: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert body["status"] == "400"
    assert body.get("reason") == reason, body
    assert response.headers["content-type"].startswith("application/scim+json")


def _user_count(tenants: Any) -> int:
    with tenants.runtime.db.transaction() as db:
        return db.scalar(select(func.count()).select_from(User)) or 0


@pytest.mark.parametrize(("escaped", "reason"), BAD, ids=IDS)
def test_scim_filter_post_put_patch_refuse_unsafe_text(tenants: Any, escaped: str, reason: str) -> None:
    headers = auth(tenants.token)
    with client_for(tenants.runtime) as client:
        existing = create(client, tenants.token, new_user("ada@acme.example"))
        before = client.get(f"{SCIM}/Users/{existing['id']}", headers=headers).json()
        _scim_refused(client.get(f"{SCIM}/Users", params={"filter": f'userName eq "{escaped}"'}, headers=headers),
                      reason)
        _scim_refused(client.post(f"{SCIM}/Users/.search", headers=headers, content=(
            '{"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], '
            f'"filter": "userName eq \\"{escaped}\\""' + "}").encode()), reason)
        for field in ("displayName", "externalId", "title"):
            body = f'{{"userName": "u{field}@acme.example", "{field}": "{escaped}"}}'.encode()
            _scim_refused(client.post(f"{SCIM}/Users", content=body, headers=headers), reason)
        _scim_refused(client.post(f"{SCIM}/Users", content=f'{{"userName": "{escaped}"}}'.encode(), headers=headers),
                      reason)
        _scim_refused(client.put(f"{SCIM}/Users/{existing['id']}", headers=headers,
                                 content=f'{{"userName": "ada{escaped}@acme.example"}}'.encode()), reason)
        for op in (f'{{"op": "replace", "path": "displayName", "value": "{escaped}"}}',
                   f'{{"op": "replace", "value": {{"name.givenName": "{escaped}"}}}}',
                   f'{{"op": "add", "path": "emails[type eq \\"{escaped}\\"].value", "value": "x@y.example"}}',
                   f'{{"op": "replace", "path": "{escaped}", "value": "x"}}'):
            patch = ('{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [' + op + "]}")
            response = client.patch(f"{SCIM}/Users/{existing['id']}", content=patch.encode(), headers=headers)
            assert response.status_code == 400, (op, response.text)
            assert response.json()["reason"] == reason, op
        after = client.get(f"{SCIM}/Users/{existing['id']}", headers=headers).json()
    assert after == before  # nothing changed
    assert _user_count(tenants) == 1


def test_identifiers_refuse_tab_and_newline_but_an_address_may_span_lines(tenants: Any) -> None:
    headers = auth(tenants.token)
    with client_for(tenants.runtime) as client:
        _scim_refused(client.post(f"{SCIM}/Users", json=new_user("a\tb@acme.example"), headers=headers),
                      "control_character")
        _scim_refused(client.post(f"{SCIM}/Users", json=new_user("ok@acme.example", displayName="Ada\nL"),
                                  headers=headers), "control_character")
        address = {"type": "work", "formatted": "1 Main St\nSpringfield", "streetAddress": "1 Main St\r\nFloor 2"}
        created = create(client, tenants.token, new_user("ok@acme.example", addresses=[address]))
        assert created["addresses"][0]["formatted"] == "1 Main St\nSpringfield"
        patched = client.patch(f"{SCIM}/Users/{created['id']}", headers=headers, json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": 'addresses[type eq "work"].streetAddress', "value": "2\nB"},
                           {"op": "replace", "path": "title", "value": "Engineer"}]})
        assert patched.status_code == 200, patched.text
        refused = client.patch(f"{SCIM}/Users/{created['id']}", headers=headers, json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "userName", "value": "x\ny@acme.example"}]})
        _scim_refused(refused, "control_character")


def test_a_query_parameter_with_a_control_character_is_refused_on_scim(tenants: Any) -> None:
    with client_for(tenants.runtime) as client:
        _scim_refused(client.get(f"{SCIM}/Users", params={"filter": 'userName eq "a\x01"'},
                                 headers=auth(tenants.token)), "control_character")
        _scim_refused(client.get(f"{SCIM}/Users/abc%00def", headers=auth(tenants.token)), "nul_character")


@pytest.mark.parametrize(("escaped", "reason"), BAD, ids=IDS)
def test_admin_api_refuses_unsafe_text_as_json(tenants: Any, escaped: str, reason: str) -> None:
    with tenants.runtime.db.transaction() as db:
        acme = directory.get_account(db, name="acme")
        admin = directory.create_token(db, account=acme, permissions=["admin"], name="admin")
    headers = {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"}
    with client_for(tenants.runtime) as client:
        for body in (f'{{"name": "g{escaped}"}}', f'{{"name": "g", "idp_identifier": "{escaped}"}}'):
            response = client.post("/api/admin/groups", content=body.encode(), headers=headers)
            assert response.status_code == 400, response.text
            assert response.json()["reason"] == reason
            assert response.json()["error"] == "bad_request"
        assert client.post("/api/admin/groups", json={"name": "g"}, headers=headers).status_code == 201
        response = client.put("/api/admin/groups/g/idp-identifier", headers=headers,
                              content=f'{{"idp_identifier": "{escaped}"}}'.encode())
        assert response.json()["reason"] == reason
        if reason == "nul_character":
            response = client.get("/api/admin/groups/g%00", headers=headers)
            assert (response.status_code, response.json()["reason"]) == (400, reason)
        assert client.post("/api/admin/groups", json={"name": "tab\there"}, headers=headers).status_code == 400
    with tenants.runtime.db.transaction() as db:
        assert db.scalars(select(Group.name)).all() == ["g"]


def test_password_form_refuses_unsafe_text_with_an_error_page(tenants: Any) -> None:
    with client_for(tenants.runtime) as client:
        page = client.post("/api/accounts/login", headers={"accept": "text/html"},
                           data={"email": "ada\x00@acme.example", "password": "pw", "account": "acme"})
        assert page.status_code == 400
        assert "text/html" in page.headers["content-type"]
        assert "nul_character" in page.text
        as_json = client.post("/api/accounts/login", headers={"content-type": "application/json"},
                              content=b'{"email": "ada@acme.example", "password": "p\\ud800", "account": "acme"}')
        assert (as_json.status_code, as_json.json()["reason"]) == (400, "lone_surrogate")
        tabbed = client.post("/api/accounts/login", data={"email": "ada@acme.example", "password": "pw",
                                                          "account": "ac\tme"})
        assert (tabbed.status_code, tabbed.json()["reason"]) == (400, "control_character")


@pytest.mark.parametrize("value", ["nul\x00", "lone\ud800"])
def test_the_database_backstop_refuses_what_an_edge_forgot(tenants: Any, value: str) -> None:
    """A code path that skips the edge still gets a 400-class error, not a driver error or a
    silently stored NUL, on both engines."""
    with pytest.raises(UnsafeText), tenants.runtime.db.transaction() as db:
        directory.create_group(db, account=directory.get_account(db, name="acme"), name=value)
    with tenants.runtime.db.transaction() as db:
        assert db.scalar(select(func.count()).select_from(Group)) == 0

"""The PATCH engine (RFC 7644 §3.5.2) on resource dicts, plus atomicity through HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import client_for
from scim_support import SCIM, auth, create, make_tenants, new_user

from transom.scim.errors import InvalidPath, InvalidSyntax, InvalidValue, Mutability, NoTarget, TooMany
from transom.scim.patch import apply_patch

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def base() -> dict[str, Any]:
    return {
        "userName": "ada@acme.example", "active": True, "displayName": "Ada",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": "ada@acme.example", "type": "work", "primary": True},
                   {"value": "ada@home.example", "type": "home"}],
        ENTERPRISE: {"department": "R&D", "manager": {"value": "m1"}},
    }


def patch(*ops: dict[str, Any], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    return apply_patch(resource or base(), {"Operations": list(ops)}, resource_id="u1")


def test_add_replace_remove_with_paths() -> None:
    out = patch({"op": "add", "path": "nickName", "value": "Babs"},
                {"op": "replace", "path": "name.familyName", "value": "King"},
                {"op": "remove", "path": "displayName"},
                {"op": "add", "path": "emails", "value": [{"value": "x@y.example", "type": "other"}]},
                {"op": "replace", "path": f"{ENTERPRISE}:department", "value": "Maths"},
                {"op": "remove", "path": f"{ENTERPRISE}:manager"})
    assert out["nickName"] == "Babs" and "displayName" not in out
    assert out["name"] == {"givenName": "Ada", "familyName": "King"}
    assert [e["value"] for e in out["emails"]] == ["ada@acme.example", "ada@home.example", "x@y.example"]
    assert out[ENTERPRISE] == {"department": "Maths"}


def test_add_is_idempotent_and_single_valued_add_replaces() -> None:
    again = patch({"op": "add", "path": "emails", "value": [{"value": "ada@home.example", "type": "home"}]},
                  {"op": "add", "path": "displayName", "value": "Ada L"})
    assert len(again["emails"]) == 2 and again["displayName"] == "Ada L"


def test_pathless_values_are_attribute_paths() -> None:
    out = patch({"op": "replace", "value": {"displayName": "Bjfe", "name.givenName": "Kkom", "id": "u1",
                                            f"{ENTERPRISE}:employeeNumber": "Aklq", "unknownThing": 1,
                                            ENTERPRISE: {"costCenter": "42"}, "ACTIVE": False}})
    assert out["displayName"] == "Bjfe" and out["name"]["givenName"] == "Kkom" and out["active"] is False
    assert out[ENTERPRISE]["employeeNumber"] == "Aklq" and out[ENTERPRISE]["costCenter"] == "42"
    assert "unknownThing" not in out


def test_value_filter_paths() -> None:
    out = patch({"op": "replace", "path": 'emails[type eq "work"].value', "value": "new@acme.example"},
                {"op": "replace", "path": 'emails[type eq "home"]', "value": {"display": "Home"}},
                {"op": "remove", "path": 'emails[value ew "example" and type eq "nope"]'})
    assert out["emails"] == [{"value": "new@acme.example", "type": "work", "primary": True},
                             {"value": "ada@home.example", "type": "home", "display": "Home"}]
    removed = patch({"op": "remove", "path": 'emails[type eq "home"]'})
    assert [e["type"] for e in removed["emails"]] == ["work"]
    sub_removed = patch({"op": "remove", "path": 'emails[type eq "work"].primary'})
    assert "primary" not in sub_removed["emails"][0]
    # no matching entry: created from the filter's equalities (Entra), else noTarget
    created = patch({"op": "add", "path": 'phoneNumbers[type eq "work"].value', "value": "+1"})
    assert created["phoneNumbers"] == [{"type": "work", "value": "+1"}]
    with pytest.raises(NoTarget):
        patch({"op": "replace", "path": 'emails[value co "zzz"].display', "value": "x"})
    manager_gone = patch({"op": "remove", "path": f'{ENTERPRISE}:manager[value eq "m1"]'})
    assert "manager" not in manager_gone[ENTERPRISE]


def test_blank_replace_removes_and_legacy_remove_with_values() -> None:
    out = patch({"op": "replace", "path": "displayName", "value": ""},
                {"op": "replace", "path": "name.givenName", "value": None},
                {"op": "remove", "path": "emails", "value": [{"value": "ADA@home.example"}]})
    assert "displayName" not in out and out["name"] == {"familyName": "Lovelace"}
    assert [e["type"] for e in out["emails"]] == ["work"]
    everything = patch({"op": "remove", "path": "emails"}, {"op": "remove", "path": ENTERPRISE})
    assert "emails" not in everything and ENTERPRISE not in everything


def test_primary_stays_unique() -> None:
    added = {"value": "p@x.example", "type": "other", "primary": "True"}
    out = patch({"op": "add", "path": "emails", "value": [added]})
    assert [e.get("primary") for e in out["emails"]] == [False, None, True]


@pytest.mark.parametrize(("op", "error"), [
    ({"op": "remove"}, NoTarget),
    ({"op": "replace", "path": "id", "value": "x"}, Mutability),
    ({"op": "replace", "path": "meta.lastModified", "value": "x"}, Mutability),
    ({"op": "add", "path": "groups", "value": [{"value": "g"}]}, Mutability),
    ({"op": "replace", "value": {"id": "someone-else"}}, Mutability),
    ({"op": "replace", "path": "nope", "value": "x"}, InvalidPath),
    ({"op": "replace", "path": "name.nope", "value": "x"}, InvalidPath),
    ({"op": "replace", "path": 'emails[type eq "work"', "value": "x"}, InvalidPath),
    ({"op": "replace", "path": 'displayName[value eq "x"]', "value": "x"}, InvalidPath),
    ({"op": "move", "path": "displayName", "value": "x"}, InvalidSyntax),
    ({"op": "replace", "path": "active", "value": "maybe"}, InvalidValue),
    ({"op": "replace", "path": "name", "value": "not an object"}, InvalidValue),
    ({"op": "replace", "value": "not an object"}, InvalidValue),
])
def test_refused_operations(op: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        patch(op)


def test_request_shape_limits() -> None:
    with pytest.raises(InvalidSyntax):
        apply_patch(base(), {"Operations": []}, resource_id="u1")
    with pytest.raises(InvalidSyntax):
        apply_patch(base(), {"operations": ["x"]}, resource_id="u1")
    with pytest.raises(TooMany):
        apply_patch(base(), {"Operations": [{"op": "add", "path": "title", "value": "x"}] * 101}, resource_id="u1")
    source = base()
    apply_patch(source, {"Operations": [{"op": "remove", "path": "emails"}]}, resource_id="u1")
    assert source == base()  # the input is never mutated


def test_patch_is_atomic_over_http(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime)
    with client_for(tenants.runtime) as client:
        user = create(client, tenants.token, new_user("ada@acme.example", displayName="Ada"))
        url = f"{SCIM}/Users/{user['id']}"
        response = client.patch(url, headers=auth(tenants.token), json={"Operations": [
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "replace", "path": "active", "value": False},
            {"op": "replace", "path": "id", "value": "x"}]})
        assert response.status_code == 400
        after = client.get(url, headers=auth(tenants.token)).json()
        assert after == user
        # rename onto an existing user name: 409, nothing changed
        create(client, tenants.token, new_user("bob@acme.example"))
        clash = client.patch(url, headers=auth(tenants.token), json={"Operations": [
            {"op": "replace", "path": "userName", "value": "BOB@acme.example"}]})
        assert clash.status_code == 409 and clash.json()["scimType"] == "uniqueness"
        assert client.get(url, headers=auth(tenants.token)).json()["userName"] == "ada@acme.example"
        # userName is required: removing it is refused
        remove_name = {"Operations": [{"op": "remove", "path": "userName"}]}
        gone = client.patch(url, headers=auth(tenants.token), json=remove_name)
        assert gone.status_code == 400 and gone.json()["scimType"] == "mutability"

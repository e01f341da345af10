"""The request sequences Entra ID and Okta really send (scim-dialects.md §1.2-1.4, §2.2-2.3,
§6 Okta SPEC steps), replayed end to end through HTTP against an account whose connectors
are of type azure_ad / okta, so their ``transom_scim_normalize`` hooks run."""

from __future__ import annotations

import uuid
from typing import Any

from conftest import client_for
from oidc_support import entra_connector, okta_connector
from scim_support import SCIM, auth, make_tenants
from sqlalchemy import select

from transom.models import USER_DEPROVISIONED, USER_PENDING, AuditEvent, User
from transom_azure_ad import scim as entra_scim

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def _patch(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(ops)}


def _status(runtime: Any, user_id: str) -> str | None:
    with runtime.db.transaction() as db:
        user = db.scalar(select(User).where(User.id == user_id))
        return None if user is None else user.status


def test_entra_sequence(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime, connectors=[entra_connector()])
    headers = auth(tenants.token)
    with client_for(tenants.runtime) as client:
        # Test Connection: a random GUID on the matching attribute, users and groups
        guid = str(uuid.uuid4())
        for path, flt in (("Users", f'userName eq "{guid}"'), ("Groups", f'displayName eq "{guid}"')):
            response = client.get(f"{SCIM}/{path}", params={"filter": flt}, headers=headers)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/scim+json")
            assert response.json() == {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                                       "totalResults": 0, "startIndex": 1, "itemsPerPage": 0, "Resources": []}
        assert client.get(f"{SCIM}/Schemas", headers=headers).json()["totalResults"] == 2

        # match, then create (the documented body, plus the older example's nulls and mistyped URN)
        assert client.get(f"{SCIM}/Users", params={"filter": 'userName eq "Test_User_00aa@contoso.com"'},
                          headers=headers).json()["totalResults"] == 0
        body = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef", "userName": "Test_User_00aa@contoso.com",
            "active": True, "emails": [{"primary": True, "type": "work", "value": "Test_User_11bb@contoso.com"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
            "roles": [], "addresses": None, "title": None, "department": None, "manager": None,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0User": {"employeeNumber": "E-1"},
        }
        created = client.post(f"{SCIM}/Users", json=body, headers=headers)
        assert created.status_code == 201, created.text
        user = created.json()
        user_id = user["id"]
        assert created.headers["location"].endswith(f"/api/scim/v2/Users/{user_id}")
        assert user["active"] is True and user["userName"] == "Test_User_00aa@contoso.com"
        assert user[ENTERPRISE] == {"employeeNumber": "E-1"}
        assert "roles" not in user and "title" not in user
        assert _status(tenants.runtime, user_id) == USER_PENDING

        # read and the three matching attributes Entra may use (case-insensitive userName)
        assert client.get(f"{SCIM}/Users/{user_id}", headers=headers).json()["id"] == user_id
        for flt in ('userName eq "test_user_00AA@CONTOSO.com"', 'externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"',
                    'emails[type eq "work"].value eq "Test_User_11bb@contoso.com"'):
            found = client.get(f"{SCIM}/Users", params={"filter": flt}, headers=headers).json()
            assert [r["id"] for r in found["Resources"]] == [user_id], flt

        # legacy PATCH: capitalised ops, one per attribute, value-filter and URN paths
        legacy = _patch(
            {"op": "Replace", "path": "displayName", "value": "Bjfe"},
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "new@contoso.com"},
            {"op": "Add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 555 0100"},
            {"op": "Replace", "path": "name.givenName", "value": "Kkom"},
            {"op": "Replace", "path": f"{ENTERPRISE}:employeeNumber", "value": "Aklq"},
            {"op": "Add", "path": "nickName", "value": "Babs", "name": "addNick"},
            {"op": "Add", "path": "manager",
             "value": [{"$ref": "https://host/scim/Users/26118915", "value": "26118915"}]},
        )
        patched = client.patch(f"{SCIM}/Users/{user_id}", json=legacy, headers=headers)
        assert patched.status_code == 200, patched.text
        resource = patched.json()
        assert resource["displayName"] == "Bjfe" and resource["nickName"] == "Babs"
        assert resource["emails"] == [{"primary": True, "type": "work", "value": "new@contoso.com"}]
        assert resource["phoneNumbers"] == [{"type": "mobile", "value": "+1 555 0100"}]
        assert resource["name"]["givenName"] == "Kkom"
        assert resource[ENTERPRISE] == {"employeeNumber": "Aklq", "manager": {
            "value": "26118915", "$ref": "https://host/scim/Users/26118915"}}  # the $ref as given

        # manager query after create, then the aadOptscim062020 shapes (path-less dotted keys)
        found = client.get(f"{SCIM}/Users", params={"filter": f'id eq "{user_id}" and manager eq "26118915"'},
                           headers=headers).json()
        assert found["totalResults"] == 1
        flagged = _patch({"op": "replace", "value": {"displayName": "Flag", "name.givenName": "G2",
                                                     "name.familyName": "F2", f"{ENTERPRISE}:employeeNumber": "E-2"}},
                         {"op": "add", "path": f"{ENTERPRISE}:manager", "value": "42"})
        resource = client.patch(f"{SCIM}/Users/{user_id}?aadOptscim062020", json=flagged, headers=headers).json()
        assert resource["displayName"] == "Flag" and resource["name"]["familyName"] == "F2"
        assert resource[ENTERPRISE] == {"employeeNumber": "E-2", "manager": {"value": "42"}}
        clear = _patch({"op": "Replace", "path": "manager", "value": ""})
        cleared = client.patch(f"{SCIM}/Users/{user_id}", json=clear, headers=headers).json()
        assert "manager" not in cleared[ENTERPRISE]

        # disable (legacy string boolean): still readable and filterable, cannot log in
        off = client.patch(f"{SCIM}/Users/{user_id}",
                           json=_patch({"op": "Replace", "path": "active", "value": "False"}), headers=headers)
        assert off.status_code == 200 and off.json()["active"] is False
        assert _status(tenants.runtime, user_id) == USER_DEPROVISIONED
        assert client.get(f"{SCIM}/Users/{user_id}", headers=headers).json()["active"] is False
        inactive = client.get(f"{SCIM}/Users", params={"filter": 'userName eq "Test_User_00aa@contoso.com"'},
                              headers=headers).json()
        assert inactive["Resources"][0]["active"] is False

        # reactivate (flagged shape): never logged in, so back to pending
        on = client.patch(f"{SCIM}/Users/{user_id}", json=_patch({"op": "replace", "path": "active", "value": True}),
                          headers=headers)
        assert on.json()["active"] is True
        assert _status(tenants.runtime, user_id) == USER_PENDING

        # duplicate create -> 409 uniqueness; group writes -> 501 telling the admin what to do
        duplicate = client.post(f"{SCIM}/Users", json=body | {"userName": "TEST_USER_00AA@contoso.com"},
                                headers=headers)
        assert duplicate.status_code == 409
        assert duplicate.json() == {"schemas": [ERROR], "status": "409", "scimType": "uniqueness",
                                    "detail": duplicate.json()["detail"]}
        group = client.post(f"{SCIM}/Groups", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                                    "displayName": "Sales"}, headers=headers)
        assert group.status_code == 501 and group.json()["status"] == "501"
        assert "Provision Microsoft Entra ID Groups" in group.json()["detail"]

        # hard delete: 204, then 404 for every operation on that id
        assert client.delete(f"{SCIM}/Users/{user_id}", headers=headers).status_code == 204
        for method, extra in (("GET", {}), ("PUT", {"json": body}), ("PATCH", {"json": legacy}), ("DELETE", {})):
            gone = client.request(method, f"{SCIM}/Users/{user_id}", headers=headers, **extra)
            assert gone.status_code == 404, method
            assert gone.json()["status"] == "404" and gone.json()["detail"]
    with tenants.runtime.db.transaction() as db:
        actions = [a for (a,) in db.execute(select(AuditEvent.action).where(AuditEvent.user_id == user_id)
                                            .order_by(AuditEvent.id))]
    assert actions[0] == "user.created" and actions[-1] == "user.deleted"
    assert {"user.patched", "user.deprovisioned", "user.reactivated"} <= set(actions)


def test_okta_sequence(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime, connectors=[okta_connector()])
    raw = {"Authorization": tenants.token, "Content-Type": "application/json", "Accept": "application/scim+json",
           "User-Agent": "Okta SCIM Client 1.0.0"}
    with client_for(tenants.runtime) as client:
        base = "/api/scim"  # the seed's connector base URL, without /v2
        body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "test.user@okta.local",
                "name": {"givenName": "Test", "familyName": "User"},
                "emails": [{"primary": True, "value": "test.user@okta.local", "type": "work"}],
                "displayName": "Test User", "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7", "groups": [],
                "password": "1mz050nq", "active": True}
        # SPEC 3-5: unknown filter and id
        listing = client.get(f"{base}/Users?filter=userName eq \"abcdefgh@atko.com\"&startIndex=1&count=100",
                             headers=raw)
        assert listing.status_code == 200 and listing.json()["totalResults"] == 0
        missing = client.get(f"{base}/Users/010101001010101011001010101011", headers=raw)
        assert missing.status_code == 404 and missing.json()["schemas"] == [ERROR] and missing.json()["detail"]
        # SPEC 6-8: create (password and groups ignored), read, duplicate
        created = client.post(f"{base}/Users", json=body, headers=raw)
        assert created.status_code == 201, created.text
        user = created.json()
        assert user["active"] is True and "password" not in user and "groups" not in user
        assert user["name"] == {"givenName": "Test", "familyName": "User"}
        assert user["emails"][0]["value"] == "test.user@okta.local"
        with tenants.runtime.db.transaction() as db:
            row = db.scalar(select(User).where(User.id == user["id"]))
            assert row is not None and row.password_hash is None and row.status == USER_PENDING
        assert client.get(f"{base}/Users/{user['id']}", headers=raw).json() == user
        assert client.post(f"{base}/Users", json=body, headers=raw).status_code == 409
        # SPEC 1 and 9: paging with count=1; upper-cased user name finds the user
        first = client.get(f"{base}/Users?count=1&startIndex=1", headers=raw).json()
        assert first["itemsPerPage"] == 1 and first["startIndex"] == 1 and first["totalResults"] == 1
        upper = client.get(f"{base}/Users", params={"filter": 'userName eq "TEST.USER@OKTA.LOCAL"'}, headers=raw)
        assert upper.status_code == 200 and upper.json()["totalResults"] == 1
        # SPEC 10-12: groups list, a non-token, another unknown id
        groups = client.get(f"{base}/Groups", headers=raw)
        assert groups.status_code == 200 and groups.json()["Resources"] == []
        refused = client.get(f"{base}/Users", headers={"Authorization": "non-token"})
        assert refused.status_code == 401 and refused.json()["status"] == "401" and refused.json()["detail"]
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert client.get(f"{base}/Users/00919288221112222", headers=raw).json()["status"] == "404"

        # profile push: GET then PUT of the whole resource (id, meta, groups echoed back)
        current = client.get(f"{base}/Users/{user['id']}", headers=raw).json()
        put = client.put(f"{base}/Users/{user['id']}", headers=raw,
                         json=current | {"name": {"givenName": "Tess", "familyName": "User"}, "groups": [],
                                         "password": "synced-Passw0rd"})
        assert put.status_code == 200 and put.json()["name"]["givenName"] == "Tess"
        # OIN deactivate / reactivate: path-less replace of active
        off = client.patch(f"{base}/Users/{user['id']}", headers=raw,
                           json=_patch({"op": "replace", "value": {"active": False}}))
        assert off.status_code == 200 and off.json()["active"] is False
        assert _status(tenants.runtime, user["id"]) == USER_DEPROVISIONED
        assert client.get(f"{base}/Users", params={"filter": 'userName eq "test.user@okta.local"'},
                          headers=raw).json()["Resources"][0]["active"] is False
        on = client.patch(f"{base}/Users/{user['id']}", headers=raw,
                          json=_patch({"op": "replace", "value": {"active": True}}))
        assert on.json()["active"] is True and _status(tenants.runtime, user["id"]) == USER_PENDING
        # AIW deactivates through PUT; a rename re-sends id and schemas in the value
        current = client.get(f"{base}/Users/{user['id']}", headers=raw).json()
        assert client.put(f"{base}/Users/{user['id']}", json=current | {"active": False},
                          headers=raw).json()["active"] is False
        renamed = client.patch(f"{base}/Users/{user['id']}", headers=raw, json=_patch(
            {"op": "replace", "value": {"id": "abf4dd94-a4c0-4f67-89c9-76b03340cb9b", "displayName": "Renamed",
                                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}}))
        assert renamed.status_code == 200 and renamed.json()["displayName"] == "Renamed"


def test_entra_normalizer_rewrites_only_entra_shapes() -> None:
    rfc = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "x"}]}
    assert entra_scim.normalize(resource_type="User", operation="patch", body=rfc) == rfc
    shapes = _patch(
        {"op": "Replace", "path": "roles", "value": ['{"id":"1","value":"25","displayName":"Admin"}']},
        {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": {"Value": "7"}},
        {"op": "Replace", "path": "emails[type eq \"work\"].primary", "value": "True"},
        {"op": "Remove", "path": "manager", "value": None},
    )
    body = dict(shapes)
    out = entra_scim.normalize(resource_type="User", operation="patch", body=body)
    assert body == shapes  # the input is not mutated
    assert out is not None
    assert out["Operations"] == [
        {"op": "replace", "path": "roles", "value": [{"id": "1", "value": "25", "displayName": "Admin"}]},
        {"op": "add", "path": f"{ENTERPRISE}:manager", "value": {"value": "7"}},
        {"op": "replace", "path": "emails[type eq \"work\"].primary", "value": True},
        {"op": "remove", "path": "manager", "value": None},
    ]
    created = entra_scim.normalize(resource_type="User", operation="create",
                                   body={"userName": "a", "manager": "9", "department": "R&D", "active": "True"})
    assert created == {"userName": "a", "active": True, ENTERPRISE: {"department": "R&D", "manager": {"value": "9"}}}
    assert entra_scim.normalize(resource_type="Group", operation="create", body={"displayName": "g"}) is None


def test_entra_pathless_patch_ignores_unknown_keys_as_documented(make_runtime: Any) -> None:
    """Issue 12 case 7: with an azure_ad connector on the account, a path-less PATCH with an
    unknown key answers 200 (the known keys applied), as on any other account."""
    entra = make_tenants(make_runtime, connectors=[entra_connector()])
    with client_for(entra.runtime) as client:
        for token in (entra.token, entra.other_token):  # acme has the Entra connector, globex none
            headers = auth(token)
            created = client.post(f"{SCIM}/Users", json={"userName": f"u-{token[-6:]}@contoso.com"}, headers=headers)
            user_id = created.json()["id"]
            body = _patch({"op": "Replace", "value": {"displayName": "Known", "notAnAttribute": "x",
                                                      "name.nope": "y", f"{ENTERPRISE}:department": "R&D",
                                                      ENTERPRISE: {"unknownSub": "z", "division": "D1"}}})
            response = client.patch(f"{SCIM}/Users/{user_id}", json=body, headers=headers)
            assert response.status_code == 200, response.text
            resource = response.json()
            assert resource["displayName"] == "Known"
            assert resource[ENTERPRISE] == {"department": "R&D", "division": "D1"}
            assert "notAnAttribute" not in resource
            # an unknown path (not a path-less key) is still refused
            refused = client.patch(f"{SCIM}/Users/{user_id}", headers=headers,
                                   json=_patch({"op": "replace", "path": "notAnAttribute", "value": "x"}))
            assert (refused.status_code, refused.json()["scimType"]) == (400, "invalidPath")


def test_manager_keeps_the_ref_it_was_given_or_none(make_runtime: Any) -> None:
    """Issue 12 case 8: a new manager replaces the old one whole; its $ref is the one sent."""
    entra = make_tenants(make_runtime, connectors=[entra_connector()])
    with client_for(entra.runtime) as client:
        for token in (entra.token, entra.other_token):
            headers = auth(token)
            user_id = client.post(f"{SCIM}/Users", json={"userName": f"m-{token[-6:]}@contoso.com"},
                                  headers=headers).json()["id"]

            def manager(op: dict[str, Any], headers: dict[str, str] = headers, user_id: str = user_id) -> Any:
                response = client.patch(f"{SCIM}/Users/{user_id}", json=_patch(op), headers=headers)
                assert response.status_code == 200, response.text
                return response.json().get(ENTERPRISE, {}).get("manager")

            ref_a, ref_b = "https://host/scim/v2/Users/A", "https://host/scim/v2/Users/B"
            path = f"{ENTERPRISE}:manager"
            assert manager({"op": "add", "path": path, "value": {"value": "A", "$ref": ref_a}}) == \
                {"value": "A", "$ref": ref_a}
            assert manager({"op": "replace", "path": path, "value": {"value": "B", "$ref": ref_b}}) == \
                {"value": "B", "$ref": ref_b}
            assert manager({"op": "add", "path": path, "value": {"value": "C"}}) == {"value": "C"}
            assert manager({"op": "replace", "value": {ENTERPRISE: {"manager": {"value": "A", "$ref": ref_a}}}}) == \
                {"value": "A", "$ref": ref_a}
            # the same manager again with only its value: the $ref stays (nothing changed)
            assert manager({"op": "add", "path": path, "value": {"value": "A"}}) == {"value": "A", "$ref": ref_a}

"""Shared set-up for the SCIM tests: two accounts with a manage-users token each, and
request helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.testclient import TestClient

from transom import directory
from transom.runtime import Runtime

SCIM = "/api/scim/v2"
SCIM_JSON = "application/scim+json"


@dataclass
class Tenants:
    runtime: Runtime
    token: str  # account "acme", manage-users
    other_token: str  # account "globex", manage-users


def make_tenants(make_runtime: Any, connectors: list[dict[str, Any]] | None = None, **kwargs: Any) -> Tenants:
    runtime: Runtime = make_runtime(connectors=connectors or [], **kwargs)
    with runtime.db.transaction() as db:
        acme = directory.create_account(db, name="acme")
        globex = directory.create_account(db, name="globex")
        token = directory.create_token(db, account=acme, permissions=["manage-users"], name="entra-app")
        other = directory.create_token(db, account=globex, permissions=["manage-users"], name="globex-app")
    return Tenants(runtime=runtime, token=token, other_token=other)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": SCIM_JSON}


def new_user(user_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": user_name, "type": "work", "primary": True}],
        "active": True,
        **extra,
    }


def create(client: TestClient, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"{SCIM}/Users", json=body, headers=auth(token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def find(client: TestClient, token: str, flt: str) -> dict[str, Any]:
    response = client.get(f"{SCIM}/Users", params={"filter": flt}, headers=auth(token))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found

"""Shared set-up for the SAML end-to-end tests: one account, connectors of the three SAML
types pointing at FakeSamlIdp instances, and database assertions ("nothing was written")."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from conftest import BASE_URL, client_for
from sqlalchemy import func, select
from starlette.testclient import TestClient

from transom import directory
from transom.models import ExternalIdentity, LoginState, SamlAssertionSeen, User, WebSession
from transom.runtime import Runtime
from transom.sessions import COOKIE_NAME
from transom.testing.saml import FakeSamlIdp

TENANT = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"
OTHER_TENANT = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
OID = "a1b2c3d4-0000-4000-8000-000000000001"
MS = "http://schemas.microsoft.com"
XMLSOAP = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims"
ENTRA_GROUPS = f"{MS}/ws/2008/06/identity/claims/groups"


def acs_url(connector_id: str) -> str:
    return f"{BASE_URL}/api/accounts/saml/{connector_id}/acs"


def sp_entity_id(connector_id: str) -> str:
    return f"{BASE_URL}/api/accounts/saml/{connector_id}/metadata"


def generic_connector(idp: FakeSamlIdp, connector_id: str = "acme-saml", **settings: Any) -> dict[str, Any]:
    return {"id": connector_id, "type": "generic_saml", "account": "acme",
            "settings": idp.connector_settings(
                attributes={"email": "mail", "display_name": "displayName", "given_name": "givenName",
                            "family_name": "sn"},
                groups_attribute="groups", **settings)}


def okta_connector(idp: FakeSamlIdp, connector_id: str = "acme-okta", **settings: Any) -> dict[str, Any]:
    return {"id": connector_id, "type": "okta", "account": "acme",
            "settings": idp.connector_settings(protocol="saml", **settings)}


def entra_connector(idp: FakeSamlIdp, connector_id: str = "acme-entra", **settings: Any) -> dict[str, Any]:
    return {"id": connector_id, "type": "azure_ad", "account": "acme",
            "settings": idp.connector_settings(protocol="saml", tenant_id=TENANT, **settings)}


def generic_attributes(**extra: list[str]) -> dict[str, list[str]]:
    return {"mail": ["ada@acme.example"], "displayName": ["Ada Lovelace"], "givenName": ["Ada"],
            "sn": ["Lovelace"], **extra}


def okta_attributes(**extra: list[str]) -> dict[str, list[str]]:
    return {"email": ["ada@acme.example"], "firstName": ["Ada"], "lastName": ["Lovelace"],
            "login": ["ada@acme.example"], **extra}


def entra_attributes(tenant: str = TENANT, oid: str = OID, **extra: list[str]) -> dict[str, list[str]]:
    return {f"{MS}/identity/claims/tenantid": [tenant], f"{MS}/identity/claims/objectidentifier": [oid],
            f"{XMLSOAP}/name": ["ada@acme.example"], f"{XMLSOAP}/emailaddress": ["ada@acme.example"],
            f"{XMLSOAP}/givenname": ["Ada"], f"{XMLSOAP}/surname": ["Lovelace"],
            f"{MS}/identity/claims/displayname": ["Ada Lovelace"], **extra}


def build(make_runtime: Any, connectors: list[dict[str, Any]], **kwargs: Any) -> Runtime:
    runtime: Runtime = make_runtime(connectors=connectors, **kwargs)
    with runtime.db.transaction() as db:
        directory.create_account(db, name="acme")
    return runtime


@contextmanager
def app_client(runtime: Runtime) -> Iterator[TestClient]:
    with client_for(runtime) as client:
        yield client


def counts(runtime: Runtime) -> dict[str, int]:
    with runtime.db.transaction() as db:
        return {
            "users": db.scalar(select(func.count()).select_from(User)) or 0,
            "identities": db.scalar(select(func.count()).select_from(ExternalIdentity)) or 0,
            "sessions": db.scalar(select(func.count()).select_from(WebSession)) or 0,
            "assertions_seen": db.scalar(select(func.count()).select_from(SamlAssertionSeen)) or 0,
            "login_states": db.scalar(select(func.count()).select_from(LoginState)) or 0,
        }


def assert_refused(response: Any, runtime: Runtime, client: TestClient, *, status: int | tuple[int, ...] = 400,
                   login_states: int | None = None) -> dict[str, Any]:
    """A refusal: the expected 4xx, JSON without a trace, no session cookie, nobody logged
    in, no user, identity, session or replay row written. Returns the JSON body."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.status_code < 500
    assert "Traceback" not in response.text
    assert COOKIE_NAME not in response.headers.get("set-cookie", "")
    assert client.get("/api/me").status_code == 401
    state = counts(runtime)
    assert state["users"] == 0 and state["identities"] == 0 and state["sessions"] == 0, state
    assert state["assertions_seen"] == 0, state
    if login_states is not None:
        assert state["login_states"] == login_states, state
    body: dict[str, Any] = response.json()
    return body

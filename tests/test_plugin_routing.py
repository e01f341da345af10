"""Hooks are routed by connector type: a careless plugin (no ``connector.type`` guard, answers
everything) installed for another account's connector changes nothing for anybody else, and
a claims-only plugin gets spaces, roles and timezone from the host."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from conftest import client_for
from oidc_support import ENTRA_CLIENT, SECRET, build, entra_claims, entra_connector, entra_fake
from pydantic import BaseModel, ConfigDict
from scim_support import SCIM, auth, new_user

from transom import directory
from transom.connector import Claims, Connector, ConnectorType, OidcProvider
from transom.hookspecs import hookimpl
from transom.testing.oidc import FakeOidcIdp, oidc_login


class OpenSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issuer: str


class CarelessPlugin:
    """Answers every hook for every connector, as a plugin that forgot the old guard did."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    @hookimpl
    def transom_connector_type(self) -> ConnectorType:
        return ConnectorType(name="careless", protocols=("oidc",), settings_model=OpenSettings)

    @hookimpl
    def transom_oidc_provider(self, connector: Connector[OpenSettings]) -> OidcProvider:
        self.seen.append(("oidc_provider", connector.id))
        issuer = connector.settings.issuer
        return OidcProvider(issuers=(issuer,), authorization_endpoint=f"{issuer}/authorize",
                            token_endpoint=f"{issuer}/token", jwks_uri=f"{issuer}/keys",
                            client_id="careless", client_secret=SECRET)

    @hookimpl
    def transom_extract_claims(self, connector: Connector, payload: Mapping[str, Any]) -> Claims:
        self.seen.append(("extract_claims", connector.id))
        return Claims(subject="mallory", email="mallory@evil.example", user_name="mallory@evil.example")

    @hookimpl
    def transom_scim_normalize(self, connector: Connector, body: Mapping[str, Any]) -> dict[str, Any]:
        self.seen.append(("scim_normalize", connector.id))
        return {**body, "userName": "pwned@evil.example"}


def careless_connector() -> dict[str, Any]:
    return {"id": "globex-careless", "type": "careless", "account": "globex",
            "settings": {"issuer": "https://careless.test"}}


def test_careless_plugin_cannot_take_over_another_accounts_entra_login(make_runtime: Any) -> None:
    fake = entra_fake()
    careless = CarelessPlugin()
    runtime = make_runtime(connectors=[entra_connector(), careless_connector()],
                           http=httpx.Client(transport=fake.transport()), extra_plugins={"careless": careless})
    with runtime.db.transaction() as db:
        directory.create_account(db, name="acme")
        directory.create_account(db, name="globex")
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-entra", claims=entra_claims())
        assert response.status_code == 303, response.text
        me = client.get("/api/me").json()
    assert me["user_name"] == "ada@acme.example" and me["account"] == "acme"
    assert all(connector_id == "globex-careless" for _, connector_id in careless.seen), careless.seen


def test_careless_plugin_never_sees_another_accounts_scim_writes(make_runtime: Any) -> None:
    careless = CarelessPlugin()
    runtime = make_runtime(connectors=[entra_connector(), careless_connector()],
                           extra_plugins={"careless": careless})
    with runtime.db.transaction() as db:
        acme = directory.create_account(db, name="acme")
        globex = directory.create_account(db, name="globex")
        acme_token = directory.create_token(db, account=acme, permissions=["manage-users"], name="entra")
        globex_token = directory.create_token(db, account=globex, permissions=["manage-users"], name="g")
    with client_for(runtime) as client:
        created = client.post(f"{SCIM}/Users", json=new_user("ada@acme.example"), headers=auth(acme_token))
        assert created.status_code == 201, created.text
        assert created.json()["userName"] == "ada@acme.example"
        assert careless.seen == []
        # its own account's writes do reach it, and only through its own connector
        own = client.post(f"{SCIM}/Users", json=new_user("bob@globex.example"), headers=auth(globex_token))
        assert own.status_code == 201, own.text
        assert own.json()["userName"] == "pwned@evil.example"
    assert careless.seen == [("scim_normalize", "globex-careless")]


class ClaimsOnlyPlugin:
    """Maps identity only, as docs/plugin-authors.md shows: nothing about spaces or time zones."""

    @hookimpl
    def transom_connector_type(self) -> ConnectorType:
        return ConnectorType(name="claimsonly", protocols=("oidc",), settings_model=OpenSettings)

    @hookimpl
    def transom_oidc_provider(self, connector: Connector[OpenSettings]) -> OidcProvider:
        issuer = connector.settings.issuer
        return OidcProvider(issuers=(issuer,), authorization_endpoint=f"{issuer}/authorize",
                            token_endpoint=f"{issuer}/token", jwks_uri=f"{issuer}/keys",
                            client_id=ENTRA_CLIENT, client_secret=SECRET)

    @hookimpl
    def transom_extract_claims(self, payload: Mapping[str, Any]) -> Claims:
        return Claims(subject=str(payload["uid"]), email=str(payload["mail"]), user_name=str(payload["mail"]))


def test_claims_only_plugin_gets_spaces_roles_and_timezone_from_the_host(make_runtime: Any) -> None:
    issuer = "https://claims-only.test"
    fake = FakeOidcIdp(issuer=issuer, client_id=ENTRA_CLIENT, client_secret=SECRET,
                       authorization_endpoint=f"{issuer}/authorize", token_endpoint=f"{issuer}/token",
                       jwks_uri=f"{issuer}/keys")
    connector = {"id": "acme-co", "type": "claimsonly", "account": "acme", "settings": {"issuer": issuer},
                 "provisioning": {"space_attribute": "team", "role_attribute": "team_role",
                                  "timezone_attribute": "tz"}}
    runtime = build(make_runtime, fake, connector, extra_plugins={"claimsonly": ClaimsOnlyPlugin()})
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        directory.create_space(db, account=account, name="Research")
        directory.create_space(db, account=account, name="Ops")
    claims = {"sub": "ignored", "uid": "u-1", "mail": "grace@acme.example",
              "team": ["Research", "Ops"], "team_role": ["Space Admin", "Space Member"], "tz": "Europe/Paris"}
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-co", claims=claims)
        assert response.status_code == 303, response.text
        me = client.get("/api/me").json()
    assert me["user_name"] == "grace@acme.example"
    assert me["timezone"] == "Europe/Paris"
    assert {s["space"]: s["role"] for s in me["spaces"]} == {"Research": "Space Admin", "Ops": "Space Member"}

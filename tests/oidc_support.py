"""Shared set-up for the OIDC end-to-end tests: connectors pointing at FakeOidcIdp instances
and database assertions ("nothing was written")."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from transom import directory
from transom.models import ExternalIdentity, LoginState, User, WebSession
from transom.runtime import Runtime
from transom.testing.oidc import FakeOidcIdp

TENANT = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"
OTHER_TENANT = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
AUTHORITY = "https://login.entra.test"
ENTRA_CLIENT = "11111111-2222-3333-4444-555555555555"
OKTA_DOMAIN = "acme.okta.test"
OKTA_CLIENT = "0oa1okta"
SECRET = "fake-secret-value"


def entra_fake(tenant: str = TENANT) -> FakeOidcIdp:
    base = f"{AUTHORITY}/{tenant}"
    return FakeOidcIdp(
        issuer=f"{base}/v2.0", client_id=ENTRA_CLIENT, client_secret=SECRET,
        authorization_endpoint=f"{base}/oauth2/v2.0/authorize", token_endpoint=f"{base}/oauth2/v2.0/token",
        jwks_uri=f"{base}/discovery/v2.0/keys",
    )


def entra_connector(**settings: Any) -> dict[str, Any]:
    return {"id": "acme-entra", "type": "azure_ad", "account": "acme", "email_domains": ["acme.example"],
            "settings": {"tenant_id": TENANT, "client_id": ENTRA_CLIENT, "client_secret": SECRET,
                         "authority": AUTHORITY, **settings}}


def okta_org_fake() -> FakeOidcIdp:
    issuer = f"https://{OKTA_DOMAIN}"
    return FakeOidcIdp(issuer=issuer, client_id=OKTA_CLIENT, client_secret=SECRET,
                       authorization_endpoint=f"{issuer}/oauth2/v1/authorize",
                       token_endpoint=f"{issuer}/oauth2/v1/token", jwks_uri=f"{issuer}/oauth2/v1/keys")


def okta_custom_fake(server_id: str = "default") -> FakeOidcIdp:
    issuer = f"https://{OKTA_DOMAIN}/oauth2/{server_id}"
    return FakeOidcIdp(issuer=issuer, client_id=OKTA_CLIENT, client_secret=SECRET)


def okta_connector(*, custom: str | None = None, **settings: Any) -> dict[str, Any]:
    where = {"issuer": f"https://{OKTA_DOMAIN}/oauth2/{custom}"} if custom else {"domain": OKTA_DOMAIN}
    return {"id": "acme-okta", "type": "okta", "account": "acme",
            "settings": {**where, "client_id": OKTA_CLIENT, "client_secret": SECRET, **settings}}


def entra_claims(oid: str = "a1b2c3d4-0000-4000-8000-000000000001", **extra: Any) -> dict[str, Any]:
    return {"tid": TENANT, "oid": oid, "sub": "pairwise-" + str(oid)[:8], "preferred_username": "ada@acme.example",
            "name": "Ada Lovelace", "email": "ada@acme.example", **extra}


def okta_claims(sub: str = "00u1ada", **extra: Any) -> dict[str, Any]:
    return {"sub": sub, "preferred_username": "ada@acme.example", "email": "ada@acme.example",
            "email_verified": True, "name": "Ada Lovelace", "given_name": "Ada", "family_name": "Lovelace",
            **extra}


def build(make_runtime: Any, fake: FakeOidcIdp, connector: dict[str, Any], **kwargs: Any) -> Runtime:
    runtime: Runtime = make_runtime(connectors=[connector], http=httpx.Client(transport=fake.transport()),
                                    **kwargs)
    with runtime.db.transaction() as db:
        directory.create_account(db, name="acme")
    return runtime


def counts(runtime: Runtime) -> dict[str, int]:
    with runtime.db.transaction() as db:
        return {
            "users": db.scalar(select(func.count()).select_from(User)) or 0,
            "identities": db.scalar(select(func.count()).select_from(ExternalIdentity)) or 0,
            "sessions": db.scalar(select(func.count()).select_from(WebSession)) or 0,
            "login_states": db.scalar(select(func.count()).select_from(LoginState)) or 0,
        }

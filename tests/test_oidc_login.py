"""OIDC logins end to end through HTTP: azure_ad and okta (org and custom authorization
server) against FakeOidcIdp instances that sign real RS256 tokens."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import client_for
from oidc_support import (
    AUTHORITY,
    ENTRA_CLIENT,
    OKTA_CLIENT,
    OKTA_DOMAIN,
    TENANT,
    build,
    counts,
    entra_claims,
    entra_connector,
    entra_fake,
    okta_claims,
    okta_connector,
    okta_custom_fake,
    okta_org_fake,
)

from transom.loginstate import BINDING_COOKIE
from transom.sessions import COOKIE_NAME
from transom.testing.oidc import FakeOidcIdp, finish_login, oidc_login, start_login


def authorize_params(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_entra_login_creates_user_and_session(make_runtime: Any) -> None:
    fake = entra_fake()
    runtime = build(make_runtime, fake, entra_connector())
    with client_for(runtime) as client:
        location = start_login(client, "acme-entra", next_path="/dashboard")
        assert location.startswith(f"{AUTHORITY}/{TENANT}/oauth2/v2.0/authorize?")
        params = authorize_params(location)
        assert params["client_id"] == ENTRA_CLIENT
        assert params["redirect_uri"] == "http://testserver/api/accounts/idp-callback"
        assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
        assert len(params["state"]) >= 22 and len(params["nonce"]) >= 22  # >= 128 bits
        assert set(params["scope"].split()) >= {"openid", "profile", "email"}
        assert client.cookies.get(BINDING_COOKIE)
        response = finish_login(client, fake.authorize(location, entra_claims()))
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/dashboard"
        assert COOKIE_NAME in response.headers["set-cookie"]
        me = client.get("/api/me").json()
    assert me["email"] == "ada@acme.example" and me["user_name"] == "ada@acme.example"
    assert me["display_name"] == "Ada Lovelace" and me["account"] == "acme" and me["status"] == "active"
    # the token endpoint saw the PKCE verifier and the client secret (client_secret_post)
    request = fake.token_requests[-1]
    assert request["code_verifier"] and request["client_secret"] == fake.client_secret
    assert counts(runtime) == {"users": 1, "identities": 1, "sessions": 1, "login_states": 0}


def test_entra_second_login_finds_user_by_tid_and_oid(make_runtime: Any) -> None:
    fake = entra_fake()
    runtime = build(make_runtime, fake, entra_connector())
    with client_for(runtime) as client:
        assert oidc_login(client, fake, "acme-entra", claims=entra_claims()).status_code == 303
        first = client.get("/api/me").json()
    with client_for(runtime) as client:
        # renamed in the directory: same tid + oid is the same person
        renamed = entra_claims(preferred_username="ada.l@acme.example", email="ada.l@acme.example")
        assert oidc_login(client, fake, "acme-entra", claims=renamed).status_code == 303
        second = client.get("/api/me").json()
    assert second["id"] == first["id"]
    assert second["email"] == "ada.l@acme.example"
    assert counts(runtime)["users"] == 1 and counts(runtime)["identities"] == 1


def test_entra_v1_issuer_accepted_with_explicit_v1_base(make_runtime: Any) -> None:
    fake = entra_fake()
    runtime = build(make_runtime, fake, entra_connector(v1_issuer_base="https://sts.entra.test"))
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-entra",
                              claims=entra_claims(iss=f"https://sts.entra.test/{TENANT}/"))
        assert response.status_code == 303, response.text


def test_entra_v1_issuer_refused_for_overridden_authority_without_v1_base(make_runtime: Any) -> None:
    fake = entra_fake()
    runtime = build(make_runtime, fake, entra_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-entra",
                              claims=entra_claims(iss=f"https://sts.windows.net/{TENANT}/"))
        assert response.status_code == 400
        assert "issuer" in response.json()["hint"]
    assert counts(runtime)["users"] == 0


def test_entra_multi_tenant_allow_list(make_runtime: Any) -> None:
    other = "22222222-3333-4444-5555-666666666666"
    fake = entra_fake("organizations")
    runtime = build(make_runtime, fake, entra_connector(tenant_id="organizations", allowed_tenants=[TENANT, other]))
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-entra", claims=entra_claims(
            tid=other, iss=f"{AUTHORITY}/{other}/v2.0"))
        assert response.status_code == 303, response.text
        assert client.get("/api/me").status_code == 200


def test_entra_groups_claim_reaches_the_login_log(make_runtime: Any, caplog: pytest.LogCaptureFixture) -> None:
    fake = entra_fake()
    runtime = build(make_runtime, fake, entra_connector())
    caplog.set_level("INFO", logger="transom.login")
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-entra", claims=entra_claims(groups=["g-1", "g-2"]))
        assert response.status_code == 303
    line = next(r.getMessage() for r in caplog.records if "Valid login through AzureAD" in r.getMessage())
    assert "g-1" in line and "g-2" in line
    assert fake.id_token({}).split(".")[1] not in caplog.text  # never token contents


def test_okta_org_authorization_server_login(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        location = start_login(client, "acme-okta")
        assert location.startswith(f"https://{OKTA_DOMAIN}/oauth2/v1/authorize?")
        assert "groups" in authorize_params(location)["scope"].split()  # group sync is on
        response = finish_login(client, fake.authorize(location, okta_claims(groups=["Everyone", "Dev"])))
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/"
        me = client.get("/api/me").json()
    assert me["user_name"] == "ada@acme.example"
    # Okta web apps authenticate with client_secret_basic by default
    assert "client_secret" not in fake.token_requests[-1]
    with client_for(runtime) as client:
        assert oidc_login(client, fake, "acme-okta", claims=okta_claims()).status_code == 303
        assert client.get("/api/me").json()["id"] == me["id"]
    assert counts(runtime)["users"] == 1


def test_okta_custom_authorization_server_login(make_runtime: Any) -> None:
    fake = okta_custom_fake("aus1custom")
    runtime = build(make_runtime, fake, okta_connector(custom="aus1custom",
                                                      token_endpoint_auth_method="client_secret_post"))
    with client_for(runtime) as client:
        location = start_login(client, "acme-okta")
        assert location.startswith(f"https://{OKTA_DOMAIN}/oauth2/aus1custom/v1/authorize?")
        response = finish_login(client, fake.authorize(location, okta_claims()))
        assert response.status_code == 303, response.text
        assert client.get("/api/me").json()["email"] == "ada@acme.example"
    assert fake.token_requests[-1]["client_secret"] == fake.client_secret
    assert fake.token_requests[-1]["client_id"] == OKTA_CLIENT


def test_okta_org_token_refused_by_custom_server_connector(make_runtime: Any) -> None:
    """IdP mix-up: a token of the org server at a connector configured for a custom server."""
    fake = okta_custom_fake("aus1custom")
    runtime = build(make_runtime, fake, okta_connector(custom="aus1custom"))
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-okta", claims=okta_claims(iss=f"https://{OKTA_DOMAIN}"))
        assert response.status_code == 400
        assert "issuer" in response.json()["hint"]
    assert counts(runtime)["users"] == 0


def test_form_post_with_code(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-okta", claims=okta_claims(), form_post=True)
        assert response.status_code == 303, response.text
        assert client.get("/api/me").status_code == 200


def test_form_post_id_token_only(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        location = start_login(client, "acme-okta")
        request = authorize_params(location)
        token = fake.id_token(okta_claims(), nonce=request["nonce"])
        response = finish_login(client, {"state": request["state"], "id_token": token}, form_post=True)
        assert response.status_code == 303, response.text
    assert fake.token_requests == []  # nothing to exchange


def test_form_post_code_wins_over_front_channel_id_token(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        location = start_login(client, "acme-okta")
        params = fake.authorize(location, okta_claims(sub="00u-from-code"))
        nonce = authorize_params(location)["nonce"]
        front = fake.id_token(okta_claims(sub="00u-front-channel"), nonce=nonce)
        response = finish_login(client, {**params, "id_token": front}, form_post=True)
        assert response.status_code == 303, response.text
    from sqlalchemy import select

    from transom.models import ExternalIdentity
    with runtime.db.transaction() as db:
        subjects = list(db.scalars(select(ExternalIdentity.subject)))
    assert subjects == ["00u-from-code"]


def test_unknown_connector_is_404(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        assert client.get("/api/accounts/login/nope").status_code == 404


def test_next_outside_the_site_is_dropped(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        response = oidc_login(client, fake, "acme-okta", claims=okta_claims(), next_path="https://evil.example/")
        assert response.status_code == 303
        assert response.headers["location"] == "/"


def test_fake_idp_is_a_usable_standalone_signer() -> None:
    fake = FakeOidcIdp(issuer="https://idp.test", client_id="app")
    token = fake.id_token({"sub": "x"})
    assert token.count(".") == 2
    assert fake.jwks()["keys"][0]["kid"] == "key-1"

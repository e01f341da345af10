"""The login page: home-realm discovery by ``email_domains``, one button per connector,
the password form (account derived from the email's domain), safe ``next``, error pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import RuntimeFactory, client_for
from starlette.testclient import TestClient

from transom import directory
from transom.testing.keys import SigningKey

TENANT = "8f2a4c1e-1111-4222-8333-944455556666"
HTML = {"accept": "text/html"}


@pytest.fixture
def client(make_runtime: RuntimeFactory) -> Iterator[TestClient]:
    cert = SigningKey.generate().certificate_pem
    runtime = make_runtime([
        {"id": "acme-entra", "type": "azure_ad", "account": "acme", "email_domains": ["acme.example"],
         "settings": {"tenant_id": TENANT, "client_id": "c1", "client_secret": "s"}},
        {"id": "acme-okta", "type": "okta", "account": "acme", "email_domains": ["shared.example"],
         "settings": {"domain": "acme.okta.example", "client_id": "c2"}},
        {"id": "beta-saml", "type": "generic_saml", "account": "beta", "name": "Beta SSO",
         "email_domains": ["shared.example", "beta.example"],
         "settings": {"idp_entity_id": "https://idp.beta.example", "idp_sso_url": "https://idp.beta.example/sso",
                      "idp_certificates": [cert]}},
    ])
    with runtime.db.transaction() as db:
        account = directory.create_account(db, name="acme")
        directory.create_user(db, account=account, user_name="pat@acme.example", email="pat@acme.example",
                              password="correct horse battery")
    with client_for(runtime) as c:
        yield c


def _buttons(page: str) -> dict[str, str]:
    return dict(re.findall(r'id="sso-([a-z0-9_-]+)" href="[^"]*">([^<]+)</a>', page))


def test_login_page_lists_every_connector_with_its_label(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    assert _buttons(page.text) == {
        "acme-entra": "Sign in with Azure",  # the azure_ad type's default label
        "acme-okta": "Sign in with Okta",
        "beta-saml": "Beta SSO",
    }
    assert 'id="email"' in page.text
    assert 'id="password-login"' not in page.text


def test_email_of_a_claimed_domain_goes_straight_to_its_connector(client: TestClient) -> None:
    response = client.get("/login", params={"email": "  Ada@ACME.example ", "next": "/spaces?x=1"})
    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert target.path == "/api/accounts/login/acme-entra"
    assert parse_qs(target.query) == {"next": ["/spaces?x=1"]}


@pytest.mark.parametrize("evil", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_next_off_site_is_dropped(client: TestClient, evil: str) -> None:
    response = client.get("/login", params={"email": "ada@acme.example", "next": evil})
    assert response.status_code == 303
    assert response.headers["location"] == "/api/accounts/login/acme-entra"


def test_domain_claimed_by_several_connectors_offers_just_those(client: TestClient) -> None:
    page = client.get("/login", params={"email": "kim@shared.example"})
    assert page.status_code == 200
    assert set(_buttons(page.text)) == {"acme-okta", "beta-saml"}
    assert "Your organisation signs in with one of these" in page.text


def test_unclaimed_domain_offers_the_password_form_with_an_empty_account(client: TestClient) -> None:
    page = client.get("/login", params={"email": "someone@elsewhere.example"})
    assert page.status_code == 200
    assert "No single sign-on is set up for elsewhere.example" in page.text
    assert 'id="password-login"' in page.text
    assert re.search(r'<input id="account" name="account" value=""', page.text)


def test_password_choice_derives_the_account_from_the_domain(client: TestClient) -> None:
    page = client.get("/login", params={"email": "pat@acme.example", "use": "password"})
    assert page.status_code == 200
    assert re.search(r'<input id="account" name="account" value="acme"', page.text)
    assert re.search(r'<input id="pw-email" name="email" type="email" [^>]*value="pat@acme.example"', page.text)
    # a domain claimed by connectors of two accounts names none
    shared = client.get("/login", params={"email": "kim@shared.example", "use": "password"})
    assert re.search(r'<input id="account" name="account" value=""', shared.text)


def test_password_login_from_the_form_and_refusal_page(client: TestClient) -> None:
    refused = client.post("/api/accounts/login", headers=HTML,
                          data={"email": "pat@acme.example", "account": "acme", "password": "wrong password!"})
    assert refused.status_code == 400
    assert "wrong email, password or account" in refused.text
    assert "<code>login_refused</code>" in refused.text
    assert 'href="/login"' in refused.text
    assert client.get("/api/me").status_code == 401
    ok = client.post("/api/accounts/login",
                     data={"email": "pat@acme.example", "account": "acme", "password": "correct horse battery"})
    assert ok.status_code == 303
    assert client.get("/api/me").json()["email"] == "pat@acme.example"


def test_input_is_escaped_and_nonsense_gets_a_message(client: TestClient) -> None:
    page = client.get("/login", params={"email": "<script>alert(1)</script>"})
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "Enter your full work email address" in page.text
    xss = client.get("/login", params={"email": 'x@"><script>alert(1)</script>.example', "use": "password"})
    assert "<script>alert(1)</script>" not in xss.text
    too_long = client.get("/login", params={"email": "a" * 400 + "@acme.example"}, headers=HTML)
    assert too_long.status_code == 400

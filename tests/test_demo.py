"""``transom demo`` end to end over real HTTP: a uvicorn server in a thread serving the demo
app (host + development IdP); the host calls the dev IdP's token and JWKS endpoints over
HTTP like it would call Okta. The browser is played by httpx here and by Chromium in
test_browser_login.py."""

from __future__ import annotations

import base64
import html
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from transom import directory
from transom.cli import main
from transom.demo import (
    ACCOUNT,
    ENTRA_ACCOUNT,
    ENTRA_TENANT_ID,
    OKTA_CLIENT_ID,
    OWNER_EMAIL,
    DemoSite,
    build_demo,
)
from transom.devidp.people import (
    DEMO_PEOPLE,
    GROUP_DEVOPS,
    GROUP_EVERYONE,
    GROUP_TRIAL_ADMINS,
    as_entra_person,
    entra_object_id,
)
from transom.models import ExternalIdentity, Group
from transom.oidc import new_pkce_verifier, pkce_challenge
from transom.testing.server import free_port, serve_in_thread

ADA = DEMO_PEOPLE[0]


@dataclass
class LiveDemo:
    site: DemoSite
    base_url: str

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, follow_redirects=False, timeout=20)


@pytest.fixture
def live_demo(database_url: str) -> Iterator[LiveDemo]:
    port = free_port()
    site = build_demo(base_url=f"http://127.0.0.1:{port}", database_url=database_url)
    try:
        with serve_in_thread(site.app, port=port) as base_url:
            yield LiveDemo(site=site, base_url=base_url)
    finally:
        site.runtime.close()


def _request_key(page: str) -> str:
    found = re.search(r'name="request_key" value="([^"]+)"', page)
    assert found, "the picker page carries the pending request's key"
    return found.group(1)


def _auto_post_form(page: str) -> tuple[str, dict[str, str]]:
    action = re.search(r'<form method="post" action="([^"]+)" id="auto-post">', page)
    assert action, "the dev IdP answers with an auto-submitting form"
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))
    return html.unescape(action.group(1)), {k: html.unescape(v) for k, v in fields.items()}


def _pick(browser: httpx.Client, page: str, person_subject: str, **claims: str) -> httpx.Response:
    form = {
        "request_key": _request_key(page),
        "subject": person_subject,
        "space_name": ADA.space_name,
        "space_role": ADA.space_role,
        "timezone": ADA.timezone,
        "groups": ", ".join(ADA.groups),
        **claims,
    }
    return browser.post("/dev-idp/sign-in", data=form)


def _to_dev_idp(browser: httpx.Client, email: str) -> httpx.Response:
    """Login page -> home-realm discovery -> Transom's SSO start -> the dev IdP's picker."""
    routed = browser.get("/login", params={"email": email})
    assert routed.status_code == 303
    started = browser.get(routed.headers["location"])
    assert started.status_code in (302, 303)
    picker = browser.get(started.headers["location"])
    assert picker.status_code == 200
    assert "Development IdP" in picker.text
    return picker


def test_oidc_login_through_the_dev_idp_lands_logged_in(live_demo: LiveDemo) -> None:
    with live_demo.browser() as browser:
        picker = _to_dev_idp(browser, "someone@demo.example")
        assert urlsplit(str(picker.request.url)).path == "/dev-idp/oauth2/default/v1/authorize"
        for person in DEMO_PEOPLE:
            assert person.email in picker.text
        answered = _pick(browser, picker.text, ADA.subject, timezone="Asia/Tokyo")
        assert answered.status_code == 303
        callback = answered.headers["location"]
        assert callback.startswith(f"{live_demo.base_url}/api/accounts/idp-callback?")
        landed = browser.get(callback)
        assert landed.status_code == 303, landed.text
        assert landed.headers["location"] == "/"
        home = browser.get("/")
        assert "Signed in as Ada Lovelace" in home.text
        me = browser.get("/api/me").json()
    assert me["account"] == ACCOUNT
    assert me["email"] == ADA.email
    assert me["timezone"] == "Asia/Tokyo"  # the claim edited on the picker page
    assert me["spaces"] == [{"space": "DevOps", "role": "Space Developer"}, {"space": "Trial", "role": "Space Admin"}]
    # mapped IdP groups become memberships; grp-everyone maps to no Transom group
    assert [(g["name"], g["idp_identifier"], g["source"]) for g in me["groups"]] == [
        ("DevOps Engineers", GROUP_DEVOPS, "idp"), ("Trial Admins", GROUP_TRIAL_ADMINS, "idp"),
    ]


def test_saml_login_through_the_dev_idp_lands_logged_in(live_demo: LiveDemo) -> None:
    with live_demo.browser() as browser:
        picker = _to_dev_idp(browser, "someone@saml.demo.example")
        assert urlsplit(str(picker.request.url)).path == "/dev-idp/saml/sso"
        answered = _pick(browser, picker.text, ADA.subject, space_name="DevOps", space_role="Space Admin")
        assert answered.status_code == 200
        action, fields = _auto_post_form(answered.text)
        assert action == f"{live_demo.base_url}/api/accounts/saml/demo-saml/acs"
        assert set(fields) == {"SAMLResponse", "RelayState"} or set(fields) == {"SAMLResponse"}
        landed = browser.post(action, data=fields)
        assert landed.status_code == 303, landed.text
        assert "Signed in as Ada Lovelace" in browser.get("/").text
        me = browser.get("/api/me").json()
        # the same response again is a replay
        replayed = browser.post(action, data=fields)
        assert 400 <= replayed.status_code < 500
    assert me["email"] == ADA.email
    assert me["spaces"] == [{"space": "DevOps", "role": "Space Admin"}]
    # generic SAML IdPs do not sync groups (product rule): the groups attribute changes nothing
    assert me["groups"] == []


def test_entra_login_through_the_dev_idp_keys_on_tid_oid_and_maps_group_guids(live_demo: LiveDemo) -> None:
    with live_demo.browser() as browser:
        page = browser.get("/login")
        assert re.search(r'id="sso-contoso-entra" href="[^"]+">Sign in with Azure</a>', page.text)
        picker = _to_dev_idp(browser, "ada@contoso.example")
        assert urlsplit(str(picker.request.url)).path == (
            f"/dev-idp/entra/{ENTRA_TENANT_ID}/oauth2/v2.0/authorize"
        )
        entra_ada = as_entra_person(ADA, email_domain="contoso.example")
        assert entra_ada.email in picker.text
        answered = _pick(browser, picker.text, entra_ada.subject, groups=", ".join(entra_ada.groups))
        assert answered.status_code == 303
        assert browser.get(answered.headers["location"]).status_code == 303
        me = browser.get("/api/me").json()
    assert (me["account"], me["email"]) == (ENTRA_ACCOUNT, "ada@contoso.example")
    assert me["user_name"] == "ada@contoso.example"  # the UPN (preferred_username)
    assert [(g["name"], g["idp_identifier"]) for g in me["groups"]] == [
        ("Engineering", entra_object_id(GROUP_DEVOPS)), ("Trial Admins", entra_object_id(GROUP_TRIAL_ADMINS)),
    ]
    with live_demo.site.runtime.db.transaction() as db:
        identity = db.scalar(select(ExternalIdentity).where(ExternalIdentity.connector_id == "contoso-entra"))
        assert identity is not None
        assert identity.subject == f"{ENTRA_TENANT_ID}:{entra_ada.subject}"


def test_entra_discovery_matches_what_the_azure_ad_connector_derives(live_demo: LiveDemo) -> None:
    provider = live_demo.site.runtime.plugins.oidc_provider(live_demo.site.runtime.connector("contoso-entra"))
    tenant = f"/dev-idp/entra/{ENTRA_TENANT_ID}"
    with live_demo.browser() as browser:
        discovery = browser.get(f"{tenant}/v2.0/.well-known/openid-configuration").json()
        # the Okta client is not registered at the Entra endpoints
        foreign = browser.get(f"{tenant}/oauth2/v2.0/authorize", params={"client_id": OKTA_CLIENT_ID})
    assert discovery["issuer"] in provider.issuers
    assert discovery["authorization_endpoint"] == provider.authorization_endpoint
    assert discovery["token_endpoint"] == provider.token_endpoint
    assert discovery["jwks_uri"] == provider.jwks_uri
    assert foreign.status_code == 400


def test_one_person_over_both_protocols_is_one_user(live_demo: LiveDemo) -> None:
    ids = []
    for email in ("ada@demo.example", "ada@saml.demo.example"):
        with live_demo.browser() as browser:
            answered = _pick(browser, _to_dev_idp(browser, email).text, ADA.subject)
            if answered.status_code == 303:  # OIDC: code on the redirect URI
                assert browser.get(answered.headers["location"]).status_code == 303
            else:  # SAML: auto-posted Response
                action, fields = _auto_post_form(answered.text)
                assert browser.post(action, data=fields).status_code == 303
            ids.append(browser.get("/api/me").json()["id"])
    assert ids[0] == ids[1], "the SAML login linked to the user the OIDC login created"


def test_cancel_at_the_dev_idp_is_refused_with_a_page_and_no_session(live_demo: LiveDemo) -> None:
    with live_demo.browser() as browser:
        picker = _to_dev_idp(browser, "ada@demo.example")
        cancelled = browser.post(
            "/dev-idp/sign-in", data={"request_key": _request_key(picker.text), "subject": "", "cancel": "1"}
        )
        assert cancelled.status_code == 303
        query = parse_qs(urlsplit(cancelled.headers["location"]).query)
        assert query["error"] == ["access_denied"]
        refused = browser.get(cancelled.headers["location"], headers={"accept": "text/html"})
        assert 400 <= refused.status_code < 500
        assert "We could not sign you in" in refused.text
        assert browser.get("/api/me").status_code == 401


def test_picker_page_is_single_use(live_demo: LiveDemo) -> None:
    with live_demo.browser() as browser:
        picker = _to_dev_idp(browser, "ada@demo.example")
        assert _pick(browser, picker.text, ADA.subject).status_code == 303
        again = _pick(browser, picker.text, ADA.subject)
        assert again.status_code == 400
        assert "expired or was already used" in again.text


def _authorize(browser: httpx.Client, base_url: str, *, verifier: str, **overrides: str) -> httpx.Response:
    params = {
        "response_type": "code", "client_id": OKTA_CLIENT_ID, "scope": "openid profile email",
        "redirect_uri": f"{base_url}/api/accounts/idp-callback", "state": "s1", "nonce": "n1",
        "code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256", **overrides,
    }
    return browser.get("/dev-idp/oauth2/default/v1/authorize", params=params)


def _code(browser: httpx.Client, base_url: str, verifier: str) -> str:
    picker = _authorize(browser, base_url, verifier=verifier)
    assert picker.status_code == 200
    answered = _pick(browser, picker.text, ADA.subject)
    query = parse_qs(urlsplit(answered.headers["location"]).query)
    assert query["state"] == ["s1"]
    return query["code"][0]


def test_token_endpoint_checks_pkce_client_and_single_use(live_demo: LiveDemo) -> None:
    secret = live_demo.site.idp.oidc_clients[OKTA_CLIENT_ID].client_secret
    redirect_uri = f"{live_demo.base_url}/api/accounts/idp-callback"
    with live_demo.browser() as browser:
        verifier = new_pkce_verifier()

        def token(code: str, *, code_verifier: str = verifier, client_secret: str = secret) -> httpx.Response:
            return browser.post("/dev-idp/oauth2/default/v1/token", data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": code_verifier, "client_id": OKTA_CLIENT_ID, "client_secret": client_secret,
            })

        code = _code(browser, live_demo.base_url, verifier)
        wrong_verifier = token(code, code_verifier=new_pkce_verifier())
        assert wrong_verifier.status_code == 400
        assert wrong_verifier.json()["error"] == "invalid_grant"
        # a failed attempt spends the code too
        assert token(code).json()["error"] == "invalid_grant"

        code = _code(browser, live_demo.base_url, verifier)
        wrong_secret = token(code, client_secret="not-the-secret")
        assert wrong_secret.status_code == 401
        assert wrong_secret.json()["error"] == "invalid_client"

        code = _code(browser, live_demo.base_url, verifier)
        basic = base64.b64encode(f"{OKTA_CLIENT_ID}:{secret}".encode()).decode()
        good = browser.post("/dev-idp/oauth2/default/v1/token", headers={"authorization": f"Basic {basic}"}, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier,
        })
        assert good.status_code == 200
        assert good.headers["cache-control"] == "no-store"
        body = good.json()
        assert body["token_type"] == "Bearer"
        assert body["id_token"].count(".") == 2
        reused = token(code)
        assert reused.status_code == 400
        assert reused.json()["error"] == "invalid_grant"


def test_form_post_response_mode_answers_with_a_self_submitting_form(live_demo: LiveDemo) -> None:
    with live_demo.browser() as browser:
        picker = _authorize(browser, live_demo.base_url, verifier=new_pkce_verifier(), response_mode="form_post")
        answered = _pick(browser, picker.text, ADA.subject)
    assert answered.status_code == 200
    action, fields = _auto_post_form(answered.text)
    assert action == f"{live_demo.base_url}/api/accounts/idp-callback"
    assert set(fields) == {"code", "state"}
    assert fields["state"] == "s1"


def test_oversized_or_unknown_picker_input_is_a_400_and_keeps_nothing(live_demo: LiveDemo) -> None:
    with live_demo.browser() as browser:
        picker = _to_dev_idp(browser, "ada@demo.example")
        too_long = _pick(browser, picker.text, ADA.subject, groups="g," * 400)
        assert too_long.status_code == 400
        nobody = _pick(browser, _to_dev_idp(browser, "ada@demo.example").text, "00u-nobody")
        assert nobody.status_code == 400
        assert "unknown demo person" in nobody.text
        assert browser.get("/api/me").status_code == 401


def test_discovery_and_jwks_match_the_okta_custom_authorization_server_layout(live_demo: LiveDemo) -> None:
    issuer = f"{live_demo.base_url}/dev-idp/oauth2/default"
    with live_demo.browser() as browser:
        discovery = browser.get("/dev-idp/oauth2/default/.well-known/openid-configuration").json()
        keys = browser.get("/dev-idp/oauth2/default/v1/keys").json()["keys"]
    assert discovery["issuer"] == issuer
    assert discovery["authorization_endpoint"] == f"{issuer}/v1/authorize"
    assert discovery["token_endpoint"] == f"{issuer}/v1/token"
    assert discovery["jwks_uri"] == f"{issuer}/v1/keys"
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert [k["kid"] for k in keys] == [live_demo.site.idp.key.kid]
    assert all("d" not in k for k in keys), "only public key members are published"


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"client_id": "someone-else"}, "unknown client_id"),
        ({"redirect_uri": "https://evil.example/callback"}, "redirect_uri is not registered"),
    ],
)
def test_authorize_with_untrusted_client_or_redirect_shows_an_error_here(
    live_demo: LiveDemo, overrides: dict[str, str], why: str
) -> None:
    with live_demo.browser() as browser:
        response = _authorize(browser, live_demo.base_url, verifier=new_pkce_verifier(), **overrides)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert why in response.text


def test_authorize_without_pkce_is_sent_back_as_an_oauth_error(live_demo: LiveDemo) -> None:
    with live_demo.browser() as browser:
        response = _authorize(browser, live_demo.base_url, verifier=new_pkce_verifier(), code_challenge_method="plain")
    assert response.status_code == 303
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == ["invalid_request"]
    assert query["state"] == ["s1"]


def _redirect_request(xml: bytes) -> str:
    compressor = zlib.compressobj(wbits=-15)
    return base64.b64encode(compressor.compress(xml) + compressor.flush()).decode()


@pytest.mark.parametrize(
    ("saml_request", "why"),
    [
        ("%%%not-base64", "not valid base64"),
        (base64.b64encode(b"plain, not deflated").decode(), "not raw DEFLATE"),
        (_redirect_request(b"<a>" + b" " * (200 * 1024) + b"</a>"), "inflates to more than"),
        (_redirect_request(b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'), "DTD"),
        (_redirect_request(b"<not-xml"), "not well-formed"),
        (_redirect_request(
            b'<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
            b'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r1" Version="2.0">'
            b"<saml:Issuer>https://evil.example/sp</saml:Issuer></samlp:AuthnRequest>"
        ), "unknown service provider"),
    ],
)
def test_bad_authn_requests_get_a_clear_400(live_demo: LiveDemo, saml_request: str, why: str) -> None:
    with live_demo.browser() as browser:
        response = browser.get("/dev-idp/saml/sso", params={"SAMLRequest": saml_request},
                               headers={"accept": "text/html"})
    assert response.status_code == 400
    assert why in html.unescape(response.text)


def test_authn_request_for_a_foreign_acs_is_refused(live_demo: LiveDemo) -> None:
    sp_entity_id = f"{live_demo.base_url}/api/accounts/saml/demo-saml/metadata"
    xml = (
        '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r1" Version="2.0" '
        'AssertionConsumerServiceURL="https://evil.example/acs">'
        f"<saml:Issuer>{sp_entity_id}</saml:Issuer></samlp:AuthnRequest>"
    ).encode()
    with live_demo.browser() as browser:
        response = browser.get("/dev-idp/saml/sso", params={"SAMLRequest": _redirect_request(xml)})
    assert response.status_code == 400
    assert "AssertionConsumerServiceURL" in response.text


def test_password_user_signs_in_from_the_login_page(live_demo: LiveDemo) -> None:
    with live_demo.browser() as browser:
        page = browser.get("/login", params={"email": OWNER_EMAIL, "use": "password"})
        assert page.status_code == 200
        assert re.search(r'<input id="account" name="account" value="demo"', page.text), "account derived"
        landed = browser.post("/api/accounts/login", data={
            "email": OWNER_EMAIL, "account": ACCOUNT, "password": live_demo.site.owner_password,
        })
        assert landed.status_code == 303
        me = browser.get("/api/me").json()
    assert me["email"] == OWNER_EMAIL
    assert me["account_role"] == "Account Admin"
    assert me["groups"] == [{"name": "Support", "idp_identifier": None, "source": "manual"}]


def test_other_host_names_are_sent_to_the_base_url(live_demo: LiveDemo) -> None:
    port = urlsplit(live_demo.base_url).port
    with live_demo.browser() as browser:
        response = browser.get("/login?email=x", headers={"host": f"localhost:{port}"})
    assert response.status_code == 307
    assert response.headers["location"] == f"{live_demo.base_url}/login?email=x"


def test_rerunning_the_demo_keeps_data_and_resets_the_owner_password(database_url: str) -> None:
    first = build_demo(base_url="http://127.0.0.1:9", database_url=database_url)
    first.runtime.close()
    second = build_demo(base_url="http://127.0.0.1:9", database_url=database_url)
    try:
        assert first.owner_password != second.owner_password
        with second.runtime.db.transaction() as db:
            account = directory.get_account(db, name=ACCOUNT)
            assert [s.name for s in directory.list_spaces(db, account=account)] == ["DevOps", "Trial"]
            owner = directory.get_user(db, account=account, email_or_user_name=OWNER_EMAIL)
            from transom.security import verify_password

            assert verify_password(owner.password_hash, second.owner_password)
            assert not verify_password(owner.password_hash, first.owner_password)
            rows = db.scalars(select(Group).where(Group.account_id == account.id))
            groups = {g.name: g.idp_identifier for g in rows}
        assert groups == {"DevOps Engineers": GROUP_DEVOPS, "Support": None, "Trial Admins": GROUP_TRIAL_ADMINS}
        assert GROUP_EVERYONE not in groups.values()
    finally:
        second.runtime.close()


def test_demo_command_is_registered_with_its_options() -> None:
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--data-dir", "--base-url"):
        assert option in result.output

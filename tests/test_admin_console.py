"""The admin console's pages through the real app: who may see them, CSRF on every form, and
what each form does (and refuses, with its reason on the page)."""

from __future__ import annotations

import html as html_module
import re
from typing import Any

import pytest
from conftest import client_for
from sqlalchemy import select
from starlette.testclient import TestClient

from transom import directory
from transom.models import USER_DEPROVISIONED, AuditEvent, ExternalIdentity, Group, LoginAttempt, User
from transom.runtime import Runtime
from transom.testing.saml import FakeSamlIdp

PASSWORD = "correct horse battery"
OKTA = {"id": "acme-okta", "type": "okta", "account": "acme", "email_domains": ["acme.example"],
        "settings": {"domain": "acme.okta.test", "client_id": "cid", "client_secret": "s"}}
SAML = {"id": "acme-saml", "type": "generic_saml", "account": "acme", "settings": FakeSamlIdp().connector_settings()}
PAGES = ("/admin/users", "/admin/groups", "/admin/spaces", "/admin/tokens", "/admin/logins", "/admin/connectors",
         "/admin/audit", "/admin/connectors/acme-okta")


def seed(runtime: Runtime) -> dict[str, str]:
    with runtime.db.transaction() as db:
        acme = directory.create_account(db, name="acme")
        directory.create_space(db, account=acme, name="Trial")
        mapped = directory.create_group(db, account=acme, name="Dev", idp_identifier="okta-dev")
        directory.create_group(db, account=acme, name="Local")
        admin = directory.create_user(db, account=acme, user_name="admin@acme.example", email="admin@acme.example",
                                      password=PASSWORD, account_role="Account Admin", display_name="Ann Admin")
        member = directory.create_user(db, account=acme, user_name="mem@acme.example", email="mem@acme.example",
                                       password=PASSWORD)
        ada = directory.create_user(db, account=acme, user_name="ada@acme.example", email="ada@acme.example")
        db.add(ExternalIdentity(account_id=acme.id, user_id=ada.id, connector_id="acme-okta", subject="00uada"))
        directory.add_group_member(db, account=acme, group=mapped, user=ada, actor="test", idp_owned=False)
        db.add(LoginAttempt(account_id=acme.id, connector_id="acme-okta", protocol="oidc", outcome="refused",
                            user_label="eve@acme.example", code="login_refused", reason="the IdP sent no subject",
                            hint="the id_token must carry a 'sub' claim", warnings=[], received=None))
        other = directory.create_account(db, name="other")
        directory.create_user(db, account=other, user_name="admin@other.example", email="admin@other.example",
                              password=PASSWORD, account_role="Account Admin")
        return {"admin": admin.id, "member": member.id, "ada": ada.id}


@pytest.fixture
def site(make_runtime: Any) -> tuple[Runtime, dict[str, str]]:
    runtime: Runtime = make_runtime([OKTA, SAML])
    return runtime, seed(runtime)


def signed_in(runtime: Runtime, email: str = "admin@acme.example", account: str = "acme") -> TestClient:
    client = client_for(runtime)
    answer = client.post("/api/accounts/login", data={"email": email, "password": PASSWORD, "account": account})
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert match, "no CSRF field on the page"
    return match.group(1)


def html(client: TestClient, path: str) -> str:
    answer = client.get(path, headers={"accept": "text/html"})
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return answer.text


def table(page: str, table_id: str) -> str:
    start = page.index(f'<table id="{table_id}">')
    return page[start:page.index("</table>", start)]


def flash(client: TestClient, path: str) -> str:
    match = re.search(r'<p class="flash (ok|error)" id="flash"[^>]*>([^<]*)</p>', html(client, path))
    assert match, f"no message on {path}"
    return f"{match.group(1)}: {html_module.unescape(match.group(2))}"


def test_anonymous_is_sent_to_sign_in_and_a_member_gets_403(site: tuple[Runtime, dict[str, str]]) -> None:
    runtime, _ = site
    with client_for(runtime) as anonymous:
        answer = anonymous.get("/admin/groups", headers={"accept": "text/html"})
        assert answer.status_code == 303 and answer.headers["location"] == "/login?next=%2Fadmin%2Fgroups"
    with signed_in(runtime, "mem@acme.example") as member:
        for path in PAGES:
            answer = member.get(path, headers={"accept": "text/html"})
            assert answer.status_code == 403, path
            assert "for Account Admins" in answer.text
        assert member.post("/admin/groups", data={"name": "X", "csrf": "0" * 64}).status_code == 403
        assert 'id="admin-console"' not in member.get("/").text
    with signed_in(runtime) as admin:
        assert 'id="admin-console" href="/admin"' in admin.get("/").text
        for path in PAGES:
            page = html(admin, path)
            assert "Transom admin · account acme" in page and "/admin/static/admin.css" in page
        assert admin.get("/admin/static/admin.js").status_code == 200
        assert admin.get("/admin/static/../../app.py").status_code == 404


def test_every_form_needs_the_csrf_token_of_its_session(site: tuple[Runtime, dict[str, str]]) -> None:
    runtime, ids = site
    with signed_in(runtime) as admin:
        page = html(admin, "/admin/groups")
        token = csrf_of(page)
        # every form on every page carries the field
        for path in (*PAGES, f"/admin/users/{ids['ada']}"):
            body = html(admin, path)
            assert body.count('method="post"') == body.count('name="csrf"'), path
        for path, data in (("/admin/groups", {"name": "Ops"}), ("/admin/spaces", {"name": "Prod"}),
                           ("/admin/tokens", {"name": "t", "permission": "admin"}),
                           (f"/admin/users/{ids['member']}/active", {"active": "false"})):
            for bad in (None, "0" * 64):
                sent = data if bad is None else {**data, "csrf": bad}
                answer = admin.post(path, data=sent, headers={"accept": "text/html"})
                assert answer.status_code == 403 and "reload the page" in answer.text, path
        # another session's token does not work either
        with signed_in(runtime, "admin@other.example", "other") as other:
            assert other.post("/admin/groups", data={"name": "Ops", "csrf": token}).status_code == 403
        assert admin.post("/admin/groups", data={"name": "Ops", "csrf": token}).status_code == 303
    with runtime.db.transaction() as db:
        assert sorted(db.scalars(select(Group.name))) == ["Dev", "Local", "Ops"]


def test_groups_create_map_rename_and_clear(site: tuple[Runtime, dict[str, str]]) -> None:
    runtime, _ = site
    with signed_in(runtime) as admin:
        token = csrf_of(html(admin, "/admin/groups"))
        with runtime.db.transaction() as db:
            local = db.scalars(select(Group).where(Group.name == "Local")).one()
        post = admin.post(f"/admin/groups/{local.id}/idp-identifier",
                          data={"csrf": token, "idp_identifier": " 6F1E2D3C-AAAA-4BBB-8CCC-0123456789AB "})
        assert post.status_code == 303 and post.headers["location"] == "/admin/groups"
        assert flash(admin, "/admin/groups") == (
            "ok: group Local is mapped to IdP group 6f1e2d3c-aaaa-4bbb-8ccc-0123456789ab")
        # the message is shown once
        assert 'id="flash"' not in html(admin, "/admin/groups")
        taken = admin.post(f"/admin/groups/{local.id}/idp-identifier",
                           data={"csrf": token, "idp_identifier": "okta-dev"})
        assert taken.status_code == 303
        assert flash(admin, "/admin/groups") == "error: IdP identifier 'okta-dev' is already mapped to group 'Dev'"
        # create with a taken identifier: refused, and the group is not half-created
        admin.post("/admin/groups", data={"csrf": token, "name": "Half", "idp_identifier": "okta-dev"})
        assert flash(admin, "/admin/groups").startswith("error: IdP identifier 'okta-dev'")
        admin.post(f"/admin/groups/{local.id}/name", data={"csrf": token, "name": "Local  Team"})
        assert flash(admin, f"/admin/groups/{local.id}") == "ok: group Local renamed to Local Team"
        admin.post(f"/admin/groups/{local.id}/name", data={"csrf": token, "name": "dev"})
        assert flash(admin, f"/admin/groups/{local.id}") == "error: group 'dev' already exists in account 'acme'"
        admin.post(f"/admin/groups/{local.id}/idp-identifier",
                   data={"csrf": token, "idp_identifier": "", "back": f"/admin/groups/{local.id}"})
        assert "no longer mapped" in flash(admin, f"/admin/groups/{local.id}")
        assert admin.get("/admin/groups/nope", headers={"accept": "text/html"}).status_code == 404
    with runtime.db.transaction() as db:
        names = {g.name: g.idp_identifier for g in db.scalars(select(Group))}
        assert names == {"Dev": "okta-dev", "Local Team": None}
        actions = list(db.scalars(select(AuditEvent.action).where(AuditEvent.actor.like("user:%"))))
        assert "group.renamed" in actions and "group.idp_identifier_set" in actions


def test_user_page_membership_rules_and_deactivation(site: tuple[Runtime, dict[str, str]]) -> None:
    runtime, ids = site
    with signed_in(runtime) as admin:
        page = html(admin, f"/admin/users/{ids['ada']}")
        assert "00uada" in page and "acme-okta" in page and 'id="group-sync-note"' in page
        assert "owned by the IdP" in table(page, "user-groups")  # no Remove button for the mapped group
        assert ">Dev (mapped)<" not in page and ">Local<" in page  # only unmapped groups are offered
        token = csrf_of(page)
        with runtime.db.transaction() as db:
            groups = {g.name: g.id for g in db.scalars(select(Group))}
        # ada signs in through a group-synced connector: the mapped group's membership is the IdP's
        admin.post(f"/admin/users/{ids['ada']}/groups", data={"csrf": token, "group_id": groups["Dev"],
                                                              "action": "remove"})
        assert "the IdP owns this membership" in flash(admin, f"/admin/users/{ids['ada']}")
        # an unmapped group is managed by hand
        admin.post(f"/admin/users/{ids['ada']}/groups", data={"csrf": token, "group_id": groups["Local"],
                                                              "action": "add"})
        assert flash(admin, f"/admin/users/{ids['ada']}") == "ok: ada@acme.example added to Local"
        admin.post(f"/admin/users/{ids['ada']}/active", data={"csrf": token, "active": "false"})
        assert flash(admin, f"/admin/users/{ids['ada']}") == "ok: ada@acme.example is now deprovisioned"
        listed = html(admin, "/admin/users?status=deprovisioned")
        assert "ada@acme.example" in listed and "mem@acme.example" not in listed
        admin.post(f"/admin/users/{ids['ada']}/active", data={"csrf": token, "active": "true"})
        assert flash(admin, f"/admin/users/{ids['ada']}") == "ok: ada@acme.example is now pending"
        # an admin cannot lock themselves out
        admin.post(f"/admin/users/{ids['admin']}/active", data={"csrf": token, "active": "false"})
        assert "cannot deactivate yourself" in flash(admin, f"/admin/users/{ids['admin']}")
        # search and the connector filter
        assert "ada@acme.example" in html(admin, "/admin/users?q=ADA")
        by_connector = html(admin, "/admin/users?connector=acme-okta")
        assert "ada@acme.example" in by_connector and "mem@acme.example" not in by_connector
        assert "No user matches" in html(admin, "/admin/users?q=%25")
        # another account's user is not found
        with runtime.db.transaction() as db:
            stranger = db.scalar(select(User.id).where(User.user_name == "admin@other.example"))
        assert admin.get(f"/admin/users/{stranger}", headers={"accept": "text/html"}).status_code == 404
    with runtime.db.transaction() as db:
        ada = db.get_one(User, ids["ada"])
        assert ada.status == "pending"
        assert db.get_one(User, ids["admin"]).status != USER_DEPROVISIONED


def test_tokens_page_shows_the_secret_once_and_revokes(site: tuple[Runtime, dict[str, str]]) -> None:
    runtime, _ = site
    with signed_in(runtime) as admin:
        token = csrf_of(html(admin, "/admin/tokens"))
        created = admin.post("/admin/tokens", data={"csrf": token, "name": "okta-scim", "permission": "manage-users"})
        assert created.status_code == 200 and created.headers["cache-control"] == "no-store"
        secret = re.search(r'id="token-secret">(trn_[^<]+)<', created.text)
        assert secret
        assert secret.group(1) not in html(admin, "/admin/tokens")  # shown once
        bearer = {"authorization": f"Bearer {secret.group(1)}"}
        assert admin.get("/api/scim/v2/Users", headers=bearer).status_code == 200
        token_id = re.search(r'id="revoke-([0-9a-f]{32})"', created.text)
        assert token_id
        admin.post(f"/admin/tokens/{token_id.group(1)}/revoke", data={"csrf": token})
        assert flash(admin, "/admin/tokens") == "ok: token okta-scim revoked: it is refused from now on"
        assert admin.get("/api/scim/v2/Users", headers=bearer).status_code == 401
        admin.post("/admin/tokens", data={"csrf": token, "name": "none"})
        assert "unknown permission" in flash(admin, "/admin/tokens")


def test_spaces_logins_connectors_and_audit_pages(site: tuple[Runtime, dict[str, str]]) -> None:
    runtime, ids = site
    with signed_in(runtime) as admin:
        token = csrf_of(html(admin, "/admin/spaces"))
        admin.post("/admin/spaces", data={"csrf": token, "name": "Prod"})
        assert flash(admin, "/admin/spaces") == "ok: space Prod created"
        admin.post("/admin/spaces", data={"csrf": token, "name": "prod"})
        assert flash(admin, "/admin/spaces") == "error: space 'prod' already exists in account 'acme'"
        spaces = html(admin, "/admin/spaces")
        assert "Space Developer" in spaces and "Account Admin" in spaces

        logins = html(admin, "/admin/logins?connector=acme-okta&outcome=refused")
        assert "the IdP sent no subject" in logins and "IdP admin: the id_token must carry a" in logins
        attempt_id = re.search(r'href="/admin/logins/(\d+)"', logins)
        assert attempt_id
        detail = html(admin, f"/admin/logins/{attempt_id.group(1)}")
        assert 'id="login-reason"' in detail and 'id="received-none"' in detail

        connectors = html(admin, "/admin/connectors")
        assert "acme-okta" in connectors and "acme-saml" in connectors and "acme.example" in connectors
        okta = html(admin, "/admin/connectors/acme-okta")
        assert "http://testserver/api/accounts/idp-callback" in okta
        assert "http://testserver/api/scim/v2" in okta and "manage-users" in okta
        assert 'data-copy="#value-1"' in okta and "Push Groups" in okta
        saml = html(admin, "/admin/connectors/acme-saml")
        assert "http://testserver/api/accounts/saml/acme-saml/acs" in saml
        assert 'href="http://testserver/api/accounts/saml/acme-saml/metadata" download' in saml
        assert admin.get("/admin/connectors/other", headers={"accept": "text/html"}).status_code == 404

        audit = table(html(admin, "/admin/audit?kind=space"), "audit")
        assert "space.created" in audit and "group.member_added" not in audit
        assert "admin@acme.example (console/API session)" in audit  # the actor, by name
        by_user = table(html(admin, "/admin/audit?user=ada@acme.example"), "audit")
        assert "group.member_added" in by_user and "space.created" not in by_user
        assert "no user &#39;nobody&#39; in this account" in html(admin, "/admin/audit?user=nobody")
        user_page = html(admin, f"/admin/users/{ids['ada']}")
        assert "group.member_added" in user_page  # recent audit events on the user's page


def test_connectors_page_checks_a_connector_on_demand(site: tuple[Runtime, dict[str, str]]) -> None:
    """"Check now" runs the probe of GET /api/admin/connectors/{id}/check for one connector
    (the SAML one here: configured certificates, nothing to fetch) and shows it on the page."""
    runtime, _ = site
    with signed_in(runtime) as admin:
        page = html(admin, "/admin/connectors")
        assert 'id="check-acme-saml"' in page and 'id="check-result"' not in page  # not probed on view
        token = csrf_of(page)
        answer = admin.post("/admin/connectors/acme-saml/check", data={"csrf": token}, headers={"accept": "text/html"})
        assert answer.status_code == 200, answer.text[:300]
        checks = table(answer.text, "probe-checks")
        assert "certificate" in checks and '<span class="badge ok">ok</span>' in checks
        assert 'id="health-acme-saml">healthy</span>' in answer.text
        assert "Health of acme-saml: every check passed" in answer.text
        assert 'id="health-acme-okta"' not in answer.text  # only the connector asked about
        without_csrf = admin.post("/admin/connectors/acme-saml/check", headers={"accept": "text/html"})
        assert without_csrf.status_code == 403
        other = admin.post("/admin/connectors/nope/check", data={"csrf": token}, headers={"accept": "text/html"})
        assert other.status_code == 404
    with signed_in(runtime, "admin@other.example", "other") as stranger:
        token = csrf_of(html(stranger, "/admin/groups"))
        foreign = stranger.post("/admin/connectors/acme-saml/check", data={"csrf": token},
                                headers={"accept": "text/html"})
        assert foreign.status_code == 404  # another account's connector does not exist here

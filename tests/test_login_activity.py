"""Login activity: refused SSO logins with their reason and hint, good ones with their
warnings and what they changed, what the IdP sent (decoded, never raw), retention pruning,
and the admin API that reads it."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from conftest import client_for
from oidc_support import build, okta_claims, okta_connector, okta_org_fake
from saml_support import app_client, generic_attributes, generic_connector
from saml_support import build as saml_build
from sqlalchemy import func, select, update

from transom import directory, login_activity
from transom.models import LoginAttempt, User, utcnow
from transom.runtime import Runtime
from transom.testing.oidc import oidc_login
from transom.testing.saml import FakeSamlIdp, saml_login

JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*")


def admin_token(runtime: Runtime) -> dict[str, str]:
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        token = directory.create_token(db, account=account, permissions=["admin"], name="ops")
    return {"authorization": f"Bearer {token}"}


def stored(runtime: Runtime) -> list[LoginAttempt]:
    with runtime.db.transaction() as db:
        return list(db.scalars(select(LoginAttempt).order_by(LoginAttempt.id)))


def test_refused_login_has_reason_and_hint_and_good_login_its_warnings(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    headers = admin_token(runtime)
    with client_for(runtime) as client:
        # a good login whose claims name an unknown space and an invalid time zone, with no groups claim
        good = oidc_login(client, fake, "acme-okta",
                          claims=okta_claims(space_name="Moonbase", zoneinfo="Mars/Olympus_Mons"))
        assert good.status_code == 303, good.text
        with runtime.db.transaction() as db:
            db.execute(update(User).values(status="deprovisioned"))
        client.cookies.clear()
        refused = oidc_login(client, fake, "acme-okta", claims=okta_claims())
        assert refused.status_code == 400

        listed = client.get("/api/admin/logins", params={"connector": "acme-okta"}, headers=headers)
        assert listed.status_code == 200
        newest, oldest = listed.json()
        assert newest["outcome"] == "refused" and oldest["outcome"] == "success"
        assert newest["reason"] == "your access to this account has been removed"
        assert "deprovisioned" in newest["hint"] and newest["user"] == "ada@acme.example"
        assert newest["connector"] == "acme-okta" and newest["code"] == "login_refused"
        warnings = " | ".join(oldest["warnings"])
        assert "space 'Moonbase' does not exist" in warnings
        assert "'Mars/Olympus_Mons' is not an IANA time zone" in warnings
        assert "sent no groups claim" in warnings
        assert oldest["reason"] is None and oldest["user_id"] is not None

        detail = client.get(f"/api/admin/logins/{oldest['id']}", headers=headers).json()
        claims = detail["received"]["claims"]
        assert claims["preferred_username"] == "ada@acme.example" and claims["zoneinfo"] == "Mars/Olympus_Mons"
        assert "nonce" not in claims  # protocol plumbing is not shown
        assert detail["changes"]["created"] is True
        assert "user.created" in [c["action"] for c in detail["changes"]["changes"]]
        refused_detail = client.get(f"/api/admin/logins/{newest['id']}", headers=headers).json()
        assert refused_detail["received"]["claims"]["sub"] == "00u1ada"  # verified before the refusal

        assert client.get("/api/admin/logins", params={"connector": "nope"}, headers=headers).json() == []
        only_refused = client.get("/api/admin/logins", params={"outcome": "refused"}, headers=headers).json()
        assert [a["id"] for a in only_refused] == [newest["id"]]
        assert client.get("/api/admin/logins", params={"outcome": "maybe"}, headers=headers).status_code == 400
        assert client.get("/api/admin/logins/999999", headers=headers).status_code == 404
    # never a raw token: no JWT anywhere in what was stored
    for row in stored(runtime):
        assert not JWT.search(json.dumps([row.received, row.changes, row.warnings, row.reason, row.hint]))


def test_idp_error_answer_is_recorded_without_claims(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with client_for(runtime) as client:
        from transom.testing.oidc import finish_login, start_login

        location = start_login(client, "acme-okta")
        state = dict(p.split("=", 1) for p in location.split("?", 1)[1].split("&"))["state"]
        answer = finish_login(client, {"state": state, "error": "access_denied"})
        assert answer.status_code == 400
    (row,) = stored(runtime)
    assert row.outcome == "refused" and "access_denied" in (row.reason or "")
    assert "assigned to the application" in (row.hint or "") and row.received is None


def test_saml_response_failing_verification_is_recorded_without_contents(make_runtime: Any) -> None:
    idp = FakeSamlIdp()
    runtime = saml_build(make_runtime, [generic_connector(idp)])

    def forge(root: Any) -> None:  # change the signed NameID: the signature no longer matches
        root.find(".//{urn:oasis:names:tc:SAML:2.0:assertion}NameID").text = "someone-else"

    with app_client(runtime) as client:
        refused = saml_login(client, idp, connector_id="acme-saml", name_id="u-1", attributes=generic_attributes(),
                             tamper=forge)
        assert refused.status_code == 400
        good = saml_login(client, idp, connector_id="acme-saml", name_id="u-1",
                          attributes=generic_attributes(groups=["g-1"]))
        assert good.status_code == 303
    bad_row, good_row = stored(runtime)
    assert bad_row.outcome == "refused" and bad_row.received is None and bad_row.reason
    assert bad_row.connector_id == "acme-saml" and bad_row.protocol == "saml"
    assert good_row.outcome == "success"
    assert good_row.received is not None
    assert good_row.received["name_id"] == "u-1"
    assert good_row.received["attributes"]["mail"] == ["ada@acme.example"]
    assert set(good_row.received) == {"name_id", "name_id_format", "issuer", "attributes"}


def test_secret_looking_values_are_redacted_and_long_ones_cut() -> None:
    received = login_activity.received_json("oidc", {
        "sub": "1", "nonce": "n", "at_hash": "h", "refresh_token_hint": "x", "client_secret": "s",
        "groups": [f"g{i}" for i in range(400)], "bio": "a" * 2000,
    })
    claims = received["claims"]
    assert "nonce" not in claims and "at_hash" not in claims
    assert claims["refresh_token_hint"] == "[redacted]" and claims["client_secret"] == "[redacted]"
    assert len(claims["groups"]) == login_activity.MAX_ITEMS + 1 and claims["groups"][-1] == "… 150 more"
    assert claims["bio"].startswith("a" * login_activity.MAX_TEXT) and claims["bio"].endswith("(2000 characters)")


def test_retention_prunes_by_age_and_by_count(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector(), server={"login_activity_retention_days": 7})
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        other = directory.create_account(db, name="other")
        now = utcnow()
        for days in (30, 8, 6, 1):
            db.add(LoginAttempt(account_id=account.id, at=now - timedelta(days=days), connector_id="acme-okta",
                                protocol="oidc", outcome="refused", reason=f"{days} days old", warnings=[]))
        db.add(LoginAttempt(account_id=other.id, at=now - timedelta(days=30), connector_id="x",
                            protocol="oidc", outcome="refused", reason="other account", warnings=[]))
    # recording a new attempt prunes the account's attempts older than the retention
    with client_for(runtime) as client:
        assert oidc_login(client, fake, "acme-okta", claims=okta_claims()).status_code == 303
    reasons = [r.reason for r in stored(runtime)]
    assert reasons == ["6 days old", "1 days old", "other account", None]  # the other account is not touched
    # the row cap keeps the newest rows of one account
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        gone = login_activity.prune(db, account_id=account.id, now=utcnow(), retention_days=7, max_rows=2)
        assert gone == 1
        left = db.scalars(select(LoginAttempt.reason).where(LoginAttempt.account_id == account.id)
                          .order_by(LoginAttempt.id)).all()
        assert left == ["1 days old", None]
        assert db.scalar(select(func.count()).select_from(LoginAttempt)) == 3


def test_connector_naming_a_missing_account_records_nothing_and_still_refuses(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = make_runtime(connectors=[{**okta_connector(), "account": "ghost"}],
                           http=__import__("httpx").Client(transport=fake.transport()))
    with client_for(runtime) as client:
        start = client.get("/api/accounts/login/acme-okta")
        assert start.status_code == 400  # the login state needs the account: refused at the start
    assert stored(runtime) == []

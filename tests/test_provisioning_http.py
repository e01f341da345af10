"""Provisioning end to end through HTTP: fake IdPs sign real id_tokens (RSA, JWKS over an
httpx MockTransport), Transom verifies them and the rules of docs/provisioning.md decide the
spaces and roles seen in ``/api/me``. The concurrency test runs a real uvicorn server and
real threads."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from conftest import client_for
from oidc_support import (
    build,
    counts,
    entra_claims,
    entra_connector,
    entra_fake,
    okta_claims,
    okta_connector,
    okta_org_fake,
)
from saml_support import build as build_saml
from saml_support import entra_attributes, generic_attributes, generic_connector, okta_attributes
from saml_support import entra_connector as saml_entra_connector
from saml_support import okta_connector as saml_okta_connector
from sqlalchemy import select

from transom import directory
from transom.models import AuditEvent, SpaceMembership
from transom.runtime import Runtime
from transom.testing.oidc import FakeOidcIdp, finish_login, oidc_login, start_login
from transom.testing.saml import FakeSamlIdp, saml_login
from transom.testing.server import free_port, serve_in_thread
from transom.web.app import create_app

SPACES = ("Trial", "DevOps", "Prod")


def add_spaces(runtime: Runtime) -> None:
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        for space in SPACES:
            directory.create_space(db, account=account, name=space)


def with_provisioning(connector: dict[str, Any], **provisioning: Any) -> dict[str, Any]:
    return {**connector, "provisioning": provisioning}


def login_me(runtime: Runtime, fake: FakeOidcIdp, connector_id: str, claims: dict[str, Any]) -> dict[str, Any]:
    with client_for(runtime) as client:
        response = oidc_login(client, fake, connector_id, claims=claims)
        assert response.status_code == 303, response.text
        me: dict[str, Any] = client.get("/api/me").json()
        return me


def spaces(me: dict[str, Any]) -> dict[str, str]:
    return {s["space"]: s["role"] for s in me["spaces"]}


def test_new_entra_user_gets_the_rules_spaces(make_runtime: Any) -> None:
    fake = entra_fake()
    runtime = build(make_runtime, fake, entra_connector())
    add_spaces(runtime)
    me = login_me(
        runtime,
        fake,
        "acme-entra",
        entra_claims(
            space_name="Sandbox, trial ,DevOps,Prod,DevOps",
            space_role=["Space Admin", "Space Developer", "Boss", "Space Admin"],
            timezone="Europe/Paris",
        ),
    )
    # Sandbox unknown: dropped with Space Admin; Trial: Developer; DevOps: Boss -> first valid
    # of its positions (Boss, then none) -> Member; Prod: Space Admin
    assert spaces(me) == {"Trial": "Space Developer", "DevOps": "Space Member", "Prod": "Space Admin"}
    assert me["timezone"] == "Europe/Paris"
    assert me["status"] == "active"
    assert me["spaces"] == sorted(me["spaces"], key=lambda s: s["space"])


def test_one_role_for_several_spaces_as_json_array(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    add_spaces(runtime)
    me = login_me(runtime, fake, "acme-okta", okta_claims(space_name=["Trial", "Prod"], space_role="space developer"))
    assert spaces(me) == {"Trial": "Space Developer", "Prod": "Space Developer"}


def test_configured_attribute_names_are_used(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(
        make_runtime,
        fake,
        with_provisioning(
            okta_connector(), space_attribute="torque_spaces", role_attribute="torque_roles", timezone_attribute="tz"
        ),
    )
    add_spaces(runtime)
    me = login_me(
        runtime,
        fake,
        "acme-okta",
        okta_claims(torque_spaces="DevOps", torque_roles="Space Admin", tz="Asia/Tokyo", space_name="Prod"),
    )
    assert spaces(me) == {"DevOps": "Space Admin"}
    assert me["timezone"] == "Asia/Tokyo"


def test_invalid_timezone_still_logs_in(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    me = login_me(runtime, fake, "acme-okta", okta_claims(timezone="Not/AZone"))
    assert me["timezone"] is None
    with runtime.db.transaction() as db:
        event = db.scalars(select(AuditEvent).where(AuditEvent.action == "login.sso")).one()
    assert event.details is not None
    assert any("Not/AZone" in w for w in event.details["warnings"])


def test_private_saas_default_space(make_runtime: Any) -> None:
    fake = entra_fake()
    runtime = build(
        make_runtime,
        fake,
        with_provisioning(entra_connector(), default_space="Trial", default_space_role="Space Developer"),
    )
    add_spaces(runtime)
    me = login_me(runtime, fake, "acme-entra", entra_claims())
    assert spaces(me) == {"Trial": "Space Developer"}


def grant_manual(runtime: Runtime, user_id: str, space: str, role: str) -> None:
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        space_row = next(s for s in directory.list_spaces(db, account=account) if s.name == space)
        role_row = directory.get_role(db, account=account, scope="space", name=role)
        db.add(
            SpaceMembership(
                account_id=account.id, user_id=user_id, space_id=space_row.id, role_id=role_row.id, source="manual"
            )
        )


@pytest.mark.parametrize("update", [True, False])
def test_second_login_with_changed_attributes(make_runtime: Any, update: bool) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, with_provisioning(okta_connector(), update_profile_on_login=update))
    add_spaces(runtime)
    first = login_me(
        runtime,
        fake,
        "acme-okta",
        okta_claims(space_name="Trial,DevOps", space_role="Space Admin,Space Developer", timezone="UTC"),
    )
    assert spaces(first) == {"Trial": "Space Admin", "DevOps": "Space Developer"}
    grant_manual(runtime, first["id"], "Prod", "Space Member")
    second = login_me(
        runtime,
        fake,
        "acme-okta",
        okta_claims(
            space_name="DevOps,Prod", space_role="Space Admin,Space Admin", timezone="Asia/Tokyo", name="Ada King"
        ),
    )
    assert second["id"] == first["id"]
    if update:
        # IdP-managed rows follow the IdP (Trial left, DevOps re-roled); the manual Prod row stays
        assert spaces(second) == {"DevOps": "Space Admin", "Prod": "Space Member"}
        assert (second["timezone"], second["display_name"]) == ("Asia/Tokyo", "Ada King")
    else:
        assert spaces(second) == {"Trial": "Space Admin", "DevOps": "Space Developer", "Prod": "Space Member"}
        assert (second["timezone"], second["display_name"]) == ("UTC", "Ada Lovelace")
    assert counts(runtime)["users"] == 1


@pytest.mark.parametrize("which", ["entra", "okta"])
def test_pending_scim_user_is_linked_not_duplicated(make_runtime: Any, which: str) -> None:
    fake = entra_fake() if which == "entra" else okta_org_fake()
    connector = entra_connector() if which == "entra" else okta_connector()
    runtime = build(make_runtime, fake, connector)
    add_spaces(runtime)
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        pending = directory.create_user(
            db, account=account, user_name="ADA@acme.example", email=None, status="pending", actor="scim:test"
        )
        pending_id = pending.id
    claims = (entra_claims if which == "entra" else okta_claims)(space_name="Trial", space_role="Space Admin")
    me = login_me(runtime, fake, connector["id"], claims)
    assert me["id"] == pending_id
    assert me["status"] == "active"
    assert me["user_name"] == "ADA@acme.example"
    assert spaces(me) == {"Trial": "Space Admin"}
    again = login_me(runtime, fake, connector["id"], claims)
    assert again["id"] == pending_id
    assert counts(runtime)["users"] == 1
    assert counts(runtime)["identities"] == 1


def test_two_candidates_refused_with_a_page_and_nothing_written(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        for name in ("ada1", "ada2"):
            directory.create_user(
                db, account=account, user_name=name, email="ada@acme.example", status="pending", actor="scim:test"
            )
    with client_for(runtime) as client:
        response = oidc_login(
            client,
            fake,
            "acme-okta",
            claims=okta_claims(preferred_username="ada.okta"),
            headers={"Accept": "application/json"},
        )
    assert response.status_code == 400
    assert "more than one user" in response.text
    assert counts(runtime)["users"] == 2
    assert counts(runtime)["identities"] == 0


def test_simultaneous_first_logins_over_real_http_create_one_user(make_runtime: Any) -> None:
    """Eight browsers of the same new person finish their logins at the same instant against
    a real uvicorn server; the host's sync endpoints run in its thread pool."""
    port = free_port()
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector(), server={"base_url": f"http://127.0.0.1:{port}"})
    add_spaces(runtime)
    workers = 8
    barrier = threading.Barrier(workers)
    statuses: list[int] = []
    user_ids: list[str] = []
    lock = threading.Lock()
    claims = okta_claims(space_name="Trial,DevOps", space_role="Space Admin")

    def browser(base_url: str) -> None:
        with httpx.Client(base_url=base_url, follow_redirects=False, timeout=60) as client:
            location = start_login(client, "acme-okta")
            params = fake.authorize(location, claims)
            barrier.wait()
            response = finish_login(client, params)
            me = client.get("/api/me").json() if response.status_code == 303 else {}
        with lock:
            statuses.append(response.status_code)
            if "id" in me:
                user_ids.append(me["id"])

    with serve_in_thread(create_app(runtime), port=port) as base_url:
        threads = [threading.Thread(target=browser, args=(base_url,)) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
    assert statuses == [303] * workers
    assert len(user_ids) == workers and len(set(user_ids)) == 1
    assert counts(runtime)["users"] == 1
    assert counts(runtime)["identities"] == 1
    with runtime.db.transaction() as db:
        user = directory.get_user(
            db, account=directory.get_account(db, name="acme"), email_or_user_name="ada@acme.example"
        )
        assert spaces(directory.user_json(db, user=user)) == {"Trial": "Space Admin", "DevOps": "Space Admin"}


# -- SAML: the same rules through the ACS ---------------------------------------------------


def saml_me(
    runtime: Runtime, idp: Any, connector_id: str, name_id: str, attributes: dict[str, list[str]]
) -> dict[str, Any]:
    with client_for(runtime) as client:
        response = saml_login(client, idp, connector_id=connector_id, name_id=name_id, attributes=attributes)
        assert response.status_code == 303, response.text
        me: dict[str, Any] = client.get("/api/me").json()
        return me


def test_new_user_via_generic_saml_multi_value_and_commas(make_runtime: Any) -> None:

    idp = FakeSamlIdp()
    runtime = build_saml(make_runtime, [generic_connector(idp)])
    add_spaces(runtime)
    # several AttributeValues, one of them holding commas; roles by position, one unknown
    me = saml_me(
        runtime,
        idp,
        "acme-saml",
        "u-1",
        generic_attributes(
            space_name=["Trial, Sandbox", "DEVOPS", "Prod"],
            space_role=["Space Admin,Space Admin", "Boss"],
            timezone=["America/New_York"],
        ),
    )
    assert spaces(me) == {"Trial": "Space Admin", "DevOps": "Space Member", "Prod": "Space Member"}
    assert me["timezone"] == "America/New_York"


@pytest.mark.parametrize("update", [True, False])
def test_entra_saml_second_login_per_policy(make_runtime: Any, update: bool) -> None:

    idp = FakeSamlIdp()
    runtime = build_saml(make_runtime, [with_provisioning(saml_entra_connector(idp), update_profile_on_login=update)])
    add_spaces(runtime)
    first = saml_me(
        runtime,
        idp,
        "acme-entra",
        "ada-upn",
        entra_attributes(space_name=["Trial", "DevOps"], space_role=["Space Developer"]),
    )
    assert spaces(first) == {"Trial": "Space Developer", "DevOps": "Space Developer"}
    second = saml_me(
        runtime,
        idp,
        "acme-entra",
        "ada-upn",
        entra_attributes(space_name=["Prod"], space_role=["Space Admin"], timezone=["Asia/Tokyo"]),
    )
    assert second["id"] == first["id"]
    if update:
        assert spaces(second) == {"Prod": "Space Admin"}
        assert second["timezone"] == "Asia/Tokyo"
    else:
        assert spaces(second) == {"Trial": "Space Developer", "DevOps": "Space Developer"}
        assert second["timezone"] is None


def test_okta_saml_links_pending_user_by_login(make_runtime: Any) -> None:

    idp = FakeSamlIdp()
    runtime = build_saml(make_runtime, [saml_okta_connector(idp)])
    add_spaces(runtime)
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        pending_id = directory.create_user(
            db, account=account, user_name="Ada@Acme.Example", email=None, status="pending", actor="scim:test"
        ).id
    me = saml_me(
        runtime,
        idp,
        "acme-okta",
        "ada@acme.example",
        okta_attributes(login=["ada@ACME.example"], space_name=["DevOps"], space_role=["Space Admin"]),
    )
    assert me["id"] == pending_id
    assert me["status"] == "active"
    assert spaces(me) == {"DevOps": "Space Admin"}
    assert counts(runtime)["users"] == 1

"""Provisioning through the login service: ``complete_login`` with verified-claims
payloads as the real azure_ad and okta plugins receive them, on a real database (SQLite, or
PostgreSQL with TRANSOM_TEST_DATABASE_URL). The same rules through HTTP with fake IdPs that
sign real tokens are in test_provisioning_http.py."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from transom import directory
from transom.errors import LoginRefused
from transom.login import LoginResult, complete_login
from transom.models import AuditEvent, SpaceMembership, User
from transom.runtime import Runtime
from transom.verified import ProtocolFacts, verified_login

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ACCOUNT = "acme"

#: the protocol facts do not matter to the steps after verification
FACTS = ProtocolFacts(protocol="oidc", issuer=None, subject=None)


def entra(cid: str = "entra", **provisioning: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "type": "azure_ad",
        "account": ACCOUNT,
        "settings": {"tenant_id": TENANT, "client_id": "app-1", "client_secret": "s"},
        "provisioning": provisioning,
    }


def okta(cid: str = "okta", **provisioning: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "type": "okta",
        "account": ACCOUNT,
        "settings": {"domain": "acme.okta.example", "client_id": "app-2", "client_secret": "s"},
        "provisioning": provisioning,
    }


def setup_account(rt: Runtime, spaces: tuple[str, ...] = ("Trial", "DevOps", "Prod")) -> None:
    with rt.db.transaction() as db:
        account = directory.create_account(db, name=ACCOUNT)
        for space in spaces:
            directory.create_space(db, account=account, name=space)


def entra_payload(oid: str = "oid-ada", **claims: Any) -> dict[str, Any]:
    return {
        "tid": TENANT,
        "oid": oid,
        "sub": f"pairwise-{oid}",
        "preferred_username": "ada@acme.example",
        "name": "Ada Lovelace",
        **claims,
    }


def okta_payload(sub: str = "00u-ada", **claims: Any) -> dict[str, Any]:
    return {
        "sub": sub,
        "preferred_username": "ada@acme.example",
        "email": "ada@acme.example",
        "email_verified": True,
        "name": "Ada Lovelace",
        **claims,
    }


def login(rt: Runtime, cid: str, payload: dict[str, Any]) -> LoginResult:
    return complete_login(rt, verified_login(rt, rt.connector(cid), payload, facts=FACTS))


def user_view(rt: Runtime, user_id: str) -> dict[str, Any]:
    with rt.db.transaction() as db:
        user = db.scalars(select(User).where(User.id == user_id)).one()
        return directory.user_json(db, user=user)


def spaces_of(rt: Runtime, user_id: str) -> dict[str, str]:
    return {s["space"]: s["role"] for s in user_view(rt, user_id)["spaces"]}


def events(rt: Runtime, action: str) -> list[AuditEvent]:
    with rt.db.transaction() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def user_count(rt: Runtime) -> int:
    with rt.db.transaction() as db:
        return int(db.scalar(select(func.count()).select_from(User)) or 0)


@pytest.fixture
def rt(make_runtime: Any) -> Runtime:
    runtime: Runtime = make_runtime([entra(), okta()])
    setup_account(runtime)
    return runtime


# -- spaces and roles for a new user -------------------------------------------------------


def test_new_entra_user_gets_spaces_roles_and_timezone(rt: Runtime) -> None:
    result = login(
        rt,
        "entra",
        entra_payload(
            space_name="Trial, devops ,Sandbox,Prod",
            space_role=["Space Admin", "Boss", "Space Developer"],
            timezone="europe/london",
        ),
    )
    assert result.created
    view = user_view(rt, result.user_id)
    # DevOps: unknown role -> member; Sandbox unknown: dropped with its role; Prod: no role left
    assert spaces_of(rt, result.user_id) == {"Trial": "Space Admin", "DevOps": "Space Member", "Prod": "Space Member"}
    assert view["timezone"] == "Europe/London"
    assert view["display_name"] == "Ada Lovelace"
    assert any("'Sandbox'" in w for w in result.trace.warnings)
    assert any("'Boss'" in w for w in result.trace.warnings)
    [spaces_event] = events(rt, "user.spaces_updated")
    assert spaces_event.actor == "connector:entra"
    assert spaces_event.connector_id == "entra"
    assert spaces_event.user_id == result.user_id
    assert spaces_event.details is not None
    assert {(a["space"], a["role"]) for a in spaces_event.details["added"]} == {
        ("Trial", "Space Admin"),
        ("DevOps", "Space Member"),
        ("Prod", "Space Member"),
    }


def test_invalid_timezone_is_a_trace_warning_and_the_login_succeeds(rt: Runtime) -> None:
    first = login(rt, "okta", okta_payload(timezone="Europe/London"))
    second = login(rt, "okta", okta_payload(timezone="Mars/Olympus_Mons"))
    assert second.user_id == first.user_id
    assert any("Mars/Olympus_Mons" in w and "IANA" in w for w in second.trace.warnings)
    assert user_view(rt, first.user_id)["timezone"] == "Europe/London"
    # the warning is kept with the login's audit event
    last_login = events(rt, "login.sso")[-1]
    assert last_login.details is not None
    assert any("Mars/Olympus_Mons" in w for w in last_login.details["warnings"])


def test_private_saas_default_space_for_every_new_user(make_runtime: Any) -> None:
    rt = make_runtime([entra(default_space="Trial", default_space_role="Space Developer")])
    setup_account(rt)
    for n in range(3):
        result = login(rt, "entra", entra_payload(oid=f"oid-{n}", preferred_username=f"u{n}@acme.example"))
        assert spaces_of(rt, result.user_id) == {"Trial": "Space Developer"}
    # the IdP's own valid space wins over the default
    named = login(rt, "entra", entra_payload(oid="oid-x", preferred_username="x@acme.example", space_name="Prod"))
    assert spaces_of(rt, named.user_id) == {"Prod": "Space Member"}


def test_account_role_attribute(make_runtime: Any) -> None:
    rt = make_runtime([okta(account_role_attribute="account_role")])
    setup_account(rt)
    result = login(rt, "okta", okta_payload(account_role="account admin"))
    assert user_view(rt, result.user_id)["account_role"] == "Account Admin"
    again = login(rt, "okta", okta_payload(account_role="Overlord"))
    assert user_view(rt, result.user_id)["account_role"] == "Account Admin"  # unknown: kept
    assert any("Overlord" in w for w in again.trace.warnings)
    login(rt, "okta", okta_payload(account_role="Account Member"))
    assert user_view(rt, result.user_id)["account_role"] == "Account Member"
    changes = [(e.details or {}).get("to") for e in events(rt, "user.account_role_changed")]
    assert changes == ["Account Admin", "Account Member"]


def test_account_role_ignored_unless_configured(rt: Runtime) -> None:
    result = login(rt, "okta", okta_payload(account_role="Account Admin"))
    assert user_view(rt, result.user_id)["account_role"] == "Account Member"


# -- refresh policy ----------------------------------------------------------------------


def grant_manual(rt: Runtime, user_id: str, space: str, role: str) -> None:
    with rt.db.transaction() as db:
        account = directory.get_account(db, name=ACCOUNT)
        space_row = next(s for s in directory.list_spaces(db, account=account) if s.name == space)
        role_row = directory.get_role(db, account=account, scope="space", name=role)
        db.add(
            SpaceMembership(
                account_id=account.id, user_id=user_id, space_id=space_row.id, role_id=role_row.id, source="manual"
            )
        )


def test_update_on_every_login_replaces_idp_memberships_and_keeps_manual(rt: Runtime) -> None:
    first = login(rt, "okta", okta_payload(space_name="Trial,DevOps", space_role="Space Admin,Space Developer"))
    grant_manual(rt, first.user_id, "Prod", "Space Admin")
    second = login(
        rt, "okta", okta_payload(space_name="DevOps,Prod", space_role="Space Member,Space Member", name="Ada King")
    )
    assert second.user_id == first.user_id
    # Trial no longer named: left; DevOps re-roled; Prod is manual and stays Space Admin
    assert spaces_of(rt, first.user_id) == {"DevOps": "Space Member", "Prod": "Space Admin"}
    assert user_view(rt, first.user_id)["display_name"] == "Ada King"
    assert any("manually granted" in n for n in second.trace.notes)
    latest = events(rt, "user.spaces_updated")[-1]
    assert latest.details is not None
    assert latest.details["removed"] == [{"space": "Trial", "role": "Space Admin"}]
    assert latest.details["changed"] == [{"space": "DevOps", "from": "Space Developer", "to": "Space Member"}]
    assert latest.details["added"] == []
    profile = events(rt, "user.profile_updated")[-1]
    assert profile.details is not None
    assert profile.details["changes"]["display_name"] == {"from": "Ada Lovelace", "to": "Ada King"}


def test_an_unchanged_login_writes_no_change_events(rt: Runtime) -> None:
    payload = okta_payload(space_name="Trial", space_role="Space Admin", timezone="UTC")
    login(rt, "okta", payload)
    before = len(events(rt, "user.spaces_updated")) + len(events(rt, "user.profile_updated"))
    login(rt, "okta", payload)
    after = len(events(rt, "user.spaces_updated")) + len(events(rt, "user.profile_updated"))
    assert before == after == 2


def test_first_login_only_when_update_profile_on_login_is_false(make_runtime: Any) -> None:
    rt = make_runtime([okta(update_profile_on_login=False)])
    setup_account(rt)
    first = login(rt, "okta", okta_payload(space_name="Trial", space_role="Space Admin", timezone="UTC"))
    assert spaces_of(rt, first.user_id) == {"Trial": "Space Admin"}
    second = login(
        rt,
        "okta",
        okta_payload(space_name="Prod", space_role="Space Member", timezone="Asia/Tokyo", name="Someone Else"),
    )
    view = user_view(rt, first.user_id)
    assert spaces_of(rt, first.user_id) == {"Trial": "Space Admin"}
    assert view["timezone"] == "UTC"
    assert view["display_name"] == "Ada Lovelace"
    assert any("update_profile_on_login = false" in n for n in second.trace.notes)


def test_no_space_sent_removes_idp_spaces_but_not_manual(rt: Runtime) -> None:
    first = login(rt, "okta", okta_payload(space_name="Trial", space_role="Space Admin"))
    grant_manual(rt, first.user_id, "Prod", "Space Developer")
    login(rt, "okta", okta_payload(space_name=",,", space_role=""))
    assert spaces_of(rt, first.user_id) == {"Prod": "Space Developer"}


# -- pending users (SCIM) ------------------------------------------------------------------


def create_pending(rt: Runtime, user_name: str, email: str | None = None) -> str:
    with rt.db.transaction() as db:
        account = directory.get_account(db, name=ACCOUNT)
        user = directory.create_user(
            db, account=account, user_name=user_name, email=email, status="pending", actor="scim:test"
        )
        return user.id


@pytest.mark.parametrize("cid", ["entra", "okta"])
def test_pending_user_linked_by_user_name_case_insensitively(rt: Runtime, cid: str) -> None:
    pending = create_pending(rt, "Ada@ACME.example")
    payload = (entra_payload if cid == "entra" else okta_payload)(
        preferred_username="ada@acme.EXAMPLE", space_name="Trial"
    )
    result = login(rt, cid, payload)
    assert result.user_id == pending
    assert not result.created
    assert user_count(rt) == 1
    view = user_view(rt, pending)
    assert view["status"] == "active"
    assert view["user_name"] == "Ada@ACME.example"
    assert spaces_of(rt, pending) == {"Trial": "Space Member"}
    assert [e.actor for e in events(rt, "user.activated")] == [f"connector:{cid}"]
    # the next login is a plain login of the same user
    assert login(rt, cid, payload).user_id == pending
    assert user_count(rt) == 1


def test_pending_user_linked_by_verified_email(rt: Runtime) -> None:
    pending = create_pending(rt, "ada.lovelace", email="Ada@Acme.Example")
    result = login(rt, "okta", okta_payload(preferred_username="ada-okta-login"))
    assert result.user_id == pending
    assert user_count(rt) == 1


def test_unverified_email_never_links(rt: Runtime) -> None:
    pending = create_pending(rt, "ada.lovelace", email="ada@acme.example")
    # Entra's email claim is unverified: the UPN does not match, so this is someone else
    result = login(rt, "entra", entra_payload(preferred_username="mallory@acme.example", email="ada@acme.example"))
    assert result.user_id != pending
    assert result.created
    assert user_view(rt, pending)["status"] == "pending"


def test_two_email_candidates_refuse_clearly(rt: Runtime) -> None:
    create_pending(rt, "ada1", email="ada@acme.example")
    create_pending(rt, "ada2", email="ADA@acme.example")
    with pytest.raises(LoginRefused) as info:
        login(rt, "okta", okta_payload(preferred_username="ada-okta"))
    assert "more than one user" in info.value.message
    assert info.value.hint
    assert user_count(rt) == 2


def test_user_name_already_bound_to_another_subject_is_refused(rt: Runtime) -> None:
    login(rt, "okta", okta_payload(sub="00u-first"))
    with pytest.raises(LoginRefused) as info:
        login(rt, "okta", okta_payload(sub="00u-second"))
    assert "different identity" in info.value.message
    assert user_count(rt) == 1


# -- concurrency ---------------------------------------------------------------------------


def test_simultaneous_first_logins_create_one_user(rt: Runtime) -> None:
    """Real threads, each its own transaction, released together: one user, one identity,
    every login succeeds (PostgreSQL: the loser retries; SQLite: BEGIN IMMEDIATE serialises)."""
    workers = 8
    barrier = threading.Barrier(workers)
    results: list[LoginResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            result = login(rt, "okta", okta_payload(space_name="Trial,DevOps", space_role="Space Admin"))
        except BaseException as exc:  # collected and asserted below
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(result)

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len({r.user_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert user_count(rt) == 1
    assert spaces_of(rt, results[0].user_id) == {"Trial": "Space Admin", "DevOps": "Space Admin"}
    assert len(events(rt, "user.created")) == 1


def test_deprovisioned_user_is_refused_and_not_linked(rt: Runtime) -> None:
    pending = create_pending(rt, "ada@acme.example")
    with rt.db.transaction() as db:
        user = db.scalars(select(User).where(User.id == pending)).one()
        user.status = "deprovisioned"
    with pytest.raises(LoginRefused) as info:
        login(rt, "okta", okta_payload(space_name="Trial"))
    assert "removed" in info.value.message
    with rt.db.transaction() as db:
        assert db.scalar(select(func.count()).select_from(SpaceMembership)) == 0
        assert db.scalars(select(User.status)).one() == "deprovisioned"
    assert events(rt, "user.linked") == []


def test_retried_login_reports_its_warnings_once(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate the PostgreSQL race deterministically: the first transaction loses on the
    unique key; the retry must not repeat the first attempt's trace."""
    from sqlalchemy.exc import IntegrityError

    import transom.login as login_module

    real = login_module._login_transaction
    calls: list[int] = []

    def flaky(db: Any, **kwargs: Any) -> LoginResult:
        result = real(db, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("INSERT", {}, Exception("duplicate key (simulated race)"))
        return result

    monkeypatch.setattr(login_module, "_login_transaction", flaky)
    result = login(rt, "okta", okta_payload(space_name="Sandbox,Trial"))
    assert len(calls) == 2
    assert sum("Sandbox" in w for w in result.trace.warnings) == 1
    assert user_count(rt) == 1

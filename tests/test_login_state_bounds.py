"""Pending login states are bounded (issue 13): per browser (binding cookie), oldest dropped,
and per account, oldest dropped; the login that survives still completes, a dropped one is
refused like an expired one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import client_for
from oidc_support import build, okta_claims, okta_connector, okta_org_fake
from sqlalchemy import func, insert, select

from transom import loginstate
from transom.models import Account, LoginState
from transom.sessions import COOKIE_NAME
from transom.testing.oidc import finish_login, start_login


def pending(runtime: Any) -> int:
    with runtime.db.transaction() as db:
        return db.scalar(select(func.count()).select_from(LoginState)) or 0


def test_one_browser_keeps_only_its_newest_logins_in_flight(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector(), server={"login_states_per_browser": 3})
    with client_for(runtime) as client:
        locations = [start_login(client, "acme-okta") for _ in range(5)]
        assert pending(runtime) == 3
        oldest = finish_login(client, fake.authorize(locations[0], okta_claims()))
        assert oldest.status_code == 400
        assert COOKIE_NAME not in oldest.cookies
        newest = finish_login(client, fake.authorize(locations[-1], okta_claims()))
        assert newest.status_code == 303
        assert newest.cookies.get(COOKIE_NAME)


def test_other_browsers_are_not_touched_by_one_browsers_cap(make_runtime: Any) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector(), server={"login_states_per_browser": 2})
    with client_for(runtime) as other:
        waiting = start_login(other, "acme-okta")
        with client_for(runtime) as flooding:
            for _ in range(6):
                start_login(flooding, "acme-okta")
        assert pending(runtime) == 3
        assert finish_login(other, fake.authorize(waiting, okta_claims())).status_code == 303


def test_an_account_over_its_cap_drops_the_oldest_states(make_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector(), server={"max_pending_login_states": 100})
    now = datetime.now(UTC)
    with runtime.db.transaction() as db:
        account_id = db.scalar(select(Account.id).where(Account.name == "acme"))
        # a flood from browsers that each dropped their cookie: 150 states, one per binding
        db.execute(insert(LoginState), [
            {"key": f"flood-{i}", "account_id": account_id, "connector_id": "acme-okta", "protocol": "oidc",
             "browser_binding": uuid.uuid4().hex, "created_at": now, "expires_at": now + timedelta(seconds=i)}
            for i in range(150)])
    monkeypatch.setattr(loginstate, "_cap_checked", {})  # this process's first start: the check is due
    with client_for(runtime) as client:
        location = start_login(client, "acme-okta")
        assert pending(runtime) == 100
        with runtime.db.transaction() as db:
            kept = set(db.scalars(select(LoginState.key)))
        assert "flood-0" not in kept and "flood-50" not in kept and "flood-149" in kept
        # the login just started is the newest: it survives and completes
        assert finish_login(client, fake.authorize(location, okta_claims())).status_code == 303


def test_the_cap_is_checked_on_the_first_start_and_every_thousandth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loginstate, "_cap_checked", {})
    checks = [loginstate._cap_check_due("acct-1") for _ in range(2 * loginstate.CAP_CHECK_EVERY_STARTS + 1)]
    assert [i for i, due in enumerate(checks) if due] == [0, 1000, 2000]
    assert loginstate._cap_check_due("acct-2")


def test_an_accounts_first_start_sweeps_its_expired_states_then_once_a_second(
        make_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = okta_org_fake()
    runtime = build(make_runtime, fake, okta_connector())
    past = datetime.now(UTC) - timedelta(minutes=1)
    with runtime.db.transaction() as db:
        account_id = db.scalar(select(Account.id).where(Account.name == "acme"))
        db.execute(insert(LoginState), [
            {"key": f"expired-{i}", "account_id": account_id, "connector_id": "acme-okta", "protocol": "oidc",
             "created_at": past, "expires_at": past} for i in range(5)])
    with client_for(runtime) as client:
        start_login(client, "acme-okta")  # the account's first start in this process: swept
        assert pending(runtime) == 1
        with runtime.db.transaction() as db:
            db.execute(insert(LoginState), [{"key": "expired-late", "account_id": account_id,
                                             "connector_id": "acme-okta", "protocol": "oidc",
                                             "created_at": past, "expires_at": past}])
        start_login(client, "acme-okta")  # within the second: not swept again
        assert pending(runtime) == 3
        monkeypatch.setattr(loginstate, "_last_sweep", {})  # a second later
        start_login(client, "acme-okta")
        assert pending(runtime) == 3  # the expired row went, the new start came
    assert loginstate._sweep_due("acct-x") and not loginstate._sweep_due("acct-x")

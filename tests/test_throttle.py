"""Throttling (issue 12 case 9, docs/security.md): password logins per account and email and
per client address, and a per-token rate limit on SCIM and the admin API; 429 with
Retry-After, the reason code saying which limit refused, shared by every worker because the
counters live in the database (two app instances with their own engines stand for two
workers here, on SQLite and on PostgreSQL alike)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import BASE_URL, client_for
from scim_support import SCIM, auth, make_tenants
from sqlalchemy import event, func, select
from starlette.testclient import TestClient

from transom import directory, throttle
from transom.models import ThrottleCounter
from transom.runtime import Runtime
from transom.web.app import create_app

PASSWORD = "correct horse battery"
HOUR = 3600


def _seed(runtime: Runtime, *emails: str) -> None:
    with runtime.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        for email in emails:
            directory.create_user(db, account=account, user_name=email, email=email, password=PASSWORD)


def _client(runtime: Runtime, address: str = "203.0.113.7") -> TestClient:
    return TestClient(create_app(runtime), base_url=BASE_URL, raise_server_exceptions=False,
                      follow_redirects=False, client=(address, 50000))


def _login(client: TestClient, email: str, password: str) -> Any:
    return client.post("/api/accounts/login", data={"email": email, "password": password, "account": "acme"})


def test_password_attempts_per_account_and_email(make_runtime: Any, caplog: pytest.LogCaptureFixture) -> None:
    tenants = make_tenants(make_runtime, server={"password_attempts_per_user": 3,
                                                 "password_throttle_window_seconds": HOUR})
    _seed(tenants.runtime, "ada@acme.example", "bob@acme.example")
    caplog.set_level(logging.INFO, logger="transom.refusal")
    with _client(tenants.runtime) as client:
        assert [_login(client, "ada@acme.example", "wrong").status_code for _ in range(3)] == [400, 400, 400]
        # the fourth attempt is refused before the password is looked at, even the right one
        throttled = _login(client, "ADA@acme.example ", PASSWORD)
        assert throttled.status_code == 429
        assert throttled.json()["reason"] == "throttled_user"
        assert 0 < int(throttled.headers["retry-after"]) <= HOUR
        assert "session" not in throttled.headers.get("set-cookie", "")
        # another user of the same account, from the same address, is not affected
        assert _login(client, "bob@acme.example", PASSWORD).status_code == 303
    # the throttled attempt's one refusal line, a WARNING with account, address and count
    lines = [r for r in caplog.records if r.name == "transom.refusal" and "status=429" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "code=throttled_user detail=account=acme address=203.0.113.7 attempts=4" in lines[0].getMessage()
    assert "ada" not in lines[0].getMessage() and PASSWORD not in lines[0].getMessage()


def test_password_attempts_per_client_address_across_accounts(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime, server={"password_attempts_per_address": 4,
                                                 "password_throttle_window_seconds": HOUR})
    _seed(tenants.runtime, "ada@acme.example")
    with _client(tenants.runtime, "198.51.100.1") as spray, _client(tenants.runtime, "198.51.100.2") as other:
        assert [_login(spray, f"u{i}@acme.example", "x").status_code for i in range(4)] == [400] * 4
        refused = spray.post("/api/accounts/login", headers={"accept": "text/html"},
                             data={"email": "ada@acme.example", "password": PASSWORD, "account": "globex"})
        assert refused.status_code == 429
        assert "throttled_address" in refused.text  # the error page names the rule
        assert refused.headers["retry-after"]
        assert _login(other, "ada@acme.example", PASSWORD).status_code == 303


def test_password_throttle_is_shared_by_workers(make_runtime: Any) -> None:
    """Two app instances with their own engine and pool, like two ``--workers``."""
    tenants = make_tenants(make_runtime, server={"password_attempts_per_user": 4,
                                                 "password_throttle_window_seconds": HOUR})
    second = make_runtime(server={"password_attempts_per_user": 4, "password_throttle_window_seconds": HOUR})
    _seed(tenants.runtime, "ada@acme.example")
    with _client(tenants.runtime) as one, _client(second) as two:
        codes = [_login(client, "ada@acme.example", "wrong").status_code for client in (one, two, one, two)]
        assert codes == [400] * 4
        assert _login(two, "ada@acme.example", PASSWORD).status_code == 429
        assert _login(one, "ada@acme.example", PASSWORD).status_code == 429
    with tenants.runtime.db.transaction() as db:  # keys are digests: no email or address stored
        keys = db.scalars(select(ThrottleCounter.key)).all()
    assert keys and all(len(k) == 64 and "@" not in k for k in keys)


def test_scim_and_admin_api_rate_limit_per_token(make_runtime: Any, caplog: pytest.LogCaptureFixture) -> None:
    tenants = make_tenants(make_runtime, server={"api_rate_limit": 5, "api_rate_window_seconds": HOUR})
    second = make_runtime(server={"api_rate_limit": 5, "api_rate_window_seconds": HOUR})  # another worker
    with tenants.runtime.db.transaction() as db:
        admin = directory.create_token(db, account=directory.get_account(db, name="acme"), permissions=["admin"],
                                       name="admin")
    caplog.set_level(logging.INFO, logger="transom.refusal")
    with client_for(tenants.runtime) as one, client_for(second) as two:
        codes = [c.get(f"{SCIM}/Users", headers=auth(tenants.token)).status_code for c in (one, two, one, two, one)]
        assert codes == [200] * 5
        for client in (one, two):
            refused = client.get(f"{SCIM}/Users", headers=auth(tenants.token))
            assert refused.status_code == 429
            body = refused.json()
            assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
            assert (body["status"], body["reason"]) == ("429", "throttled_token")
            assert "scimType" not in body  # tooMany means too many results, not this
            assert 0 < int(refused.headers["retry-after"]) <= HOUR
        # a bad request counts too: a runaway client sending garbage is bounded as well
        assert one.post(f"{SCIM}/Users", content=b"{", headers=auth(tenants.token)).status_code == 429
        # the other account's token has its own budget
        assert one.get(f"{SCIM}/Users", headers=auth(tenants.other_token)).status_code == 200
        admin_headers = {"Authorization": f"Bearer {admin}"}
        assert [one.get("/api/admin/groups", headers=admin_headers).status_code for _ in range(5)] == [200] * 5
        refused = two.get("/api/admin/groups", headers=admin_headers)
        assert (refused.status_code, refused.json()["reason"]) == (429, "throttled_token")
        assert refused.headers["retry-after"]
    # one refusal line per refused request; the first of each token's window says so
    lines = [r.getMessage() for r in caplog.records if r.name == "transom.refusal" and "status=429" in r.getMessage()]
    assert len(lines) == 4 and all("code=throttled_token" in line for line in lines)
    assert ["limit_reached=5/3600s" in line for line in lines] == [True, False, False, True]
    assert all(tenants.token not in line and admin not in line for line in lines)


def test_zero_disables_a_limit(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime, server={"api_rate_limit": 0, "password_attempts_per_user": 0,
                                                 "password_attempts_per_address": 0})
    _seed(tenants.runtime, "ada@acme.example")
    with _client(tenants.runtime) as client:
        assert all(client.get(f"{SCIM}/Users", headers=auth(tenants.token)).status_code == 200 for _ in range(12))
        assert all(_login(client, "ada@acme.example", "x").status_code == 400 for _ in range(12))
    with tenants.runtime.db.transaction() as db:
        assert db.scalar(select(func.count()).select_from(ThrottleCounter)) == 0


def test_api_hits_are_counted_in_leases_and_the_limit_stays_exact(make_runtime: Any) -> None:
    """A generous limit is counted a block of hits at a time (one statement per lease, not per
    request), never less than what was served, and the refusal comes exactly at the limit
    in one worker: the leases shrink to single hits near it."""
    limit = 120
    tenants = make_tenants(make_runtime, server={"api_rate_limit": limit, "api_rate_window_seconds": HOUR})
    statements: list[str] = []

    def count_upserts(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "throttle_counters" in statement and statement.lstrip().upper().startswith("INSERT"):
            statements.append(statement)

    event.listen(tenants.runtime.db.engine, "before_cursor_execute", count_upserts)
    try:
        with client_for(tenants.runtime) as client:
            served = 0
            for _ in range(60):
                assert client.get(f"{SCIM}/Users", headers=auth(tenants.token)).status_code == 200
                served += 1
            with tenants.runtime.db.transaction() as db:
                counted = db.scalar(select(ThrottleCounter.hits))
            assert counted is not None and served <= counted <= served + throttle.LEASE_MAX
            assert 0 < len(statements) < served // 4  # leases, not a statement per request
            codes = [client.get(f"{SCIM}/Users", headers=auth(tenants.token)).status_code for _ in range(limit)]
    finally:
        event.remove(tenants.runtime.db.engine, "before_cursor_execute", count_upserts)
    assert codes[: limit - served] == [200] * (limit - served)
    assert set(codes[limit - served:]) == {429}


def test_lease_size_shrinks_to_single_hits_near_the_limit() -> None:
    limit = throttle.Limit(500, 10)
    assert throttle.lease_size(limit, 0) == throttle.LEASE_MAX
    assert throttle.lease_size(limit, 480) == 2
    assert throttle.lease_size(limit, 495) == 1
    assert throttle.lease_size(limit, 600) == 1
    assert throttle.lease_size(throttle.Limit(5, 10), 0) == 1


def test_concurrent_leases_of_one_worker_are_merged_not_lost(make_runtime: Any) -> None:
    """Requests on the pool threads of one worker may each take a lease at once; what is
    left of each is kept, so every hit counted in the table is eventually served."""
    tenants = make_tenants(make_runtime, server={"api_rate_limit": 400, "api_rate_window_seconds": HOUR})
    with client_for(tenants.runtime) as client, ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: client.get(f"{SCIM}/Users", headers=auth(tenants.token)).status_code,
                              range(400)))
        assert codes == [200] * 400
        assert client.get(f"{SCIM}/Users", headers=auth(tenants.token)).status_code == 429


def test_threads_that_miss_the_lease_at_once_are_not_refused_below_the_limit(
        make_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten pool threads that find no lease at the same moment each count a whole block in the
    table (ten blocks of 12 against a limit of 100): the ones whose block came after the limit
    was spent are served from what the others were granted, not refused, and the window still
    serves exactly the limit."""
    runtime: Runtime = make_runtime()
    limit = throttle.Limit(100, HOUR)
    threads = 10
    together = threading.Barrier(threads)
    real_hit = throttle.hit

    def hit_together(*args: Any, **kwargs: Any) -> throttle.Count:
        together.wait(timeout=30)
        return real_hit(*args, **kwargs)

    monkeypatch.setattr(throttle, "hit", hit_together)
    with ThreadPoolExecutor(threads) as pool:
        first = list(pool.map(lambda _: throttle._api_hit(runtime.db, "key", limit)[0], range(threads)))
    monkeypatch.setattr(throttle, "hit", real_hit)
    assert first == [True] * threads
    rest = [throttle._api_hit(runtime.db, "key", limit)[0] for _ in range(limit.hits)]
    assert rest.count(True) == limit.hits - threads and rest[-1] is False

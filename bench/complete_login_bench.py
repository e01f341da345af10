"""In-process micro-benchmark of the login transaction (``transom.login.complete_login``).

No HTTP, no token checks: one account, an Okta OIDC connector with group sync and space
provisioning, and a returning user (10 mapped groups, one space) whose profile, spaces and
groups do not change between logins: the steady state of a busy host. Each call runs the
whole login transaction (account, user, provisioning, group sync, audit, session row, login
activity) including COMMIT.

Prints CPU milliseconds per call (``time.process_time``, so other processes on a shared
machine inflate it less than wall-clock time) median and p95, wall-clock median, and the SQL
statements per login counted with the engine's ``before_cursor_execute`` event in 200 more
logins after the timed ones (a listener would slow the statements it counts).

    python bench/complete_login_bench.py                  # SQLite file, pinned to one core
    python bench/complete_login_bench.py --logins 300 --warmup 100
    python bench/complete_login_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import Counter
from typing import Any

from sqlalchemy import event, text
from timing import p95

from transom import directory
from transom.login import complete_login
from transom.migrate import upgrade
from transom.runtime import Runtime
from transom.testing.host import build_runtime
from transom.verified import ProtocolFacts, VerifiedLogin, verified_login

GROUPS = 10
FACTS = ProtocolFacts(protocol="oidc", issuer="https://acme.okta.example", subject="00u-ada")
CONNECTOR = {
    "id": "okta", "type": "okta", "account": "acme",
    "settings": {"domain": "acme.okta.example", "client_id": "app-2", "client_secret": "s"},
    "provisioning": {"space_attribute": "spaceName", "role_attribute": "spaceRole", "timezone_attribute": "zoneinfo"},
}


class StatementCounter:
    def __init__(self, runtime: Runtime) -> None:
        self.verbs: Counter[str] = Counter()
        self.active = False
        event.listen(runtime.db.engine, "before_cursor_execute", self._count)

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.active:
            self.verbs[statement.split(None, 1)[0].upper()] += 1


def seed(runtime: Runtime) -> VerifiedLogin:
    """The account, its 10 mapped groups (and a few unmapped ones) and spaces; returns the
    login of the user, who exists after the first call."""
    with runtime.db.transaction() as db:
        account = directory.create_account(db, name="acme")
        for i in range(20):
            directory.create_space(db, account=account, name=f"Space {i:02d}")
        for i in range(GROUPS + 5):
            directory.create_group(db, account=account, name=f"Group {i:02d}", idp_identifier=f"00g-{i:04d}")
        for i in range(5):
            directory.create_group(db, account=account, name=f"Local {i}")
    payload = {
        "sub": "00u-ada", "preferred_username": "ada@acme.example", "email": "ada@acme.example",
        "email_verified": True, "name": "Ada Lovelace", "given_name": "Ada", "family_name": "Lovelace",
        "zoneinfo": "Europe/London", "spaceName": "Space 03", "spaceRole": "Space Admin",
        "groups": [f"00g-{i:04d}" for i in range(GROUPS)] + ["00g-unmapped"],
    }
    return verified_login(runtime, runtime.connector("okta"), payload, facts=FACTS, next_path="/")


def fresh_runtime(database_url: str | None) -> tuple[Runtime, VerifiedLogin]:
    """This process pinned to one core, a runtime on a fresh database (a new SQLite file, or
    PostgreSQL's public schema dropped and re-created) and the seeded account's login."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    url = database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    runtime = build_runtime(url, [CONNECTOR])
    if url.startswith("postgresql"):
        with runtime.db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(runtime.db.engine)
    return runtime, seed(runtime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--logins", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()
    runtime, verified = fresh_runtime(args.database_url)
    first = complete_login(runtime, verified)
    assert first.created, "the first login creates the user"
    for _ in range(args.warmup):
        complete_login(runtime, verified)
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(args.logins):
        started, cpu_started = time.perf_counter(), time.process_time()
        result = complete_login(runtime, verified)
        cpu.append((time.process_time() - cpu_started) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
        assert not result.created
    # counted in a pass of its own: a statement listener slows every statement it sees (and
    # turns on SQLAlchemy's event path for the whole engine)
    counter = StatementCounter(runtime)
    per_login: Counter[int] = Counter()
    for _ in range(200):
        counter.verbs = Counter()
        counter.active = True
        complete_login(runtime, verified)
        counter.active = False
        per_login[sum(counter.verbs.values())] += 1
    shape = " ".join(f"{k}={n}" for k, n in sorted(counter.verbs.items()))
    counts = ", ".join(f"{n} ({c}x)" for n, c in sorted(per_login.items()))
    print(f"{runtime.db.url.split(':', 1)[0]}: returning user, {GROUPS} mapped groups, {args.logins} logins "
          f"after {args.warmup} warm-up")
    print(f"cpu median {statistics.median(cpu):.3f} ms  p95 {p95(cpu):.3f} ms | wall median "
          f"{statistics.median(wall):.3f} ms | statements/login {counts} [{shape}]")
    runtime.close()


if __name__ == "__main__":
    main()

"""Benchmark of the provisioning step of a login (``transom.provisioning.apply_login_provisioning``)
and of the pure rules (``plan_space_roles``).

The account holds ``--spaces`` spaces (default 2,000) so the name lookup has something to
skip. For IdP attributes naming 1, 10 and 50 spaces it measures, each in its own transaction
including COMMIT, as a login runs it:

* first login: the user has no membership yet (+N rows, audit events);
* no change:   the same attributes again (nothing may be written);
* churn:       attributes alternating between two lists differing in about 20 % of the spaces
  and in one role.

Prints median and p95 per scenario and the SQL statements per call (``before_cursor_execute``),
then the pure function's median for 50 spaces.

    python bench/provisioning_bench.py
    python bench/provisioning_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from sqlalchemy import event, select, text
from timing import p95

from transom import directory
from transom.connector import Claims, Connector, ProvisioningSettings
from transom.db import Database
from transom.migrate import upgrade
from transom.models import Account, Base, User
from transom.provisioning import apply_login_provisioning, plan_space_roles
from transom.trace import LoginTrace

ROLES = ["Space Admin", "Space Developer", "Space Member"]


class StatementCounter:
    def __init__(self, database: Database) -> None:
        self.verbs: Counter[str] = Counter()
        self.active = False
        event.listen(database.engine, "before_cursor_execute", self._count)

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.active:
            self.verbs[statement.split(None, 1)[0].upper()] += 1


class _NoSettings(BaseModel):
    pass


CONNECTOR = Connector(
    id="bench",
    type="okta",
    account="bench",
    name="bench",
    email_domains=(),
    settings=_NoSettings(),
    provisioning=ProvisioningSettings(),
    protocol="oidc",
)


def seed(database: Database, spaces: int) -> tuple[str, list[str]]:
    with database.transaction() as db:
        account = directory.create_account(db, name=f"bench-{uuid.uuid4().hex[:6]}")
        names = [f"Space {i:05d}" for i in range(spaces)]
        for name in names:
            directory.create_space(db, account=account, name=name)
        return account.id, names


def new_user(database: Database, account_id: str) -> str:
    with database.transaction() as db:
        account = db.scalars(select(Account).where(Account.id == account_id)).one()
        user = directory.create_user(db, account=account, user_name=f"u-{uuid.uuid4().hex}", email=None, actor="bench")
        return user.id


def run_once(database: Database, account_id: str, user_id: str, claims: Claims, *, first: bool) -> None:
    with database.transaction() as db:
        user = directory.LoginUser.of(
            db.scalars(select(User).where(User.account_id == account_id, User.id == user_id)).one())
        columns = apply_login_provisioning(
            db, account_id=account_id, user=user, connector=CONNECTOR, claims=claims, first_login=first,
            trace=LoginTrace(),
        )
        if columns:  # the login writes them in its own UPDATE of the user
            directory.update_login_user(db, user, columns)


def claims_for(spaces: list[str], roles: list[str]) -> Claims:
    return Claims(subject="s", space_names=(",".join(spaces),), space_roles=(",".join(roles),), timezone="UTC")


def measure(fn: Callable[[], None], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def report(label: str, times: list[float], counter: StatementCounter | None = None, runs: int = 1) -> None:
    times.sort()
    statements = ""
    if counter is not None:
        per_call = {k: round(v / runs, 1) for k, v in sorted(counter.verbs.items())}
        statements = f"  statements/call {per_call}"
    print(f"{label:<34} median {statistics.median(times):7.2f} ms   p95 {p95(times):7.2f} ms{statements}")


def bench_size(
    database: Database, counter: StatementCounter, account_id: str, names: list[str], size: int, runs: int
) -> None:
    chosen = names[:: max(1, len(names) // size)][:size]
    other = chosen[: size - max(1, size // 5)] + names[-max(1, size // 5) :]
    roles_a = [ROLES[i % 3] for i in range(size)]
    roles_b = [ROLES[(i + 1) % 3] if i == 0 else r for i, r in enumerate(roles_a)]
    a, b = claims_for(chosen, roles_a), claims_for(other, roles_b)

    users = [new_user(database, account_id) for _ in range(runs)]
    pending = iter(users)
    counter.verbs.clear()
    counter.active = True
    first = measure(lambda: run_once(database, account_id, next(pending), a, first=True), runs)
    counter.active = False
    report(f"{size:>3} spaces: first login", first, counter, runs)

    counter.verbs.clear()
    counter.active = True
    same = measure(lambda: run_once(database, account_id, users[0], a, first=False), runs)
    counter.active = False
    report(f"{size:>3} spaces: no change", same, counter, runs)

    flip = iter([b, a] * runs)
    counter.verbs.clear()
    counter.active = True
    churn = measure(lambda: run_once(database, account_id, users[1], next(flip), first=False), runs)
    counter.active = False
    report(f"{size:>3} spaces: churn", churn, counter, runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--spaces", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    database = Database(url)
    if url.startswith("postgresql"):
        with database.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(database.engine)
    counter = StatementCounter(database)
    account_id, names = seed(database, args.spaces)
    print(f"{url.split(':', 1)[0]}: account with {args.spaces} spaces, {args.runs} runs per scenario")
    for size in (1, 10, 50):
        bench_size(database, counter, account_id, names, size, args.runs)

    spaces50 = names[:50]
    settings = ProvisioningSettings()
    pure = measure(
        lambda: plan_space_roles(
            space_values=[",".join(spaces50)],
            role_values=["Space Admin"],
            known_spaces=spaces50,
            known_space_roles=ROLES,
            settings=settings,
        ),
        args.runs * 10,
    )
    report("pure plan_space_roles, 50 spaces", pure)
    database.dispose()
    _ = Base  # the schema comes from the migration, not create_all


if __name__ == "__main__":
    main()

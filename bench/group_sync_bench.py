"""Benchmark of the group-sync step of a login (``transom.groups.sync_user_groups``).

For claims of 20, 200 and 2,000 group ids it measures three scenarios, each in its own
transaction including COMMIT, as a login would run it:

* first login: the user is in no group yet, every claimed group is mapped (+N rows);
* no change:   the same claim again (nothing may be written);
* 10 % churn:  the claim alternates between two lists that differ in 10 % of the ids.

The account also holds 10 % more mapped groups than the claim names, unmapped groups, and
background users with memberships, so the indexes have something to skip. Prints median and
p95 per scenario and the SQL statements per login, counted with SQLAlchemy's
``before_cursor_execute`` event.

    python bench/group_sync_bench.py                       # SQLite file, pinned to one core
    python bench/group_sync_bench.py --sizes 200 --runs 200
    python bench/group_sync_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
    python bench/group_sync_bench.py --sizes 200 --cprofile 25   # where the time goes (times inflated)

The PostgreSQL database is emptied (TRUNCATE of every Transom table): give it a scratch one
(``createdb -h 127.0.0.1 -U postgres bench_sync``), not one that tests are using.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, insert, text
from timing import p95

from transom import directory
from transom.db import Database
from transom.groups import sync_user_groups
from transom.migrate import upgrade
from transom.models import Base, Group, GroupMembership, User
from transom.trace import LoginTrace

BACKGROUND_USERS = 300


def guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class StatementCounter:
    def __init__(self, database: Database) -> None:
        self.verbs: Counter[str] = Counter()
        self.active = False
        event.listen(database.engine, "before_cursor_execute", self._count)

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.active:
            self.verbs[statement.split(None, 1)[0].upper()] += 1


def seed(database: Database, *, size: int, users: int, rng: random.Random) -> tuple[str, list[str], list[str]]:
    """An account with ``size * 1.1`` mapped groups, ``size // 2`` unmapped ones, background
    users with memberships and ``users`` fresh SSO users. Returns (account id, mapped
    identifiers, fresh user ids)."""
    with database.transaction() as db:
        account = directory.create_account(db, name=f"bench-{uuid.uuid4().hex[:8]}")
        mapped = [guid(rng) for _ in range(size + size // 10)]
        group_rows = [
            {
                "id": uuid.uuid4().hex,
                "account_id": account.id,
                "name": f"g{i}",
                "name_key": f"g{i}",
                "idp_identifier": ident,
            }
            for i, ident in enumerate(mapped)
        ] + [
            {
                "id": uuid.uuid4().hex,
                "account_id": account.id,
                "name": f"local{i}",
                "name_key": f"local{i}",
                "idp_identifier": None,
            }
            for i in range(size // 2)
        ]
        db.execute(insert(Group.__table__), group_rows)  # type: ignore[arg-type]
        user_rows = [
            {
                "id": uuid.uuid4().hex,
                "account_id": account.id,
                "user_name": f"u{i}@bench.example",
                "user_name_key": f"u{i}@bench.example",
                "status": "active",
                "version": 1,
            }
            for i in range(BACKGROUND_USERS + users)
        ]
        db.execute(insert(User.__table__), user_rows)  # type: ignore[arg-type]
        member_rows = [
            {"account_id": account.id, "group_id": g["id"], "user_id": u["id"], "source": "idp"}
            for u in user_rows[:BACKGROUND_USERS]
            for g in rng.sample(group_rows, min(len(group_rows), 40))
        ]
        db.execute(insert(GroupMembership.__table__), member_rows)  # type: ignore[arg-type]
    if database.engine.dialect.name == "postgresql":
        # What autovacuum does in production; without statistics the planner guesses badly.
        with database.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return account.id, mapped, [str(u["id"]) for u in user_rows[BACKGROUND_USERS:]]


Sample = tuple[float, float, Counter[str]]


def measure(database: Database, counter: StatementCounter, step: Callable[[Any], None]) -> Sample:
    """Wall-clock and CPU milliseconds of one transaction (incl. COMMIT), and its statements.
    CPU time is reported too because a busy machine inflates wall-clock percentiles."""
    counter.verbs = Counter()
    counter.active = True
    started, cpu = time.perf_counter(), time.process_time()
    with database.transaction() as db:
        step(db)
    elapsed, cpu_elapsed = (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000
    counter.active = False
    return elapsed, cpu_elapsed, counter.verbs


def summarize(name: str, size: int, samples: list[Sample]) -> None:
    wall = [w for w, _, _ in samples]
    cpu = [c for _, c, _ in samples]
    statements = Counter(sum(v.values()) for _, _, v in samples)
    shape = " ".join(f"{k}={n}" for k, n in sorted(samples[-1][2].items()))
    counts = ", ".join(f"{n} ({c}x)" for n, c in sorted(statements.items()))
    print(
        f"{size:>6} {name:<12} wall median {statistics.median(wall):7.2f} p95 {p95(wall):7.2f} ms | "
        f"cpu median {statistics.median(cpu):7.2f} p95 {p95(cpu):7.2f} ms | statements/login {counts} [{shape}]"
    )


class Profiles:
    """``--cprofile N``: one cProfile per scenario around its timed transactions (BEGIN to
    COMMIT, in this process), printed as the N functions with the most own time."""

    def __init__(self, top: int) -> None:
        self.top = top
        self.by_scenario: dict[str, cProfile.Profile] = {}

    def run(self, scenario: str, logins: Callable[[], list[Sample]]) -> list[Sample]:
        if not self.top:
            return logins()
        profile = self.by_scenario.setdefault(scenario, cProfile.Profile())
        profile.enable()
        try:
            return logins()
        finally:
            profile.disable()

    def report(self, size: int) -> None:
        for scenario, profile in self.by_scenario.items():
            print(f"\n--- cProfile, {size} groups, {scenario} (own time; timings above are inflated by it)")
            pstats.Stats(profile).sort_stats("tottime").print_stats(self.top)
        self.by_scenario.clear()


def run_size(
    database: Database,
    counter: StatementCounter,
    *,
    size: int,
    runs: int,
    rng: random.Random,
    profiles: Profiles,
) -> None:
    account_id, mapped, fresh_users = seed(database, size=size, users=runs + 1, rng=rng)
    claim = mapped[:size]
    churn = max(1, size // 10)
    # B drops the first 10 % of A and adds 10 % of the extra mapped groups
    claim_b = claim[churn:] + mapped[size : size + churn]
    noise = [guid(rng) for _ in range(size // 5)]  # ids the IdP sends that are not mapped

    def sync(user_id: str, ids: list[str]) -> Callable[[Any], None]:
        def step(db: Any) -> None:
            sync_user_groups(
                db, account_id=account_id, user_id=user_id, idp_group_ids=ids, connector_id="bench", trace=LoginTrace()
            )

        return step

    first = profiles.run(
        "first login", lambda: [measure(database, counter, sync(fresh_users[i], claim + noise)) for i in range(runs)]
    )
    steady_user = fresh_users[runs]
    measure(database, counter, sync(steady_user, claim + noise))
    unchanged = profiles.run(
        "no change", lambda: [measure(database, counter, sync(steady_user, claim + noise)) for _ in range(runs)]
    )
    churned = profiles.run(
        "10% churn",
        lambda: [
            measure(database, counter, sync(steady_user, (claim_b if i % 2 == 0 else claim) + noise))
            for i in range(runs)
        ],
    )
    summarize("first login", size, first)
    summarize("no change", size, unchanged)
    summarize("10% churn", size, churned)
    profiles.report(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 200, 2000])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--dir", default=None, help="where the SQLite file lives (e.g. /dev/shm to leave the disk out)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to one core")
    parser.add_argument(
        "--cprofile", type=int, default=0, metavar="N", help="print each scenario's N costliest functions (cProfile)"
    )
    args = parser.parse_args()
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        database = Database(url)
        upgrade(database.engine)
        if not url.startswith("sqlite"):
            with database.engine.begin() as conn:
                tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
                conn.execute(text(f"TRUNCATE {tables} CASCADE"))
        counter = StatementCounter(database)
        rng = random.Random(5)
        print(
            f"database {database.engine.dialect.name} {database.engine.dialect.server_version_info}, "
            f"{args.runs} logins per scenario, times include COMMIT"
        )
        for size in args.sizes:
            run_size(database, counter, size=size, runs=args.runs, rng=rng, profiles=Profiles(args.cprofile))
        database.dispose()


if __name__ == "__main__":
    main()

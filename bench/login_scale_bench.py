"""Login cost as the tables anyone can grow fill up (issue 13): pending login states (the start
route needs no login) and the SAML replay cache (one row per accepted assertion until it
expires: ~300k rows at 1,000 logins/s with 5-minute assertions).

The same servers as bench/login_bench.py. For each size the tables are topped up with rows
that have not expired (bulk INSERTs straight into the database, for the bench account and
connectors: the worst case for the per-account / per-connector sweeps), then OIDC logins
(start + callback) and SAML ACS posts are measured. Prints server CPU per login and its
ratio to the empty tables.

The server runs with ``max_pending_login_states`` raised above the largest size, so the table
really holds that many states; with the default cap (100,000) the cap's once-a-second check
trims it back (pass ``--default-cap`` to measure that instead).

    python bench/login_scale_bench.py                         # sizes 0 1000 100000 300000
    python bench/login_scale_bench.py --sizes 0 10000 --logins 200
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from login_bench import phase, start
from login_harness import cpu_split, load_average, median, pin_client
from sqlalchemy import func, insert, select

from transom.db import Database
from transom.models import Account, LoginState, SamlAssertionSeen

CHUNK = 20_000


def top_up(database_url: str, account_name: str, *, states: int, assertions: int) -> tuple[int, int]:
    """Add rows until the tables hold ``states`` / ``assertions`` rows; returns the counts."""
    db = Database(database_url)
    later = datetime.now(UTC) + timedelta(hours=2)
    try:
        with db.transaction() as session:
            account_id = session.scalar(select(Account.id).where(Account.name == account_name))
            have_states = session.scalar(select(func.count()).select_from(LoginState)) or 0
            have_seen = session.scalar(select(func.count()).select_from(SamlAssertionSeen)) or 0
        for start_at in range(have_states, states, CHUNK):
            rows: list[dict[str, Any]] = [
                {"key": secrets.token_urlsafe(32), "account_id": account_id, "connector_id": "bench-oidc",
                 "protocol": "oidc", "nonce": secrets.token_urlsafe(32), "code_verifier": secrets.token_urlsafe(48),
                 "browser_binding": uuid.uuid4().hex * 2, "created_at": later, "expires_at": later}
                for _ in range(min(CHUNK, states - start_at))]
            with db.transaction() as session:
                session.execute(insert(LoginState), rows)
        for start_at in range(have_seen, assertions, CHUNK):
            rows = [{"connector_id": "bench-saml", "assertion_id": f"_{uuid.uuid4().hex}", "account_id": account_id,
                     "expires_at": later} for _ in range(min(CHUNK, assertions - start_at))]
            with db.transaction() as session:
                session.execute(insert(SamlAssertionSeen), rows)
        with db.transaction() as session:
            return (session.scalar(select(func.count()).select_from(LoginState)) or 0,
                    session.scalar(select(func.count()).select_from(SamlAssertionSeen)) or 0)
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 1_000, 100_000, 300_000])
    parser.add_argument("--logins", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2000, help="logins per scenario before the first size")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--default-cap", action="store_true", help="keep max_pending_login_states at its default")
    parser.add_argument("--profile", default=None, help="directory: profile Transom during each measured phase "
                        "(see login_bench.py --profile)")
    parser.add_argument("--profiler", choices=("py-spy", "cprofile"), default="py-spy")
    parser.add_argument("--no-cap-setting", action="store_true",
                        help="for code that predates max_pending_login_states (a BEFORE run)")
    args = parser.parse_args()
    args.workers = 1
    args.server_settings = {} if args.default_cap or args.no_cap_setting else {
        "max_pending_login_states": max(args.sizes) * 2 + 100_000}
    pin_client()
    profile = Path(args.profile) if args.profile else None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    print(f"load average {load_average()}")
    site = start(args)
    baseline: dict[str, float] = {}
    try:
        # warm-up: every user the phases log in exists (a first login costs more and would
        # inflate the first size's figure), caches filled
        # (--warmup: the pool's connections also fill their SQLite page caches meanwhile; after a
        # short warm-up the empty-table figure still paid for cold caches and read high)
        for name in ("oidc", "saml"):
            phase(site, name, max(args.warmup, args.logins), args.clients, -1)
        print(f"{'rows (states, replay)':<24}{'scenario':<8}{'cpu ms':>8}{'vs empty':>10}{'rate/s':>8}{'errors':>7}"
              f"{'kernel':>8}")
        for size in args.sizes:
            states, seen = top_up(site.database_url, site.account, states=size, assertions=size)
            for name in ("oidc", "saml"):
                before = cpu_split(site.servers["transom"].process.pid)
                results = [phase(site, name, args.logins, args.clients, size * 10 + r, profile)
                           for r in range(args.rounds)]
                after = cpu_split(site.servers["transom"].process.pid)
                user, system = after[0] - before[0], after[1] - before[1]
                kernel = system / (user + system) if user + system else 0.0
                cpu = median([r.cpu_ms for r in results])
                baseline.setdefault(name, cpu)
                errors = sum(len(r.errors) for r in results)
                print(f"{f'{states:,} / {seen:,}':<24}{name:<8}{cpu:8.2f}{cpu / baseline[name]:9.2f}x"
                      f"{median([r.rate for r in results]):8.0f}{errors:7d}{kernel:8.0%}", flush=True)
        print(f"load average at the end {load_average()}")
    finally:
        site.stop()
        shutil.rmtree(site.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""In-process micro-benchmark of an OIDC login's three units of work, without HTTP or tokens.

Per login, as the routes run them (a new browser each time, as bench/login_bench.py, or
``--same-browser``): the start (``start_oidc_login``: the login state's write
transaction; discovery is skipped, the provider is resolved once), the callback's read-only
check of the state (``Database.read``) and ``complete_login`` of a returning user with 10
mapped groups, which spends the state as its first statement. The user and account are
seeded as in bench/complete_login_bench.py. Prints CPU ms (``time.process_time``) median and
p95 per unit and for the whole login, then, in a pass of 200 more logins (a listener slows the
statements it sees), the statements per login (``before_cursor_execute``, plus SQLite's own
trace of what it ran, which also sees a ``BEGIN`` issued on the driver connection).

    python bench/db_units_bench.py                        # SQLite file, pinned to one core
    python bench/db_units_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
    PYTHONPATH=../base/core:../base/plugins/okta python bench/db_units_bench.py   # another checkout
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import statistics
import time
from collections import Counter
from typing import Any

from complete_login_bench import StatementCounter, fresh_runtime
from sqlalchemy import event
from timing import p95

import transom.oidc.start as oidc_start
from transom.login import complete_login
from transom.loginstate import login_state_mark
from transom.oidc.verify import CallbackParams, _check_state
from transom.runtime import Runtime
from transom.singleuse import SingleUse

UNITS = ("start", "check", "login")


def _sqlite_trace(runtime: Runtime, sink: Counter[str]) -> None:
    """Count what SQLite itself runs (a BEGIN sent on the driver connection included)."""
    if not runtime.db.url.startswith("sqlite"):
        return

    def traced(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.set_trace_callback(lambda sql: sink.update([sql.split(None, 1)[0].upper()]))

    event.listen(runtime.db.engine, "connect", traced)
    runtime.db.engine.dispose()


def one_login(runtime: Runtime, verified: Any, timings: dict[str, list[float]] | None, *, same_browser: bool) -> None:
    connector = verified.connector
    binding = "b" * 43 if same_browser else secrets.token_urlsafe(32)
    marks: list[float] = [time.process_time()]
    url = oidc_start.start_oidc_login(runtime, connector, next_path="/", binding=binding,
                                      fresh_binding=not same_browser)
    marks.append(time.process_time())
    state_key = url.split("state=", 1)[1].split("&", 1)[0]
    params = CallbackParams(state=state_key, code="c", id_token=None, error=None, error_description=None, iss=None)
    state = _check_state(runtime, params, binding)
    marks.append(time.process_time())
    try:  # as verify_oidc builds it
        single_use = SingleUse(login_state_mark(state), account_id=state.account_id)
    except TypeError:  # a checkout from before SingleUse carried the account
        single_use = SingleUse(login_state_mark(state))
    verified.__dict__["single_use"] = single_use  # frozen dataclass
    result = complete_login(runtime, verified)
    marks.append(time.process_time())
    assert not result.created
    if timings is not None:
        for unit, (a, b) in zip(UNITS, itertools.pairwise(marks), strict=True):
            timings[unit].append((b - a) * 1000)
        timings["total"].append((marks[-1] - marks[0]) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--logins", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--same-browser", action="store_true", help="every login from one browser (its binding "
                        "cookie kept, so each start trims its older states); default: a new browser per login, "
                        "as bench/login_bench.py")
    args = parser.parse_args()
    runtime, verified = fresh_runtime(args.database_url)
    assert complete_login(runtime, verified).created, "the first login creates the user"
    provider = oidc_start.resolve(runtime.http, runtime.discovery, runtime.plugins.oidc_provider(verified.connector))
    oidc_start.resolve = lambda *_args, **_kw: provider  # type: ignore[assignment]
    for _ in range(args.warmup):
        one_login(runtime, verified, None, same_browser=args.same_browser)
    timings: dict[str, list[float]] = {unit: [] for unit in (*UNITS, "total")}
    for _ in range(args.logins):
        one_login(runtime, verified, timings, same_browser=args.same_browser)
    # counted in a pass of its own: a statement listener would slow every statement it counts
    counted = 200
    counter = StatementCounter(runtime)
    traced: Counter[str] = Counter()
    _sqlite_trace(runtime, traced)
    counter.active = True
    for _ in range(counted):
        one_login(runtime, verified, None, same_browser=args.same_browser)
    counter.active = False
    per = counted
    print(f"{runtime.db.url.split(':', 1)[0]}: OIDC-shaped login (start, check, login), returning user, "
          f"{'one browser' if args.same_browser else 'a new browser per login'}, {args.logins} logins "
          f"after {args.warmup} warm-up; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("  ".join(f"{unit} {statistics.median(v):.3f}/{p95(v):.3f}" for unit, v in timings.items())
          + "  (cpu ms median/p95)")
    shape = " ".join(f"{k}={n / per:.2f}" for k, n in sorted(counter.verbs.items()))
    print(f"statements/login through SQLAlchemy: {shape}")
    if traced:
        print("run by SQLite/login: " + " ".join(f"{k}={n / per:.2f}" for k, n in sorted(traced.items())))
    runtime.close()


if __name__ == "__main__":
    main()

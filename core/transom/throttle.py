"""Throttles shared by every worker: fixed-window counters in the ``throttle_counters`` table
(docs/security.md).

One statement per hit, an upsert that either starts a new window or adds one to the current
one and returns the count: atomic on PostgreSQL (the row lock orders concurrent hits on one
key, whichever worker they arrive at) and on SQLite (one writer at a time). Each hit runs in
a transaction of its own, so a request that fails afterwards (a wrong password, a bad SCIM
body) still counts: that is what a throttle is for.

Keys are SHA-256 digests of the bucket's name, so the table holds no email, address or
token, and a key's length is bounded whatever the request sent. Rows whose window ended are
deleted now and then, inside a hit's transaction, so a spray of distinct keys cannot grow
the table without bound.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import time
from dataclasses import dataclass

from sqlalchemy import case, delete, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from transom.config import ServerSettings
from transom.db import Database
from transom.errors import TooManyRequests
from transom.models import ThrottleCounter

#: every this many hits (per process), windows that ended are deleted
SWEEP_EVERY = 500
#: ended windows are kept this long before a sweep deletes them (seconds)
SWEEP_GRACE = 60

REASON_USER = "throttled_user"
REASON_ADDRESS = "throttled_address"
REASON_TOKEN = "throttled_token"

_hits = itertools.count(1)


@dataclass(frozen=True)
class Limit:
    """At most ``hits`` per ``window`` seconds; ``hits == 0`` disables the limit."""

    hits: int
    window: int


@dataclass(frozen=True)
class Count:
    hits: int
    window_ends: int
    now: float

    def over(self, limit: Limit) -> bool:
        return self.hits > limit.hits

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.window_ends - self.now))


def bucket_key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def hit(database: Database, key: str, limit: Limit) -> Count:
    """Count one hit on ``key`` in a transaction of its own."""
    now = time.time()
    with database.transaction() as db:
        if db.get_bind().dialect.name == "postgresql":
            # a counter need not survive a crash: do not wait for the WAL flush (measured: the
            # flush was most of a hit's 10 ms median on a busy host; docs/security.md)
            db.execute(text("SET LOCAL synchronous_commit TO OFF"))
        hits, ends = _upsert(db, key, int(now), limit.window)
        if next(_hits) % SWEEP_EVERY == 0:
            db.execute(delete(ThrottleCounter).where(ThrottleCounter.window_ends < int(now) - SWEEP_GRACE))
    return Count(hits=hits, window_ends=ends, now=now)


def _upsert(db: Session, key: str, now: int, window: int) -> tuple[int, int]:
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    counter = ThrottleCounter
    stmt = insert(counter).values(key=key, hits=1, window_ends=now + window)
    ended = counter.window_ends <= now
    upsert = stmt.on_conflict_do_update(
        index_elements=[counter.key],
        set_={"hits": case((ended, 1), else_=counter.hits + 1),
              "window_ends": case((ended, stmt.excluded.window_ends), else_=counter.window_ends)},
    ).returning(counter.hits, counter.window_ends)
    row = db.execute(upsert).one()
    return int(row[0]), int(row[1])


def password_attempt(database: Database, server: ServerSettings, *, account: str, email: str, address: str) -> None:
    """Count a password login before its password is checked (so a throttled guess costs no
    Argon2 hash): per client address across accounts, then per account and email. Every
    throttled attempt is logged, once, as its refusal line (transom.observe) with the account,
    the address and the count as detail; never the email or password."""
    window = server.password_throttle_window_seconds
    buckets = (
        (bucket_key("password-address", address), Limit(server.password_attempts_per_address, window),
         REASON_ADDRESS, "too many sign-in attempts from your network; wait and try again"),
        (bucket_key("password-user", account.strip().casefold(), email.strip().casefold()),
         Limit(server.password_attempts_per_user, window),
         REASON_USER, "too many sign-in attempts for this user; wait and try again"),
    )
    for key, limit, reason, message in buckets:
        if limit.hits <= 0:
            continue
        count = hit(database, key, limit)
        if count.over(limit):
            raise TooManyRequests(message, reason=reason, retry_after=count.retry_after,
                                  log_detail=f"account={account.strip()[:100]} address={address[:64]} "
                                  f"attempts={count.hits}")


def api_request(database: Database, server: ServerSettings, *, credential: str) -> None:
    """Count one SCIM or admin-API request against the token (or session) that sent it. Each
    refused request writes its one refusal line (transom.observe); the first of a window
    says ``limit_reached`` so a log search finds where a runaway client started."""
    limit = Limit(server.api_rate_limit, server.api_rate_window_seconds)
    if limit.hits <= 0 or not credential:
        return
    count = hit(database, bucket_key("api", credential), limit)
    if count.over(limit):
        first = count.hits == limit.hits + 1
        raise TooManyRequests(
            f"more than {limit.hits} requests in {limit.window} s for this API token; slow down",
            reason=REASON_TOKEN, retry_after=count.retry_after,
            log_detail=f"limit_reached={limit.hits}/{limit.window}s" if first else None)

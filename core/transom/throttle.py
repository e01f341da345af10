"""Throttles shared by every worker: fixed-window counters in the ``throttle_counters`` table
(docs/security.md).

One statement per hit, an upsert that either starts a new window or adds one to the current
one and returns the count: atomic on PostgreSQL (the row lock orders concurrent hits on one
key, whichever worker they arrive at) and on SQLite (one writer at a time). Each hit runs in
a transaction of its own, so a request that fails afterwards (a wrong password, a bad SCIM
body) still counts: that is what a throttle is for.

The API rate limit (a request of every SCIM and admin-API call) takes its hits in *leases*
rather than one upsert per request: a process adds a block of hits to the shared counter in
one statement and then serves that many requests from memory. The shared count never
undercounts (hits are counted before they are served), so the limit holds across workers;
a lease shrinks as the count nears the limit (one hit per statement in the last eighth), so
the refusal comes at the same request as with per-hit counting, give or take the unused
part of other workers' leases. A transaction per request had doubled a SCIM create's cost.
Password attempts stay one statement per attempt: they are rare and each must count.

Keys are SHA-256 digests of the bucket's name, so the table holds no email, address or
token, and a key's length is bounded whatever the request sent. Rows whose window ended are
deleted now and then, inside a hit's transaction, so a spray of distinct keys cannot grow
the table without bound.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import threading
import time
import weakref
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

#: the largest lease of API hits a process takes in one statement
LEASE_MAX = 50
#: a lease is at most this fraction of what is left below the limit
LEASE_SHARE = 8

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


def hit(database: Database, key: str, limit: Limit, *, hits: int = 1) -> Count:
    """Count ``hits`` hits on ``key`` in a transaction of its own."""
    now = time.time()
    with database.transaction() as db:
        if db.get_bind().dialect.name == "postgresql":
            # a counter need not survive a crash: do not wait for the WAL flush (measured: the
            # flush was most of a hit's 10 ms median on a busy host; docs/security.md)
            db.execute(text("SET LOCAL synchronous_commit TO OFF"))
        total, ends = _upsert(db, key, int(now), limit.window, hits)
        if next(_hits) % SWEEP_EVERY == 0:
            db.execute(delete(ThrottleCounter).where(ThrottleCounter.window_ends < int(now) - SWEEP_GRACE))
    return Count(hits=total, window_ends=ends, now=now)


def _upsert(db: Session, key: str, now: int, window: int, hits: int) -> tuple[int, int]:
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    counter = ThrottleCounter
    stmt = insert(counter).values(key=key, hits=hits, window_ends=now + window)
    ended = counter.window_ends <= now
    upsert = stmt.on_conflict_do_update(
        index_elements=[counter.key],
        set_={"hits": case((ended, stmt.excluded.hits), else_=counter.hits + stmt.excluded.hits),
              "window_ends": case((ended, stmt.excluded.window_ends), else_=counter.window_ends)},
    ).returning(counter.hits, counter.window_ends)
    row = db.execute(upsert).one()
    return int(row[0]), int(row[1])


@dataclass
class _Lease:
    """Hits this process counted in the shared table and has not served yet."""

    left: int
    window_ends: int
    #: the shared count after the lease was taken
    seen: int
    #: the shared count went over the limit: refuse until the window ends (it cannot drop)
    over: bool
    #: this lease holds hit number limit + 1: its first refusal is the window's first
    crossed: bool = False
    #: this worker has refused a request of this window already
    refused: bool = False


class _Leases:
    """A process's API-hit leases, by bucket key. Thread-safe: requests run on a thread pool."""

    MAX_KEYS = 10_000

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.by_key: dict[str, _Lease] = {}

    def live(self, key: str, now: float) -> _Lease | None:
        lease = self.by_key.get(key)
        return lease if lease is not None and lease.window_ends > now else None

    def store(self, key: str, lease: _Lease, now: float) -> None:
        """Keep ``lease``, adding what is left of a live lease of the same window (two
        threads may each have taken one at once: neither's counted hits are thrown away)."""
        if len(self.by_key) >= self.MAX_KEYS:  # a spray of tokens: keep only live windows
            self.by_key = {k: v for k, v in self.by_key.items() if v.window_ends > now}
        current = self.live(key, now)
        if current is not None and current.window_ends == lease.window_ends:
            lease.left += current.left
            lease.seen = max(lease.seen, current.seen)
            lease.over = lease.over or current.over
            lease.crossed = lease.crossed or current.crossed
            lease.refused = lease.refused or current.refused
        self.by_key[key] = lease


#: per Database object: each worker process has its own, and so has each app instance that
#: stands for a worker in the tests
_leases_of: weakref.WeakKeyDictionary[Database, _Leases] = weakref.WeakKeyDictionary()
_leases_guard = threading.Lock()


def _leases_for(database: Database) -> _Leases:
    with _leases_guard:
        leases = _leases_of.get(database)
        if leases is None:
            leases = _leases_of[database] = _Leases()
        return leases


def lease_size(limit: Limit, seen: int) -> int:
    """How many hits to count at once: up to ``LEASE_MAX`` and an eighth of what is left below
    the limit, so the last hits before the limit are counted one by one."""
    return max(1, min(LEASE_MAX, (limit.hits - seen) // LEASE_SHARE))


def _api_hit(database: Database, key: str, limit: Limit) -> tuple[bool, bool, float]:
    """Spend one API hit of ``key``: (allowed, the first refusal of the window, the end of the
    window). The first refusal is the one of hit number limit + 1, whichever worker leased it."""
    now = time.time()
    leases = _leases_for(database)
    with leases.guard:
        lease = leases.live(key, now)
        if lease is not None and lease.left > 0:
            lease.left -= 1
            return True, False, lease.window_ends
        if lease is not None and lease.over:
            first = lease.crossed and not lease.refused
            lease.refused = True
            return False, first, lease.window_ends
        seen = lease.seen if lease is not None else 0
    size = lease_size(limit, seen)
    count = hit(database, key, limit, hits=size)
    before = count.hits - size
    granted = max(0, min(size, limit.hits - before))
    crossed = before <= limit.hits < count.hits
    with leases.guard:
        lease = _Lease(left=max(0, granted - 1), window_ends=count.window_ends, seen=count.hits,
                       over=count.hits > limit.hits, crossed=crossed)
        leases.store(key, lease, now)  # merged with a lease other threads took at the same time
        if granted > 0:
            return True, False, count.window_ends
        if lease.left > 0:
            # Threads that missed the lease at once each counted a whole block: the later ones
            # found the limit spent by blocks not yet served. Serve from what the others were
            # granted (never more than the limit in all) rather than refuse a request the limit
            # allows (20 parallel SCIM creates, tests/test_scim_compliance.py).
            lease.left -= 1
            return True, False, lease.window_ends
        first = lease.crossed and not lease.refused
        lease.refused = True
        return False, first, lease.window_ends


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
    refused request writes its one refusal line (transom.observe); a worker's first refusal
    of a window says ``limit_reached`` so a log search finds where a runaway client started."""
    limit = Limit(server.api_rate_limit, server.api_rate_window_seconds)
    if limit.hits <= 0 or not credential:
        return
    allowed, first_refusal, window_ends = _api_hit(database, bucket_key("api", credential), limit)
    if not allowed:
        raise TooManyRequests(
            f"more than {limit.hits} requests in {limit.window} s for this API token; slow down",
            reason=REASON_TOKEN, retry_after=max(1, math.ceil(window_ends - time.time())),
            log_detail=f"limit_reached={limit.hits}/{limit.window}s" if first_refusal else None)

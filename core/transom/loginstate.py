"""Server-side, single-use state of an SSO login in flight.

OIDC keeps ``state`` (the row key), ``nonce`` and the PKCE verifier here; SAML keeps the
AuthnRequest ID (the row key). A row is bound to the browser that started the login through
the ``transom_login`` cookie (its hash is stored), lives a few minutes, and is deleted when
spent, so a state or request id works once (login CSRF, replayed callbacks). A callback
*checks* its state read-only (:func:`check_login_state`) and *spends* it with one ``DELETE``
that must match exactly one row (:func:`login_state_mark`, transom.singleuse).

The start route needs no login, so anyone can create rows. Two caps keep that bounded
(docs/performance.md): a browser (binding cookie) holds at most
``login_states_per_browser`` pending states, its oldest dropped when it starts one more;
an account holds at most ``max_pending_login_states``, the oldest dropped first, checked
once every 1,000 starts per process. Dropping rather than refusing: a flood then has to outpace
the cap within one IdP round trip to break someone's login, instead of filling the table
once and refusing every start until it drains.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from fastapi import Request, Response
from sqlalchemy import Connection, Delete, Integer, Table, bindparam, delete, func, insert, select
from sqlalchemy.orm import Session

from transom.connector import Connector
from transom.db import core
from transom.errors import LoginRefused
from transom.models import LoginState
from transom.purges import EXPIRED_LOGIN_STATES
from transom.runtime import Runtime
from transom.singleuse import Mark

log = logging.getLogger("transom.loginstate")

BINDING_COOKIE = "transom_login"
BINDING_PATH = "/api/accounts"
#: login starts of an account between two checks of its cap, per process: the check counts
#: the account's rows (tens of ms at 300k), so it is amortised over this many starts, and the
#: table can exceed the cap by at most this many rows per process
CAP_CHECK_EVERY_STARTS = 1000

#: starts per account since the last check, per process
_cap_checked: dict[str, int] = {}
_cap_checked_guard = threading.Lock()
#: the expiry sweep runs on an account's first start in a process, then at most this often:
#: expired rows are refused at the callback anyway, so they need not go on every start
SWEEP_EVERY_SECONDS = 1.0
_last_sweep: dict[str, float] = {}


#: the table itself: Core statements, no ORM unit of work (a login start and a callback are
#: hot paths; docs/performance.md)
_STATES = cast(Table, LoginState.__table__)
#: built once, on the table: an ``insert(LoginState)`` would go through the ORM's bulk path
_INSERT_STATE = insert(_STATES)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def browser_binding(request: Request, response: Response, runtime: Runtime) -> str:
    """The browser's binding value: reuse the cookie if present (several tabs may log in at
    once), else set a new one. Cross-site POSTs (SAML ACS, form_post) only carry it when it
    is SameSite=None, which browsers accept only with Secure, i.e. on https."""
    value = request.cookies.get(BINDING_COOKIE)
    if not value or len(value) > 100:
        value = secrets.token_urlsafe(32)
    secure = runtime.config.server.cookies_secure
    response.set_cookie(
        BINDING_COOKIE, value, max_age=runtime.config.server.login_state_max_age_seconds,
        httponly=True, secure=secure, samesite="none" if secure else "lax", path=BINDING_PATH,
    )
    return value


def create_login_state(
    db: Session | Connection,
    runtime: Runtime,
    *,
    account_id: str,
    connector: Connector,
    binding: str | None,
    next_path: str | None,
    key: str | None = None,
    nonce: str | None = None,
    code_verifier: str | None = None,
    fresh_binding: bool = False,
) -> str:
    """Store a pending login; returns its key. ``fresh_binding``: the binding was minted by
    this very request, so the browser has no other pending states to trim."""
    now = datetime.now(UTC)
    server = runtime.config.server
    # Expired rows of this account are swept here so the table stays small without a job;
    # an index range, so the cost does not grow with the table (transom.purges).
    if _sweep_due(account_id):
        core(db).execute(EXPIRED_LOGIN_STATES, {"account_id": account_id, "now": now})
    digest = _digest(binding) if binding else None
    if digest is not None and not fresh_binding:
        drop_browser_overflow(db, account_id=account_id, binding_digest=digest,
                              keep=server.login_states_per_browser - 1)
    key = key or secrets.token_urlsafe(32)
    core(db).execute(_INSERT_STATE, {
        "key": key, "account_id": account_id, "connector_id": connector.id, "protocol": connector.protocol,
        "nonce": nonce, "code_verifier": code_verifier, "next_path": next_path, "browser_binding": digest,
        "created_at": now, "expires_at": now + timedelta(seconds=server.login_state_max_age_seconds),
    })
    if _cap_check_due(account_id):
        enforce_account_cap(db, account_id=account_id, cap=server.max_pending_login_states)
    return key


def drop_browser_overflow_statement(account_id: Any, binding_digest: Any, *, keep: Any) -> Delete:
    """This browser's pending states beyond the newest ``keep`` (index
    ``ix_login_states_account_id_browser_binding_expires_at``: a browser has a few rows);
    values or bind parameters."""
    beyond = (
        select(_STATES.c.key)
        .where(_STATES.c.account_id == account_id, _STATES.c.browser_binding == binding_digest)
        .order_by(_STATES.c.expires_at.desc(), _STATES.c.key)
        .offset(keep)
    )
    return delete(_STATES).where(
        _STATES.c.account_id == account_id, _STATES.c.browser_binding == binding_digest, _STATES.c.key.in_(beyond),
    )


#: built once, on the table: an ORM ``delete(LoginState)`` with its subquery was compiled and
#: cache-keyed on every start (~15 % of an in-process login, bench/db_units_bench.py)
_DROP_BROWSER_OVERFLOW = drop_browser_overflow_statement(
    bindparam("account_id"), bindparam("binding"), keep=bindparam("keep", type_=Integer))


def drop_browser_overflow(db: Session | Connection, *, account_id: str, binding_digest: str, keep: int) -> int:
    """Delete this browser's pending states beyond the newest ``keep``; returns how many."""
    params = {"account_id": account_id, "binding": binding_digest, "keep": keep}
    return core(db).execute(_DROP_BROWSER_OVERFLOW, params).rowcount


def enforce_account_cap(db: Session | Connection, *, account_id: str, cap: int) -> int:
    """Delete the account's oldest pending states beyond ``cap``; returns how many. Counts
    the account's rows (from the index), so it runs once every CAP_CHECK_EVERY_STARTS starts."""
    count = db.scalar(select(func.count()).select_from(LoginState).where(LoginState.account_id == account_id)) or 0
    if count <= cap:
        return 0
    newest_dropped = db.scalar(
        select(LoginState.expires_at).where(LoginState.account_id == account_id)
        .order_by(LoginState.expires_at.desc()).offset(cap).limit(1)
    )
    if newest_dropped is None:
        return 0
    result = db.execute(delete(LoginState).where(
        LoginState.account_id == account_id, LoginState.expires_at <= newest_dropped,
    ).execution_options(synchronize_session=False))
    dropped: int = result.rowcount  # type: ignore[attr-defined]
    log.warning("pending login states over the cap account=%s cap=%d dropped_oldest=%d", account_id, cap, dropped)
    return dropped


def _sweep_due(account_id: str) -> bool:
    now = time.monotonic()
    with _cap_checked_guard:
        last = _last_sweep.get(account_id)
        if last is not None and now - last < SWEEP_EVERY_SECONDS:
            return False
        _last_sweep[account_id] = now
        return True


def _cap_check_due(account_id: str) -> bool:
    """True for an account's first start in this process and every CAP_CHECK_EVERY_STARTS-th after."""
    with _cap_checked_guard:
        starts = _cap_checked.get(account_id, 0)
        _cap_checked[account_id] = (starts + 1) % CAP_CHECK_EVERY_STARTS
        return starts == 0


#: the check's read (built once; a callback is a hot path)
_READ_STATE = select(
    _STATES.c.key, _STATES.c.account_id, _STATES.c.connector_id, _STATES.c.protocol, _STATES.c.nonce,
    _STATES.c.code_verifier, _STATES.c.next_path, _STATES.c.browser_binding, _STATES.c.expires_at,
).where(_STATES.c.key == bindparam("key"))
#: spending: one statement that must match exactly one row (of two racing DELETEs only one does)
_SPEND_STATE = delete(_STATES).where(
    _STATES.c.account_id == bindparam("account_id"), _STATES.c.key == bindparam("key"),
).returning(_STATES.c.key)


@dataclass(frozen=True)
class PendingState:
    """A login state that passed :func:`check_login_state` (not yet spent)."""

    key: str
    account_id: str
    connector_id: str
    protocol: str
    nonce: str | None
    code_verifier: str | None
    next_path: str | None


def _state_refused() -> LoginRefused:
    return LoginRefused(
        "this sign-in link has expired or was already used; start the sign-in again",
        hint="the login state was unknown, reused, expired or started in another browser",
        # one reason for every case, like the message: which one it was is no one's business
        reason="login.state",
    )


def check_login_state(
    db: Session | Connection, *, key: str, binding: str | None, connector_id: str | None = None,
    account_id: str | None = None,
) -> PendingState:
    """Read-only (``Database.read``): refuse unknown, spent, expired, foreign-browser,
    other-connector or other-account states with the same message (no oracle). Spends
    nothing: a refusal here leaves the state usable by the browser that started the login."""
    if not key or len(key) > 128:
        raise _state_refused()
    row = core(db).execute(_READ_STATE, {"key": key}).one_or_none()
    if row is None:
        raise _state_refused()
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    if expires <= datetime.now(UTC):
        raise _state_refused()
    if connector_id is not None and row.connector_id != connector_id:
        raise _state_refused()
    if account_id is not None and row.account_id != account_id:
        raise _state_refused()
    if row.browser_binding is not None and (
        binding is None or not hmac.compare_digest(row.browser_binding, _digest(binding))
    ):
        raise _state_refused()
    return PendingState(key=row.key, account_id=row.account_id, connector_id=row.connector_id, protocol=row.protocol,
                        nonce=row.nonce, code_verifier=row.code_verifier, next_path=row.next_path)


def spend_login_state(db: Session, *, account_id: str, key: str) -> None:
    """Delete the state (``DELETE ... RETURNING``, scoped by account); refused unless exactly
    one row matched: it was spent already, by a replay or by a concurrent callback."""
    if len(core(db).execute(_SPEND_STATE, {"account_id": account_id, "key": key}).all()) != 1:
        raise _state_refused()


def login_state_mark(state: PendingState) -> Mark:
    """The checked state as a single-use mark (transom.singleuse)."""

    def spend(db: Session) -> None:
        spend_login_state(db, account_id=state.account_id, key=state.key)

    return spend

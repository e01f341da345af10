"""Login activity: every SSO login attempt, refused or not, stored in the database (so every
worker's attempts show on every worker) for the admin console and ``GET /api/admin/logins``.

The login flow calls in at three small points, so the hook survives changes to the pipeline:

* the OIDC callback and the SAML ACS run ``verify -> complete_login`` inside
  ``with login_activity.attempt(runtime):``; a ``TransomError`` leaving the block is recorded
  as a refusal (message, hint, and what the IdP sent if verification had passed), then
  re-raised unchanged;
* the verify steps call :func:`saw` once they know the connector, and again with the verified
  payload (an attempt with no connector known, such as an expired login state, cannot be
  tied to an account and is not recorded);
* :func:`record_success` runs inside the login's own transaction, with the audit events that
  transaction wrote (collected by :func:`watch_changes`).

What the IdP sent is stored *decoded and verified only*: the id_token's claims or the SAML
NameID and attributes, never the raw token, assertion or signature, and never a value whose
name looks like a secret. Rows are pruned by age and capped per account
(``server.login_activity_retention_days`` / ``login_activity_max_rows``).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.orm import Session

from transom import audit
from transom.connector import Connector
from transom.errors import TransomError
from transom.models import Account, LoginAttempt, utcnow

if TYPE_CHECKING:
    from transom.login import LoginResult
    from transom.runtime import Runtime

log = logging.getLogger("transom.login_activity")

SUCCESS = "success"
REFUSED = "refused"
#: claims that are protocol plumbing, not identity: one-time values and hashes of tokens
_PLUMBING_CLAIMS = frozenset({"nonce", "at_hash", "c_hash", "s_hash", "sid", "session_index"})
#: a claim or attribute whose name contains one of these is stored as "[redacted]"
_SECRET_WORDS = ("token", "secret", "password", "assertion", "signature", "credential", "private")
MAX_TEXT = 500
MAX_ITEMS = 250
#: the row cap costs an index walk of max_rows entries; checked on every Nth record only
CAP_EVERY = 50
_records = itertools.count(1)
#: the age sweep runs on an account's first record in a process, then at most this often:
#: retention is counted in days, and a sweep on every login was a seventh of a login's CPU
#: (bench/login_bench.py --profile, docs/performance.md)
AGE_SWEEP_EVERY_SECONDS = 60.0
_last_age_sweep: dict[str, float] = {}


# -- what the IdP sent ----------------------------------------------------------------------


def _secretish(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _bounded(value: Any, depth: int = 0) -> Any:
    """JSON-safe and bounded: long strings and lists are cut, with a marker saying so."""
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + f"… ({len(value)} characters)"
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth >= 4:
        return "…"
    if isinstance(value, Mapping):
        items = list(value.items())
        out = {str(k): "[redacted]" if _secretish(str(k)) else _bounded(v, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["…"] = f"{len(items) - MAX_ITEMS} more"
        return out
    if isinstance(value, list | tuple):
        # a short str is its own bounded form at any depth: no call for each of 200 group ids
        cut = [v if type(v) is str and len(v) <= MAX_TEXT else _bounded(v, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            cut.append(f"… {len(value) - MAX_ITEMS} more")
        return cut
    return _bounded(str(value), depth)


def received_json(protocol: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The verified payload as the console shows it. OIDC: the id_token's claims; SAML: the
    NameID, its format, the issuer and the attributes."""
    if protocol == "saml":
        return {
            "name_id": _bounded(payload.get("name_id")),
            "name_id_format": _bounded(payload.get("name_id_format")),
            "issuer": _bounded(payload.get("issuer")),
            "attributes": _bounded(payload.get("attributes") or {}),
        }
    claims = {k: v for k, v in payload.items() if k not in _PLUMBING_CLAIMS}
    return {"claims": _bounded(claims)}


def user_label(payload: Mapping[str, Any] | None) -> str | None:
    """Who the IdP said the person was, for the list: user name, email, NameID or subject."""
    if not payload:
        return None
    attributes = payload.get("attributes")
    for key in ("preferred_username", "upn", "email", "name_id", "sub"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value[:320]
    if isinstance(attributes, Mapping):
        for values in attributes.values():
            if isinstance(values, list) and values and isinstance(values[0], str) and "@" in values[0]:
                return values[0][:320]
    return None


# -- recording ------------------------------------------------------------------------------


@dataclass
class Attempt:
    """What the login in progress has established so far (filled in through :func:`saw`)."""

    connector: Connector | None = None
    payload: Mapping[str, Any] | None = None


_current: ContextVar[Attempt | None] = ContextVar("transom_login_attempt", default=None)


@contextmanager
def attempt(runtime: Runtime) -> Iterator[Attempt]:
    """Record a refusal leaving the block, then re-raise it unchanged."""
    current = Attempt()
    token = _current.set(current)
    try:
        yield current
    except TransomError as exc:
        if current.connector is not None:
            record_refusal(runtime, connector=current.connector, error=exc, payload=current.payload)
        raise
    finally:
        _current.reset(token)


def saw(*, connector: Connector | None = None, payload: Mapping[str, Any] | None = None) -> None:
    """Called by the verify steps: the connector once known, the payload once verified (a
    later refusal then shows what the IdP sent). Does nothing outside :func:`attempt`."""
    current = _current.get()
    if current is None:
        return
    if connector is not None:
        current.connector = connector
    if payload is not None:
        current.payload = payload


def record_refusal(
    runtime: Runtime, *, connector: Connector, error: TransomError, payload: Mapping[str, Any] | None
) -> None:
    """In its own transaction (the login's was rolled back). Never fails the response: a
    login activity row is worth less than the refusal page the person is waiting for."""
    try:
        with runtime.db.transaction() as db:
            account_id = db.scalar(select(Account.id).where(Account.name == connector.account))
            if account_id is None:  # a connector naming a missing account: nowhere to show it
                return
            db.add(LoginAttempt(
                account_id=account_id, connector_id=connector.id, protocol=connector.protocol, outcome=REFUSED,
                user_label=user_label(payload), code=error.code[:40], reason=error.message[:1000],
                hint=error.hint[:1000] if error.hint else None,
                warnings=[], received=received_json(connector.protocol, payload) if payload else None,
            ))
            _prune_after_record(db, runtime, account_id)
    except Exception as exc:  # see the docstring
        log.warning("login activity not recorded connector=%s: %s", connector.id, type(exc).__name__)


def watch_changes(db: Session) -> list[audit.Recorded]:
    """The audit events recorded in ``db`` from now on (what the login changed), through
    :func:`transom.audit.watch`."""
    return audit.watch(db)


#: built once: a success row is written on every login
_INSERT = cast(Table, LoginAttempt.__table__).insert()


def record_success(
    db: Session,
    runtime: Runtime,
    *,
    connector: Connector,
    payload: Mapping[str, Any],
    result: LoginResult,
    changes: list[audit.Recorded],
) -> None:
    """Inside the login transaction: the row commits (or not) with the login itself (a Core
    INSERT, executed at once)."""
    db.execute(_INSERT, {
        "account_id": result.account_id, "at": utcnow(), "connector_id": connector.id,
        "protocol": connector.protocol, "outcome": SUCCESS, "user_id": result.user_id,
        "user_label": user_label(payload), "code": None, "reason": None, "hint": None,
        "warnings": list(result.trace.warnings), "received": received_json(connector.protocol, payload),
        "changes": {
            "created": result.created,
            "changes": [{"action": e.action, "details": e.details} for e in changes if e.action != "login.sso"],
            "notes": list(result.trace.notes),
        },
    })
    _prune_after_record(db, runtime, result.account_id)


# -- retention ------------------------------------------------------------------------------


def _prune_after_record(db: Session, runtime: Runtime, account_id: str) -> None:
    server = runtime.config.server
    cap = server.login_activity_max_rows if next(_records) % CAP_EVERY == 0 else None
    now = time.monotonic()
    last = _last_age_sweep.get(account_id)
    if cap is None and last is not None and now - last < AGE_SWEEP_EVERY_SECONDS:
        return
    # several workers each sweep on their own schedule: harmless, a sweep is an index range
    _last_age_sweep[account_id] = now
    prune(db, account_id=account_id, now=utcnow(), retention_days=server.login_activity_retention_days, max_rows=cap)


def prune(db: Session, *, account_id: str, now: datetime, retention_days: int, max_rows: int | None) -> int:
    """Delete the account's attempts older than ``retention_days`` and, with ``max_rows``, all
    but the newest ``max_rows``. Returns how many rows went."""
    # synchronize_session=False: the session holds no attempts worth updating, and the ORM's
    # default evaluates the criteria against every object in the identity map
    gone = db.execute(delete(LoginAttempt).where(
        LoginAttempt.account_id == account_id, LoginAttempt.at < now - timedelta(days=retention_days)
    ).execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    if max_rows is not None:
        db.flush()
        boundary = db.scalar(
            select(LoginAttempt.id).where(LoginAttempt.account_id == account_id)
            .order_by(LoginAttempt.id.desc()).offset(max_rows).limit(1)
        )
        if boundary is not None:
            gone += db.execute(delete(LoginAttempt).where(
                LoginAttempt.account_id == account_id, LoginAttempt.id <= boundary
            ).execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    return int(gone or 0)


# -- reading --------------------------------------------------------------------------------


def list_attempts(
    db: Session, *, account_id: str, connector_id: str | None = None, outcome: str | None = None,
    user_id: str | None = None, limit: int = 100,
) -> list[LoginAttempt]:
    """Newest first."""
    query = select(LoginAttempt).where(LoginAttempt.account_id == account_id)
    if connector_id:
        query = query.where(LoginAttempt.connector_id == connector_id)
    if outcome:
        query = query.where(LoginAttempt.outcome == outcome)
    if user_id:
        query = query.where(LoginAttempt.user_id == user_id)
    return list(db.scalars(query.order_by(LoginAttempt.at.desc(), LoginAttempt.id.desc()).limit(limit)))


def get_attempt(db: Session, *, account_id: str, attempt_id: int) -> LoginAttempt | None:
    return db.scalar(select(LoginAttempt).where(LoginAttempt.account_id == account_id, LoginAttempt.id == attempt_id))


def last_by_connector(db: Session, *, account_ids: list[str]) -> dict[tuple[str, str], datetime]:
    """(connector id, outcome) -> time of the latest such attempt."""
    if not account_ids:
        return {}
    rows = db.execute(
        select(LoginAttempt.connector_id, LoginAttempt.outcome, func.max(LoginAttempt.at))
        .where(LoginAttempt.account_id.in_(account_ids))
        .group_by(LoginAttempt.connector_id, LoginAttempt.outcome)
    ).all()
    return {(c, o): aware(at) for c, o, at in rows}


def aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone=True columns.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def attempt_json(row: LoginAttempt, *, detail: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": row.id,
        "at": aware(row.at).isoformat(timespec="seconds"),
        "connector": row.connector_id,
        "protocol": row.protocol,
        "outcome": row.outcome,
        "user_id": row.user_id,
        "user": row.user_label,
        "code": row.code,
        "reason": row.reason,
        "hint": row.hint,
        "warnings": list(row.warnings or []),
    }
    if detail:
        data["received"] = row.received
        data["changes"] = row.changes
    return data

"""Browser sessions: a random id in a signed, HttpOnly, SameSite=Lax cookie; the session row
(keyed by the id's hash) lives in the database so any worker can serve it and logout
revokes it."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from transom.db import core
from transom.directory import LoginUser
from transom.models import USER_DEPROVISIONED, User, WebSession
from transom.security import sign, unsign

COOKIE_NAME = "transom_session"
#: built once: a session row is written on every login
_INSERT = cast(Table, WebSession.__table__).insert()


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def start_session(
    session: Session, *, user: User | LoginUser, secret: str, max_age_seconds: int, connector_id: str | None
) -> str:
    """Create the session row (a Core INSERT, executed at once: the user's row must already
    be written); returns the signed cookie value."""
    session_id = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    core(session).execute(_INSERT, {
        "id_hash": _hash(session_id),
        "account_id": user.account_id,
        "user_id": user.id,
        "connector_id": connector_id,
        "created_at": now,
        "expires_at": now + timedelta(seconds=max_age_seconds),
    })
    return sign(secret, session_id)


def session_user(session: Session, *, cookie: str | None, secret: str) -> User | None:
    if not cookie:
        return None
    session_id = unsign(secret, cookie)
    if session_id is None:
        return None
    row = session.get(WebSession, _hash(session_id))
    if row is None or _aware(row.expires_at) <= datetime.now(UTC):
        return None
    user = session.scalar(select(User).where(User.account_id == row.account_id, User.id == row.user_id))
    if user is None or user.status == USER_DEPROVISIONED:
        return None
    return user


def end_session(session: Session, *, cookie: str | None, secret: str) -> None:
    session_id = unsign(secret, cookie) if cookie else None
    if session_id is not None:
        session.execute(delete(WebSession).where(WebSession.id_hash == _hash(session_id)))


def end_user_sessions(session: Session, *, account_id: str, user_id: str) -> None:
    session.execute(
        delete(WebSession).where(WebSession.account_id == account_id, WebSession.user_id == user_id)
    )


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone=True columns.
    return value if value.tzinfo else value.replace(tzinfo=UTC)

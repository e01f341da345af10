"""Audit events: who changed what, from where. Values that are identities (user, group
names) are recorded; token contents and secrets never are.

Three ways to write one, all told to the session's *watchers* (:func:`watch`): the login
activity row and ``transom explain`` list what a login changed from them, whichever way
each event was written:

* :func:`record` adds an ORM object (written at the next flush);
* :func:`record_now` and :func:`record_login` execute a prebuilt Core INSERT at once, for
  hot paths (SCIM creates, every login), where the unit of work cost more than the INSERT.
"""

from __future__ import annotations

from typing import Any, NamedTuple, cast

from sqlalchemy import Table
from sqlalchemy.orm import Session

from transom.db import core
from transom.models import AuditEvent, utcnow

_TABLE = cast(Table, AuditEvent.__table__)
#: built once: constructing the statement costs more than SQLite takes to run it
_INSERT = _TABLE.insert()
#: ``session.info`` key of the lists that :func:`watch` hands out
WATCHERS = "transom.audit.watchers"


class Recorded(NamedTuple):
    """An audit event as a watcher sees it."""

    action: str
    details: dict[str, Any] | None


def watch(session: Session) -> list[Recorded]:
    """The audit events written through this module in ``session`` from now on, in the order
    they were recorded (an explicit hand-over through ``session.info``: a Core INSERT fires
    no ORM session event)."""
    seen: list[Recorded] = []
    session.info.setdefault(WATCHERS, []).append(seen)
    return seen


def _tell(session: Session, action: str, details: dict[str, Any] | None) -> None:
    watchers: list[list[Recorded]] | None = session.info.get(WATCHERS)
    if watchers:
        for seen in watchers:
            seen.append(Recorded(action, details))


def record(
    session: Session,
    *,
    account_id: str,
    actor: str,
    action: str,
    user_id: str | None = None,
    connector_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEvent(
            account_id=account_id,
            actor=actor,
            action=action,
            user_id=user_id,
            connector_id=connector_id,
            details=details,
        )
    )
    _tell(session, action, details)


def record_now(
    session: Session,
    *,
    account_id: str,
    actor: str,
    action: str,
    user_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """``record`` as a Core INSERT executed at once, for hot paths (SCIM creates): the unit of
    work cost more than the INSERT."""
    core(session).execute(
        _INSERT,
        {"account_id": account_id, "at": utcnow(), "actor": actor, "action": action, "user_id": user_id,
         "connector_id": None, "details": details},
    )
    _tell(session, action, details)


def record_login(
    session: Session,
    *,
    account_id: str,
    actor: str,
    action: str,
    user_id: str,
    connector_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    """``record`` as a Core INSERT executed at once, for the login transaction. Objects still
    pending in the session (a ``record`` of the same login, a new user) are flushed first, so
    the events' ids keep the order in which they were recorded."""
    if session.new:
        session.flush()
    core(session).execute(
        _INSERT,
        {"account_id": account_id, "at": utcnow(), "actor": actor, "action": action, "user_id": user_id,
         "connector_id": connector_id, "details": details},
    )
    _tell(session, action, details)
